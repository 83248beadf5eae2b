//! The Llama-family model: host-side weights (what loaders produce and savers consume) and the
//! burn module that runs them.

mod llama;
mod weights;

pub use llama::{KvCache, Llama, token_ids};
pub use weights::{LayerWeights, LlamaConfig, LlamaWeights, RopeLayout};
