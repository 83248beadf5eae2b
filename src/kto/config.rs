//! A training run's settings (`TrainConfig`, TRL `KTOConfig` names and defaults) and how they turn
//! rows into a dataset. The defaults written here are the only ones: the CLI's flags and the page's
//! form are derived from them (`settings.rs`).

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use super::batch::KtoDataset;
use super::data::KtoExample;
use super::loss::{KtoLossConfig, LossType};
use crate::Result;
use crate::error::config_err;
use crate::model::LoraConfig;
use crate::tokenizer::{Message, Tokenizer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    Adamw,
    Sgd,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    #[serde(flatten)]
    pub loss: KtoLossConfig,
    pub optimizer: OptimizerKind,
    pub learning_rate: f64,
    /// AdamW's decoupled weight decay (Hugging Face's default is 0).
    pub weight_decay: f64,
    /// Rows per microbatch: also the block inside which KL completions are rotated.
    pub batch_size: usize,
    pub grad_accum: usize,
    /// Clip the global gradient norm to this (Hugging Face's `max_grad_norm`); `None` = no clipping.
    pub max_grad_norm: Option<f64>,
    pub max_length: usize,
    pub steps: usize,
    /// Shuffle the rows once (seeded) before batching; TRL itself never shuffles.
    pub shuffle: bool,
    pub seed: u64,
    /// Train LoRA adapters on a frozen base (the reference is the base, adapters off); `None` =
    /// full fine-tuning.
    pub lora: Option<LoraConfig>,
    /// Wrap each row in the model's chat template (TRL's conversational format).
    pub chat: bool,
    /// Rows set aside after the shuffle and never trained on, to see whether what training
    /// learns carries over to rows it has not seen (0: none, as TRL without an eval dataset).
    pub holdout: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            loss: KtoLossConfig::default(),
            optimizer: OptimizerKind::Adamw,
            learning_rate: 1e-3,
            weight_decay: 0.0,
            batch_size: 8,
            grad_accum: 1,
            max_grad_norm: Some(1.0),
            max_length: 1024,
            steps: 30,
            shuffle: true,
            seed: 42,
            lora: None,
            chat: false,
            holdout: 0,
        }
    }
}

impl TrainConfig {
    pub fn validate(&self) -> Result<()> {
        let c = &self.loss;
        if !(c.beta > 0.0 && c.beta.is_finite()) {
            return Err(config_err(format!("beta must be > 0, got {}", c.beta)));
        }
        if !(c.desirable_weight >= 0.0 && c.undesirable_weight >= 0.0) {
            return Err(config_err("desirable and undesirable weights must be >= 0"));
        }
        if !(self.learning_rate >= 0.0 && self.learning_rate.is_finite()) {
            return Err(config_err(format!("learning rate must be a finite number >= 0, got {}", self.learning_rate)));
        }
        if self.grad_accum == 0 {
            return Err(config_err("gradient accumulation must be at least 1"));
        }
        if self.max_grad_norm.is_some_and(|m| m <= 0.0) {
            return Err(config_err("max grad norm must be > 0 (or off)"));
        }
        Ok(())
    }

    /// [`Self::dataset`] for a model: `max_length` is capped at the model's context, so that the
    /// default (1024) works for a GPT-2 with 128 positions instead of failing mid-run.
    pub fn dataset_for(
        &self,
        tok: &Tokenizer,
        model: &crate::model::ModelConfig,
        examples: &[KtoExample],
    ) -> Result<KtoDataset> {
        Ok(self.datasets_for(tok, model, examples)?.0)
    }

    /// [`Self::datasets`] with `max_length` capped at the model's context.
    pub fn datasets_for(
        &self,
        tok: &Tokenizer,
        model: &crate::model::ModelConfig,
        examples: &[KtoExample],
    ) -> Result<(KtoDataset, Option<KtoDataset>)> {
        let capped = Self { max_length: self.max_length.min(model.max_seq_len), ..self.clone() };
        capped.datasets(tok, examples)
    }

    /// Tokenize and batch `examples` per TRL, after the optional seeded shuffle.
    pub fn dataset(&self, tok: &Tokenizer, examples: &[KtoExample]) -> Result<KtoDataset> {
        Ok(self.datasets(tok, examples)?.0)
    }

    /// The training rows and, with `holdout`, the held-out ones: the last `holdout` rows after
    /// the shuffle (so a shuffled split is seeded like the rest).
    pub fn datasets(&self, tok: &Tokenizer, examples: &[KtoExample]) -> Result<(KtoDataset, Option<KtoDataset>)> {
        self.validate()?;
        let mut rows = if self.chat {
            examples.iter().map(|e| chat_row(tok, e)).collect::<Result<Vec<_>>>()?
        } else {
            // Conversational rows go through the chat template whatever `chat` says (TRL's
            // maybe_apply_chat_template); text rows stay text.
            examples
                .iter()
                .map(|e| if e.messages.is_some() { chat_row(tok, e) } else { Ok(e.clone()) })
                .collect::<Result<Vec<_>>>()?
        };
        if self.shuffle {
            rows.shuffle(&mut StdRng::seed_from_u64(self.seed));
        }
        if self.holdout > 0 && self.holdout >= rows.len() {
            return Err(config_err(format!(
                "{} held-out rows leave none of the {} rows to train on: set aside fewer",
                self.holdout,
                rows.len()
            )));
        }
        let held = rows.split_off(rows.len() - self.holdout);
        let with_kl = self.loss.loss_type == LossType::Kto;
        let train = KtoDataset::new(tok, &rows, self.batch_size, self.max_length, with_kl)?;
        let held = match held.is_empty() {
            true => None,
            false => Some(KtoDataset::new(tok, &held, self.batch_size, self.max_length, with_kl)?),
        };
        Ok((train, held))
    }
}

/// A row in TRL's conversational form: the prompt as its turns (a text row: one user turn) with
/// the generation prompt, the completion as the assistant turn and its end token.
pub fn chat_row(tok: &Tokenizer, e: &KtoExample) -> Result<KtoExample> {
    let turns = match &e.messages {
        Some(c) => c.prompt.clone(),
        None => vec![Message::new("user", &e.prompt)],
    };
    let (prompt, completion) = tok.chat_split(&turns, &e.completion)?;
    Ok(KtoExample { prompt, completion, label: e.label, messages: None })
}
