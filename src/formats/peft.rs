//! PEFT LoRA adapters: `adapter_config.json` + `adapter_model.safetensors` with PEFT's tensor
//! names (`base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight`, `[r, in]`;
//! `lora_B.weight`, `[out, r]`; GPT-2: `base_model.model.transformer.h.{i}.attn.c_attn...` with
//! `fan_in_fan_out`, as PEFT adapts its Conv1D layers), loadable with `peft.PeftModel.from_pretrained`.

use serde_json::{Value, json};

use super::hf::{TensorMap, permute_rows, write_safetensors};
use crate::Result;
use crate::error::format_err;
use crate::model::{Arch, HostAdapter, LoraConfig, ModelConfig, RopeLayout};

/// The tensor-name prefix of layer `i`'s module `target` (a `Model::projs` name).
fn module_path(c: &ModelConfig, i: usize, target: &str) -> String {
    match (c.arch, target) {
        (Arch::Gpt2, "c_attn") => format!("base_model.model.transformer.h.{i}.attn.c_attn"),
        (Arch::Gpt2, "c_fc") => format!("base_model.model.transformer.h.{i}.mlp.c_fc"),
        (Arch::Gpt2, t) => format!("base_model.model.transformer.h.{i}.{t}"),
        (_, t) if ["q_proj", "k_proj", "v_proj", "o_proj"].contains(&t) => {
            format!("base_model.model.model.layers.{i}.self_attn.{t}")
        }
        (_, t) => format!("base_model.model.model.layers.{i}.mlp.{t}"),
    }
}

/// The layer and `Model::projs` name of a tensor-name prefix (inverse of [`module_path`]).
fn parse_module(c: &ModelConfig, prefix: &str) -> Option<(usize, String)> {
    let rest = prefix.split(".layers.").nth(1).or_else(|| prefix.split(".h.").nth(1))?;
    let (layer, path) = rest.split_once('.')?;
    let parts: Vec<&str> = path.split('.').collect();
    let target = match (c.arch, parts.as_slice()) {
        (Arch::Gpt2, [.., parent, "c_proj"]) => format!("{parent}.c_proj"),
        (_, [.., last]) => last.to_string(),
        _ => return None,
    };
    Some((layer.parse().ok()?, target))
}

/// Q and K adapters of a model in llama.cpp's adjacent RoPE layout have their output rows in that
/// layout; PEFT's base model (a Hugging Face checkpoint) expects rotate-half.
fn convert_b(h: &HostAdapter, c: &ModelConfig, to_hf: bool) -> Vec<f32> {
    let heads = match h.target.as_str() {
        "q_proj" => c.n_heads,
        "k_proj" => c.n_kv_heads,
        _ => return h.b.clone(),
    };
    if c.rope_layout == RopeLayout::Adjacent {
        permute_rows(&h.b, heads, c.head_dim(), h.rank, to_hf)
    } else {
        h.b.clone()
    }
}

pub fn save(
    adapters: &[HostAdapter],
    lora: &LoraConfig,
    model: &ModelConfig,
    base_name: &str,
) -> Result<(String, Vec<u8>)> {
    let targets = lora.modules(model.arch)?;
    let mut tensors = Vec::new();
    for h in adapters {
        let p = module_path(model, h.layer, &h.target);
        tensors.push((format!("{p}.lora_A.weight"), vec![h.rank, h.d_in], h.a.clone()));
        tensors.push((format!("{p}.lora_B.weight"), vec![h.d_out, h.rank], convert_b(h, model, true)));
    }
    let config = json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_name,
        "r": lora.rank,
        "lora_alpha": lora.alpha,
        "lora_dropout": lora.dropout,
        "target_modules": targets,
        "bias": "none",
        // GPT-2's Conv1D layers store weights [in, out]: PEFT adapts them with fan_in_fan_out.
        "fan_in_fan_out": model.arch == Arch::Gpt2,
        "inference_mode": true,
        "use_rslora": false,
        "use_dora": false,
        "init_lora_weights": true,
        "modules_to_save": null,
        "layers_to_transform": null,
        "revision": null,
    });
    let config = serde_json::to_string_pretty(&config).unwrap();
    let meta = std::collections::HashMap::from([
        ("format".to_string(), "pt".to_string()),
        ("adapter_config".to_string(), config.clone()),
    ]);
    Ok((config, write_safetensors(tensors, Some(meta))?))
}

/// The `adapter_config.json` stored in the metadata of a file [`save`] wrote.
pub fn embedded_config(safetensors: &[u8]) -> Result<Option<String>> {
    let (_, meta) = safetensors::SafeTensors::read_metadata(safetensors)
        .map_err(|e| format_err(format!("not a safetensors file: {e}")))?;
    Ok(meta.metadata().as_ref().and_then(|m| m.get("adapter_config").cloned()))
}

/// Read an adapter back: its settings and factors (checked against `model` when attached).
pub fn load(config_json: &[u8], safetensors: &[u8], model: &ModelConfig) -> Result<(LoraConfig, Vec<HostAdapter>)> {
    let cfg = crate::bundle::json_file("adapter_config.json", config_json)?;
    if cfg.get("peft_type").and_then(Value::as_str) != Some("LORA") {
        return Err(format_err("adapter_config.json is not a LoRA adapter (peft_type must be \"LORA\")"));
    }
    for flag in ["use_dora", "use_rslora", "fan_in_fan_out"] {
        // fan_in_fan_out is how PEFT adapts GPT-2's Conv1D layers (it sets it itself for them).
        if cfg.get(flag).and_then(Value::as_bool) == Some(true)
            && !(flag == "fan_in_fan_out" && model.arch == Arch::Gpt2)
        {
            return Err(format_err(format!("adapters with {flag} = true are not supported for this model")));
        }
    }
    let rank = cfg.get("r").and_then(Value::as_u64).ok_or_else(|| format_err("adapter_config.json has no r"))? as usize;
    let targets: Vec<String> = match cfg.get("target_modules") {
        Some(Value::Array(a)) => a.iter().filter_map(|t| t.as_str().map(str::to_string)).collect(),
        Some(Value::String(s)) => {
            return Err(format_err(format!("target_modules given as a regex ({s:?}) is not supported")));
        }
        _ => return Err(format_err("adapter_config.json has no target_modules")),
    };
    let lora = LoraConfig {
        rank,
        alpha: cfg.get("lora_alpha").and_then(Value::as_f64).unwrap_or(8.0),
        dropout: cfg.get("lora_dropout").and_then(Value::as_f64).unwrap_or(0.0),
        targets,
    };
    let allowed = lora.modules(model.arch)?;
    // Huge ranks would make every factor a huge allocation; nothing trained on a device has one.
    if rank > 4096 {
        return Err(format_err(format!("adapter rank r = {rank} is implausible (at most 4096)")));
    }
    let mut t = TensorMap::from_safetensors(&[("adapter_model.safetensors", safetensors)])?;
    let mut out = Vec::new();
    for name in t.names() {
        let Some(prefix) = name.strip_suffix(".lora_A.weight") else { continue };
        let (layer, target) =
            parse_module(model, prefix).ok_or_else(|| format_err(format!("unexpected adapter tensor {name}")))?;
        if !allowed.contains(&target.as_str()) {
            return Err(format_err(format!(
                "adapter tensor {name} adapts {target}, which adapter_config.json's target_modules ({}) does not list: \
                 the config and the weights do not belong together",
                allowed.join(", ")
            )));
        }
        let (a_shape, a) = t.remove(&name)?;
        let (b_shape, b) = t.remove(&format!("{prefix}.lora_B.weight"))?;
        if a_shape.len() != 2 || b_shape.len() != 2 || a_shape[0] != rank || b_shape[1] != rank {
            return Err(format_err(format!(
                "adapter tensors of {prefix} have shapes {a_shape:?} / {b_shape:?}, not [r, in] / [out, r] with r = {rank}"
            )));
        }
        let want = model.proj_dims(&target).ok_or_else(|| {
            format_err(format!("adapter tensor {name} targets {target:?}, which is not a projection of this model"))
        })?;
        if layer >= model.n_layers || (a_shape[1], b_shape[0]) != want {
            return Err(format_err(format!(
                "the adapter for layers.{layer}.{target} is {}x{}, but this model's projection is {}x{} (or it has fewer \
                 layers): it was trained on a different model",
                b_shape[0], a_shape[1], want.1, want.0
            )));
        }
        let mut h = HostAdapter { layer, target, rank, d_in: a_shape[1], d_out: b_shape[0], a, b };
        h.b = convert_b(&h, model, false);
        out.push(h);
    }
    if out.is_empty() {
        return Err(format_err("adapter_model.safetensors holds no lora_A/lora_B tensors"));
    }
    Ok((lora, out))
}
