//! The decoder model: host-side weights (what loaders produce and savers consume), the burn
//! module that runs them, and LoRA adapters.

pub mod fused;
mod gemm;
mod lora;
#[cfg(all(target_arch = "wasm32", feature = "relaxed-simd"))]
mod madd;
mod par;
pub mod selfcheck;
mod transformer;
mod weights;

pub use fused::KERNELS;
pub use gemm::PRODUCTS;
pub use lora::{GPT2_TARGETS as GPT2_LORA_TARGETS, HostAdapter, LoraConfig, TARGETS as LORA_TARGETS};
pub use transformer::{KvCache, Model, token_ids};
pub use weights::{Arch, LayerWeights, ModelConfig, ModelWeights, RopeLayout, RopeScaling, SlidingWindow, transpose};
