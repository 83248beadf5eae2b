"""Logits golden for Hugging Face architectures beyond the TRL parity pair: a tiny random
Qwen2ForCausalLM (q/k/v biases, GQA, untied head) saved with transformers, and its logits on fixed
token ids. tests/engine/hf.rs loads the folder and compares.

Run (needs torch, transformers):  python tests/reference/hf_logits.py
"""

import json
import os
import shutil

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden", "hf", "qwen2")
IDS = [3, 17, 250, 99, 4, 180, 7, 42, 301, 11]

if __name__ == "__main__":
    torch.manual_seed(1)
    cfg = Qwen2Config(vocab_size=320, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-6, rope_theta=1000000.0,
                      tie_word_embeddings=False, initializer_range=0.2, use_sliding_window=False)
    model = Qwen2ForCausalLM(cfg).float().eval()
    with torch.no_grad():  # random biases (they are zero at init)
        for layer in model.model.layers:
            for p in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                p.bias.normal_(0, 0.5)
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    model.save_pretrained(OUT, safe_serialization=True)
    for extra in ["generation_config.json"]:
        if os.path.exists(os.path.join(OUT, extra)):
            os.remove(os.path.join(OUT, extra))
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([IDS])).logits[0]
    json.dump({"ids": IDS, "logits": logits.reshape(-1).tolist(), "transformers": __import__("transformers").__version__},
              open(os.path.join(OUT, "logits.json"), "w"))
    print("wrote", OUT, logits.shape)
