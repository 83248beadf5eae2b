//! GGUF (llama.cpp) files: metadata, tensors dequantized to f32 (F32, F16, BF16, Q8_0, Q4_0,
//! Q4_1; Q5_0, Q5_1 and the k-quants in `kquants.rs`), and the tokenizer embedded in the metadata (GPT-2 byte-level BPE or SentencePiece).
//! llama.cpp stores Llama Q/K in the adjacent-pair RoPE layout; Qwen2 keeps rotate-half.
//! Long because a format is read whole in one place: metadata, every quantization's block layout,
//! and the tokenizer must agree on the same file, and splitting them would scatter its spec.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::Reader;
use crate::Result;
use crate::error::format_err;
use crate::model::{Arch, LayerWeights, ModelConfig, ModelWeights, RopeLayout, RopeScaling, SlidingWindow};
use crate::tokenizer::{HfTokenizer, Llama2cTokenizer, Tokenizer};

const MAGIC: &[u8; 4] = b"GGUF";
const QK: usize = 32;

/// A metadata value (arrays of numbers are kept as f64, of strings as strings).
#[derive(Debug, Clone)]
pub enum Meta {
    Num(f64),
    Bool(bool),
    Str(String),
    Nums(Vec<f64>),
    Strs(Vec<String>),
}

struct TensorInfo {
    /// ggml order: `dims[0]` is the fastest-moving (a `[out, in]` matrix has dims `[in, out]`).
    dims: Vec<usize>,
    kind: u32,
    offset: usize,
}

pub struct Gguf<'a> {
    pub meta: HashMap<String, Meta>,
    tensors: HashMap<String, TensorInfo>,
    data: &'a [u8],
    /// Names of the tensors read so far: one never read is a weight the model would leave out.
    read: std::cell::RefCell<std::collections::BTreeSet<String>>,
}

impl Reader<'_> {
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn len(&mut self) -> Result<usize> {
        let n = self.u64()?;
        // Every element takes at least one byte, so a count past the file size is corruption.
        if n as usize > self.remaining() {
            return Err(format_err(format!(
                "GGUF: a length of {n} at offset {} runs past the end of the file",
                self.pos()
            )));
        }
        Ok(n as usize)
    }
    fn string(&mut self) -> Result<String> {
        let n = self.len()?;
        Ok(String::from_utf8_lossy(self.take(n)?).into_owned())
    }
    fn scalar(&mut self, ty: u32) -> Result<Option<f64>> {
        Ok(Some(match ty {
            0 => self.take(1)?[0] as f64,
            1 => self.take(1)?[0] as i8 as f64,
            2 => u16::from_le_bytes(self.take(2)?.try_into().unwrap()) as f64,
            3 => i16::from_le_bytes(self.take(2)?.try_into().unwrap()) as f64,
            4 => self.u32()? as f64,
            5 => self.i32()? as f64,
            6 => self.f32()? as f64,
            7 => self.take(1)?[0] as f64,
            10 => self.u64()? as f64,
            11 => self.u64()? as i64 as f64,
            12 => f64::from_le_bytes(self.take(8)?.try_into().unwrap()),
            _ => return Ok(None),
        }))
    }
    fn value(&mut self, ty: u32) -> Result<Meta> {
        Ok(match ty {
            7 => Meta::Bool(self.take(1)?[0] != 0),
            8 => Meta::Str(self.string()?),
            9 => {
                let inner = self.u32()?;
                let n = self.len()?;
                // Each element takes at least its own width (a string, its 8-byte length): a count
                // the rest of the file cannot hold is refused before anything is reserved for it.
                let width = match inner {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    _ => 8,
                };
                if n.saturating_mul(width) > self.remaining() {
                    return Err(format_err(format!(
                        "GGUF: an array of {n} elements at offset {} runs past the end of the file",
                        self.pos()
                    )));
                }
                if inner == 8 {
                    let mut v = Vec::with_capacity(n);
                    for _ in 0..n {
                        v.push(self.string()?);
                    }
                    Meta::Strs(v)
                } else {
                    // f64 per element: reserve in proportion to what was read, not what is claimed.
                    let mut v = Vec::with_capacity(n.min(1 << 16));
                    for _ in 0..n {
                        v.push(
                            self.scalar(inner)?
                                .ok_or_else(|| format_err(format!("GGUF: unknown array element type {inner}")))?,
                        );
                    }
                    Meta::Nums(v)
                }
            }
            t => {
                Meta::Num(self.scalar(t)?.ok_or_else(|| format_err(format!("GGUF: unknown metadata value type {t}")))?)
            }
        })
    }
}

pub(crate) fn f16(b: &[u8]) -> f32 {
    half::f16::from_le_bytes([b[0], b[1]]).to_f32()
}

/// `(bytes per block, values per block)` of the ggml types the engine reads.
fn block_layout(kind: u32) -> Option<(usize, usize)> {
    Some(match kind {
        0 => (4, 1),
        1 | 30 => (2, 1),
        2 => (18, QK),
        3 => (20, QK),
        8 => (34, QK),
        k => return super::kquants::layout(k),
    })
}

/// A readable name for a ggml type the engine does not read (the I-quants, mostly).
fn type_name(kind: u32) -> String {
    let name = match kind {
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        29 => "IQ1_M",
        34 => "TQ1_0",
        35 => "TQ2_0",
        _ => return format!("type {kind}"),
    };
    name.to_string()
}

/// Dequantize `n` values of ggml type `kind` from `bytes`.
pub fn dequantize(kind: u32, bytes: &[u8], n: usize) -> Result<Vec<f32>> {
    let (block_bytes, block_len) = block_layout(kind).ok_or_else(|| {
        format_err(format!(
            "GGUF tensors of {} are not supported (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 and the \
             k-quants Q2_K-Q6_K are; I-quants need lookup grids this engine does not carry): download a \
             Q4_K_M, Q5_K_M, Q6_K or Q8_0 file of the model instead, or re-quantize with llama-quantize",
            type_name(kind)
        ))
    })?;
    if n % block_len != 0 || bytes.len() < n / block_len * block_bytes {
        return Err(format_err("GGUF: tensor data is shorter than its shape implies"));
    }
    let blocks = bytes[..n / block_len * block_bytes].chunks_exact(block_bytes);
    let mut out = Vec::with_capacity(n);
    match kind {
        0 => out.extend(blocks.map(|c| f32::from_le_bytes(c.try_into().unwrap()))),
        1 => out.extend(blocks.map(f16)),
        30 => out.extend(blocks.map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())),
        // Q4_0: scale d, 16 bytes of nibbles; low nibbles are values 0..16, high nibbles 16..32.
        2 => blocks.for_each(|b| {
            let d = f16(b);
            let q = &b[2..];
            out.extend(q.iter().map(|x| ((x & 0xF) as i32 - 8) as f32 * d));
            out.extend(q.iter().map(|x| ((x >> 4) as i32 - 8) as f32 * d));
        }),
        // Q4_1: scale d and minimum m.
        3 => blocks.for_each(|b| {
            let (d, m) = (f16(b), f16(&b[2..]));
            let q = &b[4..];
            out.extend(q.iter().map(|x| (x & 0xF) as f32 * d + m));
            out.extend(q.iter().map(|x| (x >> 4) as f32 * d + m));
        }),
        // Q8_0: scale d, 32 signed bytes.
        8 => blocks.for_each(|b| {
            let d = f16(b);
            out.extend(b[2..].iter().map(|&x| x as i8 as f32 * d));
        }),
        k => blocks.for_each(|b| super::kquants::block(k, b, &mut out)),
    }
    Ok(out)
}

/// Values in a tensor of ggml dims `dims`, or `None` when the product overflows.
fn elements(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// Bytes a tensor of `n` values of type `kind` takes (`None`: unknown type, or not whole blocks).
fn data_size(kind: u32, n: usize) -> Option<usize> {
    let (bytes, len) = block_layout(kind)?;
    (n % len == 0).then(|| n / len * bytes)
}

/// Every tensor's bytes must lie inside the data section, start aligned, and fill the space up
/// to the next tensor (llama.cpp packs them): a tensor whose declared type does not match the
/// bytes it was given (a Q8_0 header over F32 data, say) is refused instead of read as noise.
fn check_extents(tensors: &HashMap<String, TensorInfo>, data_len: usize, align: usize) -> Result<()> {
    let mut spans = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let n = elements(&t.dims).ok_or_else(|| format_err(format!("GGUF tensor {name:?}: its shape overflows")))?;
        // Unknown types (K-quants, ...) are refused when read; only their start can be checked here.
        let size = data_size(t.kind, n);
        if block_layout(t.kind).is_some() && size.is_none() {
            return Err(format_err(format!(
                "GGUF tensor {name:?}: {n} values are not whole blocks of its type {}",
                t.kind
            )));
        }
        if t.offset % align != 0 {
            return Err(format_err(format!(
                "GGUF tensor {name:?} starts at offset {}, not aligned to {align}",
                t.offset
            )));
        }
        spans.push((t.offset, size, name));
    }
    spans.sort();
    for (i, (offset, size, name)) in spans.iter().enumerate() {
        let Some(size) = size else { continue };
        let end = offset.checked_add(*size).filter(|&e| e <= data_len).ok_or_else(|| {
            format_err(format!(
                "GGUF tensor {name:?} ({size} bytes at offset {offset}) lies outside the file's {data_len} bytes of \
                 tensor data: the file is truncated (re-download it) or its header is corrupt"
            ))
        })?;
        let room = spans.get(i + 1).map_or(data_len, |next| next.0);
        if room < end || room - end >= align.max(1) && i + 1 < spans.len() {
            return Err(format_err(format!(
                "GGUF tensor {name:?}: its type and shape need {size} bytes but the file gives it {}: the declared \
                 type does not match the data (corrupt header)",
                room - offset
            )));
        }
    }
    Ok(())
}

impl<'a> Gguf<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        if bytes.len() < 4 || &bytes[..4] != MAGIC {
            return Err(format_err("not a GGUF file (it does not start with \"GGUF\")"));
        }
        let mut r = Reader::new(&bytes[4..], "the GGUF file");
        let version = r.u32()?;
        if !(2..=3).contains(&version) {
            return Err(format_err(format!("GGUF version {version} is not supported (2 and 3 are)")));
        }
        let n_tensors = r.len()?;
        let n_kv = r.len()?;
        let mut meta = HashMap::new();
        for _ in 0..n_kv {
            let key = r.string()?;
            let ty = r.u32()?;
            meta.insert(key, r.value(ty)?);
        }
        let mut tensors = HashMap::new();
        for _ in 0..n_tensors {
            let name = r.string()?;
            let nd = r.u32()? as usize;
            if nd > 4 {
                return Err(format_err(format!("GGUF tensor {name:?} has {nd} dimensions (at most 4)")));
            }
            let dims = (0..nd).map(|_| r.u64().map(|d| d as usize)).collect::<Result<Vec<_>>>()?;
            let kind = r.u32()?;
            let offset = r.u64()? as usize;
            if tensors.insert(name.clone(), TensorInfo { dims, kind, offset }).is_some() {
                return Err(format_err(format!("GGUF tensor {name:?} is listed twice")));
            }
        }
        let align = match meta.get("general.alignment") {
            Some(Meta::Num(a)) if *a >= 1.0 && *a <= 65536.0 && (*a as usize).is_power_of_two() => *a as usize,
            Some(other) => {
                return Err(format_err(format!("GGUF general.alignment {other:?} is not a power of two up to 65536")));
            }
            None => 32,
        };
        let start = (4 + r.pos()).div_ceil(align) * align;
        let data = bytes.get(start..).ok_or_else(|| format_err("GGUF: the file ends before its tensor data"))?;
        check_extents(&tensors, data.len(), align)?;
        Ok(Self { meta, tensors, data, read: Default::default() })
    }

    fn num(&self, key: &str) -> Option<f64> {
        match self.meta.get(key) {
            Some(Meta::Num(v)) => Some(*v),
            _ => None,
        }
    }
    fn str(&self, key: &str) -> Option<&str> {
        match self.meta.get(key) {
            Some(Meta::Str(s)) => Some(s),
            _ => None,
        }
    }

    pub fn has_tensor(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Tensor `name` as f32, checked against the expected PyTorch-order shape.
    pub fn tensor(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let info = self.tensors.get(name).ok_or_else(|| format_err(format!("the GGUF file has no tensor {name}")))?;
        self.read.borrow_mut().insert(name.to_string());
        let torch_shape: Vec<usize> = info.dims.iter().rev().copied().collect();
        if torch_shape != shape {
            return Err(format_err(format!("GGUF tensor {name} has shape {torch_shape:?}, expected {shape:?}")));
        }
        let n = elements(shape).ok_or_else(|| format_err(format!("GGUF tensor {name}: its shape overflows")))?;
        // Unknown types fall through to dequantize, which names the type and what to do.
        let size = data_size(info.kind, n).unwrap_or(0);
        let bytes = info
            .offset
            .checked_add(size)
            .and_then(|end| self.data.get(info.offset..end))
            .ok_or_else(|| format_err(format!("GGUF tensor {name} lies outside the file (truncated download?)")))?;
        dequantize(info.kind, bytes, n)
    }

    pub fn tensor_opt(&self, name: &str, shape: &[usize]) -> Result<Option<Vec<f32>>> {
        if self.has_tensor(name) { self.tensor(name, shape).map(Some) } else { Ok(None) }
    }

    /// Refuse a file with tensors the model did not read (biases of an architecture that has
    /// none, say): computing without them would be silently wrong.
    fn check_all_read(&self) -> Result<()> {
        let read = self.read.borrow();
        let mut unused: Vec<&String> =
            self.tensors.keys().filter(|n| !read.contains(*n) && !n.ends_with("attn_rot_embd")).collect();
        unused.sort();
        if unused.is_empty() {
            return Ok(());
        }
        Err(format_err(format!(
            "the GGUF file has {} tensor(s) its architecture does not use ({}{}): they would be left out of the computation",
            unused.len(),
            unused.iter().take(4).map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
            if unused.len() > 4 { ", ..." } else { "" }
        )))
    }
}

/// Weights and tokenizer from a GGUF file.
pub fn load(bytes: &[u8]) -> Result<(ModelWeights, Tokenizer, String)> {
    let g = Gguf::parse(bytes)?;
    let arch = g.str("general.architecture").unwrap_or("").to_string();
    if arch == "gpt2" {
        let weights = load_gpt2(&g)?;
        let name = g.str("general.name").unwrap_or("gguf model").to_string();
        return Ok((weights, tokenizer(&g)?, name));
    }
    if !["llama", "qwen2", "qwen3", "gemma3"].contains(&arch.as_str()) {
        return Err(format_err(format!(
            "GGUF architecture {arch:?} is not supported; KTO Studio runs llama (Llama 2/3.x, SmolLM, TinyLlama), qwen2, \
             qwen3, gemma3 and gpt2 GGUF files"
        )));
    }
    let key = |k: &str| format!("{arch}.{k}");
    // `as usize` saturates (negative and NaN become 0), and ModelConfig::validate bounds the rest.
    let need = |k: &str| {
        g.num(&key(k)).map(|v| v as usize).ok_or_else(|| format_err(format!("GGUF metadata has no {}", key(k))))
    };
    let dim = need("embedding_length")?;
    let n_heads = need("attention.head_count")?;
    let vocab = match g.meta.get("tokenizer.ggml.tokens") {
        Some(Meta::Strs(t)) => t.len(),
        _ => return Err(format_err("the GGUF file has no embedded tokenizer (tokenizer.ggml.tokens)")),
    };
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
    let weights = ModelWeights {
        tok_emb: g.tensor("token_embd.weight", &[vocab, d])?,
        pos_emb: None,
        layers,
        norm: g.tensor("output_norm.weight", &[d])?,
        norm_bias: None,
        lm_head,
        config: c,
    };
    g.check_all_read()?;
    weights.validate()?;
    let name = g.str("general.name").unwrap_or("gguf model").to_string();
    Ok((weights, tokenizer(&g)?, name))
}

/// GPT-2 as llama.cpp's converter writes it: Conv1D weights transposed to `[out, in]`, the fused
/// `attn_qkv` (q | k | v rows), learned positions, LayerNorms with biases.
fn load_gpt2(g: &Gguf) -> Result<ModelWeights> {
    let need = |k: &str| {
        g.num(&format!("gpt2.{k}"))
            .map(|v| v as usize)
            .ok_or_else(|| format_err(format!("GGUF metadata has no gpt2.{k}")))
    };
    let vocab = match g.meta.get("tokenizer.ggml.tokens") {
        Some(Meta::Strs(t)) => t.len(),
        _ => return Err(format_err("the GGUF file has no embedded tokenizer (tokenizer.ggml.tokens)")),
    };
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
    let weights = ModelWeights {
        tok_emb: g.tensor("token_embd.weight", &[vocab, d])?,
        pos_emb: Some(g.tensor("position_embd.weight", &[c.max_seq_len, d])?),
        layers,
        norm: g.tensor("output_norm.weight", &[d])?,
        norm_bias: Some(g.tensor("output_norm.bias", &[d])?),
        lm_head,
        config: c,
    };
    g.check_all_read()?;
    weights.validate()?;
    Ok(weights)
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
