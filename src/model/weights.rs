use serde::{Deserialize, Serialize};

use crate::Result;
use crate::error::format_err;

/// How RoPE pairs the dimensions of a head. llama2.c and GGUF store Q/K for adjacent pairs
/// `(2i, 2i+1)`; Hugging Face checkpoints use "rotate half" pairs `(i, i + h/2)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum RopeLayout {
    Adjacent,
    #[default]
    RotateHalf,
}

/// How RoPE's frequencies are stretched for long contexts (Hugging Face `rope_parameters`):
/// `linear` divides every frequency by `factor`; `llama3` (Llama 3.1/3.2) divides only the low
/// frequencies, leaves the high ones, and blends in between.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rope_type", rename_all = "lowercase")]
pub enum RopeScaling {
    Linear { factor: f64 },
    Llama3 { factor: f64, low_freq_factor: f64, high_freq_factor: f64, original_max_position_embeddings: f64 },
}

impl RopeScaling {
    /// The scaled inverse frequency (transformers' `_compute_llama3_parameters` / linear).
    pub fn apply(&self, inv_freq: f64) -> f64 {
        match *self {
            Self::Linear { factor } => inv_freq / factor,
            Self::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings: old } => {
                let wavelen = 2.0 * std::f64::consts::PI / inv_freq;
                let (low_wavelen, high_wavelen) = (old / low_freq_factor, old / high_freq_factor);
                if wavelen < high_wavelen {
                    inv_freq
                } else if wavelen > low_wavelen {
                    inv_freq / factor
                } else {
                    let smooth = (old / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                    (1.0 - smooth) * inv_freq / factor + smooth * inv_freq
                }
            }
        }
    }
}

/// The decoder families the engine runs. Both are the same pre-norm transformer; they differ in
/// norm (RMSNorm vs LayerNorm with bias), positions (RoPE vs learned), and MLP (SwiGLU vs GELU).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// Llama, SmolLM/SmolLM2, TinyLlama, Qwen2 (with `qkv_bias`), llama2.c.
    #[default]
    Llama,
    /// GPT-2: learned positions, LayerNorm with bias, gelu_new, biases everywhere.
    Gpt2,
    /// Gemma 3 text: the Llama skeleton with embeddings scaled by √hidden, a GeGLU (tanh) MLP,
    /// q/k norms, a norm after attention and after the MLP too ("sandwich"), and sliding-window
    /// attention on most layers. Its RMSNorm multiplies by `1 + w`: the loaders store `1 + w`
    /// (as llama.cpp's GGUF files do), so the forward pass is a plain RMSNorm.
    Gemma3,
}

/// Sliding-window attention (Gemma 3): on the layers marked `true`, a query sees only the last
/// `window` positions (itself included), with RoPE of base `rope_theta` and no scaling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlidingWindow {
    pub window: usize,
    pub rope_theta: f64,
    pub layers: Vec<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ModelConfig {
    #[serde(default)]
    pub arch: Arch,
    pub dim: usize,
    pub hidden_dim: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub vocab_size: usize,
    pub max_seq_len: usize,
    pub norm_eps: f64,
    pub rope_theta: f64,
    pub rope_layout: RopeLayout,
    pub tied_embeddings: bool,
    /// Biases on the q/k/v projections (Qwen2).
    #[serde(default)]
    pub qkv_bias: bool,
    /// A bias on the attention output projection too (Llama's `attention_bias`; Qwen2 has
    /// q/k/v biases only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub o_bias: bool,
    /// Per-head size when it is not `dim / n_heads` (Hugging Face `head_dim`); `None` = derived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_scaling: Option<RopeScaling>,
    /// Qwen3: an RMSNorm over each head's queries and keys (weights `[head_dim]`) before RoPE.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub qk_norm: bool,
    /// llama.cpp's `rope_freqs` tensor (Llama 3.x GGUF files): each pair's frequency is divided
    /// by its factor. Another spelling of `rope_scaling` (never both).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_freq_factors: Option<Vec<f32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sliding: Option<SlidingWindow>,
    /// Gemma: attention scores scale by `query_pre_attn_scalar^-1/2` instead of `head_dim^-1/2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_pre_attn_scalar: Option<f64>,
    /// `cap · tanh(logit / cap)` on the final logits, where set. (Gemma 3's config also has
    /// `attn_logit_softcapping`, which transformers' and llama.cpp's Gemma 3 never apply.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_logit_softcapping: Option<f64>,
}

/// Bounds no real small-to-mid model comes near; they turn a garbage header into an error before
/// anything is allocated (a layer count of 2^31 must not reach `Vec::with_capacity`).
const MAX_DIM: usize = 1 << 16;
const MAX_LAYERS: usize = 1024;
const MAX_VOCAB: usize = 1 << 22;
const MAX_SEQ: usize = 1 << 24;
const MAX_HEADS: usize = 1024;

impl ModelConfig {
    pub fn head_dim(&self) -> usize {
        self.head_dim.unwrap_or(self.dim / self.n_heads.max(1))
    }
    /// RoPE's inverse frequency of each of the head's `head_dim / 2` pairs, scaling applied.
    pub fn rope_freqs(&self) -> Vec<f64> {
        let hd = self.head_dim() as f64;
        (0..self.head_dim() / 2)
            .map(|j| {
                let f = 1.0 / self.rope_theta.powf((2 * j) as f64 / hd);
                let f = self.rope_scaling.map_or(f, |s| s.apply(f));
                match &self.rope_freq_factors {
                    Some(div) => f / div[j] as f64,
                    None => f,
                }
            })
            .collect()
    }
    /// The frequencies of the sliding-window layers' RoPE (their own base, never scaled).
    pub fn local_rope_freqs(&self) -> Option<Vec<f64>> {
        let s = self.sliding.as_ref()?;
        let hd = self.head_dim() as f64;
        Some((0..self.head_dim() / 2).map(|j| 1.0 / s.rope_theta.powf((2 * j) as f64 / hd)).collect())
    }
    /// Whether layer `i` attends through the sliding window.
    pub fn is_sliding(&self, i: usize) -> bool {
        self.sliding.as_ref().is_some_and(|s| s.layers.get(i).copied().unwrap_or(false))
    }
    /// The attention's score scale.
    pub fn attn_scale(&self) -> f64 {
        1.0 / self.query_pre_attn_scalar.unwrap_or(self.head_dim() as f64).sqrt()
    }
    /// `(in, out)` of the projection PEFT calls `name` (see `LoraConfig::modules`).
    pub fn proj_dims(&self, name: &str) -> Option<(usize, usize)> {
        let (d, h, q, kv) = (self.dim, self.hidden_dim, self.q_dim(), self.kv_dim());
        Some(match name {
            "q_proj" => (d, q),
            "o_proj" => (q, d),
            "k_proj" | "v_proj" => (d, kv),
            "gate_proj" | "up_proj" | "c_fc" => (d, h),
            "down_proj" | "mlp.c_proj" => (h, d),
            "c_attn" => (d, q + 2 * kv),
            "attn.c_proj" => (q, d),
            _ => return None,
        })
    }
    /// The family as people call it (shown with a model): Llama, Qwen2, Qwen3, Gemma 3, GPT-2.
    pub fn family(&self) -> &'static str {
        match self.arch {
            Arch::Gpt2 => "GPT-2",
            Arch::Gemma3 => "Gemma 3",
            Arch::Llama if self.qk_norm => "Qwen3",
            Arch::Llama if self.qkv_bias && !self.o_bias => "Qwen2",
            Arch::Llama => "Llama",
        }
    }
    /// The MLP has a gate (SwiGLU / GeGLU): every family but GPT-2.
    pub fn gated(&self) -> bool {
        self.arch != Arch::Gpt2
    }
    /// Width of the attention's query side (`n_heads * head_dim`; equals `dim` unless `head_dim` is set).
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim()
    }
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim()
    }
    /// Number of parameters (a tied embedding counted once).
    pub fn num_params(&self) -> usize {
        // Counted in u128, so that no header, however wrong, can overflow the sum.
        let n = |x: usize| x as u128;
        let (d, h, q, kv, v) = (n(self.dim), n(self.hidden_dim), n(self.q_dim()), n(self.kv_dim()), n(self.vocab_size));
        let hd = n(self.head_dim());
        let (per_layer, extra) = match self.arch {
            Arch::Llama | Arch::Gemma3 => (
                2 * d
                    + if self.arch == Arch::Gemma3 { 2 * d } else { 0 }
                    + if self.qk_norm { 2 * hd } else { 0 }
                    + 2 * q * d
                    + 2 * kv * d
                    + 3 * h * d
                    + if self.qkv_bias { q + 2 * kv } else { 0 }
                    + if self.o_bias { d } else { 0 },
                d,
            ),
            // LayerNorm weight+bias twice, biases on q,k,v,o and both MLP layers; positions; ln_f.
            Arch::Gpt2 => (4 * d + 4 * d * d + 4 * d + 2 * h * d + h + d, n(self.max_seq_len) * d + 2 * d),
        };
        (v * d + n(self.n_layers) * per_layer + extra + if self.tied_embeddings { 0 } else { v * d }) as usize
    }

    /// Check the shapes against each other before any loader allocates or computes: zero or
    /// huge sizes, heads that do not divide, odd head sizes (RoPE rotates pairs), KV heads that
    /// do not group the query heads. Every loader calls this right after reading its header.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(format_err(format!("invalid model configuration: {msg}")));
        for (name, v, max) in [
            ("hidden size", self.dim, MAX_DIM),
            ("intermediate size", self.hidden_dim, MAX_DIM * 16),
            ("layer count", self.n_layers, MAX_LAYERS),
            ("attention heads", self.n_heads, MAX_HEADS),
            ("key/value heads", self.n_kv_heads, MAX_HEADS),
            ("vocabulary size", self.vocab_size, MAX_VOCAB),
            ("context length", self.max_seq_len, MAX_SEQ),
        ] {
            if v == 0 || v > max {
                return bad(format!("{name} = {v} is outside 1..={max}"));
            }
        }
        if let Some(hd) = self.head_dim {
            if hd == 0 || hd > MAX_DIM {
                return bad(format!("head_dim = {hd} is outside 1..={MAX_DIM}"));
            }
            if self.arch == Arch::Gpt2 && hd * self.n_heads != self.dim {
                return bad(format!("GPT-2 needs head_dim x heads = hidden size, got {hd} x {}", self.n_heads));
            }
        } else if !self.dim.is_multiple_of(self.n_heads) {
            return bad(format!("hidden size {} is not divisible by {} attention heads", self.dim, self.n_heads));
        }
        if !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return bad(format!(
                "{} attention heads cannot be shared by {} key/value heads (it must divide them)",
                self.n_heads, self.n_kv_heads
            ));
        }
        if self.arch != Arch::Gpt2 && !self.head_dim().is_multiple_of(2) {
            return bad(format!("head size {} is odd; RoPE rotates pairs of dimensions", self.head_dim()));
        }
        if !(self.norm_eps.is_finite() && self.norm_eps >= 0.0) {
            return bad(format!("norm epsilon {} is not a finite number >= 0", self.norm_eps));
        }
        if self.arch != Arch::Gpt2 && !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            return bad(format!("rope_theta {} is not a finite number > 0", self.rope_theta));
        }
        if let Some(f) = &self.rope_freq_factors
            && (f.len() != self.head_dim() / 2 || f.iter().any(|x| !(x.is_finite() && *x > 0.0)))
        {
            return bad(format!(
                "rope_freqs has {} factors (need {} finite numbers > 0, one per rotated pair)",
                f.len(),
                self.head_dim() / 2
            ));
        }
        if let Some(s) = &self.sliding
            && (s.window == 0 || s.layers.len() != self.n_layers || !(s.rope_theta.is_finite() && s.rope_theta > 0.0))
        {
            return bad(format!(
                "sliding window {} over {} layer types (model has {} layers), local rope_theta {}: \
                     need a window >= 1, one type per layer and a finite base > 0",
                s.window,
                s.layers.len(),
                self.n_layers,
                s.rope_theta
            ));
        }
        for (name, v) in [
            ("query_pre_attn_scalar", self.query_pre_attn_scalar),
            ("final_logit_softcapping", self.final_logit_softcapping),
        ] {
            if v.is_some_and(|x| !(x.is_finite() && x > 0.0)) {
                return bad(format!("{name} = {} is not a finite number > 0", v.unwrap()));
            }
        }
        Ok(())
    }
}

/// One transformer block's weights, Linear weights as `[out, in]` row-major. Biases are `None`
/// where the architecture has none.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LayerWeights {
    pub attn_norm: Vec<f32>,
    pub attn_norm_bias: Option<Vec<f32>>,
    pub wq: Vec<f32>,
    pub wk: Vec<f32>,
    pub wv: Vec<f32>,
    pub wo: Vec<f32>,
    pub bq: Option<Vec<f32>>,
    pub bk: Option<Vec<f32>>,
    pub bv: Option<Vec<f32>>,
    pub bo: Option<Vec<f32>>,
    pub ffn_norm: Vec<f32>,
    pub ffn_norm_bias: Option<Vec<f32>>,
    /// gate (empty for GPT-2, whose MLP has none)
    pub w1: Vec<f32>,
    /// down (GPT-2: `mlp.c_proj`)
    pub w2: Vec<f32>,
    /// up (GPT-2: `mlp.c_fc`)
    pub w3: Vec<f32>,
    pub b2: Option<Vec<f32>>,
    pub b3: Option<Vec<f32>>,
    /// Qwen3's per-head query and key norms (`[head_dim]`), with `ModelConfig::qk_norm`.
    pub q_norm: Option<Vec<f32>>,
    pub k_norm: Option<Vec<f32>>,
    /// Gemma 3's norms on the attention output and on the MLP output (`[dim]`).
    pub post_attn_norm: Option<Vec<f32>>,
    pub post_ffn_norm: Option<Vec<f32>>,
}

impl LayerWeights {
    /// Set q, k and v (and their biases) from a fused `[q | k | v]` projection: `w` `[3d, d]`
    /// row-major, `b` `[3d]` (GPT-2's `c_attn`, llama.cpp's `attn_qkv`).
    pub fn set_fused_qkv(&mut self, w: &[f32], b: &[f32], d: usize) {
        self.wq = w[..d * d].to_vec();
        self.wk = w[d * d..2 * d * d].to_vec();
        self.wv = w[2 * d * d..].to_vec();
        self.bq = Some(b[..d].to_vec());
        self.bk = Some(b[d..2 * d].to_vec());
        self.bv = Some(b[2 * d..].to_vec());
    }

    /// The arrays in llama2.c's file order (each stored for all layers before the next).
    pub fn arrays(&self) -> [&[f32]; 9] {
        [&self.attn_norm, &self.wq, &self.wk, &self.wv, &self.wo, &self.ffn_norm, &self.w1, &self.w2, &self.w3]
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelWeights {
    pub config: ModelConfig,
    /// `[vocab, dim]`
    pub tok_emb: Vec<f32>,
    /// Learned positions `[max_seq_len, dim]` (GPT-2).
    pub pos_emb: Option<Vec<f32>>,
    pub layers: Vec<LayerWeights>,
    pub norm: Vec<f32>,
    pub norm_bias: Option<Vec<f32>>,
    /// `[vocab, dim]`; `None` when tied to `tok_emb`.
    pub lm_head: Option<Vec<f32>>,
}

impl ModelWeights {
    /// Check every array has the size the config implies (loaders call this; a mismatch would
    /// otherwise surface as a shape panic deep inside a forward pass).
    pub fn validate(&self) -> Result<()> {
        let c = &self.config;
        c.validate()?;
        let (d, h, q, kv, v) = (c.dim, c.hidden_dim, c.q_dim(), c.kv_dim(), c.vocab_size);
        let check = |name: String, got: usize, want: usize| -> Result<()> {
            if got == want {
                Ok(())
            } else {
                Err(format_err(format!(
                    "tensor {name} has {got} values, expected {want} for this model's configuration"
                )))
            }
        };
        check("token embedding".into(), self.tok_emb.len(), v * d)?;
        check("final norm".into(), self.norm.len(), d)?;
        let gpt2 = c.arch == Arch::Gpt2;
        let opt = |name: String, got: &Option<Vec<f32>>, want: usize, required: bool| -> Result<()> {
            match got {
                Some(v) => check(name, v.len(), want),
                None if required => Err(format_err(format!("tensor {name} is missing"))),
                None => Ok(()),
            }
        };
        opt("final norm bias".into(), &self.norm_bias, d, gpt2)?;
        opt("position embedding".into(), &self.pos_emb, c.max_seq_len * d, gpt2)?;
        if self.layers.len() != c.n_layers {
            return Err(format_err(format!("{} layers present, config says {}", self.layers.len(), c.n_layers)));
        }
        for (i, l) in self.layers.iter().enumerate() {
            for (name, got, want) in [
                ("attn_norm", l.attn_norm.len(), d),
                ("wq", l.wq.len(), q * d),
                ("wk", l.wk.len(), kv * d),
                ("wv", l.wv.len(), kv * d),
                ("wo", l.wo.len(), d * q),
                ("ffn_norm", l.ffn_norm.len(), d),
                ("w1", l.w1.len(), if c.gated() { h * d } else { 0 }),
                ("w2", l.w2.len(), d * h),
                ("w3", l.w3.len(), h * d),
            ] {
                check(format!("layers.{i}.{name}"), got, want)?;
            }
            for (name, got, want, required) in [
                ("attn_norm_bias", &l.attn_norm_bias, d, gpt2),
                ("ffn_norm_bias", &l.ffn_norm_bias, d, gpt2),
                ("bq", &l.bq, q, gpt2 || c.qkv_bias),
                ("bk", &l.bk, kv, gpt2 || c.qkv_bias),
                ("bv", &l.bv, kv, gpt2 || c.qkv_bias),
                ("bo", &l.bo, d, gpt2 || c.o_bias),
                ("b2", &l.b2, d, gpt2),
                ("b3", &l.b3, h, gpt2),
                ("q_norm", &l.q_norm, self.config.head_dim(), c.qk_norm),
                ("k_norm", &l.k_norm, self.config.head_dim(), c.qk_norm),
                ("post_attn_norm", &l.post_attn_norm, d, c.arch == Arch::Gemma3),
                ("post_ffn_norm", &l.post_ffn_norm, d, c.arch == Arch::Gemma3),
            ] {
                opt(format!("layers.{i}.{name}"), got, want, required)?;
            }
        }
        match (&self.lm_head, c.tied_embeddings) {
            (Some(head), false) => check("lm_head".into(), head.len(), v * d),
            (None, true) => Ok(()),
            _ => Err(format_err("the classifier does not match tie_word_embeddings")),
        }
    }
}

/// Transpose a row-major `[rows, cols]` matrix (checkpoints store Linear weights `[out, in]`,
/// burn `[in, out]`; PEFT's LoRA factors are the transposes of ours).
pub fn transpose(v: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0f32; v.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = v[r * cols + c];
        }
    }
    t
}
