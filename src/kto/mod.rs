//! KTO (Kahneman-Tversky Optimization) with TRL `KTOTrainer` conventions: data rows, batching,
//! the loss and its metrics, and the training loop.

pub mod batch;
pub mod data;
pub mod loss;
pub mod trainer;

pub use batch::{Collated, KtoBatch, KtoDataset, TokenizedRow};
pub use data::{parse_jsonl, to_jsonl, KtoExample};
pub use loss::{imbalance_advice, reference_point, KtoLossConfig, LossType, Metrics};
pub use trainer::{OptimizerKind, TrainConfig, Trainer};
