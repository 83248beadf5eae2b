//! KTO (Kahneman-Tversky Optimization) with TRL `KTOTrainer` conventions: data rows, batching,
//! the loss and its metrics, and the training loop.

pub mod batch;
pub mod data;
pub mod loss;
pub mod trainer;

pub use batch::{Collated, KtoBatch, KtoDataset, TokenizedRow};
pub use data::{KtoExample, parse_jsonl, parse_jsonl_bytes, to_jsonl};
pub use loss::{KtoLossConfig, LossType, Metrics, imbalance_advice, reference_point};
pub use trainer::{OptimizerKind, TrainConfig, Trainer};
