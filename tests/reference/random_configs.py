"""A family of tiny random Hugging Face models and their logits, for the engine's differential test.

One hand-made fixture shares the engine's assumptions; a family of random configurations does not.
This writes, under tests/golden/family/<name>/, 24 tiny models saved by transformers itself —
LlamaForCausalLM, Qwen2ForCausalLM and GPT2LMHeadModel — drawn from a fixed seed across:
hidden 32..128, head_dim 8..64 (also head_dim != hidden/heads for Llama and Qwen2), GQA ratios
1/2/4, vocabularies 257..1024 (mostly not powers of two), tied and untied classifiers, random norm
weights and biases, rope_theta 1e4 and 1e6, 1..3 layers, and F32 / F16 / BF16 files. Beside each
model: reference.json — for each text, transformers' logits at 24 fixed vocabulary ids and the
logsumexp and argmax of every position (together they pin the whole distribution).

A subset (trl.json, two models per architecture) also gets TRL 1.16's step-0 summed log-probs of
a small KTO dataset (tokenized rows + per-row sums, main and KL), computed by KTOTrainer itself.

All models share one byte-level tokenizer (256 byte tokens + <|endoftext|> = id 256), so every
vocabulary size >= 257 is valid. Texts are encoded as bytes.

Run (needs torch, transformers 5.24, trl 1.16, datasets; CI does not):
    python tests/reference/random_configs.py
"""

import json
import math
import os
import random
import shutil
import sys
import tempfile

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    AutoModelForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden", "family")
TEXTS = [
    "Once upon a time",
    "The cat sat on the mat and looked at the big red ball.",
    "Café ✓ 🙂 naïve",
    "A",
    "Tom and his dog went to the park. They ran and jumped and had fun.",
]
PROBE = 24  # vocabulary ids whose logits are stored per position
TRL_SUBSET = ["llama_00", "llama_04", "qwen2_00", "qwen2_05", "gpt2_00", "gpt2_03"]


def byte_tokenizer():
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tok = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<|endoftext|>"])
    assert tok.token_to_id("<|endoftext|>") == 256
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>")


def draw(rng, arch, i):
    """One random configuration of `arch`."""
    vocab = rng.choice([257, 300, 384, 517, 640, 777, 1000, 1024])
    layers = rng.choice([1, 2, 2, 3])
    tied = rng.random() < 0.5
    dtype = ["float32", "float16", "bfloat16"][i % 3]
    if arch == "gpt2":
        heads = rng.choice([1, 2, 4])
        head_dim = rng.choice([8, 16, 32])
        hidden = heads * head_dim
        while hidden < 32 or hidden > 128:
            heads, head_dim = rng.choice([1, 2, 4]), rng.choice([8, 16, 32])
            hidden = heads * head_dim
        return dict(arch=arch, vocab=vocab, layers=layers, tied=tied, dtype=dtype, hidden=hidden, heads=heads,
                    inner=rng.choice([None, 2 * hidden + 8, 3 * hidden]), positions=rng.choice([80, 100, 128]),
                    eps=rng.choice([1e-5, 1e-6]))
    kv_ratio = rng.choice([1, 2, 4])
    kv_heads = rng.choice([1, 2])
    heads = kv_heads * kv_ratio
    hidden = rng.choice([32, 48, 64, 96, 128])
    # Half the models keep head_dim = hidden / heads (when it divides), half set it apart.
    if i % 2 == 0 and hidden % heads == 0 and (hidden // heads) % 2 == 0:
        head_dim = hidden // heads
    else:
        head_dim = rng.choice([8, 16, 24, 32, 64])
    return dict(arch=arch, vocab=vocab, layers=layers, tied=tied, dtype=dtype, hidden=hidden, heads=heads,
                kv_heads=kv_heads, head_dim=head_dim, inner=rng.choice([hidden + 16, 2 * hidden, 3 * hidden - 8]),
                theta=rng.choice([1e4, 1e6]), eps=rng.choice([1e-5, 1e-6]), positions=rng.choice([128, 256]),
                bias=arch == "llama" and rng.random() < 0.3)


def build(c, seed):
    torch.manual_seed(seed)
    eos = 256
    if c["arch"] == "gpt2":
        cfg = GPT2Config(vocab_size=c["vocab"], n_embd=c["hidden"], n_layer=c["layers"], n_head=c["heads"],
                         n_inner=c["inner"], n_positions=c["positions"], layer_norm_epsilon=c["eps"],
                         tie_word_embeddings=c["tied"], initializer_range=0.15, bos_token_id=eos, eos_token_id=eos,
                         resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
        model = GPT2LMHeadModel(cfg)
    else:
        kw = dict(vocab_size=c["vocab"], hidden_size=c["hidden"], intermediate_size=c["inner"],
                  num_hidden_layers=c["layers"], num_attention_heads=c["heads"], num_key_value_heads=c["kv_heads"],
                  head_dim=c["head_dim"], max_position_embeddings=c["positions"], rms_norm_eps=c["eps"],
                  rope_theta=c["theta"], tie_word_embeddings=c["tied"], initializer_range=0.15,
                  bos_token_id=eos, eos_token_id=eos)
        if c["arch"] == "llama":
            model = LlamaForCausalLM(LlamaConfig(attention_bias=c["bias"], **kw))
        else:
            model = Qwen2ForCausalLM(Qwen2Config(**kw))
    model = model.float().eval()
    # Random norm weights and biases: unit norms and zero biases hide mistakes in their handling.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or "ln_" in name:
                p.copy_((1.0 + 0.5 * torch.randn_like(p)) if name.endswith("weight") else 0.2 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.2 * torch.randn_like(p))
    # Round through the file's dtype so that the reference sees exactly the stored weights.
    dtype = getattr(torch, c["dtype"])
    model = model.to(dtype)
    return model


def save(model, tokenizer, folder):
    """The model and tokenizer as transformers saves them, minus files the engine does not read."""
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    for extra in ["generation_config.json", "special_tokens_map.json", "chat_template.jinja"]:
        p = os.path.join(folder, extra)
        if os.path.exists(p):
            os.remove(p)


def reference(model, vocab, rng):
    probe = sorted(rng.sample(range(vocab), PROBE))
    out = []
    with torch.no_grad():
        for text in TEXTS:
            ids = list(text.encode("utf-8"))
            logits = model(torch.tensor([ids])).logits[0].double()
            out.append({
                "text": text,
                "ids": ids,
                "probe_logits": logits[:, probe].tolist(),
                "logsumexp": torch.logsumexp(logits, dim=-1).tolist(),
                "argmax": logits.argmax(dim=-1).tolist(),
            })
    return probe, out


def add_member(name, model, tokenizer, c, rng, generated_by, **load_kwargs):
    """Save `model` as family member `name` with its reference.json (transformers' logits of the saved
    folder, loaded in float32 as a user would load it); returns the golden dict and the reference model."""
    folder = os.path.join(OUT, name)
    shutil.rmtree(folder, ignore_errors=True)
    save(model, tokenizer, folder)
    ref_model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **load_kwargs).eval()
    probe, texts = reference(ref_model, c["vocab"], rng)
    golden = {"generated_by": generated_by, "config": c, "probe": probe, "texts": texts,
              "versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__}}
    return golden, ref_model


def write_golden(name, golden):
    with open(os.path.join(OUT, name, "reference.json"), "w", encoding="utf-8") as f:
        json.dump(golden, f, ensure_ascii=False)


def read_index(drop_prefixes=()):
    with open(os.path.join(OUT, "index.json")) as f:
        return [n for n in json.load(f) if not n.startswith(tuple(drop_prefixes))]


def write_index(index):
    with open(os.path.join(OUT, "index.json"), "w") as f:
        json.dump(index, f, indent=1)


def trl_logps(folder, tokenizer):
    """TRL 1.16 KTOTrainer's step-0 per-row summed log-probs (main and KL) of a small dataset."""
    from datasets import Dataset
    from trl import KTOConfig, KTOTrainer

    rows = [
        {"prompt": "Once upon a time", "completion": " there was a cat.", "label": True},
        {"prompt": "The dog ", "completion": "ran away.", "label": False},
        {"prompt": "Café", "completion": " ✓ naïve 🙂", "label": True},
        {"prompt": "A", "completion": " big red ball", "label": False},
        {"prompt": "Tom and his dog went to the park.", "completion": " They had fun.", "label": True},
        {"prompt": "x", "completion": "y", "label": False},
    ]
    args = KTOConfig(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=len(rows), max_steps=1,
                     learning_rate=0.0, beta=0.1, max_length=48, report_to=[], use_cpu=True, bf16=False, fp16=False,
                     seed=0, save_strategy="no", remove_unused_columns=False, disable_dropout=True,
                     model_init_kwargs={"dtype": torch.float32})
    trainer = KTOTrainer(model=folder, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
    ds = trainer.train_dataset
    model = trainer.model.eval()
    batch = next(iter(trainer.get_train_dataloader()))
    batch = {k: v.to("cpu") if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    logps, kl = trainer.compute_ref_log_probs(model, batch)
    return {
        "rows": rows,
        "max_length": 48,
        "batch_size": len(rows),
        "tokenized": [{"prompt_ids": ds[i]["prompt_ids"], "completion_ids": ds[i]["completion_ids"],
                       "KL_completion_ids": ds[i]["KL_completion_ids"]} for i in range(len(ds))],
        "step0_logps": logps.tolist(),
        "step0_kl_logps": kl.tolist(),
    }


def main():
    torch.set_default_dtype(torch.float32)
    rng = random.Random(20261127)
    tokenizer = byte_tokenizer()
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    plan = [("llama", 9), ("qwen2", 9), ("gpt2", 6)]
    index = []
    for arch, n in plan:
        for i in range(n):
            name = f"{arch}_{i:02d}"
            c = draw(rng, arch, i)
            model = build(c, seed=len(index))
            folder = os.path.join(OUT, name)
            # The reference is the saved folder loaded in float32, as a user would load it (casting the
            # in-memory model back would keep RoPE's inv_freq buffer rounded to the file's dtype).
            golden, ref_model = add_member(name, model, tokenizer, c, rng, "tests/reference/random_configs.py")
            if name in TRL_SUBSET:
                ref_model.save_pretrained(tmp := tempfile.mkdtemp(), safe_serialization=True)
                tokenizer.save_pretrained(tmp)
                golden["trl"] = trl_logps(tmp, tokenizer)
                golden["versions"]["trl"] = __import__("trl").__version__
            write_golden(name, golden)
            size = os.path.getsize(os.path.join(folder, "model.safetensors"))
            index.append(name)
            print(name, json.dumps(c), f"{size / 1024:.0f} KiB", file=sys.stderr)
    write_index(index)


if __name__ == "__main__":
    main()
