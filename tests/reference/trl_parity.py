"""Golden files for TRL parity: tiny random Hugging Face models + TRL 1.16's KTOTrainer.

Builds, under tests/golden/trl/<arch>/, a tiny random LlamaForCausalLM and GPT2LMHeadModel with
byte-level BPE tokenizers trained here, a small KTO JSONL (with the hard cases: a row that
`max_length` truncates so it loses EOS, a prompt ending in a space, non-ASCII text, a batch of one
class), runs `KTOTrainer` (fp32, CPU, sequential batches, SGD, constant LR 1.0, no clipping) for
5 steps and writes golden.json: the tokenized rows, per-row step-0 log-prob sums, and each step's
logged metrics. The Rust tests (tests/engine/trl_parity.rs) compare the engine with them.

Run (needs torch, transformers, trl==1.16.0, tokenizers; CI does not):
    python tests/reference/trl_parity.py
"""

import json
import math
import os
import shutil
import sys
import tempfile

import torch
from datasets import Dataset
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)
import trl
from trl import KTOConfig, KTOTrainer

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden", "trl")
BATCH, STEPS, LR, BETA, MAX_LEN = 8, 5, 1.0, 0.1, 64

CORPUS = [
    "Once upon a time there was a little girl named Lily. She loved to play outside in the sun.",
    "The cat sat on the mat and looked at the big red ball. It was happy and warm.",
    "Tom and his dog went to the park. They ran and jumped and had a lot of fun together.",
    "One day, a bird flew over the tree. The bird sang a sweet song for everyone.",
    "Café, naïve, résumé: the café served crème brûlée. 日本語のテキスト。 Ünïcödé ✓ 🙂",
    "Numbers 123 and 4567 appear here, with punctuation! Does it work? Yes, it does.",
] * 4


def train_tokenizer(special, bos_template):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator(CORPUS, trainer)
    if bos_template:
        bos = special[0]
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tok.token_to_id(bos))]
        )
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def rows():
    long_completion = " and then they walked and walked" * 12  # far past max_length: loses EOS
    r = [
        ("Once upon a time", " there was a little girl.", True),
        ("The cat sat ", "on the mat.", False),  # prompt ends in a space
        ("Tom and his dog", " went to the park.", True),
        ("One day, a bird", " flew over the tree." + long_completion, False),
        ("Café ", "crème brûlée 🙂", True),  # non-ASCII
        ("The sun", " was cold and sad.", False),
        ("Lily loved", " to play outside.", True),
        ("Numbers", " 123 and 4567.", False),
        # batch 2: one class only (all desirable)
        ("It was", " happy and warm.", True),
        ("They ran", " and jumped.", True),
        ("The bird sang", " a sweet song.", True),
        ("日本語", "のテキスト。", True),
        ("Does it work?", " Yes, it does.", True),
        ("A big", " red ball.", True),
        ("She loved", " the sun.", True),
        ("Once", " upon a time.", True),
        # batch 3: mixed again
        ("The park", " was fun.", True),
        ("The dog", " was sad and cold.", False),
        ("Résumé: ", "naïve café.", False),
        ("Together", " they had fun.", True),
        ("A little girl", " named Lily.", True),
        ("The tree", " fell down and broke.", False),
        ("Everyone", " was happy.", True),
        ("The ball", " was lost forever.", False),
    ]
    return [{"prompt": p, "completion": c, "label": lab} for p, c, lab in r]


def build(arch, folder):
    torch.manual_seed(0)
    if arch == "llama":
        special = ["<s>", "</s>"]
        tok = train_tokenizer(special, bos_template=True)
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>")
        cfg = LlamaConfig(
            vocab_size=tok.get_vocab_size(), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-6,
            rope_theta=10000.0, tie_word_embeddings=False, initializer_range=0.2,
            bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
        )
        model = LlamaForCausalLM(cfg)
    else:
        special = ["<|endoftext|>"]
        tok = train_tokenizer(special, bos_template=False)
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>")
        cfg = GPT2Config(
            vocab_size=tok.get_vocab_size(), n_embd=32, n_layer=2, n_head=4, n_positions=128,
            initializer_range=0.2, bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        )
        model = GPT2LMHeadModel(cfg)
    model = model.float()
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    os.makedirs(folder)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from random_configs import save

    save(model, fast, folder)
    return model, fast


def run(arch):
    folder = os.path.join(OUT, arch)
    _, tokenizer = build(arch, folder)
    data = rows()
    with open(os.path.join(OUT, "data.jsonl"), "w", encoding="utf-8") as f:
        for r in data:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")

    args = KTOConfig(
        output_dir=tempfile.mkdtemp(), per_device_train_batch_size=BATCH, max_steps=STEPS, learning_rate=LR,
        lr_scheduler_type="constant", warmup_steps=0, optim="sgd", weight_decay=0.0, beta=BETA,
        max_length=MAX_LEN, max_grad_norm=1e30,  # a no-op clip, so that grad_norm is computed and logged
        logging_steps=1, report_to=[], use_cpu=True, bf16=False, fp16=False, seed=0, save_strategy="no",
        dataloader_drop_last=False, remove_unused_columns=False, disable_dropout=True,
        model_init_kwargs={"dtype": torch.float32},
    )
    # From the folder, as a user would: TRL loads the policy and its reference copy from it.
    trainer = KTOTrainer(model=folder, args=args, train_dataset=Dataset.from_list(data), processing_class=tokenizer)

    # Step 0: the policy is the reference; per-row summed log-probs of every batch, in order.
    ds = trainer.train_dataset
    tokenized = [
        {"prompt_ids": ds[i]["prompt_ids"], "completion_ids": ds[i]["completion_ids"], "KL_completion_ids": ds[i]["KL_completion_ids"]}
        for i in range(len(ds))
    ]
    step0, step0_kl = [], []
    model = trainer.model
    model.eval()
    for batch in trainer.get_train_dataloader():
        batch = {k: v.to("cpu") if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        logps, kl = trainer.compute_ref_log_probs(model, batch)
        step0 += logps.tolist()
        step0_kl += kl.tolist()
        if len(step0) >= len(ds):
            break
    model.train()

    trainer.train()
    keep = ["loss", "grad_norm", "learning_rate", "kl", "rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen", "logps/rejected"]
    steps = []
    for h in trainer.state.log_history:
        if "loss" in h and "step" in h:
            steps.append({"step": h["step"], **{k: h[k] for k in keep if k in h}})
    golden = {
        "generated_by": "tests/reference/trl_parity.py",
        "versions": {"trl": trl.__version__, "torch": torch.__version__, "transformers": __import__("transformers").__version__},
        "settings": {"batch_size": BATCH, "steps": STEPS, "optimizer": "sgd", "lr": LR, "beta": BETA, "max_length": MAX_LEN},
        "eos_token": tokenizer.eos_token,
        "tokenized": tokenized,
        "step0_logps": step0,
        "step0_kl_logps": step0_kl,
        "steps": steps,
    }
    with open(os.path.join(folder, "golden.json"), "w", encoding="utf-8") as f:
        json.dump(golden, f, indent=1, ensure_ascii=False)
    print(arch, "rows", len(ds), "steps", [(s["step"], round(s["loss"], 6), round(s["grad_norm"], 6)) for s in steps])


if __name__ == "__main__":
    torch.set_default_dtype(torch.float32)
    for a in sys.argv[1:] or ["llama", "gpt2"]:
        run(a)
