//! The training settings as one flat, described list: what each one means, its range, its TRL
//! default, and its default here — read from `TrainConfig::default()`, never restated. The CLI
//! builds its `train` flags from this list and the page renders its form from it, so a default,
//! a range or an explanation lives in one place.

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::config::{OptimizerKind, TrainConfig};
use super::loss::{KtoLossConfig, LossType};
use crate::Result;
use crate::error::config_err;
use crate::model::LoraConfig;

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SettingKind {
    Number {
        min: f64,
        max: Option<f64>,
        step: f64,
        integer: bool,
    },
    Choice {
        options: Vec<(&'static str, &'static str)>,
    },
    Bool,
    /// Comma-separated words.
    List,
}

#[derive(Debug, Clone, Serialize)]
pub struct Setting {
    /// The key in [`TrainConfig::to_settings`]'s map.
    pub key: &'static str,
    /// CLI flag (`--lr`) and the page's element id.
    pub flag: &'static str,
    pub label: &'static str,
    /// One line: what it does and when to change it.
    pub help: &'static str,
    /// TRL's / Hugging Face's default, when it has this setting.
    pub trl_default: Option<&'static str>,
    /// `loss`, `optimizer`, `data` or `lora` (the page groups its form by it).
    pub group: &'static str,
    pub kind: SettingKind,
    pub default: Value,
}

fn number(min: f64, max: Option<f64>, step: f64) -> SettingKind {
    SettingKind::Number { min, max, step, integer: false }
}
fn integer(min: f64, max: Option<f64>) -> SettingKind {
    SettingKind::Number { min, max, step: 1.0, integer: true }
}

/// Every training setting with its default.
pub fn settings() -> Vec<Setting> {
    let defaults = TrainConfig::default().to_settings();
    let s = |key, flag, label, help, trl_default, group, kind| Setting {
        key,
        flag,
        label,
        help,
        trl_default,
        group,
        kind,
        default: defaults.get(key).cloned().unwrap_or(Value::Null),
    };
    vec![
        s(
            "beta",
            "beta",
            "β",
            "How far the trained model may move from the reference: larger keeps it closer.",
            Some("0.1"),
            "loss",
            number(0.001, None, 0.01),
        ),
        s(
            "desirable_weight",
            "desirable-weight",
            "λ_D",
            "Weight of 👍 rows' loss; raise it when they are the smaller class.",
            Some("1.0"),
            "loss",
            number(0.0, None, 0.05),
        ),
        s(
            "undesirable_weight",
            "undesirable-weight",
            "λ_U",
            "Weight of 👎 rows' loss; raise it when they are the smaller class.",
            Some("1.0"),
            "loss",
            number(0.0, None, 0.05),
        ),
        s(
            "loss_type",
            "loss",
            "loss",
            "KTO measures gains and losses against the KL reference point z; APO-zero fixes z at 0.",
            Some("kto"),
            "loss",
            SettingKind::Choice { options: vec![("kto", "KTO"), ("apo_zero_unpaired", "APO-zero (unpaired)")] },
        ),
        s(
            "learning_rate",
            "lr",
            "learning rate",
            "Step size of the optimizer.",
            Some("1e-6 (KTOConfig)"),
            "optimizer",
            number(0.0, None, 0.0001),
        ),
        s(
            "optimizer",
            "optimizer",
            "optimizer",
            "AdamW as in TRL; SGD for exact hand-checkable steps.",
            Some("adamw"),
            "optimizer",
            SettingKind::Choice { options: vec![("adamw", "AdamW"), ("sgd", "SGD")] },
        ),
        s(
            "weight_decay",
            "weight-decay",
            "weight decay",
            "AdamW's decoupled weight decay.",
            Some("0.0"),
            "optimizer",
            number(0.0, None, 0.01),
        ),
        s(
            "max_grad_norm",
            "max-grad-norm",
            "max grad norm",
            "Clip the global gradient norm to this; 0 turns clipping off.",
            Some("1.0"),
            "optimizer",
            number(0.0, None, 0.1),
        ),
        s(
            "steps",
            "steps",
            "steps",
            "Optimizer steps in the run; each takes the next batch, cycling through the rows.",
            None,
            "optimizer",
            integer(1.0, None),
        ),
        s(
            "batch_size",
            "batch-size",
            "batch size",
            "Rows per step (also the block inside which KL completions are rotated).",
            Some("8"),
            "data",
            integer(1.0, None),
        ),
        s(
            "grad_accum",
            "grad-accum",
            "gradient accumulation",
            "Batches whose gradients are summed into one step.",
            Some("1"),
            "data",
            integer(1.0, None),
        ),
        s(
            "max_length",
            "max-length",
            "max length",
            "Rows are cut to this many tokens (and to the model's context).",
            Some("1024"),
            "data",
            integer(8.0, None),
        ),
        s(
            "shuffle",
            "shuffle",
            "shuffle",
            "Shuffle the rows once (seeded) before batching; TRL keeps the file order.",
            Some("no shuffle"),
            "data",
            SettingKind::Bool,
        ),
        s(
            "seed",
            "seed",
            "seed",
            "Seed of the shuffle and of the LoRA initialisation.",
            Some("42"),
            "data",
            integer(0.0, None),
        ),
        s(
            "holdout",
            "holdout",
            "held-out rows",
            "Rows set aside and never trained on: their rewards show whether training generalises or memorises (0: none).",
            Some("no eval dataset"),
            "data",
            integer(0.0, None),
        ),
        s(
            "chat",
            "chat",
            "chat template",
            "Wrap each row in the model's chat template (instruct models).",
            None,
            "data",
            SettingKind::Bool,
        ),
        s(
            "method",
            "method",
            "method",
            "Full fine-tuning trains every weight; LoRA trains small adapters on a frozen model.",
            None,
            "lora",
            SettingKind::Choice { options: vec![("full", "full fine-tuning"), ("lora", "LoRA")] },
        ),
        s("lora_rank", "lora-rank", "rank", "Rank of each LoRA adapter.", Some("8 (PEFT)"), "lora", integer(1.0, None)),
        s(
            "lora_alpha",
            "lora-alpha",
            "alpha",
            "LoRA scale: the update is multiplied by alpha / rank.",
            Some("8 (PEFT)"),
            "lora",
            number(0.0, None, 1.0),
        ),
        s(
            "lora_dropout",
            "lora-dropout",
            "dropout",
            "Dropout on the adapters' input while training.",
            Some("0.0"),
            "lora",
            number(0.0, Some(0.9), 0.05),
        ),
        s(
            "lora_targets",
            "lora-targets",
            "targets",
            "Projections that get adapters: any of q k v o gate up down (GPT-2: c_attn c_proj c_fc, or the same letters).",
            None,
            "lora",
            SettingKind::List,
        ),
    ]
}

impl TrainConfig {
    /// The flat settings map (the keys of [`settings`]).
    pub fn to_settings(&self) -> Map<String, Value> {
        let lora = self.lora.clone().unwrap_or_default();
        let v = json!({
            "beta": self.loss.beta,
            "desirable_weight": self.loss.desirable_weight,
            "undesirable_weight": self.loss.undesirable_weight,
            "loss_type": self.loss.loss_type,
            "learning_rate": self.learning_rate,
            "optimizer": self.optimizer,
            "weight_decay": self.weight_decay,
            "max_grad_norm": self.max_grad_norm.unwrap_or(0.0),
            "steps": self.steps,
            "batch_size": self.batch_size,
            "grad_accum": self.grad_accum,
            "max_length": self.max_length,
            "shuffle": self.shuffle,
            "seed": self.seed,
            "chat": self.chat,
            "holdout": self.holdout,
            "method": if self.lora.is_some() { "lora" } else { "full" },
            "lora_rank": lora.rank,
            "lora_alpha": lora.alpha,
            "lora_dropout": lora.dropout,
            "lora_targets": lora.targets.join(","),
        });
        match v {
            Value::Object(m) => m,
            _ => unreachable!("a JSON object"),
        }
    }

    /// A config from flat settings: missing keys take their defaults; a value of the wrong type
    /// or out of its range is an error that names the setting.
    pub fn from_settings(values: &Map<String, Value>) -> Result<Self> {
        let all = settings();
        for (key, value) in values {
            let Some(s) = all.iter().find(|s| s.key == key) else {
                return Err(config_err(format!("unknown training setting '{key}'")));
            };
            check(s, value)?;
        }
        let get = |key: &str| {
            values.get(key).cloned().unwrap_or_else(|| all.iter().find(|s| s.key == key).unwrap().default.clone())
        };
        let f = |key: &str| get(key).as_f64().unwrap_or(f64::NAN);
        let n = |key: &str| get(key).as_f64().map_or(0, |x| x as usize);
        let b = |key: &str| get(key).as_bool().unwrap_or(false);
        let text = |key: &str| get(key).as_str().unwrap_or_default().to_string();
        let loss_type = match text("loss_type").as_str() {
            "apo_zero_unpaired" => LossType::ApoZeroUnpaired,
            _ => LossType::Kto,
        };
        let optimizer = if text("optimizer") == "sgd" { OptimizerKind::Sgd } else { OptimizerKind::Adamw };
        let lora = (text("method") == "lora").then(|| LoraConfig {
            rank: n("lora_rank"),
            alpha: f("lora_alpha"),
            dropout: f("lora_dropout"),
            targets: text("lora_targets").split(',').map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect(),
        });
        let max_grad_norm = f("max_grad_norm");
        let cfg = Self {
            loss: KtoLossConfig {
                beta: f("beta"),
                desirable_weight: f("desirable_weight"),
                undesirable_weight: f("undesirable_weight"),
                loss_type,
            },
            optimizer,
            learning_rate: f("learning_rate"),
            weight_decay: f("weight_decay"),
            batch_size: n("batch_size"),
            grad_accum: n("grad_accum"),
            max_grad_norm: (max_grad_norm > 0.0).then_some(max_grad_norm),
            max_length: n("max_length"),
            steps: n("steps"),
            shuffle: b("shuffle"),
            seed: get("seed").as_u64().unwrap_or(0),
            lora,
            chat: b("chat"),
            holdout: n("holdout"),
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

fn check(s: &Setting, v: &Value) -> Result<()> {
    let bad = |what: String| Err(config_err(format!("{} ({}): {what}", s.label, s.key)));
    match &s.kind {
        SettingKind::Number { min, max, integer, .. } => {
            let Some(x) = v.as_f64().filter(|x| x.is_finite()) else {
                return bad(format!("expected a number, got {v}"));
            };
            if *integer && x.fract() != 0.0 {
                return bad(format!("expected a whole number, got {x}"));
            }
            if x < *min || max.is_some_and(|m| x > m) {
                let range = max.map_or(format!("at least {min}"), |m| format!("between {min} and {m}"));
                return bad(format!("must be {range}, got {x}"));
            }
        }
        SettingKind::Choice { options } => {
            if !options.iter().any(|(o, _)| v.as_str() == Some(o)) {
                let names: Vec<&str> = options.iter().map(|(o, _)| *o).collect();
                return bad(format!("expected one of {}, got {v}", names.join(", ")));
            }
        }
        SettingKind::Bool => {
            if !v.is_boolean() {
                return bad(format!("expected true or false, got {v}"));
            }
        }
        SettingKind::List => {
            if !v.is_string() {
                return bad(format!("expected comma-separated words, got {v}"));
            }
        }
    }
    Ok(())
}
