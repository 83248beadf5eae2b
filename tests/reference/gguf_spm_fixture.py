"""A GGUF file with a SentencePiece (llama-style) tokenizer, as llama.cpp's converter writes one:
a tiny BPE model trained here with Google's `sentencepiece` (Llama's settings: byte fallback, identity
normalization, spaces kept), its pieces/scores/types in `tokenizer.ggml.*`, and a tiny random Llama (F32).
golden: the ids `sentencepiece` itself gives for some texts (with BOS, as Llama adds it).
tests/engine/gguf.rs loads the file and compares the engine's tokenizer with them.

Run (needs `pip install gguf numpy sentencepiece`):  python tests/reference/gguf_spm_fixture.py
"""

import io
import json
import os

import numpy as np
import sentencepiece as spm
from gguf import GGUFWriter, TokenType

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden", "gguf")
CORPUS = [
    "Once upon a time there was a little girl named Lily. She loved to play outside in the sun.",
    "The cat sat on the mat and looked at the big red ball. It was happy and warm.",
    "Tom and his dog went to the park. They ran and jumped and had a lot of fun together.",
    "One day, a bird flew over the tree. The bird sang a sweet song for everyone.",
] * 20
TEXTS = ["Once upon a time", "The big red cat ran to the park.", "Café 日本 🙂 zebra!", "  two  spaces", "x"]


def main():
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS), model_writer=model, vocab_size=300, model_type="bpe", byte_fallback=True,
        normalization_rule_name="identity", add_dummy_prefix=True, remove_extra_whitespaces=False, character_coverage=1.0,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, minloglevel=2,
    )
    sp = spm.SentencePieceProcessor(model_proto=model.getvalue())
    tokens, scores, types = [], [], []
    for i in range(sp.get_piece_size()):
        tokens.append(sp.id_to_piece(i))
        scores.append(sp.get_score(i))
        types.append(TokenType.UNKNOWN if sp.is_unknown(i) else TokenType.CONTROL if sp.is_control(i)
                     else TokenType.BYTE if sp.is_byte(i) else TokenType.NORMAL)
    n, d, h = len(tokens), 16, 32
    w = GGUFWriter(os.path.join(OUT, "spm_tiny.gguf"), arch="llama")
    w.add_name("spm tokenizer fixture")
    w.add_context_length(64)
    w.add_embedding_length(d)
    w.add_feed_forward_length(h)
    w.add_block_count(1)
    w.add_head_count(2)
    w.add_head_count_kv(2)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    rng = np.random.default_rng(3)
    t = lambda *s: (rng.standard_normal(s) * 0.2).astype(np.float32)
    w.add_tensor("token_embd.weight", t(n, d))
    w.add_tensor("output_norm.weight", np.ones(d, np.float32))
    for name, shape in [("attn_norm", (d,)), ("ffn_norm", (d,)), ("attn_q", (d, d)), ("attn_k", (d, d)), ("attn_v", (d, d)),
                        ("attn_output", (d, d)), ("ffn_gate", (h, d)), ("ffn_up", (h, d)), ("ffn_down", (d, h))]:
        w.add_tensor(f"blk.0.{name}.weight", np.ones(shape, np.float32) if len(shape) == 1 else t(*shape))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    golden = {"texts": TEXTS, "ids": [[1] + sp.encode(x) for x in TEXTS], "vocab_size": n}
    json.dump(golden, open(os.path.join(OUT, "spm_tiny.json"), "w"), ensure_ascii=False)
    print(golden["ids"])


if __name__ == "__main__":
    main()
