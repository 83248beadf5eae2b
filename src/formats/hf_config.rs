//! Hugging Face `config.json` ⇄ [`ModelConfig`]: which architecture a checkpoint is, its shapes,
//! RoPE scaling (`rope_parameters` of transformers 5 or the older `rope_scaling`), and Gemma 3's
//! per-layer-type settings; and the config written back for a saved model.

use serde_json::{Value, json};

use crate::Result;
use crate::error::format_err;
use crate::model::{Arch, ModelConfig, RopeLayout, RopeScaling, SlidingWindow};

pub(crate) const LLAMA_ARCHS: [&str; 3] = ["LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM"];
pub(crate) const GPT2_ARCH: &str = "GPT2LMHeadModel";
pub(crate) const GEMMA3_ARCH: &str = "Gemma3ForCausalLM";

fn get_usize(cfg: &Value, keys: &[&str]) -> Option<usize> {
    keys.iter().find_map(|k| cfg.get(*k).and_then(Value::as_u64)).map(|v| v as usize)
}

fn need(cfg: &Value, keys: &[&str]) -> Result<usize> {
    get_usize(cfg, keys).ok_or_else(|| format_err(format!("config.json has no {}", keys[0])))
}

/// The architecture named in config.json, checked against what the engine runs.
pub fn architecture(cfg: &Value) -> Result<Arch> {
    let archs: Vec<&str> = cfg
        .get("architectures")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let model_type = cfg.get("model_type").and_then(Value::as_str).unwrap_or("");
    if archs.iter().any(|a| LLAMA_ARCHS.contains(a))
        || (archs.is_empty() && ["llama", "qwen2", "qwen3"].contains(&model_type))
    {
        Ok(Arch::Llama)
    } else if archs.contains(&GPT2_ARCH) || (archs.is_empty() && model_type == "gpt2") {
        Ok(Arch::Gpt2)
    } else if archs.contains(&GEMMA3_ARCH) || (archs.is_empty() && model_type == "gemma3_text") {
        Ok(Arch::Gemma3)
    } else if archs.contains(&"Gemma3ForConditionalGeneration") {
        Err(format_err(
            "this is a multimodal Gemma 3 (image + text, 4B and up), which KTO Studio does not run; the text-only \
             Gemma 3 models (gemma-3-270m, gemma-3-1b, their -it versions) are supported",
        ))
    } else {
        Err(format_err(format!(
            "unsupported architecture {:?} (model_type {model_type:?}); KTO Studio runs LlamaForCausalLM (Llama, SmolLM, \
             TinyLlama), Qwen2ForCausalLM, Qwen3ForCausalLM, Gemma3ForCausalLM and GPT2LMHeadModel checkpoints",
            archs
        )))
    }
}

/// RoPE scaling from `rope_parameters` (transformers 5) or `rope_scaling` (older files).
fn rope_scaling(rope: Option<&Value>) -> Result<Option<RopeScaling>> {
    let Some(r) = rope else { return Ok(None) };
    let kind = r.get("rope_type").or(r.get("type")).and_then(Value::as_str).unwrap_or("default");
    let num = |k: &str| {
        r.get(k)
            .and_then(Value::as_f64)
            .filter(|x| x.is_finite() && *x > 0.0)
            .ok_or_else(|| format_err(format!("RoPE scaling {kind:?} needs a number > 0 for {k}")))
    };
    Ok(match kind {
        "default" => None,
        "linear" => Some(RopeScaling::Linear { factor: num("factor")? }),
        "llama3" => {
            let (low, high) = (num("low_freq_factor")?, num("high_freq_factor")?);
            if high <= low {
                return Err(format_err("llama3 RoPE scaling needs high_freq_factor > low_freq_factor"));
            }
            Some(RopeScaling::Llama3 {
                factor: num("factor")?,
                low_freq_factor: low,
                high_freq_factor: high,
                original_max_position_embeddings: num("original_max_position_embeddings")?,
            })
        }
        other => {
            return Err(format_err(format!(
                "RoPE scaling {other:?} is not supported (default, linear and llama3 are): it changes positions \
                 in a way this engine does not compute"
            )));
        }
    })
}

pub fn config_from_json(cfg: &Value) -> Result<ModelConfig> {
    let c = config_fields(cfg)?;
    c.validate()?;
    Ok(c)
}

fn config_fields(cfg: &Value) -> Result<ModelConfig> {
    let arch = architecture(cfg)?;
    let f = |k: &str| cfg.get(k).and_then(Value::as_f64);
    Ok(match arch {
        Arch::Llama => {
            let dim = need(cfg, &["hidden_size"])?;
            let n_heads = need(cfg, &["num_attention_heads"])?;
            if cfg.get("hidden_act").and_then(Value::as_str).is_some_and(|a| a != "silu") {
                return Err(format_err("only hidden_act = silu is supported for Llama-family models"));
            }
            // Qwen2's sliding window changes attention past the window; refuse rather than compute it wrong.
            let window = cfg.get("sliding_window").and_then(Value::as_u64).unwrap_or(u64::MAX);
            let context = cfg.get("max_position_embeddings").and_then(Value::as_u64).unwrap_or(0);
            if cfg.get("use_sliding_window").and_then(Value::as_bool) == Some(true) && window < context {
                return Err(format_err(format!(
                    "sliding-window attention (use_sliding_window, window {window} < context {context}) is not supported"
                )));
            }
            if cfg.get("mlp_bias").and_then(Value::as_bool) == Some(true) {
                return Err(format_err("mlp_bias = true is not supported"));
            }
            let rope = cfg.get("rope_parameters").or(cfg.get("rope_scaling")).filter(|v| !v.is_null());
            let rope_scaling = rope_scaling(rope)?;
            let rope_theta = f("rope_theta")
                .or_else(|| rope.and_then(|r| r.get("rope_theta")).and_then(Value::as_f64))
                .unwrap_or(10000.0);
            let model_type = cfg.get("model_type").and_then(Value::as_str);
            let qwen = model_type == Some("qwen2");
            let qwen3 = model_type == Some("qwen3")
                || cfg
                    .get("architectures")
                    .and_then(Value::as_array)
                    .is_some_and(|a| a.iter().any(|x| x == "Qwen3ForCausalLM"));
            ModelConfig {
                arch,
                dim,
                hidden_dim: need(cfg, &["intermediate_size"])?,
                n_layers: need(cfg, &["num_hidden_layers"])?,
                n_heads,
                n_kv_heads: get_usize(cfg, &["num_key_value_heads"]).unwrap_or(n_heads),
                vocab_size: need(cfg, &["vocab_size"])?,
                max_seq_len: need(cfg, &["max_position_embeddings"])?,
                norm_eps: f("rms_norm_eps").unwrap_or(1e-6),
                rope_theta,
                rope_layout: RopeLayout::RotateHalf,
                tied_embeddings: cfg.get("tie_word_embeddings").and_then(Value::as_bool).unwrap_or(false),
                qkv_bias: qwen || cfg.get("attention_bias").and_then(Value::as_bool) == Some(true),
                // Llama's and Qwen3's attention_bias cover o_proj as well; Qwen2's biases stop at q/k/v.
                o_bias: !qwen && cfg.get("attention_bias").and_then(Value::as_bool) == Some(true),
                qk_norm: qwen3,
                // transformers' default is hidden_size / heads; keep it implicit when it agrees.
                head_dim: get_usize(cfg, &["head_dim"]).filter(|&hd| n_heads == 0 || hd * n_heads != dim),
                rope_scaling,
                ..Default::default()
            }
        }
        Arch::Gemma3 => gemma3_config(cfg)?,
        Arch::Gpt2 => {
            let dim = need(cfg, &["n_embd", "hidden_size"])?;
            if let Some(act) = cfg.get("activation_function").and_then(Value::as_str)
                && act != "gelu_new"
            {
                return Err(format_err(format!("GPT-2 activation {act:?} is not supported (only gelu_new)")));
            }
            let n_heads = need(cfg, &["n_head", "num_attention_heads"])?;
            ModelConfig {
                arch,
                dim,
                hidden_dim: get_usize(cfg, &["n_inner"]).unwrap_or(dim.saturating_mul(4)),
                n_layers: need(cfg, &["n_layer", "num_hidden_layers"])?,
                n_heads,
                n_kv_heads: n_heads,
                vocab_size: need(cfg, &["vocab_size"])?,
                max_seq_len: need(cfg, &["n_positions", "max_position_embeddings"])?,
                norm_eps: f("layer_norm_epsilon").unwrap_or(1e-5),
                rope_theta: 0.0,
                rope_layout: RopeLayout::RotateHalf,
                tied_embeddings: cfg.get("tie_word_embeddings").and_then(Value::as_bool).unwrap_or(true),
                qkv_bias: true,
                o_bias: true,
                ..Default::default()
            }
        }
    })
}

/// Gemma 3 text. transformers 5 writes RoPE per layer type (`rope_parameters.full_attention`,
/// `.sliding_attention`); older files `rope_theta`, `rope_local_base_freq` and `rope_scaling`.
fn gemma3_config(cfg: &Value) -> Result<ModelConfig> {
    let f = |k: &str| cfg.get(k).and_then(Value::as_f64);
    let act = cfg.get("hidden_activation").or(cfg.get("hidden_act")).and_then(Value::as_str);
    if act.is_some_and(|a| a != "gelu_pytorch_tanh") {
        return Err(format_err(format!("Gemma 3 with activation {act:?} is not supported (only gelu_pytorch_tanh)")));
    }
    if cfg.get("use_bidirectional_attention").and_then(Value::as_bool) == Some(true) {
        return Err(format_err("bidirectional Gemma 3 (an embedding model) cannot generate text; use a causal one"));
    }
    let n_layers = need(cfg, &["num_hidden_layers"])?;
    let per_type = cfg.get("rope_parameters").filter(|r| r.get("full_attention").is_some());
    let global = per_type.and_then(|r| r.get("full_attention"));
    let local = per_type.and_then(|r| r.get("sliding_attention"));
    let theta = |r: Option<&Value>, key: &str, default: f64| {
        r.and_then(|r| r.get("rope_theta")).and_then(Value::as_f64).or(f(key)).unwrap_or(default)
    };
    let rope_scaling = rope_scaling(global.or(cfg.get("rope_scaling")).filter(|v| !v.is_null()))?;
    if local.is_some_and(|l| l.get("rope_type").and_then(Value::as_str).is_some_and(|t| t != "default")) {
        return Err(format_err("Gemma 3 with scaled RoPE on its sliding-window layers is not supported"));
    }
    let layers: Vec<bool> = match cfg.get("layer_types").and_then(Value::as_array) {
        Some(types) => types
            .iter()
            .map(|t| match t.as_str() {
                Some("sliding_attention") => Ok(true),
                Some("full_attention") => Ok(false),
                other => Err(format_err(format!("Gemma 3 layer type {other:?} is not supported"))),
            })
            .collect::<Result<_>>()?,
        None => {
            let pattern = get_usize(cfg, &["sliding_window_pattern", "_sliding_window_pattern"]).unwrap_or(6).max(1);
            (0..n_layers).map(|i| (i + 1) % pattern != 0).collect()
        }
    };
    let n_heads = need(cfg, &["num_attention_heads"])?;
    let bias = cfg.get("attention_bias").and_then(Value::as_bool) == Some(true);
    Ok(ModelConfig {
        arch: Arch::Gemma3,
        dim: need(cfg, &["hidden_size"])?,
        hidden_dim: need(cfg, &["intermediate_size"])?,
        n_layers,
        n_heads,
        n_kv_heads: get_usize(cfg, &["num_key_value_heads"]).unwrap_or(n_heads),
        vocab_size: need(cfg, &["vocab_size"])?,
        max_seq_len: get_usize(cfg, &["max_position_embeddings"]).unwrap_or(131_072),
        norm_eps: f("rms_norm_eps").unwrap_or(1e-6),
        rope_theta: theta(global, "rope_theta", 1_000_000.0),
        rope_layout: RopeLayout::RotateHalf,
        tied_embeddings: cfg.get("tie_word_embeddings").and_then(Value::as_bool).unwrap_or(true),
        qkv_bias: bias,
        o_bias: bias,
        // Gemma's head_dim (256 by default) is not hidden / heads; keep it explicit.
        head_dim: Some(get_usize(cfg, &["head_dim"]).unwrap_or(256)),
        rope_scaling,
        qk_norm: true,
        sliding: Some(SlidingWindow {
            // No window (null) leaves the sliding layers with their own RoPE but full attention.
            window: get_usize(cfg, &["sliding_window"]).unwrap_or(usize::MAX),
            rope_theta: theta(local, "rope_local_base_freq", 10_000.0),
            layers,
        }),
        query_pre_attn_scalar: Some(f("query_pre_attn_scalar").unwrap_or(256.0)),
        final_logit_softcapping: f("final_logit_softcapping"),
        rope_freq_factors: None,
    })
}

/// The `config.json` transformers reads back as the same model (the inverse of [`config_from_json`]).
pub(crate) fn config_json(c: &ModelConfig) -> Result<Value> {
    if c.rope_freq_factors.is_some() {
        return Err(format_err(
            "this model's RoPE comes as llama.cpp's per-frequency factors (rope_freqs), which a Hugging Face \
             config cannot state; export the LoRA adapter instead and apply it to the original checkpoint",
        ));
    }
    Ok(match c.arch {
        Arch::Gemma3 => gemma3_json(c),
        Arch::Llama => {
            let (architecture, model_type) = match c.family() {
                "Qwen3" => ("Qwen3ForCausalLM", "qwen3"),
                "Qwen2" => ("Qwen2ForCausalLM", "qwen2"),
                _ => ("LlamaForCausalLM", "llama"),
            };
            let mut config = json!({
                "architectures": [architecture], "model_type": model_type,
                "hidden_size": c.dim, "intermediate_size": c.hidden_dim, "num_hidden_layers": c.n_layers,
                "num_attention_heads": c.n_heads, "num_key_value_heads": c.n_kv_heads, "head_dim": c.head_dim(),
                "vocab_size": c.vocab_size, "max_position_embeddings": c.max_seq_len, "rms_norm_eps": c.norm_eps,
                "rope_theta": c.rope_theta, "tie_word_embeddings": c.tied_embeddings, "hidden_act": "silu",
                "attention_bias": c.qkv_bias, "mlp_bias": false, "torch_dtype": "float32",
            });
            if let Some(scaling) = c.rope_scaling {
                let mut rope = serde_json::to_value(scaling).expect("RoPE scaling serializes");
                rope["rope_theta"] = json!(c.rope_theta);
                config["rope_parameters"] = rope.clone();
                config["rope_scaling"] = rope;
            }
            config
        }
        Arch::Gpt2 => json!({
            "architectures": [GPT2_ARCH], "model_type": "gpt2", "n_embd": c.dim, "n_inner": c.hidden_dim,
            "n_layer": c.n_layers, "n_head": c.n_heads, "vocab_size": c.vocab_size, "n_positions": c.max_seq_len,
            "layer_norm_epsilon": c.norm_eps, "activation_function": "gelu_new",
            "tie_word_embeddings": c.tied_embeddings, "torch_dtype": "float32",
        }),
    })
}

/// Gemma 3's `config.json` (transformers 5 layout: RoPE per layer type).
fn gemma3_json(c: &ModelConfig) -> Value {
    let sliding = c.sliding.as_ref();
    let mut full = match c.rope_scaling {
        Some(s) => serde_json::to_value(s).expect("RoPE scaling serializes"),
        None => json!({"rope_type": "default"}),
    };
    full["rope_theta"] = json!(c.rope_theta);
    let layer_types: Vec<&str> =
        (0..c.n_layers).map(|i| if c.is_sliding(i) { "sliding_attention" } else { "full_attention" }).collect();
    json!({
        "architectures": [GEMMA3_ARCH], "model_type": "gemma3_text",
        "hidden_size": c.dim, "intermediate_size": c.hidden_dim, "num_hidden_layers": c.n_layers,
        "num_attention_heads": c.n_heads, "num_key_value_heads": c.n_kv_heads, "head_dim": c.head_dim(),
        "vocab_size": c.vocab_size, "max_position_embeddings": c.max_seq_len, "rms_norm_eps": c.norm_eps,
        "tie_word_embeddings": c.tied_embeddings, "hidden_activation": "gelu_pytorch_tanh",
        "attention_bias": c.qkv_bias, "query_pre_attn_scalar": c.query_pre_attn_scalar.map(|x| if x.fract() == 0.0 { json!(x as u64) } else { json!(x) }),
        "sliding_window": sliding.map(|s| s.window).filter(|&w| w != usize::MAX),
        "layer_types": layer_types,
        "rope_parameters": {
            "full_attention": full,
            "sliding_attention": {"rope_type": "default", "rope_theta": sliding.map_or(10_000.0, |s| s.rope_theta)},
        },
        "final_logit_softcapping": c.final_logit_softcapping,
        "torch_dtype": "float32",
    })
}
