"""Some of the random family models (tests/golden/family) as GGUF files, written with llama.cpp's
`gguf` package the way llama.cpp's convert_hf_to_gguf.py writes them: Llama Q/K permuted into
adjacent RoPE pairs, GPT-2's Conv1D weights transposed (fused attn_qkv), Llama 3 RoPE scaling as the `rope_freqs` tensor of per-frequency divisors,
linear scaling as metadata, Qwen2/Qwen3/Gemma 3 left in NEOX order, Gemma's RMSNorm weights stored
as 1 + w, its layer types as `sliding_window_pattern` and local base as `rope.freq_base_swa`.
Gemma models whose query_pre_attn_scalar is head_dim (as in every real Gemma 3 but the 27B, which
llama.cpp special-cases) are chosen: GGUF has no key for it. Tensors are F32 (quantization is tested on its own), with a byte-level tokenizer. The engine test
reads each file and must give the same logits as transformers did for the folder (its reference.json).

Run after the family scripts (needs torch, transformers, gguf 0.19):  python tests/reference/family_gguf.py
"""
import json
import math
import os

import numpy as np
import torch
from gguf import GGUFWriter, RopeScalingType, TokenType
from transformers import AutoConfig, AutoModelForCausalLM

FAMILY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden", "family")
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden", "gguf", "family")
MODELS = ["gpt2_03", "llama_01", "qwen2_02", "qwen3_06", "rope_llama3_01", "rope_linear_04", "gemma3_01", "gemma3_02"]


def permute(w, n_head):
    # convert_hf_to_gguf.LlamaModel.permute
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def llama3_factors(rope, head_dim):
    # convert_hf_to_gguf.LlamaModel.generate_extra_tensors
    base, factor = rope["rope_theta"], rope["factor"]
    low, high, old = rope["low_freq_factor"], rope["high_freq_factor"], rope["original_max_position_embeddings"]
    freqs = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    out = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < old / high:
            out.append(1)
        elif wavelen > old / low:
            out.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def write(name):
    folder = os.path.join(FAMILY, name)
    cfg = AutoConfig.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    sd = {k: v.numpy() for k, v in model.state_dict().items()}
    mt = cfg.model_type
    arch = {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "gemma3_text": "gemma3", "gpt2": "gpt2"}[mt]
    path = os.path.join(OUT, f"{name}.gguf")
    w = GGUFWriter(path, arch=arch)
    w.add_name(f"kto-studio family {name}")
    if mt == "gpt2":
        return write_gpt2(w, cfg, sd, name, path)
    hd = cfg.head_dim
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_key_length(hd)
    w.add_value_length(hd)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    rope = cfg.rope_parameters["full_attention"] if mt == "gemma3_text" else cfg.rope_parameters
    w.add_rope_freq_base(rope["rope_theta"])
    if rope.get("rope_type") == "linear":
        w.add_rope_scaling_type(RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(rope["factor"])
    if rope.get("rope_type") == "llama3":
        w.add_tensor("rope_freqs.weight", llama3_factors(rope, hd))
    if mt == "gemma3_text":
        w.add_sliding_window(cfg.sliding_window)
        w.add_sliding_window_pattern([t == "sliding_attention" for t in cfg.layer_types])
        w.add_rope_freq_base_swa(cfg.rope_parameters["sliding_attention"]["rope_theta"])
        if cfg.final_logit_softcapping:
            w.add_final_logit_softcapping(cfg.final_logit_softcapping)
    # Byte-level tokenizer: the 256 byte symbols, <|endoftext|>, then fillers up to the vocabulary size.
    from tokenizers import pre_tokenizers
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokens = alphabet + ["<|endoftext|>"] + [f"<|filler_{i}|>" for i in range(cfg.vocab_size - 257)]
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tokens)
    w.add_token_types([TokenType.NORMAL] * 256 + [TokenType.CONTROL] * (len(tokens) - 256))
    # No merges: a byte tokenizer (gguf leaves the empty list out; the engine reads that as none).
    w.add_eos_token_id(256)
    w.add_bos_token_id(256)
    gemma = mt == "gemma3_text"
    names = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
             "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "self_attn.q_norm": "attn_q_norm",
             "self_attn.k_norm": "attn_k_norm", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down"}
    names.update({"post_attention_layernorm": "post_attention_norm", "pre_feedforward_layernorm": "ffn_norm",
                  "post_feedforward_layernorm": "post_ffw_norm"} if gemma else {"post_attention_layernorm": "ffn_norm"})
    for k, v in sd.items():
        if k == "lm_head.weight":
            if not cfg.tie_word_embeddings:
                w.add_tensor("output.weight", v)
            continue
        if k == "model.embed_tokens.weight":
            out = "token_embd.weight"
        elif k == "model.norm.weight":
            out = "output_norm.weight"
        else:
            _, _, i, rest = k.split(".", 3)
            module, kind = rest.rsplit(".", 1)
            out = f"blk.{i}.{names[module]}.{kind}"
            if mt == "llama" and module == "self_attn.q_proj":
                v = permute(v, cfg.num_attention_heads)
            if mt == "llama" and module == "self_attn.k_proj":
                v = permute(v, cfg.num_key_value_heads)
        if gemma and k.endswith("norm.weight"):
            v = v + 1  # convert_hf_to_gguf's Gemma3Model stores 1 + w
        w.add_tensor(out, np.ascontiguousarray(v.astype(np.float32)))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(name, arch, os.path.getsize(path))


def byte_tokenizer(w, vocab):
    from tokenizers import pre_tokenizers
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokens = alphabet + ["<|endoftext|>"] + [f"<|filler_{i}|>" for i in range(vocab - 257)]
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tokens)
    w.add_token_types([TokenType.NORMAL] * 256 + [TokenType.CONTROL] * (len(tokens) - 256))
    w.add_eos_token_id(256)
    w.add_bos_token_id(256)


def write_gpt2(w, cfg, sd, name, path):
    # convert_hf_to_gguf.GPT2Model: Conv1D weights transposed to [out, in], attn bias buffers dropped.
    w.add_context_length(cfg.n_positions)
    w.add_embedding_length(cfg.n_embd)
    w.add_feed_forward_length(cfg.n_inner or 4 * cfg.n_embd)
    w.add_block_count(cfg.n_layer)
    w.add_head_count(cfg.n_head)
    w.add_layer_norm_eps(cfg.layer_norm_epsilon)
    byte_tokenizer(w, cfg.vocab_size)
    names = {"ln_1": "attn_norm", "attn.c_attn": "attn_qkv", "attn.c_proj": "attn_output", "ln_2": "ffn_norm",
             "mlp.c_fc": "ffn_up", "mlp.c_proj": "ffn_down"}
    for k, v in sd.items():
        if k.endswith((".attn.bias", ".attn.masked_bias")):
            continue
        if k == "lm_head.weight":
            if not cfg.tie_word_embeddings:
                w.add_tensor("output.weight", v)
            continue
        top = {"transformer.wte.weight": "token_embd.weight", "transformer.wpe.weight": "position_embd.weight",
               "transformer.ln_f.weight": "output_norm.weight", "transformer.ln_f.bias": "output_norm.bias"}
        if k in top:
            out = top[k]
        else:
            _, _, i, rest = k.split(".", 3)
            module, kind = rest.rsplit(".", 1)
            out = f"blk.{i}.{names[module]}.{kind}"
            if kind == "weight" and module.startswith(("attn.", "mlp.")):
                v = v.T
        w.add_tensor(out, np.ascontiguousarray(v.astype(np.float32)))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(name, "gpt2", os.path.getsize(path))


def main():
    os.makedirs(OUT, exist_ok=True)
    for name in MODELS:
        write(name)


if __name__ == "__main__":
    main()
