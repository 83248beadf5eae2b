"""A K-quant GGUF of a real model, written by llama.cpp's own Python package (`gguf`): SmolLM2-135M-
Instruct's tensors (from the Q4_1 file scripts/fetch_smollm2.sh fetches, dequantized by `gguf`) re-
quantized the way a Q4_K_M mixes types — ffn_down in Q4_K and Q6_K by layer (the only matrices whose
rows are a multiple of 256 values in this model), the rest Q5_0 / Q8_0 as llama.cpp falls back to,
norms F32. No public registry ships a K-quant small enough (PyPI, npm), hence this file.

The `gguf` package dequantizes every k-quant but quantizes none, so the Q4_K / Q6_K blocks are packed
here (a plain absmax quantizer); the check that the packing is read right is `gguf`'s own dequantizer,
compared below. tests/engine/gguf.rs::kquant_smollm2_* load the written file (slow suite).

    python tests/reference/kquant_gguf.py SRC.gguf OUT.gguf        (needs numpy and gguf)
"""
import sys

import numpy as np
from gguf import GGMLQuantizationType as T, GGUFReader, GGUFValueType, GGUFWriter
from gguf.quants import dequantize, quantize

QK = 256
FALLBACK = "q5_0"  # the type of matrices whose rows are not whole 256-value blocks


def f16_bytes(x):
    return np.asarray(x, dtype=np.float16).reshape(-1, 1).view(np.uint8)


def q6_k(x):
    """Rows of 256 values -> Q6_K blocks (210 bytes): 16 groups of 16 with int8 scales."""
    b = x.reshape(-1, QK).astype(np.float32)
    n = b.shape[0]
    g = b.reshape(n, 16, 16)
    s = np.abs(g).max(-1) / 31.0
    d = s.max(-1, keepdims=True) / 127.0
    d = np.where(d == 0, 1e-12, d).astype(np.float16).astype(np.float32)
    sc = np.clip(np.round(s / d), -127, 127).astype(np.int8)
    eff = (d * sc.astype(np.float32))[..., None]
    q = np.where(eff == 0, 0, np.clip(np.round(g / np.where(eff == 0, 1, eff)), -32, 31)).astype(np.int16) + 32
    q = q.reshape(n, QK).astype(np.uint8)
    ql = np.zeros((n, 128), np.uint8)
    qh = np.zeros((n, 64), np.uint8)
    for i in range(QK):
        j, r = divmod(i, 128)
        ql[:, j * 64 + r % 64] |= (q[:, i] & 0xF) << (4 * (r // 64))
        qh[:, j * 32 + r % 32] |= (q[:, i] >> 4) << (2 * (r // 32))
    return np.concatenate([ql, qh, sc.view(np.uint8), f16_bytes(d)], axis=1)


def q4_k(x):
    """Rows of 256 values -> Q4_K blocks (144 bytes): 8 groups of 32 with 6-bit scales and mins."""
    b = x.reshape(-1, QK).astype(np.float32)
    n = b.shape[0]
    g = b.reshape(n, 8, 32)
    mn = np.maximum(0, -g.min(-1))
    scale = (g.max(-1) + mn) / 15.0
    d = (scale.max(-1, keepdims=True) / 63.0).astype(np.float16).astype(np.float32)
    dmin = (mn.max(-1, keepdims=True) / 63.0).astype(np.float16).astype(np.float32)
    sc = np.clip(np.round(scale / np.where(d == 0, 1, d)), 0, 63).astype(np.uint8)
    m = np.clip(np.round(mn / np.where(dmin == 0, 1, dmin)), 0, 63).astype(np.uint8)
    eff = (d * sc)[..., None]
    q = np.clip(np.round((g + (dmin * m)[..., None]) / np.where(eff == 0, 1, eff)), 0, 15).astype(np.uint8)
    q = q.reshape(n, QK)
    packed = np.zeros((n, 12), np.uint8)
    for k in range(4):
        packed[:, k] = (sc[:, k] & 63) | ((sc[:, k + 4] >> 4) << 6)
        packed[:, 4 + k] = (m[:, k] & 63) | ((m[:, k + 4] >> 4) << 6)
        packed[:, 8 + k] = (sc[:, k + 4] & 0xF) | ((m[:, k + 4] & 0xF) << 4)
    qs = np.zeros((n, 128), np.uint8)
    for i in range(QK):
        j, s, l = i // 64, (i // 32) % 2, i % 32
        qs[:, j * 32 + l] |= q[:, i] << (4 * s)
    return np.concatenate([f16_bytes(d), f16_bytes(dmin), packed, qs], axis=1)


def main(src, out):
    r = GGUFReader(src)
    arch = bytes(r.fields["general.architecture"].parts[-1]).decode()
    w = GGUFWriter(out, arch=arch)
    for name, field in r.fields.items():
        if name.startswith("GGUF.") or name in ("general.architecture", "general.file_type"):
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == GGUFValueType.ARRAY else None
        w.add_key_value(name, field.contents(), vtype, sub_type=sub)
    w.add_file_type(15)  # MOSTLY_Q4_K_M
    used, worst = {}, {}
    for t in r.tensors:
        x = dequantize(t.data, t.tensor_type).astype(np.float32)
        rows = x.reshape(-1, x.shape[-1])
        layer = int(t.name.split(".")[1]) if t.name.startswith("blk.") else -1
        if x.ndim == 1 or "norm" in t.name:
            ty, data = T.F32, x
        elif rows.shape[-1] % QK == 0:
            ty = T.Q6_K if layer % 2 == 0 else T.Q4_K
            data = (q6_k if ty == T.Q6_K else q4_k)(rows).reshape(*x.shape[:-1], -1)
        else:
            ty = T.Q8_0 if t.name in ("token_embd.weight", "output.weight") or FALLBACK == "q8_0" else T.Q5_0
            data = quantize(x, ty)
        if ty == T.F32:
            w.add_tensor(t.name, data)
        else:
            w.add_tensor(t.name, data, raw_shape=data.shape, raw_dtype=ty)
            back = dequantize(data, ty).reshape(x.shape)
            err = float(np.abs(back - x).max() / (np.abs(x).max() + 1e-12))
            worst[ty.name] = max(worst.get(ty.name, 0.0), err)
        used[ty.name] = used.get(ty.name, 0) + 1
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print("wrote", out, "tensor types", used, "worst relative error per type (gguf's dequantizer)", worst)
    assert worst.get("Q4_K", 0) < 0.1 and worst.get("Q6_K", 0) < 0.03, worst


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
