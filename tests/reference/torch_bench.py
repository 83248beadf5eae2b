#!/usr/bin/env python3
"""The PyTorch reference for `kto bench`: the same KTO step on the same rows, in eager PyTorch on the CPU.

`kto bench --torch PYTHON` writes the workload (model path, the collated main and KL rows, labels,
hyper-parameters) to a JSON file and runs this script between its own timing rounds, so both are
measured in one run on the same cores with the same thread count. The work per step is the
engine's: reference log-probs cached (computed once, as TRL's `precompute_ref_log_probs`), then a
policy forward on the KL rows without a graph, a policy forward on the main rows with one,
backward, global-norm clipping and AdamW.

Two models: `lean` (a nanoGPT-style Llama with `scaled_dot_product_attention`, the fastest eager
PyTorch one would write) and `transformers` (`LlamaForCausalLM`, what TRL's KTOTrainer runs).
Prints one JSON line: {"impl": ..., "threads": ..., "kto_step_ms": median, "times_ms": [...]}.

    python3 tests/reference/torch_bench.py WORKLOAD.json --impl lean --steps 10
"""
import argparse
import json
import math
import struct
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def load_llama2c(path):
    b = open(path, "rb").read()
    dim, hidden, layers, heads, kv_heads, vocab, seq = struct.unpack("<7i", b[:28])
    shared, vocab = vocab > 0, abs(vocab)
    f = np.frombuffer(b, dtype="<f4", offset=28)
    hd = dim // heads
    o = 0

    def take(*shape):
        nonlocal o
        n = int(np.prod(shape))
        a = torch.from_numpy(f[o:o + n].reshape(shape).copy())
        o += n
        return a

    w = dict(emb=take(vocab, dim), rms_att=take(layers, dim), wq=take(layers, heads * hd, dim),
             wk=take(layers, kv_heads * hd, dim), wv=take(layers, kv_heads * hd, dim), wo=take(layers, dim, heads * hd),
             rms_ffn=take(layers, dim), w1=take(layers, hidden, dim), w2=take(layers, dim, hidden),
             w3=take(layers, hidden, dim), rms_final=take(dim))
    take(seq, hd // 2)
    take(seq, hd // 2)
    w["cls"] = None if shared else take(vocab, dim)
    cfg = dict(dim=dim, hidden=hidden, layers=layers, heads=heads, kv_heads=kv_heads, vocab=vocab, seq=seq, eps=1e-5,
               theta=10000.0)
    return cfg, w


class Lean(nn.Module):
    """Llama with llama2.c's adjacent-pair RoPE; attention by SDPA with GQA."""

    def __init__(self, c, w):
        super().__init__()
        self.c = c
        P = lambda t: nn.Parameter(t.clone())
        self.emb = P(w["emb"])
        self.layers = nn.ModuleList()
        for i in range(c["layers"]):
            l = nn.Module()
            l.rms_att, l.rms_ffn = P(w["rms_att"][i]), P(w["rms_ffn"][i])
            for k in ("wq", "wk", "wv", "wo", "w1", "w2", "w3"):
                setattr(l, k, P(w[k][i]))
            self.layers.append(l)
        self.rms_final = P(w["rms_final"])
        self.cls = None if w["cls"] is None else P(w["cls"])
        hd = c["dim"] // c["heads"]
        freq = 1.0 / c["theta"] ** (torch.arange(0, hd, 2).double() / hd)
        ang = torch.outer(torch.arange(c["seq"]).double(), freq)
        self.register_buffer("cos", ang.cos().float(), persistent=False)
        self.register_buffer("sin", ang.sin().float(), persistent=False)

    def rms(self, x, g):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.c["eps"]) * g

    def rope(self, x):
        t = x.shape[2]
        x0, x1 = x[..., 0::2], x[..., 1::2]
        cos, sin = self.cos[:t], self.sin[:t]
        return torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), -1).flatten(-2)

    def forward(self, ids, lengths):
        B, T = ids.shape
        c = self.c
        hd = c["dim"] // c["heads"]
        pos = torch.arange(T)
        mask = (pos[None, :] <= pos[:, None])[None] & (pos[None, None, :] < lengths[:, None, None])
        mask = mask[:, None]
        x = self.emb[ids]
        for l in self.layers:
            h = self.rms(x, l.rms_att)
            q = (h @ l.wq.T).view(B, T, c["heads"], hd).transpose(1, 2)
            k = (h @ l.wk.T).view(B, T, c["kv_heads"], hd).transpose(1, 2)
            v = (h @ l.wv.T).view(B, T, c["kv_heads"], hd).transpose(1, 2)
            a = F.scaled_dot_product_attention(self.rope(q), self.rope(k), v, attn_mask=mask,
                                               enable_gqa=c["heads"] != c["kv_heads"])
            x = x + a.transpose(1, 2).reshape(B, T, -1) @ l.wo.T
            h = self.rms(x, l.rms_ffn)
            x = x + (F.silu(h @ l.w1.T) * (h @ l.w3.T)) @ l.w2.T
        x = self.rms(x, self.rms_final)
        return x @ (self.emb if self.cls is None else self.cls).T


def transformers_model(c, w):
    """The same weights in `LlamaForCausalLM` (rotate-half RoPE: Q/K rows permuted as HF's converter does)."""
    from transformers import LlamaConfig, LlamaForCausalLM
    hd = c["dim"] // c["heads"]
    cfg = LlamaConfig(vocab_size=c["vocab"], hidden_size=c["dim"], intermediate_size=c["hidden"],
                      num_hidden_layers=c["layers"], num_attention_heads=c["heads"],
                      num_key_value_heads=c["kv_heads"], max_position_embeddings=c["seq"], rms_norm_eps=c["eps"],
                      rope_theta=c["theta"], tie_word_embeddings=w["cls"] is None, attn_implementation="sdpa")
    m = LlamaForCausalLM(cfg)

    def perm(t, n):
        return t.view(n, hd // 2, 2, -1).transpose(1, 2).reshape(n * hd, -1)

    sd = {"model.embed_tokens.weight": w["emb"], "model.norm.weight": w["rms_final"]}
    for i in range(c["layers"]):
        p = f"model.layers.{i}."
        sd.update({p + "input_layernorm.weight": w["rms_att"][i], p + "post_attention_layernorm.weight": w["rms_ffn"][i],
                   p + "self_attn.q_proj.weight": perm(w["wq"][i], c["heads"]),
                   p + "self_attn.k_proj.weight": perm(w["wk"][i], c["kv_heads"]),
                   p + "self_attn.v_proj.weight": w["wv"][i], p + "self_attn.o_proj.weight": w["wo"][i],
                   p + "mlp.gate_proj.weight": w["w1"][i], p + "mlp.down_proj.weight": w["w2"][i],
                   p + "mlp.up_proj.weight": w["w3"][i]})
    sd["lm_head.weight"] = w["emb"] if w["cls"] is None else w["cls"]
    m.load_state_dict(sd, strict=False)
    m.train()

    def forward(ids, lengths):
        attn = (torch.arange(ids.shape[1])[None, :] < lengths[:, None]).long()
        return m(input_ids=ids, attention_mask=attn).logits

    return m, forward


def seq_logps(logits, ids, mask):
    # TRL's get_batch_logps: log_softmax then gather, summed over the completion tokens.
    lp = logits[:, :-1].log_softmax(-1).gather(2, ids[:, 1:, None]).squeeze(2)
    return (lp * mask[:, 1:]).sum(-1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("workload")
    ap.add_argument("--impl", choices=["lean", "transformers"], default="lean")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0, help="0: the workload's thread count")
    a = ap.parse_args()
    wl = json.load(open(a.workload))
    threads = a.threads or wl["threads"]
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    c, w = load_llama2c(wl["model"])
    if a.impl == "lean":
        model = Lean(c, w)
        fwd = model
    else:
        model, fwd = transformers_model(c, w)

    def rows(r):
        B, T = r["batch"], r["len"]
        return (torch.tensor(r["ids"]).view(B, T), torch.tensor(r["lengths"]),
                torch.tensor(r["completion_mask"]).view(B, T))

    main_ids, main_len, main_mask = rows(wl["main"])
    kl_ids, kl_len, kl_mask = rows(wl["kl"])
    labels = torch.tensor(wl["labels"], dtype=torch.bool)
    beta, dw, uw = wl["beta"], wl["desirable_weight"], wl["undesirable_weight"]
    with torch.no_grad():  # the frozen reference, once
        ref_main = seq_logps(fwd(main_ids, main_len), main_ids, main_mask)
        ref_kl = seq_logps(fwd(kl_ids, kl_len), kl_ids, kl_mask)
    opt = torch.optim.AdamW(model.parameters(), lr=wl["lr"], eps=1e-8, weight_decay=wl["weight_decay"])

    def step():
        with torch.no_grad():
            z = (seq_logps(fwd(kl_ids, kl_len), kl_ids, kl_mask) - ref_kl).mean().clamp(min=0)
        r = seq_logps(fwd(main_ids, main_len), main_ids, main_mask) - ref_main
        losses = torch.where(labels, dw * (1 - torch.sigmoid(beta * (r - z))), uw * (1 - torch.sigmoid(beta * (z - r))))
        loss = losses.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), wl["max_grad_norm"])
        opt.step()
        return loss.item()

    step()  # warm-up
    times = []
    for _ in range(a.steps):
        t = time.perf_counter()
        step()
        times.append((time.perf_counter() - t) * 1e3)
    print(json.dumps({"impl": a.impl, "threads": threads, "kto_step_ms": round(sorted(times)[len(times) // 2], 2),
                      "times_ms": [round(x, 2) for x in times]}))


if __name__ == "__main__":
    main()
