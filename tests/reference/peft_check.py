"""Check that the engine's exports load in Python `peft` + `transformers` and mean the same model.

For each base model it runs the native CLI to (1) convert the base to a Hugging Face folder,
(2) train a LoRA adapter for a few KTO steps and export it (PEFT) and the merged model, then loads
`PeftModel.from_pretrained(base, adapter)` and the merged folder with transformers and asserts:
  - PEFT's base + adapter and the merged model give the same logits (max |diff| <= 1e-4);
  - the adapter changes the logits (it is not a no-op).
Models: the tiny random Llama of the TRL golden files (rotate-half RoPE), a random GPT-2 and Gemma 3
of the family (tests/golden/family), stories260K (llama2.c, adjacent RoPE: Q/K rows permuted on export) and, when fetched, SmolLM2-135M-Instruct (GGUF Q4_1).

Run (needs torch, transformers, peft; CI does not):
    python tests/reference/peft_check.py [path/to/kto]
"""

import json
import os
import subprocess
import sys
import tempfile

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CACHE = os.environ.get("KTO_CACHE", os.path.expanduser("~/.cache/kto-studio"))
KTO = sys.argv[1] if len(sys.argv) > 1 else os.path.join(CACHE, "target-native/release/kto")
DATA = os.path.join(ROOT, "tests/golden/trl/data.jsonl")


def kto(*args):
    r = subprocess.run([KTO, *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"kto {' '.join(args)} failed:\n{r.stderr}")


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0]


def check(name, model_arg, steps, ids):
    work = tempfile.mkdtemp(prefix=f"peft-{name}-")
    base_dir, adapter_dir, merged_dir = (os.path.join(work, d) for d in ("base", "adapter", "merged"))
    kto("convert", "--model", model_arg, "--out", base_dir)
    kto("train", "--model", model_arg, "--data", DATA, "--lora-rank", "4", "--lora-alpha", "8", "--steps", str(steps),
        "--lr", "0.02", "--batch-size", "4", "--max-length", "48", "--no-shuffle",
        "--export-adapter", adapter_dir, "--export-merged", merged_dir)
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    plain = logits(base, ids)
    peft_model = PeftModel.from_pretrained(base, adapter_dir)
    with_adapter = logits(peft_model, ids)
    merged = logits(AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32), ids)
    diff = (with_adapter - merged).abs().max().item()
    effect = (with_adapter - plain).abs().max().item()
    result = {"model": name, "peft_vs_merged_max_abs_diff": diff, "adapter_effect_max_abs": effect,
              "adapter_tensors": len(peft_model.state_dict()), "ok": diff <= 1e-4 and effect > 1e-4}
    print(json.dumps(result))
    assert diff <= 1e-4, f"{name}: PEFT base+adapter and the merged export differ by {diff}"
    assert effect > 1e-4, f"{name}: the adapter changes nothing ({effect})"
    return result


if __name__ == "__main__":
    results = [check("tiny-llama (HF)", os.path.join(ROOT, "tests/golden/trl/llama"), 3, [0, 274, 281, 270, 265, 270, 383])]
    # GPT-2: one adapter on the fused c_attn (fan_in_fan_out), both c_proj and c_fc.
    results.append(check("gpt2 (HF, fused c_attn)", os.path.join(ROOT, "tests/golden/family/gpt2_03"), 3,
                         list(b"Once upon a time")))
    results.append(check("gemma3 (HF)", os.path.join(ROOT, "tests/golden/family/gemma3_04"), 3, list(b"Once upon a time")))
    stories = os.environ.get("KTO_MODEL_DIR", os.path.join(ROOT, "..", "shared", "models", "stories260K"))
    results.append(check("stories260K (llama2.c)", os.path.join(stories, "stories260K.bin"), 3, [1, 403, 407, 261, 378, 5, 279]))
    gguf = os.path.join(CACHE, "models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    if os.path.exists(gguf):
        results.append(check("SmolLM2-135M-Instruct (GGUF Q4_1)", gguf, 1, [1, 9690, 198, 2683, 314, 260, 3575, 282, 4649, 47, 2]))
    print("peft_check: all", len(results), "models passed")
