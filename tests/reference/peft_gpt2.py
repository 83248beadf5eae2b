"""A GPT-2 LoRA adapter made by PEFT itself, and the logits of PEFT's model, for the engine's test of
GPT-2 LoRA (tests/engine/family.rs): PEFT adapts GPT-2's Conv1D layers (`c_attn`, fused q|k|v, the
two `c_proj`, `c_fc`) with `fan_in_fan_out`; the engine must read that adapter onto the same base
(tests/golden/family/gpt2_03 and gpt2_02, two layers) and give the same logits, and write it back.

Both factors are random (init_lora_weights=False; PEFT's default leaves B at zero, which would test
nothing). Writes tests/golden/peft_gpt2/<base>/{adapter_config.json, adapter_model.safetensors,
reference.json}.

Run (needs torch, transformers 5.24, peft 0.21.2):  python tests/reference/peft_gpt2.py
"""
import json
import os
import random
import shutil
import sys

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import random_configs as rc  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden", "peft_gpt2")
PLAN = {"gpt2_03": ["c_attn", "c_proj", "c_fc"], "gpt2_02": ["c_attn", "attn.c_proj"]}


def main():
    torch.manual_seed(5)
    rng = random.Random(5)
    shutil.rmtree(OUT, ignore_errors=True)
    for base_name, targets in PLAN.items():
        base = AutoModelForCausalLM.from_pretrained(os.path.join(rc.OUT, base_name), dtype=torch.float32)
        cfg = LoraConfig(r=4, lora_alpha=12, lora_dropout=0.0, target_modules=targets, fan_in_fan_out=True,
                         init_lora_weights=False, task_type="CAUSAL_LM")
        model = get_peft_model(base, cfg).eval()
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_" in name:
                    p.copy_(0.3 * torch.randn_like(p))
        folder = os.path.join(OUT, base_name)
        model.save_pretrained(folder)
        path = os.path.join(folder, "adapter_config.json")
        with open(path) as f:
            acfg = json.load(f)
        acfg["base_model_name_or_path"] = f"tests/golden/family/{base_name}"
        with open(path, "w") as f:
            json.dump(acfg, f, indent=2, sort_keys=True)
        for extra in ["README.md"]:
            if os.path.exists(os.path.join(folder, extra)):
                os.remove(os.path.join(folder, extra))
        probe, texts = rc.reference(model, base.config.vocab_size, rng)
        golden = {"generated_by": "tests/reference/peft_gpt2.py", "base": base_name, "targets": targets,
                  "probe": probe, "texts": texts,
                  "versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__,
                               "peft": __import__("peft").__version__}}
        with open(os.path.join(folder, "reference.json"), "w", encoding="utf-8") as f:
            json.dump(golden, f, ensure_ascii=False)
        print(base_name, sorted(os.listdir(folder)))


if __name__ == "__main__":
    main()
