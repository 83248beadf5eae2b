//! KTO (Kahneman-Tversky Optimization) with TRL `KTOTrainer` conventions: data rows, batching,
//! the loss and its metrics, and the training loop.

pub mod batch;
pub mod config;
pub mod data;
mod grads;
pub mod loss;
pub mod settings;
pub mod trainer;

pub use batch::{KtoBatch, KtoDataset, TokenizedRow};
pub use config::{OptimizerKind, TrainConfig, chat_row};
pub use data::{Conversation, JsonlReport, KtoExample, parse_jsonl, parse_jsonl_bytes, parse_jsonl_report, to_jsonl};
pub use loss::{KtoLossConfig, LossType, Metrics, RowScore, imbalance_advice, reference_point};
pub use settings::{Setting, SettingKind, settings};
pub use trainer::{Control, RunEnd, StepReport, Trainer};
