"""Damaged GGUF files, written by llama.cpp's own `gguf` package, that the engine must refuse with
a message (each once crashed or hung a loader, or was accepted silently). A tiny Llama with a
SentencePiece-style vocabulary of 300 pieces, then one defect per file:

  scores_short.gguf      tokenizer.ggml.scores has fewer entries than tokens
  types_long.gguf        tokenizer.ggml.token_type has more entries than tokens
  eos_out_of_vocab.gguf  tokenizer.ggml.eos_token_id >= the vocabulary
  layers_2p63.gguf       llama.block_count = 2^63 (Vec::with_capacity aborted the process)
  zero_heads.gguf        llama.attention.head_count = 0 (a division by zero)
  odd_head.gguf          hidden 18 over 2 heads: head size 9 is odd (RoPE rotates pairs)
  type_mismatch.gguf     a tensor declared F16 whose bytes are F32 data (was read as noise)
  newline_name.gguf      a tensor name with a newline and an escape sequence in it

Run (needs `pip install gguf numpy`):  python tests/reference/gguf_bad_fixtures.py
"""

import os

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter, TokenType

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden", "gguf", "bad")


def write(name, defect=None):
    n, d, h, heads = 300, 16, 32, 2
    layers = 1
    if defect == "odd_head":
        d = 18
    w = GGUFWriter(os.path.join(OUT, name), arch="llama")
    w.add_name("bad fixture")
    w.add_context_length(64)
    w.add_embedding_length(d)
    w.add_feed_forward_length(h)
    if defect == "layers":
        w.add_uint64("llama.block_count", 2**63)
    else:
        w.add_block_count(layers)
    w.add_head_count(0 if defect == "zero_heads" else heads)
    w.add_head_count_kv(heads)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("llama")
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + [f"p{i}" for i in range(n - 259)]
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * (n - 5 if defect == "scores_short" else n))
    types = [TokenType.CONTROL] * 3 + [TokenType.BYTE] * 256 + [TokenType.NORMAL] * (n - 259)
    w.add_token_types(types + ([TokenType.NORMAL] * 4 if defect == "types_long" else []))
    w.add_bos_token_id(1)
    w.add_eos_token_id(5000 if defect == "eos" else 2)
    rng = np.random.default_rng(5)
    t = lambda *s: (rng.standard_normal(s) * 0.2).astype(np.float32)
    w.add_tensor("token_embd.weight", t(n, d))
    w.add_tensor("output_norm.weight", np.ones(d, np.float32))
    for part, shape in [("attn_norm", (d,)), ("ffn_norm", (d,)), ("attn_q", (d, d)), ("attn_k", (d, d)), ("attn_v", (d, d)),
                        ("attn_output", (d, d)), ("ffn_gate", (h, d)), ("ffn_up", (h, d)), ("ffn_down", (d, h))]:
        tname = f"blk.0.{part}.weight"
        if defect == "newline_name" and part == "attn_q":
            tname = "blk.0.attn_q\n\x1b[31mweight"
        w.add_tensor(tname, np.ones(shape, np.float32) if len(shape) == 1 else t(*shape))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    if defect == "type_mismatch":
        # Declare blk.0.ffn_up.weight (32x16 F32 values, 2048 bytes) as F16 (1024 bytes): patch the
        # type field of its tensor-info record (name, n_dims u32, dims u64 x n, type u32).
        path = os.path.join(OUT, name)
        data = bytearray(open(path, "rb").read())
        key = b"blk.0.ffn_up.weight"
        at = data.index(key) + len(key)
        n_dims = int.from_bytes(data[at:at + 4], "little")
        type_at = at + 4 + 8 * n_dims
        assert int.from_bytes(data[type_at:type_at + 4], "little") == GGMLQuantizationType.F32
        data[type_at:type_at + 4] = int(GGMLQuantizationType.F16).to_bytes(4, "little")
        open(path, "wb").write(bytes(data))


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    for name, defect in [("scores_short.gguf", "scores_short"), ("types_long.gguf", "types_long"),
                         ("eos_out_of_vocab.gguf", "eos"), ("layers_2p63.gguf", "layers"), ("zero_heads.gguf", "zero_heads"),
                         ("odd_head.gguf", "odd_head"), ("type_mismatch.gguf", "type_mismatch"),
                         ("newline_name.gguf", "newline_name")]:
        try:
            write(name, defect)
            print("wrote", name, os.path.getsize(os.path.join(OUT, name)))
        except Exception as e:  # the writer itself may refuse a defect
            print("could not write", name, ":", e)
