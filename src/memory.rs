//! Training memory estimate, shown before a run and used to refuse one that cannot fit. It counts
//! what burn keeps alive at the peak of a step (f32 everywhere): weights, the reference (shared
//! with the policy under LoRA), gradients and optimizer state of what trains, the activations
//! autodiff saves for the backward pass, and the logits, which dominate for large vocabularies.

use serde::Serialize;

use crate::kto::{OptimizerKind, TrainConfig};
use crate::model::ModelConfig;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MemoryEstimate {
    pub weights: u64,
    /// A second copy for the reference model (0 with LoRA: the base is shared).
    pub reference: u64,
    pub trainable_params: u64,
    pub gradients: u64,
    pub optimizer: u64,
    pub activations: u64,
    pub total: u64,
    /// The largest single tensor (WebGPU caps one buffer binding, often at 128 MiB-2 GiB).
    pub largest_tensor: u64,
}

const F32: u64 = 4;

/// `seq_len`: the longest batch row the run will see (at most `max_length`).
pub fn estimate(c: &ModelConfig, cfg: &TrainConfig, seq_len: usize) -> MemoryEstimate {
    let params = c.num_params() as u64;
    let (d, h, v) = (c.dim as u64, c.hidden_dim as u64, c.vocab_size as u64);
    let trainable = match &cfg.lora {
        Some(l) => {
            let targets = l.modules(c.arch).unwrap_or_default();
            let r = l.rank as u64;
            let per_layer: u64 = targets.iter().filter_map(|t| c.proj_dims(t)).map(|(i, o)| r * (i + o) as u64).sum();
            per_layer * c.n_layers as u64
        }
        None => params,
    };
    let weights = params * F32 + if cfg.lora.is_some() { trainable * F32 } else { 0 };
    let reference = if cfg.lora.is_some() { 0 } else { params * F32 };
    let optimizer = match cfg.optimizer {
        OptimizerKind::Adamw => 2 * trainable * F32,
        OptimizerKind::Sgd => 0,
    };
    let bt = (cfg.batch_size * seq_len) as u64;
    let heads = c.n_heads as u64;
    let t = seq_len as u64;
    // Per layer: norms, q/k/v/o, rotated q/k, MLP in/out (~12 d-wide and 3 h-wide tensors per
    // token), attention scores and probabilities; then logits + log-softmax and their gradient.
    let per_layer = bt * (12 * d + 3 * h) + 2 * cfg.batch_size as u64 * heads * t * t;
    let logits = bt * v;
    let activations = (c.n_layers as u64 * per_layer + 3 * logits) * F32;
    let gradients = trainable * F32;
    MemoryEstimate {
        weights,
        reference,
        trainable_params: trainable,
        gradients,
        optimizer,
        activations,
        total: weights + reference + gradients + optimizer + activations,
        largest_tensor: (logits * F32).max(v * d * F32),
    }
}
