"""Random Gemma 3 text models (Gemma3ForCausalLM) added to the family of tests/golden/family (see
random_configs.py: the same reference.json, so the engine's family test checks them as it checks the
others, prefill and KV-cached, on cpu and wgpu).

Drawn across what Gemma 3 adds to the Llama skeleton: head_dim != hidden/heads, GQA, random
`query_pre_attn_scalar` (not head_dim), sliding windows of 2..6 tokens (the test texts are longer,
so the window bites) over random layer types with their own local RoPE base, linear RoPE scaling on
the global layers, attention and final-logit soft-capping (small caps, so tanh is far from linear),
random (1 + w) norm weights, tied and untied classifiers, F32 / F16 / BF16 files.

Run after random_configs.py (needs torch, transformers 5.24):  python tests/reference/gemma3_configs.py
"""
import json
import os
import random
import shutil
import sys

import torch
from transformers import AutoModelForCausalLM, Gemma3ForCausalLM, Gemma3TextConfig

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import random_configs as rc  # noqa: E402


def main():
    torch.set_default_dtype(torch.float32)
    rng = random.Random(271828)
    tokenizer = rc.byte_tokenizer()
    index = rc.read_index(("gemma3_",))
    for i in range(6):
        c = rc.draw(rng, "llama", i)
        c["arch"] = "gemma3"
        layers = rng.choice([2, 3, 4])
        types = [rng.choice(["sliding_attention", "full_attention"]) for _ in range(layers)]
        types[i % layers] = "sliding_attention"
        c.update(layers=layers, layer_types=types, window=rng.choice([2, 3, 4, 6]),
                 scalar=rng.choice([c["head_dim"], 16, 24, 64]),
                 final_cap=[None, 5.0, 12.0][i % 3], attn_cap=[None, None, 3.0, 8.0][i % 4],
                 local_theta=rng.choice([1e4, 100.0]),
                 scaling=rng.choice([None, None, 4.0]))
        full = {"rope_type": "default", "rope_theta": c["theta"]}
        if c["scaling"]:
            full = {"rope_type": "linear", "rope_theta": c["theta"], "factor": c["scaling"]}
        torch.manual_seed(2000 + i)
        eos = 256
        cfg = Gemma3TextConfig(
            vocab_size=c["vocab"], hidden_size=c["hidden"], intermediate_size=c["inner"], num_hidden_layers=layers,
            num_attention_heads=c["heads"], num_key_value_heads=c["kv_heads"], head_dim=c["head_dim"],
            max_position_embeddings=c["positions"], rms_norm_eps=c["eps"], tie_word_embeddings=c["tied"],
            initializer_range=0.15, bos_token_id=eos, eos_token_id=eos, pad_token_id=eos,
            query_pre_attn_scalar=c["scalar"], sliding_window=c["window"], layer_types=types,
            final_logit_softcapping=c["final_cap"], attn_logit_softcapping=c["attn_cap"],
            rope_parameters={"full_attention": full,
                             "sliding_attention": {"rope_type": "default", "rope_theta": c["local_theta"]}},
            attention_bias=c["bias"], attn_implementation="eager")
        model = Gemma3ForCausalLM(cfg).float().eval()
        with torch.no_grad():
            for pname, p in model.named_parameters():
                if "norm" in pname:
                    p.copy_(0.5 * torch.randn_like(p))
        model = model.to(getattr(torch, c["dtype"]))
        name = f"gemma3_{i:02d}"
        golden, ref_model = rc.add_member(name, model, tokenizer, c, rng, "tests/reference/gemma3_configs.py", attn_implementation="eager")
        assert type(ref_model).__name__ == "Gemma3ForCausalLM", type(ref_model)
        rc.write_golden(name, golden)
        index.append(name)
        print(name, json.dumps(c))
    rc.write_index(index)


if __name__ == "__main__":
    main()
