//! LoRA: a frozen base projection plus a trainable low-rank update `dropout(x) · A · B · alpha/r`.
//!
//! Written here rather than with burn's `apply_lora` because KTO needs two things that one lacks:
//! the reference model is the *same* base weights with the adapters switched off (so no second copy
//! of the model lives in memory), and PEFT's `lora_dropout` on the adapter input. The update is
//! applied to activations, never materialised as a dense weight, so training memory stays small.

use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::tensor::{Device, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::fused;
use super::transformer::Model;
use super::weights::{Arch, transpose};
use crate::Result;
use crate::error::config_err;

/// The projections LoRA can adapt, named as PEFT names them in Llama-family checkpoints.
pub const TARGETS: [&str; 7] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];
/// GPT-2's, as PEFT module-name suffixes (both `c_proj` are told apart by their parent).
pub const GPT2_TARGETS: [&str; 4] = ["c_attn", "attn.c_proj", "c_fc", "mlp.c_proj"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoraConfig {
    pub rank: usize,
    pub alpha: f64,
    /// PEFT's `lora_dropout`, on the adapter input while training. (TRL's `disable_dropout`,
    /// on by default, sets it to 0; so does our TRL-parity setting.)
    pub dropout: f64,
    /// Any of `q k v o gate up down` (or PEFT's `q_proj` ... `down_proj`); for GPT-2 also its own
    /// `c_attn c_proj c_fc` (the Llama names map onto them: q/k/v → c_attn, o → attn.c_proj,
    /// up → c_fc, down → mlp.c_proj; gate has no GPT-2 counterpart).
    pub targets: Vec<String>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self { rank: 8, alpha: 16.0, dropout: 0.0, targets: TARGETS.iter().map(|t| t.to_string()).collect() }
    }
}

impl LoraConfig {
    /// The projections adapted in a model of `arch`, named as `Model::projs` (and PEFT) names
    /// them, in the model's order, validated.
    pub fn modules(&self, arch: Arch) -> Result<Vec<&'static str>> {
        if self.rank == 0 {
            return Err(config_err("LoRA rank must be at least 1"));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(config_err(format!("LoRA dropout must be in [0, 1), got {}", self.dropout)));
        }
        if self.targets.is_empty() {
            return Err(config_err("LoRA needs at least one target module (q k v o gate up down)"));
        }
        let mut chosen = Vec::new();
        for t in &self.targets {
            let t = t.trim();
            let llama = TARGETS.iter().copied().find(|full| *full == t || full.strip_suffix("_proj") == Some(t));
            let found: Vec<&'static str> = match (arch, llama) {
                (Arch::Gpt2, _) => match t {
                    "c_attn" | "q" | "k" | "v" | "q_proj" | "k_proj" | "v_proj" => vec!["c_attn"],
                    "c_proj" => vec!["attn.c_proj", "mlp.c_proj"],
                    "attn.c_proj" | "o" | "o_proj" => vec!["attn.c_proj"],
                    "c_fc" | "up" | "up_proj" => vec!["c_fc"],
                    "mlp.c_proj" | "down" | "down_proj" => vec!["mlp.c_proj"],
                    "gate" | "gate_proj" => vec![],
                    _ => {
                        return Err(config_err(format!(
                            "unknown LoRA target module {t:?} for GPT-2; use any of c_attn c_proj c_fc (or q k v o up down)"
                        )));
                    }
                },
                (_, Some(full)) => vec![full],
                (_, None) => {
                    return Err(config_err(format!(
                        "unknown LoRA target module {t:?}; use any of q k v o gate up down"
                    )));
                }
            };
            chosen.extend(found);
        }
        let all: &[&'static str] = if arch == Arch::Gpt2 { &GPT2_TARGETS } else { &TARGETS };
        let modules: Vec<&'static str> = all.iter().copied().filter(|m| chosen.contains(m)).collect();
        if modules.is_empty() {
            return Err(config_err("none of the LoRA target modules exists in this model (GPT-2 has no gate)"));
        }
        Ok(modules)
    }
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }
}

#[derive(Module, Debug)]
pub struct Adapter {
    /// `[in, r]` (PEFT's `lora_A.weight` transposed)
    pub a: Param<Tensor<2>>,
    /// `[r, out]` (PEFT's `lora_B.weight` transposed)
    pub b: Param<Tensor<2>>,
    pub scale: f64,
    pub dropout: Dropout,
}

/// A linear projection that may carry a LoRA adapter.
#[derive(Module, Debug)]
pub struct Proj {
    pub base: Linear,
    pub lora: Option<Adapter>,
}

impl Proj {
    pub fn new(base: Linear) -> Self {
        Self { base, lora: None }
    }

    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let y = fused::project(&self.base, x.clone());
        match &self.lora {
            None => y,
            Some(l) => {
                // The scale rides on the [r, out] matrix, not on the [B, T, out] product.
                let h = fused::linear(l.dropout.forward(x), l.a.val());
                y + fused::linear(h, l.b.val().mul_scalar(l.scale))
            }
        }
    }

    /// `[in, out]` dims of the base weight.
    pub fn dims(&self) -> [usize; 2] {
        self.base.weight.dims()
    }

    /// Attach a fresh adapter as PEFT initialises one: A Kaiming-uniform (bound `1/sqrt(in)`),
    /// B zero, so the model is unchanged until the first step.
    pub fn with_adapter(self, cfg: &LoraConfig, rng: &mut StdRng, device: &Device) -> Self {
        let [d_in, d_out] = self.dims();
        let bound = 1.0 / (d_in as f64).sqrt();
        let a: Vec<f32> = (0..d_in * cfg.rank).map(|_| rng.random_range(-bound..bound) as f32).collect();
        self.with_factors(a, vec![0.0; cfg.rank * d_out], cfg, device)
    }

    /// Attach an adapter from factors `a: [in, r]`, `b: [r, out]` (row-major).
    pub fn with_factors(self, a: Vec<f32>, b: Vec<f32>, cfg: &LoraConfig, device: &Device) -> Self {
        let [d_in, d_out] = self.dims();
        let r = cfg.rank;
        let adapter = Adapter {
            a: Param::from_data(TensorData::new(a, [d_in, r]), device),
            b: Param::from_data(TensorData::new(b, [r, d_out]), device),
            scale: cfg.scale(),
            dropout: DropoutConfig::new(cfg.dropout).init(),
        };
        Self { base: self.base, lora: Some(adapter) }
    }

    /// The same base with the adapter switched off (tensors shared, nothing copied).
    pub fn without_adapter(&self) -> Self {
        Self { base: self.base.clone(), lora: None }
    }

    /// Fold the adapter into the base weight: `W + scale · A·B`.
    pub fn merged(&self) -> Self {
        match &self.lora {
            None => self.without_adapter(),
            Some(l) => {
                let delta = l.a.val().matmul(l.b.val()).mul_scalar(l.scale);
                let weight = Param::from_tensor(self.base.weight.val() + delta);
                Self::new(Linear { weight, bias: self.base.bias.clone() })
            }
        }
    }
}

/// Seeded generator for adapter initialisation (reproducible runs).
pub fn init_rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed ^ 0x10ba_5eed)
}

/// One adapter on the host, PEFT's layout: `a: [r, in]` (lora_A), `b: [out, r]` (lora_B).
#[derive(Debug, Clone, PartialEq)]
pub struct HostAdapter {
    pub layer: usize,
    /// PEFT module name: `q_proj` ... `down_proj`; GPT-2: `c_attn`, `attn.c_proj`, `c_fc`, `mlp.c_proj`
    pub target: String,
    pub rank: usize,
    pub d_in: usize,
    pub d_out: usize,
    pub a: Vec<f32>,
    pub b: Vec<f32>,
}

impl Model {
    /// Freeze every base weight and attach fresh adapters to the targeted projections (GPT-2's
    /// fused `c_attn` gets one adapter over q, k and v, as PEFT gives it).
    pub fn with_lora(self, cfg: &LoraConfig, seed: u64, device: &Device) -> Result<Self> {
        let targets = cfg.modules(self.config().arch)?;
        let mut rng = init_rng(seed);
        Ok(self
            .no_grad()
            .map_projs(|_, name, p| if targets.contains(&name) { p.with_adapter(cfg, &mut rng, device) } else { p }))
    }

    /// Attach adapters read from a file (PEFT layout) to a frozen copy of this model.
    pub fn with_adapters(self, cfg: &LoraConfig, adapters: &[HostAdapter], device: &Device) -> Result<Self> {
        let mut model = self.no_grad();
        let dims: std::collections::HashMap<(usize, &str), [usize; 2]> =
            model.projs().into_iter().map(|(i, n, p)| ((i, n), p.dims())).collect();
        for h in adapters {
            let Some(&[d_in, d_out]) = dims.get(&(h.layer, h.target.as_str())) else {
                return Err(config_err(format!(
                    "the adapter targets layers.{}.{}, which this model does not have",
                    h.layer, h.target
                )));
            };
            if (h.d_in, h.d_out, h.rank) != (d_in, d_out, cfg.rank) {
                return Err(config_err(format!(
                    "the adapter for layers.{}.{} is {}x{} with rank {}, but the model's projection is {}x{} (rank {} configured): \
                     it was trained on a different model",
                    h.layer, h.target, h.d_out, h.d_in, h.rank, d_out, d_in, cfg.rank
                )));
            }
        }
        let mut left: Vec<&HostAdapter> = adapters.iter().collect();
        model = model.map_projs(|i, name, p| match left.iter().position(|h| h.layer == i && h.target == name) {
            Some(k) => {
                let h = left.swap_remove(k);
                p.with_factors(transpose(&h.a, h.rank, h.d_in), transpose(&h.b, h.d_out, h.rank), cfg, device)
            }
            None => p,
        });
        Ok(model)
    }

    /// The same base weights with every adapter off: the KTO reference of a LoRA run. Tensors are
    /// shared with `self`, so this costs no memory.
    pub fn without_adapters(&self) -> Self {
        self.clone().map_projs(|_, _, p| p.without_adapter())
    }

    pub fn has_adapters(&self) -> bool {
        self.projs().iter().any(|(_, _, p)| p.lora.is_some())
    }

    /// Number of trainable adapter values.
    pub fn adapter_params(&self) -> usize {
        self.projs()
            .iter()
            .filter_map(|(_, _, p)| {
                p.lora.as_ref().map(|l| l.a.val().shape().num_elements() + l.b.val().shape().num_elements())
            })
            .sum()
    }

    /// The adapters on the host in PEFT's layout.
    pub async fn adapters(&self) -> Result<Vec<HostAdapter>> {
        let mut out = Vec::new();
        for (layer, target, p) in self.projs() {
            if let Some(l) = &p.lora {
                let [d_in, rank] = l.a.val().dims();
                let d_out = l.b.val().dims()[1];
                let a = crate::device::read_f32(l.a.val()).await?;
                let b = crate::device::read_f32(l.b.val()).await?;
                out.push(HostAdapter {
                    layer,
                    target: target.to_string(),
                    rank,
                    d_in,
                    d_out,
                    a: transpose(&a, d_in, rank),
                    b: transpose(&b, rank, d_out),
                });
            }
        }
        Ok(out)
    }
}
