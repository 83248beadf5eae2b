#!/usr/bin/env python3
"""Independent numpy re-implementation of llama2.c's run.c (float32 forward, BPE encode, greedy
decode) for stories260K. Writes the golden greedy generations that tests/golden_greedy.rs checks.

    python3 tests/reference/llama2c_ref.py ../shared/models/stories260K tests/golden/greedy.json
"""
import json
import struct
import sys

import numpy as np


def load_model(path):
    b = open(path, "rb").read()
    dim, hidden, layers, heads, kv_heads, vocab, seq = struct.unpack("<7i", b[:28])
    shared = vocab > 0
    vocab = abs(vocab)
    f = np.frombuffer(b, dtype="<f4", offset=28)
    hs = dim // heads
    kv = kv_heads * hs
    o = 0

    def take(*shape):
        nonlocal o
        n = int(np.prod(shape))
        a = f[o:o + n].reshape(shape)
        o += n
        return a

    w = dict(
        emb=take(vocab, dim), rms_att=take(layers, dim), wq=take(layers, dim, dim),
        wk=take(layers, kv, dim), wv=take(layers, kv, dim), wo=take(layers, dim, dim),
        rms_ffn=take(layers, dim), w1=take(layers, hidden, dim), w2=take(layers, dim, hidden),
        w3=take(layers, hidden, dim), rms_final=take(dim))
    take(seq, hs // 2)
    take(seq, hs // 2)
    w["cls"] = w["emb"] if shared else take(vocab, dim)
    cfg = dict(dim=dim, hidden=hidden, layers=layers, heads=heads, kv_heads=kv_heads, vocab=vocab, seq=seq)
    return cfg, w


def load_tokenizer(path, vocab):
    b = open(path, "rb").read()
    o = 4
    pieces, scores = [], []
    for _ in range(vocab):
        s, n = struct.unpack("<fi", b[o:o + 8])
        o += 8
        pieces.append(b[o:o + n])
        scores.append(s)
        o += n
    return pieces, scores


def encode(text, pieces, scores):
    lookup = {}
    for i, p in enumerate(pieces):
        lookup.setdefault(p, i)
    toks = [1]
    if text:
        toks.append(lookup[b" "])
    for ch in text:
        bs = ch.encode("utf-8")
        toks.extend([lookup[bs]] if bs in lookup else [c + 3 for c in bs])
    while True:
        best, bi, bid = -1e10, -1, -1
        for i in range(len(toks) - 1):
            m = pieces[toks[i]] + pieces[toks[i + 1]]
            if m in lookup and scores[lookup[m]] > best:
                best, bi, bid = scores[lookup[m]], i, lookup[m]
        if bi < 0:
            break
        toks[bi:bi + 2] = [bid]
    return toks


def decode(prev, tok, pieces):
    p = pieces[tok]
    if prev == 1 and p.startswith(b" "):
        p = p[1:]
    if len(p) == 6 and p.startswith(b"<0x") and p.endswith(b">"):
        return bytes([int(p[3:5], 16)])
    return p


def rmsnorm(x, w):
    return (x / np.sqrt(np.mean(x * x) + np.float32(1e-5))).astype(np.float32) * w


def forward(cfg, w, token, pos, kc, vc):
    dim, heads, kvh = cfg["dim"], cfg["heads"], cfg["kv_heads"]
    hs = dim // heads
    x = w["emb"][token].copy()
    j = np.arange(hs // 2, dtype=np.float32)
    freq = np.float32(1.0) / np.power(np.float32(10000.0), (2 * j) / np.float32(hs))
    ang = np.float32(pos) * freq
    c, s = np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)

    def rope(v, n):
        v = v.reshape(n, hs // 2, 2)
        a, b = v[..., 0], v[..., 1]
        return np.stack([a * c - b * s, a * s + b * c], -1).reshape(n * hs)

    for l in range(cfg["layers"]):
        xb = rmsnorm(x, w["rms_att"][l])
        q = rope(w["wq"][l] @ xb, heads)
        k = rope(w["wk"][l] @ xb, kvh)
        v = w["wv"][l] @ xb
        kc[l][pos], vc[l][pos] = k, v
        out = np.zeros(dim, dtype=np.float32)
        for h in range(heads):
            g = h // (heads // kvh)
            qh = q[h * hs:(h + 1) * hs]
            K = kc[l][:pos + 1, g * hs:(g + 1) * hs]
            V = vc[l][:pos + 1, g * hs:(g + 1) * hs]
            att = K @ qh / np.sqrt(np.float32(hs))
            att = np.exp(att - att.max())
            att /= att.sum()
            out[h * hs:(h + 1) * hs] = att @ V
        x = x + w["wo"][l] @ out
        xb = rmsnorm(x, w["rms_ffn"][l])
        h1 = w["w1"][l] @ xb
        h1 = h1 / (np.float32(1.0) + np.exp(-h1))
        x = x + w["w2"][l] @ (h1 * (w["w3"][l] @ xb))
    return w["cls"] @ rmsnorm(x, w["rms_final"])


def greedy(cfg, w, pieces, scores, prompt, max_tokens):
    toks = encode(prompt, pieces, scores)
    kv = cfg["kv_heads"] * cfg["dim"] // cfg["heads"]
    kc = [np.zeros((cfg["seq"], kv), np.float32) for _ in range(cfg["layers"])]
    vc = [np.zeros((cfg["seq"], kv), np.float32) for _ in range(cfg["layers"])]
    out, text = [], b""
    token, pos = toks[0], 0
    while len(out) < max_tokens and pos < cfg["seq"]:
        logits = forward(cfg, w, token, pos, kc, vc)
        if pos < len(toks) - 1:
            nxt = toks[pos + 1]
        else:
            nxt = int(np.argmax(logits))
            if nxt == 1:
                break
            out.append(nxt)
            text += decode(token, nxt, pieces)
        token, pos = nxt, pos + 1
    return toks, out, text.decode("utf-8", errors="replace")


def main():
    model_dir, out_path = sys.argv[1], sys.argv[2]
    cfg, w = load_model(f"{model_dir}/stories260K.bin")
    pieces, scores = load_tokenizer(f"{model_dir}/tok512.bin", cfg["vocab"])
    cases = []
    for prompt in ["", "Once upon a time, there was a little dog", "Lily wanted to play with the ball, but"]:
        toks, ids, text = greedy(cfg, w, pieces, scores, prompt, 200)
        cases.append(dict(prompt=prompt, prompt_ids=toks, max_tokens=200, ids=ids, text=text))
        print(repr(prompt), "->", text[:80], file=sys.stderr)
    json.dump(dict(model="stories260K", cases=cases), open(out_path, "w"), indent=1, ensure_ascii=False)


if __name__ == "__main__":
    main()
