//! One engine session: the state every front end works on — the device, the loaded model, the
//! base and trained models (each knowing its LoRA settings), the tokenized dataset, the running
//! trainer and the sentiment judge. The page's worker (through `wasm.rs`) and the CLI drive the
//! same methods, so a decision (which file to export, what a restored file is, when rows are
//! tokenized) is made here once.
//!
//! One file (over 400 lines) because it is one state machine: every transition of the session's
//! state is here, where its invariants can be read together.
//!
//! Methods take `&self`: state sits in a `RefCell` borrowed only between awaits, and a training
//! run takes its trainer out while it steps, so a request that arrives meanwhile (a generation,
//! a second run) gets a clear "busy" error instead of a borrow panic.

use std::cell::RefCell;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::rc::Rc;

use burn::tensor::Device;
use serde::Serialize;

use crate::bundle::FileSet;
use crate::eval::PromptSets;
use crate::export::{self, Files, Restored};
use crate::generate::{Sample, SamplingConfig, generate};
use crate::judge::Judge;
use crate::kto::{Control, KtoDataset, KtoExample, Metrics, RunEnd, StepReport, TrainConfig, Trainer};
use crate::memory::MemoryEstimate;
use crate::model::{HostAdapter, LoraConfig, Model};
use crate::mood::{HeldoutReport, MoodEvent, MoodRecipe, MoodReport};
use crate::{BackendKind, Error, ModelBundle, Result};

/// Which of the session's two models.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Base,
    Trained,
}

impl std::str::FromStr for Which {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "base" => Ok(Self::Base),
            "trained" => Ok(Self::Trained),
            other => Err(Error::Config(format!("unknown model '{other}': use base or trained"))),
        }
    }
}

/// What the front ends show about a loaded model.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub name: String,
    pub format: &'static str,
    pub files: Vec<String>,
    pub config: crate::model::ModelConfig,
    pub parameters: usize,
    pub eos_text: String,
    /// It has a chat template (an instruct model).
    pub chat: bool,
    /// Llama, Qwen2, Qwen3, Gemma 3 or GPT-2.
    pub family: &'static str,
}

/// The rows of a run as the trainer will see them.
#[derive(Debug, Clone, Serialize)]
pub struct DataSummary {
    pub rows: usize,
    pub desirable: usize,
    pub undesirable: usize,
    /// Rows dropped because their prompt alone reaches the max length.
    pub dropped: usize,
    pub batches: usize,
    /// The longest tokenized row (what the memory estimate is for).
    pub max_row_len: usize,
    /// Rows set aside, never trained on (`TrainConfig::holdout`).
    pub heldout: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Estimate {
    pub data: DataSummary,
    pub memory: MemoryEstimate,
}

/// One token of a text under both models: what training changed about it.
#[derive(Debug, Clone, Serialize)]
pub struct TokenChange {
    pub text: String,
    /// log p(token | text before it) under the base and the trained model.
    pub base: f64,
    pub trained: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AdapterInfo {
    pub rank: usize,
    pub alpha: f64,
    pub targets: Vec<String>,
    pub adapters: usize,
}

/// The trained model and the LoRA settings of its adapters (a LoRA run or an imported adapter).
#[derive(Clone)]
struct Trained {
    model: Model,
    lora: Option<LoraConfig>,
}

/// A run's rows, tokenized and batched: what it trains on and what it holds out.
#[derive(Clone)]
struct Data {
    train: Rc<KtoDataset>,
    heldout: Option<Rc<KtoDataset>>,
}

struct Prepared {
    key: u64,
    data: Data,
    summary: DataSummary,
}

struct State {
    device: Device,
    kind: BackendKind,
    bundle: Option<Rc<ModelBundle>>,
    base: Option<Model>,
    trained: Option<Trained>,
    /// An adapter read from files, kept on the host so that a run can continue it.
    imported: Option<(LoraConfig, Vec<HostAdapter>)>,
    prepared: Option<Prepared>,
    run: Option<(Trainer, Data)>,
    /// True while a run has its trainer out of the state.
    running: bool,
    judge: Option<Rc<Judge>>,
}

pub struct Session {
    state: RefCell<State>,
}

fn need<T: Clone>(v: &Option<T>, what: &str) -> Result<T> {
    v.clone().ok_or_else(|| Error::Config(format!("{what} first")))
}

/// A dataset's identity: the rows and every setting that changes tokenization or batching.
fn data_key(rows: &[KtoExample], cfg: &TrainConfig) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for r in rows {
        (&r.prompt, &r.completion, r.label).hash(&mut h);
    }
    let kto = cfg.loss.loss_type == crate::kto::LossType::Kto;
    (cfg.chat, cfg.shuffle, cfg.seed, cfg.batch_size, cfg.max_length, kto, cfg.holdout).hash(&mut h);
    h.finish()
}

impl Session {
    pub fn new(kind: BackendKind, device: Device) -> Self {
        Self {
            state: RefCell::new(State {
                device,
                kind,
                bundle: None,
                base: None,
                trained: None,
                imported: None,
                prepared: None,
                run: None,
                running: false,
                judge: None,
            }),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> Result<R>) -> Result<R> {
        f(&mut self.state.borrow_mut())
    }

    fn idle(s: &State, doing: &str) -> Result<()> {
        if s.running {
            return Err(Error::Config(format!("a training run is in progress; cancel it before {doing}")));
        }
        Ok(())
    }

    pub fn device(&self) -> (Device, BackendKind) {
        let s = self.state.borrow();
        (s.device.clone(), s.kind)
    }

    /// Move to another device: every tensor on the old one is dropped; the loaded model (and the
    /// judge) stay and the base model is rebuilt there; the trained model is lost.
    pub fn set_device(&self, kind: BackendKind, device: Device) -> Result<()> {
        self.with(|s| {
            Self::idle(s, "switching the backend")?;
            let (bundle, judge) = (s.bundle.take(), s.judge.take());
            *s = Self::new(kind, device).state.into_inner();
            s.base = bundle.as_ref().map(|b| Model::from_weights(&b.weights, &s.device));
            s.bundle = bundle;
            s.judge = judge;
            Ok(())
        })
    }

    /// Make `bundle` the session's model (the previous one, its trained model and run are dropped).
    pub fn open(&self, bundle: ModelBundle) -> Result<ModelInfo> {
        let c = &bundle.weights.config;
        let info = ModelInfo {
            name: bundle.name.clone(),
            format: bundle.format,
            files: bundle.files.clone(),
            config: c.clone(),
            parameters: c.num_params(),
            eos_text: bundle.tokenizer.eos_text().to_string(),
            chat: bundle.tokenizer.chat_template().is_some(),
            family: c.family(),
        };
        self.with(|s| {
            Self::idle(s, "loading a model")?;
            // Free the old model's tensors before building the new one.
            (s.base, s.trained, s.run, s.prepared, s.imported) = (None, None, None, None, None);
            s.base = Some(Model::from_weights(&bundle.weights, &s.device));
            s.bundle = Some(Rc::new(bundle));
            Ok(())
        })?;
        Ok(info)
    }

    /// [`Self::open`] on files given by name and bytes (any format `ModelBundle` recognises).
    pub fn open_files(&self, name: &str, files: &[(String, Vec<u8>)], set: FileSet) -> Result<ModelInfo> {
        self.open(ModelBundle::from_files(name, files, set)?)
    }

    pub fn bundle(&self) -> Result<Rc<ModelBundle>> {
        need(&self.state.borrow().bundle, "load a model")
    }

    pub fn model(&self, which: Which) -> Result<Model> {
        let s = self.state.borrow();
        match which {
            Which::Base => need(&s.base, "load a model"),
            Which::Trained => Ok(need(&s.trained, "train the model (or restore trained weights or an adapter)")?.model),
        }
    }

    /// Sample `n` completions of `prompt` (wrapped in the chat template with `chat`).
    pub async fn generate(
        &self,
        which: Which,
        prompt: &str,
        n: usize,
        cfg: &SamplingConfig,
        chat: bool,
        on_text: impl FnMut(usize, &str),
    ) -> Result<Vec<Sample>> {
        let (model, bundle, (device, _)) = (self.model(which)?, self.bundle()?, self.device());
        let prompt = if chat { bundle.tokenizer.chat_prompt(prompt)? } else { prompt.to_string() };
        generate(&model, &bundle.tokenizer, &device, &prompt, n, cfg, on_text).await
    }

    /// Tokenize and batch `rows` for `cfg` — once: the same rows and data settings reuse it.
    fn prepare(&self, rows: &[KtoExample], cfg: &TrainConfig) -> Result<(Data, DataSummary)> {
        let key = data_key(rows, cfg);
        if let Some(p) = self.state.borrow().prepared.as_ref().filter(|p| p.key == key) {
            return Ok((p.data.clone(), p.summary.clone()));
        }
        let bundle = self.bundle()?;
        let (train, heldout) = cfg.datasets_for(&bundle.tokenizer, &bundle.weights.config, rows)?;
        let desirable = train.rows.iter().filter(|r| r.label).count();
        let summary = DataSummary {
            rows: train.rows.len(),
            desirable,
            undesirable: train.rows.len() - desirable,
            dropped: train.dropped + heldout.as_ref().map_or(0, |h| h.dropped),
            batches: train.num_batches(),
            max_row_len: train.max_row_len().max(heldout.as_ref().map_or(0, |h| h.max_row_len())),
            heldout: heldout.as_ref().map_or(0, |h| h.rows.len()),
        };
        let data = Data { train: Rc::new(train), heldout: heldout.map(Rc::new) };
        self.state.borrow_mut().prepared = Some(Prepared { key, data: data.clone(), summary: summary.clone() });
        Ok((data, summary))
    }

    /// The rows as the run would see them and the run's memory estimate. No rows yet: the
    /// estimate for the shortest possible row, and a summary of zero rows.
    pub fn estimate(&self, rows: &[KtoExample], cfg: &TrainConfig) -> Result<Estimate> {
        cfg.validate()?;
        let bundle = self.bundle()?;
        let data = if rows.is_empty() {
            DataSummary { rows: 0, desirable: 0, undesirable: 0, dropped: 0, batches: 0, max_row_len: 2, heldout: 0 }
        } else {
            self.prepare(rows, cfg)?.1
        };
        let memory = crate::memory::estimate(&bundle.weights.config, cfg, data.max_row_len.max(2));
        Ok(Estimate { data, memory })
    }

    /// Start a run from the base model (or, with `continue_adapter`, from the adapter read with
    /// [`Self::import_adapter`], with its own LoRA settings). Returns what it will train on.
    pub fn start_run(&self, rows: &[KtoExample], cfg: TrainConfig, continue_adapter: bool) -> Result<DataSummary> {
        Self::idle(&self.state.borrow(), "starting another")?;
        if rows.is_empty() {
            return Err(Error::Data("no labelled rows to train on: label some outputs 👍 or 👎 first".into()));
        }
        let (data, summary) = self.prepare(rows, &cfg)?;
        let bundle = self.bundle()?;
        let device = self.device().0;
        // Free the previous run's tensors before the new run allocates its own.
        self.state.borrow_mut().run = None;
        let trainer = if continue_adapter {
            let (lora, adapters) = need(&self.state.borrow().imported, "load an adapter to continue")?;
            if cfg.lora.is_some() {
                return Err(Error::Config(
                    "continuing an adapter keeps its own rank, alpha and targets; leave the LoRA settings out".into(),
                ));
            }
            Trainer::resume_lora(&bundle.weights, &adapters, &device, TrainConfig { lora: Some(lora), ..cfg })?
        } else {
            Trainer::new(&bundle.weights, &device, cfg)?
        };
        self.state.borrow_mut().run = Some((trainer, data));
        Ok(summary)
    }

    /// Take the run out of the state while it works (see the module note).
    fn take_run(&self) -> Result<(Trainer, Data)> {
        self.with(|s| {
            Self::idle(s, "starting another step")?;
            let run = s.run.take().ok_or_else(|| Error::Config("start a training run first".into()))?;
            s.running = true;
            Ok(run)
        })
    }

    fn put_run(&self, trainer: Trainer, data: Data) {
        let mut s = self.state.borrow_mut();
        s.running = false;
        if trainer.steps_done() > 0 {
            s.trained = Some(Trained { model: trainer.policy(), lora: trainer.config().lora.clone() });
        }
        s.run = Some((trainer, data));
    }

    /// Train the current run to its step count through the one run driver ([`Trainer::run`]).
    /// After an error the steps done so far are kept as the trained model.
    pub async fn train<F, Fut>(&self, on_step: F) -> Result<RunEnd>
    where
        F: FnMut(&StepReport) -> Fut,
        Fut: Future<Output = Control>,
    {
        let (mut trainer, data) = self.take_run()?;
        let end = trainer.run_with_heldout(&data.train, data.heldout.as_deref(), on_step).await;
        self.put_run(trainer, data);
        end
    }

    /// Loss and metrics of the run's trained policy on the run's rows, without updating.
    pub async fn evaluate(&self) -> Result<Metrics> {
        let (trainer, data) = self.take_run()?;
        let m = trainer.evaluate(&data.train).await;
        self.put_run(trainer, data);
        m
    }

    /// The LoRA settings of the trained model's adapters (`None`: full fine-tuning or no model).
    pub fn trained_lora(&self) -> Option<LoraConfig> {
        self.state.borrow().trained.as_ref().and_then(|t| t.lora.clone())
    }

    /// A PEFT adapter (`adapter_config.json`, `adapter_model.safetensors`) on the base model
    /// becomes the trained model; a run can continue it.
    pub fn import_adapter(&self, config: &[u8], tensors: &[u8]) -> Result<AdapterInfo> {
        let bundle = self.bundle()?;
        let (lora, adapters) = crate::formats::peft::load(config, tensors, &bundle.weights.config)?;
        self.set_adapter(lora, adapters)
    }

    fn set_adapter(&self, lora: LoraConfig, adapters: Vec<HostAdapter>) -> Result<AdapterInfo> {
        self.with(|s| {
            Self::idle(s, "loading an adapter")?;
            let base = need(&s.base, "load a model")?;
            let model = base.with_adapters(&lora, &adapters, &s.device)?;
            let info = AdapterInfo {
                rank: lora.rank,
                alpha: lora.alpha,
                targets: lora.targets.clone(),
                adapters: adapters.len(),
            };
            s.trained = Some(Trained { model, lora: Some(lora.clone()) });
            s.imported = Some((lora, adapters));
            Ok(info)
        })
    }

    /// The trained model as files: `"one"` (one file for browser storage, see
    /// [`export::one_file`]), `"adapter"` (PEFT folder) or `"merged"` (Hugging Face folder).
    pub async fn export(&self, kind: &str) -> Result<Files> {
        let trained = need(&self.state.borrow().trained, "train the model (or load an adapter)")?;
        let bundle = self.bundle()?;
        match kind {
            "one" => Ok(vec![export::one_file(&trained.model, trained.lora.as_ref(), &bundle).await?]),
            "adapter" => {
                let lora = trained
                    .lora
                    .filter(|_| trained.model.has_adapters())
                    .ok_or_else(|| Error::Config("the trained model has no LoRA adapter: train with LoRA".into()))?;
                export::adapter(&trained.model, &lora, &bundle).await
            }
            "merged" => export::merged(&trained.model, &bundle).await,
            other => Err(Error::Config(format!("unknown export '{other}': use one, adapter or merged"))),
        }
    }

    /// Restore what `export("one")` wrote (or a PEFT adapter's safetensors) as the trained model.
    pub fn restore(&self, bytes: &[u8]) -> Result<()> {
        let bundle = self.bundle()?;
        match export::read_one_file(bytes, &bundle.weights.config)? {
            Restored::Adapter(lora, adapters) => self.set_adapter(lora, adapters).map(|_| ()),
            Restored::Weights(weights) => self.with(|s| {
                Self::idle(s, "restoring weights")?;
                s.trained = Some(Trained { model: Model::from_weights(&weights, &s.device), lora: None });
                Ok(())
            }),
        }
    }

    pub fn set_judge(&self, judge: Judge) {
        self.state.borrow_mut().judge = Some(Rc::new(judge));
    }

    pub fn judge(&self) -> Result<Rc<Judge>> {
        need(&self.state.borrow().judge, "load the sentiment judge")
    }

    /// The judge's score of `text` and the label `rule` gives it (`None`: within the neutral band).
    pub fn judge_label(&self, text: &str, rule: &crate::mood::AutoLabel) -> Result<(f64, Option<bool>)> {
        let score = self.judge()?.score(text) as f64;
        Ok((score, rule.label(score)))
    }

    /// The engine's own loss at each reward in `r` (the page's explainer draws it).
    pub async fn loss_curve(
        &self,
        r: &[f64],
        z: f64,
        cfg: &crate::kto::KtoLossConfig,
    ) -> Result<crate::kto::loss::LossCurve> {
        crate::kto::loss::loss_curve(r, z, cfg, &self.device().0).await
    }

    /// Held-out evaluation of one model under the recipe's sampling, seeds and prompt limits.
    pub async fn heldout(&self, which: Which, sets: &PromptSets, recipe: &MoodRecipe) -> Result<HeldoutReport> {
        let (model, bundle, judge, (device, _)) = (self.model(which)?, self.bundle()?, self.judge()?, self.device());
        crate::mood::heldout_eval(&model, &bundle.tokenizer, &device, &judge, sets, recipe).await
    }

    /// The mood recipe on the loaded model; its trained model becomes the session's.
    pub async fn mood<F, Fut>(&self, recipe: &MoodRecipe, sets: &PromptSets, on_event: F) -> Result<MoodReport>
    where
        F: FnMut(MoodEvent) -> Fut,
        Fut: Future<Output = Control>,
    {
        let (bundle, judge, (device, _)) = (self.bundle()?, self.judge()?, self.device());
        self.with(|s| {
            Self::idle(s, "running the recipe")?;
            s.running = true;
            Ok(())
        })?;
        let out = crate::mood::run_recipe(&bundle, &device, &judge, recipe, sets, on_event).await;
        let mut s = self.state.borrow_mut();
        s.running = false;
        let (report, trainer) = out?;
        s.trained = Some(Trained { model: trainer.policy(), lora: None });
        Ok(report)
    }

    /// Every token of `text` (after BOS, cut to the context) with its log-probability under the
    /// base and the trained model: how much more (or less) likely training made it.
    pub async fn token_diff(&self, text: &str) -> Result<Vec<TokenChange>> {
        let (base, trained, bundle, (device, _)) =
            (self.model(Which::Base)?, self.model(Which::Trained)?, self.bundle()?, self.device());
        let tok = &bundle.tokenizer;
        let mut ids = tok.encode(text, true)?;
        ids.truncate(bundle.weights.config.max_seq_len);
        if ids.len() < 2 {
            return Err(Error::Data("type some text: there is no token to compare yet".into()));
        }
        let tx = burn::tensor::Transaction::default()
            .register(crate::score::token_logps(&base, &ids, &device))
            .register(crate::score::token_logps(&trained, &ids, &device));
        let host = crate::device::read_all(tx).await?;
        let text_of = |i: usize| String::from_utf8_lossy(&tok.piece_bytes(Some(ids[i - 1]), ids[i])).into_owned();
        Ok((1..ids.len())
            .map(|i| TokenChange { text: text_of(i), base: host[0][i - 1], trained: host[1][i - 1] })
            .collect())
    }

    /// The engine's benchmark on the loaded model and the session's device.
    pub async fn bench(&self, cfg: &crate::bench::BenchConfig) -> Result<crate::bench::BenchResult> {
        let (bundle, (device, kind)) = (self.bundle()?, self.device());
        crate::bench::run(&bundle, &device, kind, cfg).await
    }
}
