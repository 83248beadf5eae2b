use serde::{Deserialize, Serialize};

use crate::Result;
use crate::error::format_err;

/// How RoPE pairs the dimensions of a head. llama2.c and GGUF store Q/K for adjacent pairs
/// `(2i, 2i+1)`; Hugging Face checkpoints use "rotate half" pairs `(i, i + h/2)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RopeLayout {
    Adjacent,
    RotateHalf,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
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
}

impl LlamaConfig {
    pub fn head_dim(&self) -> usize {
        self.dim / self.n_heads
    }
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim()
    }
    /// Number of parameters (a tied embedding counted once).
    pub fn num_params(&self) -> usize {
        let (d, h, kv, v) = (self.dim, self.hidden_dim, self.kv_dim(), self.vocab_size);
        let per_layer = 2 * d + 2 * d * d + 2 * kv * d + 3 * h * d;
        v * d + self.n_layers * per_layer + d + if self.tied_embeddings { 0 } else { v * d }
    }
}

/// One transformer block's weights, Linear weights as `[out, in]` row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerWeights {
    pub attn_norm: Vec<f32>,
    pub wq: Vec<f32>,
    pub wk: Vec<f32>,
    pub wv: Vec<f32>,
    pub wo: Vec<f32>,
    pub ffn_norm: Vec<f32>,
    /// gate
    pub w1: Vec<f32>,
    /// down
    pub w2: Vec<f32>,
    /// up
    pub w3: Vec<f32>,
}

impl LayerWeights {
    /// The arrays in llama2.c's file order (each stored for all layers before the next).
    pub fn arrays(&self) -> [&[f32]; 9] {
        [&self.attn_norm, &self.wq, &self.wk, &self.wv, &self.wo, &self.ffn_norm, &self.w1, &self.w2, &self.w3]
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LlamaWeights {
    pub config: LlamaConfig,
    /// `[vocab, dim]`
    pub tok_emb: Vec<f32>,
    pub layers: Vec<LayerWeights>,
    pub norm: Vec<f32>,
    /// `[vocab, dim]`; `None` when tied to `tok_emb`.
    pub lm_head: Option<Vec<f32>>,
}

impl LlamaWeights {
    /// Check every array has the size the config implies (loaders call this; a mismatch would
    /// otherwise surface as a shape panic deep inside a forward pass).
    pub fn validate(&self) -> Result<()> {
        let c = &self.config;
        let (d, h, kv, v) = (c.dim, c.hidden_dim, c.kv_dim(), c.vocab_size);
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
        if self.layers.len() != c.n_layers {
            return Err(format_err(format!("{} layers present, config says {}", self.layers.len(), c.n_layers)));
        }
        for (i, l) in self.layers.iter().enumerate() {
            for (name, got, want) in [
                ("attn_norm", l.attn_norm.len(), d),
                ("wq", l.wq.len(), d * d),
                ("wk", l.wk.len(), kv * d),
                ("wv", l.wv.len(), kv * d),
                ("wo", l.wo.len(), d * d),
                ("ffn_norm", l.ffn_norm.len(), d),
                ("w1", l.w1.len(), h * d),
                ("w2", l.w2.len(), d * h),
                ("w3", l.w3.len(), h * d),
            ] {
                check(format!("layers.{i}.{name}"), got, want)?;
            }
        }
        match (&self.lm_head, c.tied_embeddings) {
            (Some(head), false) => check("lm_head".into(), head.len(), v * d),
            (None, true) => Ok(()),
            _ => Err(format_err("the classifier does not match tie_word_embeddings")),
        }
    }
}
