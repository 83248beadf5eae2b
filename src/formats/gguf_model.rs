//! What a GGUF file's tensors and keys mean: the model of each architecture llama.cpp writes
//! (llama — Llama 2/3.x, SmolLM; qwen2; qwen3; gemma3; gpt2) as llama.cpp's converter lays it out
//! (Llama Q/K in the adjacent-pair RoPE layout, Qwen/Gemma in rotate-half, Gemma's norms as 1 + w,
//! Llama 3's RoPE scaling as the `rope_freqs` tensor), and the embedded tokenizer (GPT-2 byte-level
//! BPE rebuilt for `tokenizers`, or SentencePiece with run.c's algorithm).

use serde_json::{Value, json};

use super::gguf::{Gguf, Meta};
use crate::Result;
use crate::error::format_err;
use crate::model::{Arch, LayerWeights, ModelConfig, ModelWeights, RopeLayout, RopeScaling, SlidingWindow};
use crate::tokenizer::{HfTokenizer, Llama2cTokenizer, Tokenizer};

/// Weights and tokenizer from a GGUF file.
pub fn load(bytes: &[u8]) -> Result<(ModelWeights, Tokenizer, String)> {
    let g = Gguf::parse(bytes)?;
    let arch = g.str("general.architecture").unwrap_or("").to_string();
    let weights = match arch.as_str() {
        "gpt2" => load_gpt2(&g)?,
        "llama" | "qwen2" | "qwen3" | "gemma3" => load_llama(&g, &arch)?,
        _ => {
            return Err(format_err(format!(
                "GGUF architecture {arch:?} is not supported; KTO Studio runs llama (Llama 2/3.x, SmolLM, TinyLlama), \
                 qwen2, qwen3, gemma3 and gpt2 GGUF files"
            )));
        }
    };
    g.check_all_read()?;
    weights.validate()?;
    let name = g.str("general.name").unwrap_or("gguf model").to_string();
    Ok((weights, tokenizer(&g)?, name))
}

/// The size key `{arch}.{k}` every architecture needs. `as usize` saturates (negative and NaN
/// become 0), and ModelConfig::validate bounds the rest.
fn need(g: &Gguf, arch: &str, k: &str) -> Result<usize> {
    let key = format!("{arch}.{k}");
    g.num(&key).map(|v| v as usize).ok_or_else(|| format_err(format!("GGUF metadata has no {key}")))
}

/// The vocabulary size: the embedded tokenizer's token count.
fn vocab_size(g: &Gguf) -> Result<usize> {
    match g.meta.get("tokenizer.ggml.tokens") {
        Some(Meta::Strs(t)) => Ok(t.len()),
        _ => Err(format_err("the GGUF file has no embedded tokenizer (tokenizer.ggml.tokens)")),
    }
}

/// The Llama family as llama.cpp writes it (llama, qwen2, qwen3, gemma3).
fn load_llama(g: &Gguf, arch: &str) -> Result<ModelWeights> {
    let key = |k: &str| format!("{arch}.{k}");
    let need = |k: &str| need(g, arch, k);
    let dim = need("embedding_length")?;
    let n_heads = need("attention.head_count")?;
    let vocab = vocab_size(g)?;
    let qwen = arch == "qwen2";
    let qwen3 = arch == "qwen3";
    let gemma = arch == "gemma3";
    let n_layers = need("block_count")?;
    let mut c = ModelConfig {
        arch: if gemma { Arch::Gemma3 } else { Arch::Llama },
        dim,
        hidden_dim: need("feed_forward_length")?,
        n_layers,
        n_heads,
        n_kv_heads: g.num(&key("attention.head_count_kv")).map(|v| v as usize).unwrap_or(n_heads),
        vocab_size: vocab,
        max_seq_len: need("context_length")?,
        norm_eps: g.num(&key("attention.layer_norm_rms_epsilon")).unwrap_or(1e-5),
        rope_theta: g.num(&key("rope.freq_base")).unwrap_or(if gemma { 1_000_000.0 } else { 10000.0 }),
        // llama.cpp's converter permutes Llama Q/K into adjacent pairs; Qwen and Gemma use NEOX rotation.
        rope_layout: if qwen || qwen3 || gemma { RopeLayout::RotateHalf } else { RopeLayout::Adjacent },
        tied_embeddings: !g.has_tensor("output.weight"),
        qkv_bias: qwen,
        o_bias: false,
        head_dim: g.num(&key("attention.key_length")).map(|v| v as usize).filter(|&hd| gemma || hd * n_heads != dim),
        qk_norm: qwen3 || gemma,
        rope_scaling: match g.str(&key("rope.scaling.type")) {
            None | Some("none") => None,
            Some("linear") => Some(RopeScaling::Linear {
                factor: g.num(&key("rope.scaling.factor")).filter(|f| f.is_finite() && *f > 0.0).ok_or_else(|| {
                    format_err(format!("GGUF linear RoPE scaling needs {} > 0", key("rope.scaling.factor")))
                })?,
            }),
            Some(other) => {
                return Err(format_err(format!(
                    "GGUF RoPE scaling {other:?} is not supported (linear is, and llama3's rope_freqs tensor)"
                )));
            }
        },
        final_logit_softcapping: g.num(&key("final_logit_softcapping")).filter(|&x| gemma && x > 0.0),
        ..Default::default()
    };
    if gemma {
        // What llama.cpp's Gemma 3 does with the file: every sixth layer global unless the file
        // lists the layer types; a local RoPE base of 10000 unless stated; scores scaled by
        // head_dim^-1/2 (27B, the one 62-layer model: hidden/heads).
        let sliding = match g.meta.get(&key("attention.sliding_window_pattern")) {
            Some(Meta::Nums(v)) => v.iter().map(|&x| x != 0.0).collect(),
            Some(Meta::Num(n)) if *n >= 1.0 => (0..n_layers).map(|i| (i + 1) % (*n as usize) != 0).collect(),
            _ => (0..n_layers).map(|i| (i + 1) % 6 != 0).collect(),
        };
        c.sliding = Some(SlidingWindow {
            window: g.num(&key("attention.sliding_window")).map_or(usize::MAX, |w| w as usize),
            rope_theta: g.num(&key("rope.freq_base_swa")).unwrap_or(10_000.0),
            layers: sliding,
        });
        let hd = c.head_dim() as f64;
        c.query_pre_attn_scalar = Some(if n_layers == 62 { (dim / n_heads.max(1)) as f64 } else { hd });
    }
    // Llama 3.x: llama.cpp's converter stores the llama3 RoPE scaling as per-frequency divisors.
    if let Some(f) = g.tensor_opt("rope_freqs.weight", &[c.head_dim() / 2])? {
        c.rope_freq_factors = Some(f);
    }
    c.validate()?;
    let (d, h, q, kv) = (c.dim, c.hidden_dim, c.q_dim(), c.kv_dim());
    let mut layers = Vec::with_capacity(c.n_layers);
    for i in 0..c.n_layers {
        let t = |n: &str, s: &[usize]| g.tensor(&format!("blk.{i}.{n}"), s);
        // Qwen2 always has q/k/v biases; Llama may (`attention_bias`), o_proj's included.
        let b = |n: &str, s: usize| {
            if qwen { t(n, &[s]).map(Some) } else { g.tensor_opt(&format!("blk.{i}.{n}"), &[s]) }
        };
        let post = |n: &str| if gemma { t(n, &[d]).map(Some) } else { Ok(None) };
        layers.push(LayerWeights {
            attn_norm: t("attn_norm.weight", &[d])?,
            wq: t("attn_q.weight", &[q, d])?,
            wk: t("attn_k.weight", &[kv, d])?,
            wv: t("attn_v.weight", &[kv, d])?,
            wo: t("attn_output.weight", &[d, q])?,
            bq: b("attn_q.bias", q)?,
            bk: b("attn_k.bias", kv)?,
            bv: b("attn_v.bias", kv)?,
            bo: if qwen { None } else { b("attn_output.bias", d)? },
            ffn_norm: t("ffn_norm.weight", &[d])?,
            w1: t("ffn_gate.weight", &[h, d])?,
            w2: t("ffn_down.weight", &[d, h])?,
            w3: t("ffn_up.weight", &[h, d])?,
            q_norm: if c.qk_norm { Some(t("attn_q_norm.weight", &[c.head_dim()])?) } else { None },
            k_norm: if c.qk_norm { Some(t("attn_k_norm.weight", &[c.head_dim()])?) } else { None },
            post_attn_norm: post("post_attention_norm.weight")?,
            post_ffn_norm: post("post_ffw_norm.weight")?,
            ..Default::default()
        });
    }
    let lm_head = g.tensor_opt("output.weight", &[vocab, d])?;
    c.tied_embeddings = lm_head.is_none();
    // Biases are announced by their presence (validate() then wants them in every layer).
    c.qkv_bias = layers.first().is_some_and(|l| l.bq.is_some());
    c.o_bias = layers.first().is_some_and(|l| l.bo.is_some());
    Ok(ModelWeights {
        tok_emb: g.tensor("token_embd.weight", &[vocab, d])?,
        pos_emb: None,
        layers,
        norm: g.tensor("output_norm.weight", &[d])?,
        norm_bias: None,
        lm_head,
        config: c,
    })
}

/// GPT-2 as llama.cpp's converter writes it: Conv1D weights transposed to `[out, in]`, the fused
/// `attn_qkv` (q | k | v rows), learned positions, LayerNorms with biases.
fn load_gpt2(g: &Gguf) -> Result<ModelWeights> {
    let need = |k: &str| need(g, "gpt2", k);
    let vocab = vocab_size(g)?;
    let n_heads = need("attention.head_count")?;
    let mut c = ModelConfig {
        arch: Arch::Gpt2,
        dim: need("embedding_length")?,
        hidden_dim: need("feed_forward_length")?,
        n_layers: need("block_count")?,
        n_heads,
        n_kv_heads: n_heads,
        vocab_size: vocab,
        max_seq_len: need("context_length")?,
        norm_eps: g.num("gpt2.attention.layer_norm_epsilon").unwrap_or(1e-5),
        qkv_bias: true,
        o_bias: true,
        ..Default::default()
    };
    c.validate()?;
    let (d, h) = (c.dim, c.hidden_dim);
    let mut layers = Vec::with_capacity(c.n_layers);
    for i in 0..c.n_layers {
        let t = |n: &str, s: &[usize]| g.tensor(&format!("blk.{i}.{n}"), s);
        let mut l = LayerWeights {
            attn_norm: t("attn_norm.weight", &[d])?,
            attn_norm_bias: Some(t("attn_norm.bias", &[d])?),
            wo: t("attn_output.weight", &[d, d])?,
            bo: Some(t("attn_output.bias", &[d])?),
            ffn_norm: t("ffn_norm.weight", &[d])?,
            ffn_norm_bias: Some(t("ffn_norm.bias", &[d])?),
            w3: t("ffn_up.weight", &[h, d])?,
            b3: Some(t("ffn_up.bias", &[h])?),
            w2: t("ffn_down.weight", &[d, h])?,
            b2: Some(t("ffn_down.bias", &[d])?),
            ..Default::default()
        };
        l.set_fused_qkv(&t("attn_qkv.weight", &[3 * d, d])?, &t("attn_qkv.bias", &[3 * d])?, d);
        layers.push(l);
    }
    let lm_head = g.tensor_opt("output.weight", &[vocab, d])?;
    c.tied_embeddings = lm_head.is_none();
    Ok(ModelWeights {
        tok_emb: g.tensor("token_embd.weight", &[vocab, d])?,
        pos_emb: Some(g.tensor("position_embd.weight", &[c.max_seq_len, d])?),
        layers,
        norm: g.tensor("output_norm.weight", &[d])?,
        norm_bias: Some(g.tensor("output_norm.bias", &[d])?),
        lm_head,
        config: c,
    })
}

fn token_list(g: &Gguf, key: &str) -> Result<Vec<String>> {
    match g.meta.get(key) {
        Some(Meta::Strs(v)) => Ok(v.clone()),
        _ => Err(format_err(format!("the GGUF tokenizer has no {key}"))),
    }
}

/// The embedded tokenizer. Byte-level BPE is rebuilt as a `tokenizer.json` for the `tokenizers`
/// crate (so it can also be exported with a merged model); SentencePiece uses run.c's algorithm.
fn tokenizer(g: &Gguf) -> Result<Tokenizer> {
    let tokens = token_list(g, "tokenizer.ggml.tokens")?;
    // Every id the metadata names must be a token: they index the vocabulary below.
    let id = |k: &str| -> Result<Option<u32>> {
        match g.num(k) {
            None => Ok(None),
            Some(v) if v >= 0.0 && (v as usize) < tokens.len() => Ok(Some(v as u32)),
            Some(v) => {
                Err(format_err(format!("GGUF {k} = {v} is not a token id (the vocabulary has {})", tokens.len())))
            }
        }
    };
    let eos = id("tokenizer.ggml.eos_token_id")?;
    let arr_len = |k: &str| match g.meta.get(k) {
        Some(Meta::Nums(v)) => Some(v.len()),
        Some(Meta::Strs(v)) => Some(v.len()),
        _ => None,
    };
    for k in ["tokenizer.ggml.scores", "tokenizer.ggml.token_type"] {
        if let Some(n) = arr_len(k).filter(|&n| n != tokens.len()) {
            return Err(format_err(format!("GGUF {k} has {n} entries but the vocabulary has {} tokens", tokens.len())));
        }
    }
    match g.str("tokenizer.ggml.model").unwrap_or("") {
        "gpt2" => {
            // No merges list is a byte-level tokenizer with no merges (gguf's writer omits an empty list).
            let merges = if g.meta.contains_key("tokenizer.ggml.merges") {
                token_list(g, "tokenizer.ggml.merges")?
            } else {
                Vec::new()
            };
            let merges: Vec<Value> = merges
                .iter()
                .map(|m| {
                    let (a, b) = m.split_once(' ').unwrap_or((m, ""));
                    json!([a, b])
                })
                .collect();
            let types = match g.meta.get("tokenizer.ggml.token_type") {
                Some(Meta::Nums(t)) => t.clone(),
                _ => vec![1.0; tokens.len()],
            };
            let vocab: serde_json::Map<String, Value> =
                tokens.iter().enumerate().map(|(i, t)| (t.clone(), json!(i))).collect();
            // CONTROL (3) and USER_DEFINED (4) tokens are matched whole in text, as added tokens.
            let added: Vec<Value> = types
                .iter()
                .enumerate()
                .filter(|(_, t)| **t == 3.0 || **t == 4.0)
                .map(|(i, t)| json!({"id": i, "content": tokens[i], "single_word": false, "lstrip": false, "rstrip": false, "normalized": *t == 4.0, "special": *t == 3.0}))
                .collect();
            let byte_level =
                json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
            let pre = match g.str("tokenizer.ggml.pre") {
                // SmolLM's tokenizer.json splits digits one by one before the byte-level split.
                Some("smollm") => {
                    json!({"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": true}, byte_level]})
                }
                _ => byte_level.clone(),
            };
            let bos = id("tokenizer.ggml.bos_token_id")?;
            let add_bos = matches!(g.meta.get("tokenizer.ggml.add_bos_token"), Some(Meta::Bool(true)));
            let post = match (add_bos, bos) {
                (true, Some(b)) => json!({"type": "TemplateProcessing",
                    "single": [{"SpecialToken": {"id": tokens[b as usize], "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                    "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
                    "special_tokens": {tokens[b as usize].clone(): {"id": tokens[b as usize], "ids": [b], "tokens": [tokens[b as usize]]}}}),
                _ => Value::Null,
            };
            let tj = json!({
                "version": "1.0", "truncation": null, "padding": null, "added_tokens": added, "normalizer": null,
                "pre_tokenizer": pre, "post_processor": post,
                "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
                "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                          "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                          "vocab": vocab, "merges": merges}
            });
            let name = |i: Option<u32>| i.and_then(|i| tokens.get(i as usize).cloned());
            let pad = id("tokenizer.ggml.padding_token_id")?;
            let mut config = json!({"eos_token": name(eos), "bos_token": name(bos), "pad_token": name(pad)});
            if let Some(t) = g.str("tokenizer.chat_template") {
                config["chat_template"] = json!(t);
            }
            let bytes = serde_json::to_vec(&tj).unwrap();
            Ok(Tokenizer::Hf(Box::new(HfTokenizer::from_json(&bytes, &config, eos)?)))
        }
        "llama" => {
            let scores = match g.meta.get("tokenizer.ggml.scores") {
                Some(Meta::Nums(s)) => s.iter().map(|&x| x as f32).collect(),
                _ => return Err(format_err("the GGUF SentencePiece tokenizer has no scores")),
            };
            let pieces = tokens.iter().map(|t| t.replace('\u{2581}', " ").into_bytes()).collect();
            // SentencePiece's default </s> is id 2.
            let eos = eos.or((tokens.len() > 2).then_some(2)).ok_or_else(|| {
                format_err(
                    "the GGUF SentencePiece tokenizer has no tokenizer.ggml.eos_token_id and fewer than 3 tokens",
                )
            })?;
            Ok(Tokenizer::Llama2c(Llama2cTokenizer::from_pieces(pieces, scores, eos)?))
        }
        other => Err(format_err(format!(
            "GGUF tokenizer model {other:?} is not supported (gpt2 byte-level BPE and llama SentencePiece are)"
        ))),
    }
}
