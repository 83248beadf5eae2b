"""Random Llama models with RoPE scaling (`llama3`, as Llama 3.1/3.2 ship, and `linear`) and random
Qwen3 models (per-head q/k RMSNorm, head_dim != hidden/heads, tied and untied), added to the
family of tests/golden/family (see random_configs.py; the same reference.json, so the engine's family
test checks them as it checks the others, prefill and KV-cached). original_max_position_embeddings is
small (16/32) so that the test texts span all three llama3 regimes (kept, divided, blended).

Run after random_configs.py (needs torch, transformers 5.24):  python tests/reference/rope_configs.py
"""
import json
import os
import random
import shutil
import sys

import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, Qwen3Config, Qwen3ForCausalLM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import random_configs as rc  # noqa: E402


def main():
    torch.set_default_dtype(torch.float32)
    rng = random.Random(31415)
    tokenizer = rc.byte_tokenizer()
    index = rc.read_index(("rope_", "qwen3_"))
    plan = [("llama3", 8.0, 32), ("llama3", 32.0, 16), ("llama3", 8.0, 16), ("linear", 2.0, None), ("linear", 4.0, None),
            ("qwen3", None, None), ("qwen3", None, None), ("qwen3", None, None), ("qwen3", None, None)]
    for i, (kind, factor, original) in enumerate(plan):
        name = f"qwen3_{i:02d}" if kind == "qwen3" else f"rope_{kind}_{i:02d}"
        c = rc.draw(rng, "llama", i)
        torch.manual_seed(1000 + i)
        eos = 256
        kw = dict(vocab_size=c["vocab"], hidden_size=c["hidden"], intermediate_size=c["inner"],
                  num_hidden_layers=c["layers"], num_attention_heads=c["heads"], num_key_value_heads=c["kv_heads"],
                  head_dim=c["head_dim"], max_position_embeddings=c["positions"], rms_norm_eps=c["eps"],
                  tie_word_embeddings=c["tied"], initializer_range=0.15, bos_token_id=eos, eos_token_id=eos,
                  attention_bias=c["bias"])
        if kind == "qwen3":
            c["arch"] = "qwen3"
            model = Qwen3ForCausalLM(Qwen3Config(rope_parameters={"rope_type": "default", "rope_theta": c["theta"]}, **kw))
        else:
            rope = {"rope_type": kind, "rope_theta": c["theta"], "factor": factor}
            if kind == "llama3":
                rope.update(low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=original)
            c["rope"] = rope
            model = LlamaForCausalLM(LlamaConfig(rope_parameters=rope, **kw))
        model = model.float().eval()
        with torch.no_grad():
            for pname, p in model.named_parameters():
                if "norm" in pname:
                    p.copy_(1.0 + 0.5 * torch.randn_like(p))
                elif pname.endswith("bias"):
                    p.copy_(0.2 * torch.randn_like(p))
        model = model.to(getattr(torch, c["dtype"]))
        golden, ref_model = rc.add_member(name, model, tokenizer, c, rng, "tests/reference/rope_configs.py")
        rc.write_golden(name, golden)
        index.append(name)
        print(name, json.dumps(c))
    rc.write_index(index)


if __name__ == "__main__":
    main()
