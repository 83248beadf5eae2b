//! Hugging Face checkpoints: `config.json` + `model.safetensors` (or shards listed in
//! `model.safetensors.index.json`). Llama family (`LlamaForCausalLM`, Qwen2's q/k/v biases, Qwen3),
//! Gemma 3 text (`Gemma3ForCausalLM`) and GPT-2 (`GPT2LMHeadModel`: Conv1D weights stored `[in, out]`, fused `c_attn`). The writer
//! produces the same layout, so a merged model reloads in transformers.
//! Long because reading and writing share one name map per architecture: kept together, a
//! written file cannot drift from what the reader expects. `config.json` itself is `hf_config.rs`.

use std::collections::HashMap;

use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use serde_json::Value;

use crate::Result;
use crate::error::format_err;
use crate::model::{Arch, LayerWeights, ModelConfig, ModelWeights, RopeLayout, transpose};

use super::hf_config::config_json;
pub use super::hf_config::{architecture, config_from_json};

/// Tensors by name, as f32, with their shapes.
pub struct TensorMap(HashMap<String, (Vec<usize>, Vec<f32>)>);

fn to_f32(view: &TensorView<'_>, name: &str) -> Result<Vec<f32>> {
    let d = view.data();
    let n: usize = view.shape().iter().product();
    let width = if view.dtype() == Dtype::F32 { 4 } else { 2 };
    if matches!(view.dtype(), Dtype::F32 | Dtype::F16 | Dtype::BF16) && Some(d.len()) != n.checked_mul(width) {
        return Err(format_err(format!("tensor {name:?} has {} bytes of data for {n} values", d.len())));
    }
    Ok(match view.dtype() {
        Dtype::F32 => d.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(),
        Dtype::F16 => d.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        Dtype::BF16 => d.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        other => {
            return Err(format_err(format!("tensor {name} has dtype {other:?}; only F32, F16 and BF16 are supported")));
        }
    })
}

impl TensorMap {
    /// Read every tensor of one or more safetensors files (shards). A tensor name found in two
    /// files is refused: reading both would let the later file silently replace weights.
    pub fn from_safetensors(files: &[(&str, &[u8])]) -> Result<Self> {
        let mut map = HashMap::new();
        let mut origin: HashMap<String, &str> = HashMap::new();
        for (file, bytes) in files {
            let st = SafeTensors::deserialize(bytes).map_err(|e| format_err(diagnose(file, bytes, &e)))?;
            for (name, view) in st.tensors() {
                if let Some(first) = origin.insert(name.clone(), file) {
                    return Err(format_err(format!(
                        "tensor {name:?} is in both {first} and {file}: these files are not shards of one model. \
                         Keep only the model's own weights (model.safetensors, or the shards its index lists) in the folder"
                    )));
                }
                let data = to_f32(&view, &name)?;
                map.insert(name, (view.shape().to_vec(), data));
            }
        }
        Ok(Self(map))
    }

    fn take(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let (got, data) =
            self.0.remove(name).ok_or_else(|| format_err(format!("the checkpoint has no tensor {name}")))?;
        if got != shape {
            return Err(format_err(format!("tensor {name} has shape {got:?}, expected {shape:?} from config.json")));
        }
        Ok(data)
    }

    fn take_opt(&mut self, name: &str, shape: &[usize]) -> Result<Option<Vec<f32>>> {
        if self.0.contains_key(name) { self.take(name, shape).map(Some) } else { Ok(None) }
    }

    pub fn names(&self) -> Vec<String> {
        let mut n: Vec<String> = self.0.keys().cloned().collect();
        n.sort();
        n
    }

    pub fn remove(&mut self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        self.0.remove(name).ok_or_else(|| format_err(format!("the file has no tensor {name}")))
    }

    fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }
}

/// Why a safetensors file did not parse, naming the tensor at fault when the header reads as
/// JSON (the crate's own errors often do not name it).
fn diagnose(file: &str, bytes: &[u8], err: &safetensors::SafeTensorError) -> String {
    let generic = format!("{file} is not a valid safetensors file: {err}");
    let Some(n) = bytes.get(..8).map(|b| u64::from_le_bytes(b.try_into().unwrap())) else { return generic };
    let Some(header) = usize::try_from(n).ok().and_then(|n| bytes.get(8..8usize.checked_add(n)?)) else {
        return format!(
            "{file} is truncated or not a safetensors file: its header claims {n} bytes, the file has {}",
            bytes.len()
        );
    };
    let Ok(Value::Object(entries)) = serde_json::from_slice::<Value>(header) else { return generic };
    let data_len = bytes.len() - 8 - header.len();
    for (name, e) in entries.iter().filter(|(k, _)| *k != "__metadata__") {
        let dtype_size = match e.get("dtype").and_then(Value::as_str) {
            Some("F64" | "I64" | "U64") => 8,
            Some("F32" | "I32" | "U32") => 4,
            Some("F16" | "BF16" | "I16" | "U16") => 2,
            Some("I8" | "U8" | "BOOL" | "F8_E4M3" | "F8_E5M2") => 1,
            other => return format!("{file}: tensor {name:?} has an unknown dtype {other:?}"),
        };
        let shape: Option<Vec<u64>> =
            e.get("shape").and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_u64).collect());
        let offsets: Option<Vec<u64>> =
            e.get("data_offsets").and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_u64).collect());
        let (Some(shape), Some([start, end])) = (shape, offsets.as_deref()) else {
            return format!("{file}: tensor {name:?} has no valid shape or data_offsets");
        };
        let want = shape.iter().try_fold(dtype_size as u64, |a, &d| a.checked_mul(d));
        if want != end.checked_sub(*start) {
            return format!(
                "{file}: tensor {name:?} with shape {shape:?} needs {} bytes but its offsets {start}..{end} give {}: the file is corrupt",
                want.map_or("too many".into(), |w| w.to_string()),
                end.saturating_sub(*start)
            );
        }
        if *end > data_len as u64 {
            return format!(
                "{file}: tensor {name:?} ends at byte {end} of the data, which has only {data_len}: the file is truncated (re-download it)"
            );
        }
    }
    generic
}

/// The shard files a `model.safetensors.index.json` lists.
pub fn shard_names(index_json: &[u8]) -> Result<Vec<String>> {
    let v: Value =
        serde_json::from_slice(index_json).map_err(|e| format_err(format!("model.safetensors.index.json: {e}")))?;
    let map = v
        .get("weight_map")
        .and_then(Value::as_object)
        .ok_or_else(|| format_err("model.safetensors.index.json has no weight_map"))?;
    let mut names: Vec<String> = map.values().filter_map(|f| f.as_str().map(str::to_string)).collect();
    names.sort();
    names.dedup();
    Ok(names)
}

/// Reorder the output rows of a Q or K projection between RoPE layouts: llama.cpp/llama2.c
/// interleave each head's two halves (adjacent pairs); Hugging Face keeps them apart.
pub(crate) fn permute_rows(w: &[f32], heads: usize, head_dim: usize, cols: usize, to_rotate_half: bool) -> Vec<f32> {
    let half = head_dim / 2;
    let mut out = vec![0f32; w.len()];
    for h in 0..heads {
        for j in 0..half {
            for s in 0..2 {
                let adjacent = h * head_dim + 2 * j + s;
                let rotate = h * head_dim + s * half + j;
                let (src, dst) = if to_rotate_half { (adjacent, rotate) } else { (rotate, adjacent) };
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&w[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

/// Weights from config.json and the checkpoint's tensors.
pub fn load(config_json: &[u8], files: &[(&str, &[u8])]) -> Result<ModelWeights> {
    let cfg = crate::bundle::json_file("config.json", config_json)?;
    let config = config_from_json(&cfg)?;
    let mut t = TensorMap::from_safetensors(files)?;
    let weights = match config.arch {
        Arch::Llama | Arch::Gemma3 => load_llama(config, &mut t)?,
        Arch::Gpt2 => load_gpt2(config, &mut t)?,
    };
    // A tensor nobody read is a weight the forward pass would silently leave out (a bias the
    // config does not announce, say): refuse it. Buffers some exporters store are not weights.
    let unused: Vec<String> = t
        .names()
        .into_iter()
        .filter(|n| {
            !n.ends_with("rotary_emb.inv_freq") && !n.ends_with(".attn.bias") && !n.ends_with(".attn.masked_bias")
        })
        .collect();
    if !unused.is_empty() {
        return Err(format_err(format!(
            "the checkpoint has {} tensor(s) that config.json's architecture does not use ({}{}): the config does not \
             describe these weights, so they would be left out of the computation",
            unused.len(),
            unused.iter().take(4).cloned().collect::<Vec<_>>().join(", "),
            if unused.len() > 4 { ", ..." } else { "" }
        )));
    }
    weights.validate()?;
    Ok(weights)
}

/// Gemma's RMSNorm multiplies by `1 + w`; the engine keeps the factor itself (`1 + w`, rounded
/// to f32 as transformers rounds it).
fn norm_offset(c: &ModelConfig) -> f32 {
    if c.arch == Arch::Gemma3 { 1.0 } else { 0.0 }
}

fn load_llama(mut c: ModelConfig, t: &mut TensorMap) -> Result<ModelWeights> {
    let (d, h, q, kv, v) = (c.dim, c.hidden_dim, c.q_dim(), c.kv_dim(), c.vocab_size);
    let p = if t.has("model.embed_tokens.weight") { "model." } else { "" };
    let gemma = c.arch == Arch::Gemma3;
    let offset = norm_offset(&c);
    let mut layers = Vec::with_capacity(c.n_layers);
    let take_norm = |t: &mut TensorMap, name: String, n: usize| -> Result<Vec<f32>> {
        Ok(t.take(&name, &[n])?.into_iter().map(|w| w + offset).collect())
    };
    for i in 0..c.n_layers {
        let l = format!("{p}layers.{i}.");
        let bias = |t: &mut TensorMap, name: &str, n: usize| {
            if c.qkv_bias { t.take(&format!("{l}self_attn.{name}.bias"), &[n]).map(Some) } else { Ok(None) }
        };
        // Llama's `post_attention_layernorm` is the norm before the MLP; Gemma's follows attention.
        let (ffn_norm, post_attn_norm, post_ffn_norm) = if gemma {
            (
                take_norm(t, format!("{l}pre_feedforward_layernorm.weight"), d)?,
                Some(take_norm(t, format!("{l}post_attention_layernorm.weight"), d)?),
                Some(take_norm(t, format!("{l}post_feedforward_layernorm.weight"), d)?),
            )
        } else {
            (take_norm(t, format!("{l}post_attention_layernorm.weight"), d)?, None, None)
        };
        layers.push(LayerWeights {
            attn_norm: take_norm(t, format!("{l}input_layernorm.weight"), d)?,
            wq: t.take(&format!("{l}self_attn.q_proj.weight"), &[q, d])?,
            wk: t.take(&format!("{l}self_attn.k_proj.weight"), &[kv, d])?,
            wv: t.take(&format!("{l}self_attn.v_proj.weight"), &[kv, d])?,
            wo: t.take(&format!("{l}self_attn.o_proj.weight"), &[d, q])?,
            bo: if c.o_bias { Some(t.take(&format!("{l}self_attn.o_proj.bias"), &[d])?) } else { None },
            bq: bias(t, "q_proj", q)?,
            bk: bias(t, "k_proj", kv)?,
            bv: bias(t, "v_proj", kv)?,
            ffn_norm,
            post_attn_norm,
            post_ffn_norm,
            w1: t.take(&format!("{l}mlp.gate_proj.weight"), &[h, d])?,
            w2: t.take(&format!("{l}mlp.down_proj.weight"), &[d, h])?,
            w3: t.take(&format!("{l}mlp.up_proj.weight"), &[h, d])?,
            q_norm: if c.qk_norm {
                Some(take_norm(t, format!("{l}self_attn.q_norm.weight"), c.head_dim())?)
            } else {
                None
            },
            k_norm: if c.qk_norm {
                Some(take_norm(t, format!("{l}self_attn.k_norm.weight"), c.head_dim())?)
            } else {
                None
            },
            ..Default::default()
        });
    }
    let tok_emb = t.take(&format!("{p}embed_tokens.weight"), &[v, d])?;
    let lm_head = t.take_opt("lm_head.weight", &[v, d])?;
    // Some checkpoints store lm_head even when tied; trust the tensor that is there.
    c.tied_embeddings = lm_head.is_none();
    Ok(ModelWeights {
        tok_emb,
        pos_emb: None,
        layers,
        norm: take_norm(t, format!("{p}norm.weight"), d)?,
        norm_bias: None,
        lm_head,
        config: c,
    })
}

fn load_gpt2(mut c: ModelConfig, t: &mut TensorMap) -> Result<ModelWeights> {
    let (d, h, v) = (c.dim, c.hidden_dim, c.vocab_size);
    let p = if t.has("transformer.wte.weight") { "transformer." } else { "" };
    let mut layers = Vec::with_capacity(c.n_layers);
    for i in 0..c.n_layers {
        let l = format!("{p}h.{i}.");
        // Conv1D stores [in, out]; c_attn's output is q | k | v.
        let attn = transpose(&t.take(&format!("{l}attn.c_attn.weight"), &[d, 3 * d])?, d, 3 * d);
        let attn_b = t.take(&format!("{l}attn.c_attn.bias"), &[3 * d])?;
        let mut layer = LayerWeights {
            attn_norm: t.take(&format!("{l}ln_1.weight"), &[d])?,
            attn_norm_bias: Some(t.take(&format!("{l}ln_1.bias"), &[d])?),
            wo: transpose(&t.take(&format!("{l}attn.c_proj.weight"), &[d, d])?, d, d),
            bo: Some(t.take(&format!("{l}attn.c_proj.bias"), &[d])?),
            ffn_norm: t.take(&format!("{l}ln_2.weight"), &[d])?,
            ffn_norm_bias: Some(t.take(&format!("{l}ln_2.bias"), &[d])?),
            w1: Vec::new(),
            w3: transpose(&t.take(&format!("{l}mlp.c_fc.weight"), &[d, h])?, d, h),
            b3: Some(t.take(&format!("{l}mlp.c_fc.bias"), &[h])?),
            w2: transpose(&t.take(&format!("{l}mlp.c_proj.weight"), &[h, d])?, h, d),
            b2: Some(t.take(&format!("{l}mlp.c_proj.bias"), &[d])?),
            ..Default::default()
        };
        layer.set_fused_qkv(&attn, &attn_b, d);
        layers.push(layer);
    }
    let lm_head = t.take_opt("lm_head.weight", &[v, d])?;
    c.tied_embeddings = lm_head.is_none();
    Ok(ModelWeights {
        tok_emb: t.take(&format!("{p}wte.weight"), &[v, d])?,
        pos_emb: Some(t.take(&format!("{p}wpe.weight"), &[c.max_seq_len, d])?),
        layers,
        norm: t.take(&format!("{p}ln_f.weight"), &[d])?,
        norm_bias: Some(t.take(&format!("{p}ln_f.bias"), &[d])?),
        lm_head,
        config: c,
    })
}

/// Serialize named f32 tensors as one safetensors file.
pub fn write_safetensors(
    tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
    metadata: Option<HashMap<String, String>>,
) -> Result<Vec<u8>> {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> =
        tensors.into_iter().map(|(n, s, v)| (n, s, v.iter().flat_map(|x| x.to_le_bytes()).collect())).collect();
    let views = bytes
        .iter()
        .map(|(n, s, b)| TensorView::new(Dtype::F32, s.clone(), b).map(|v| (n.clone(), v)))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| format_err(format!("cannot build a safetensors view: {e}")))?;
    safetensors::serialize(views, metadata).map_err(|e| format_err(format!("cannot write safetensors: {e}")))
}

/// A merged model as Hugging Face files: `(config.json, model.safetensors)`. Q/K of models that
/// came in llama.cpp's adjacent layout are permuted back to Hugging Face's.
pub fn save(w: &ModelWeights) -> Result<(String, Vec<u8>)> {
    let c = &w.config;
    let config = config_json(c)?;
    let (d, h, q, kv, v) = (c.dim, c.hidden_dim, c.q_dim(), c.kv_dim(), c.vocab_size);
    let mut out: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let mut put = |n: String, s: Vec<usize>, x: Vec<f32>| out.push((n, s, x));
    let offset = norm_offset(c);
    let unnorm = |w: &[f32]| -> Vec<f32> { w.iter().map(|x| x - offset).collect() };
    match c.arch {
        Arch::Llama | Arch::Gemma3 => {
            let hd = c.head_dim();
            let fix = |x: &[f32], heads: usize| {
                if c.rope_layout == RopeLayout::Adjacent { permute_rows(x, heads, hd, d, true) } else { x.to_vec() }
            };
            put("model.embed_tokens.weight".into(), vec![v, d], w.tok_emb.clone());
            for (i, l) in w.layers.iter().enumerate() {
                let p = format!("model.layers.{i}.");
                put(format!("{p}input_layernorm.weight"), vec![d], unnorm(&l.attn_norm));
                put(format!("{p}self_attn.q_proj.weight"), vec![q, d], fix(&l.wq, c.n_heads));
                put(format!("{p}self_attn.k_proj.weight"), vec![kv, d], fix(&l.wk, c.n_kv_heads));
                put(format!("{p}self_attn.v_proj.weight"), vec![kv, d], l.wv.clone());
                put(format!("{p}self_attn.o_proj.weight"), vec![d, q], l.wo.clone());
                for (name, norm) in [("q_norm", &l.q_norm), ("k_norm", &l.k_norm)] {
                    if let Some(n) = norm {
                        put(format!("{p}self_attn.{name}.weight"), vec![hd], unnorm(n));
                    }
                }
                if let Some(b) = &l.bo {
                    put(format!("{p}self_attn.o_proj.bias"), vec![d], b.clone());
                }
                for (name, b, n) in [("q_proj", &l.bq, q), ("k_proj", &l.bk, kv), ("v_proj", &l.bv, kv)] {
                    if let Some(b) = b {
                        let heads = n / hd;
                        let b = if c.rope_layout == RopeLayout::Adjacent && name != "v_proj" {
                            permute_rows(b, heads, hd, 1, true)
                        } else {
                            b.clone()
                        };
                        put(format!("{p}self_attn.{name}.bias"), vec![n], b);
                    }
                }
                match (&l.post_attn_norm, &l.post_ffn_norm) {
                    (Some(post_attn), Some(post_ffn)) => {
                        put(format!("{p}post_attention_layernorm.weight"), vec![d], unnorm(post_attn));
                        put(format!("{p}pre_feedforward_layernorm.weight"), vec![d], unnorm(&l.ffn_norm));
                        put(format!("{p}post_feedforward_layernorm.weight"), vec![d], unnorm(post_ffn));
                    }
                    _ => put(format!("{p}post_attention_layernorm.weight"), vec![d], l.ffn_norm.clone()),
                }
                put(format!("{p}mlp.gate_proj.weight"), vec![h, d], l.w1.clone());
                put(format!("{p}mlp.up_proj.weight"), vec![h, d], l.w3.clone());
                put(format!("{p}mlp.down_proj.weight"), vec![d, h], l.w2.clone());
            }
            put("model.norm.weight".into(), vec![d], unnorm(&w.norm));
            if let Some(head) = &w.lm_head {
                put("lm_head.weight".into(), vec![v, d], head.clone());
            }
        }
        Arch::Gpt2 => {
            let bias = |b: &Option<Vec<f32>>| b.clone().unwrap_or_default();
            put("transformer.wte.weight".into(), vec![v, d], w.tok_emb.clone());
            put("transformer.wpe.weight".into(), vec![c.max_seq_len, d], w.pos_emb.clone().unwrap_or_default());
            for (i, l) in w.layers.iter().enumerate() {
                let p = format!("transformer.h.{i}.");
                put(format!("{p}ln_1.weight"), vec![d], l.attn_norm.clone());
                put(format!("{p}ln_1.bias"), vec![d], bias(&l.attn_norm_bias));
                let fused: Vec<f32> = [&l.wq, &l.wk, &l.wv].iter().flat_map(|x| x.iter().copied()).collect();
                put(format!("{p}attn.c_attn.weight"), vec![d, 3 * d], transpose(&fused, 3 * d, d));
                put(format!("{p}attn.c_attn.bias"), vec![3 * d], [bias(&l.bq), bias(&l.bk), bias(&l.bv)].concat());
                put(format!("{p}attn.c_proj.weight"), vec![d, d], transpose(&l.wo, d, d));
                put(format!("{p}attn.c_proj.bias"), vec![d], bias(&l.bo));
                put(format!("{p}ln_2.weight"), vec![d], l.ffn_norm.clone());
                put(format!("{p}ln_2.bias"), vec![d], bias(&l.ffn_norm_bias));
                put(format!("{p}mlp.c_fc.weight"), vec![d, h], transpose(&l.w3, h, d));
                put(format!("{p}mlp.c_fc.bias"), vec![h], bias(&l.b3));
                put(format!("{p}mlp.c_proj.weight"), vec![h, d], transpose(&l.w2, d, h));
                put(format!("{p}mlp.c_proj.bias"), vec![d], bias(&l.b2));
            }
            put("transformer.ln_f.weight".into(), vec![d], w.norm.clone());
            put("transformer.ln_f.bias".into(), vec![d], bias(&w.norm_bias));
            if let Some(head) = &w.lm_head {
                put("lm_head.weight".into(), vec![v, d], head.clone());
            }
        }
    }
    let config = serde_json::to_string_pretty(&config).unwrap();
    // The config rides along in the metadata, so the file alone can be restored (the page keeps
    // trained weights in IndexedDB this way).
    let meta = HashMap::from([("format".to_string(), "pt".to_string()), ("config".to_string(), config.clone())]);
    Ok((config, write_safetensors(out, Some(meta))?))
}

/// The `config.json` stored in the metadata of a file [`save`] wrote.
pub fn embedded_config(safetensors: &[u8]) -> Result<Option<String>> {
    let (_, meta) =
        SafeTensors::read_metadata(safetensors).map_err(|e| format_err(format!("not a safetensors file: {e}")))?;
    Ok(meta.metadata().as_ref().and_then(|m| m.get("config").cloned()))
}
