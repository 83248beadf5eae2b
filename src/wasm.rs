//! The wasm boundary: the only module that knows about wasm-bindgen. It keeps the engine's state
//! for one Web Worker and turns every engine error into a JavaScript `Error` with its message.
//!
//! Async exports take owned arguments and never hold a borrow of the state across an `await`:
//! cheap handles (device, models) are cloned out, and the trainer is taken out for a step and put
//! back, so a message that arrives mid-step gets a "busy" error instead of a panic.

use std::cell::RefCell;
use std::rc::Rc;

use burn::tensor::Device;
use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::formats::{hf, llama2c, peft};
use crate::generate::{SamplingConfig, generate as run_generate};
use crate::kto::{KtoDataset, KtoExample, TrainConfig, Trainer, imbalance_advice as advice, parse_jsonl, to_jsonl};
use crate::model::{LoraConfig, Model};
use crate::{BackendKind, Error, ModelBundle};

unsafe extern "C" {
    fn __wasm_call_ctors();
}

/// Runs once when the module is instantiated. cubecl registers kernels through static
/// constructors; if nothing calls them here, wasm-ld wraps every export in a stub that re-runs
/// them all on each call (a 10x slowdown, see docs/wasm.md).
#[wasm_bindgen(start)]
pub fn start() {
    unsafe { __wasm_call_ctors() };
    console_error_panic_hook::set_once();
}

#[derive(Default)]
struct State {
    device: Option<(Device, BackendKind)>,
    bundle: Option<Rc<ModelBundle>>,
    base: Option<Model>,
    trained: Option<Model>,
    trainer: Option<Trainer>,
    dataset: Option<Rc<KtoDataset>>,
    /// True while a train step has the trainer out of the state.
    stepping: bool,
    judge: Option<Rc<crate::judge::Judge>>,
    /// Settings of the adapters on `trained` (a LoRA run or an imported adapter).
    lora: Option<LoraConfig>,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

fn js_err(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

fn to_js<T: Serialize>(v: &T) -> Result<JsValue, JsError> {
    v.serialize(&serde_wasm_bindgen::Serializer::json_compatible()).map_err(js_err)
}

fn with<R>(f: impl FnOnce(&mut State) -> Result<R, Error>) -> Result<R, JsError> {
    STATE.with(|s| f(&mut s.borrow_mut())).map_err(js_err)
}

fn need<T: Clone>(v: &Option<T>, what: &str) -> Result<T, Error> {
    v.clone().ok_or_else(|| Error::Config(format!("{what} first")))
}

/// Initialize the compute device: "wgpu" (WebGPU) or "cpu" (burn-flex in wasm, SIMD128).
/// Returns `{backend, device}`.
#[wasm_bindgen]
pub async fn init(backend: String) -> Result<JsValue, JsError> {
    let kind: BackendKind = backend.parse().map_err(js_err)?;
    let device = crate::device::init_async(kind).await.map_err(js_err)?;
    let info = serde_json::json!({ "backend": kind.to_string(), "device": format!("{device:?}") });
    with(|s| {
        if s.stepping {
            return Err(Error::Config(
                "a training step is running; cancel training before switching the backend".into(),
            ));
        }
        // A new device invalidates every tensor made on the old one.
        *s = State {
            device: Some((device, kind)),
            bundle: s.bundle.take(),
            judge: s.judge.take(),
            ..Default::default()
        };
        if let Some(b) = s.bundle.clone() {
            s.base = Some(Model::from_weights(&b.weights, &s.device.as_ref().unwrap().0));
        }
        Ok(())
    })?;
    to_js(&info)
}

/// Load a model from files picked together (names and bytes, same order): a `.gguf`; a Hugging
/// Face folder's `config.json`, `*.safetensors` (+ index), `tokenizer.json`, `tokenizer_config.json`;
/// or a llama2.c `.bin` and its `tok*.bin`. `folder`: the files are a whole folder (its other
/// weight files are ignored) rather than picked one by one. Returns the model summary.
#[wasm_bindgen]
pub fn load_files(name: String, names: Vec<String>, files: js_sys::Array, folder: bool) -> Result<JsValue, JsError> {
    if names.len() as u32 != files.length() {
        return Err(js_err("load_files: names and files differ in length"));
    }
    let files: Vec<(String, Vec<u8>)> =
        names.into_iter().zip(files.iter()).map(|(n, f)| (n, js_sys::Uint8Array::new(&f).to_vec())).collect();
    let set = if folder { crate::bundle::FileSet::Folder } else { crate::bundle::FileSet::Picked };
    let bundle = ModelBundle::from_files(&name, &files, set).map_err(js_err)?;
    drop(files);
    let c = &bundle.weights.config;
    let info = serde_json::json!({
        "name": bundle.name,
        "format": bundle.format,
        "files": bundle.files,
        "config": c,
        "parameters": c.num_params(),
        "eos_text": bundle.tokenizer.eos_text(),
        "chat": bundle.tokenizer.chat_template().is_some(),
        "lora": c.arch == crate::model::Arch::Llama,
    });
    with(|s| {
        let (device, _) = need(&s.device, "initialize a device (init)")?;
        if s.stepping {
            return Err(Error::Config("a training step is running; cancel training before loading a model".into()));
        }
        // Drop the old model's tensors before building the new one.
        s.base = None;
        s.trained = None;
        s.trainer = None;
        s.dataset = None;
        s.base = Some(Model::from_weights(&bundle.weights, &device));
        s.bundle = Some(Rc::new(bundle));
        Ok(())
    })?;
    to_js(&info)
}

/// Sample `n` completions of `prompt` from the "base" or "trained" model; `on_text(i, text)` is
/// called as each sample grows. Returns `[{ids, text, finished}]`.
#[wasm_bindgen]
pub async fn generate(
    prompt: String,
    n: usize,
    sampling: JsValue,
    which: String,
    chat: bool,
    on_text: js_sys::Function,
) -> Result<JsValue, JsError> {
    let cfg: SamplingConfig = if sampling.is_undefined() || sampling.is_null() {
        SamplingConfig::default()
    } else {
        serde_wasm_bindgen::from_value(sampling).map_err(|e| js_err(format!("bad sampling settings: {e}")))?
    };
    let (model, bundle, device) = with(|s| {
        let model = match which.as_str() {
            "base" => need(&s.base, "load a model")?,
            "trained" => need(&s.trained, "train the model (or restore trained weights)")?,
            other => return Err(Error::Config(format!("unknown model '{other}': use base or trained"))),
        };
        Ok((model, need(&s.bundle, "load a model")?, need(&s.device, "initialize a device")?.0))
    })?;
    let prompt = if chat { bundle.tokenizer.chat_prompt(&prompt).map_err(js_err)? } else { prompt };
    let samples = run_generate(&model, &bundle.tokenizer, &device, &prompt, n, &cfg, |i, text| {
        let _ = on_text.call2(&JsValue::NULL, &JsValue::from(i as u32), &JsValue::from_str(text));
    })
    .await
    .map_err(js_err)?;
    to_js(&samples)
}

/// Parse TRL JSONL (unpaired or paired rows) into `[{prompt, completion, label}]`.
#[wasm_bindgen]
pub fn parse_jsonl_rows(text: &str) -> Result<JsValue, JsError> {
    to_js(&parse_jsonl(text).map_err(js_err)?)
}

/// `[{prompt, completion, label}]` → TRL JSONL text.
#[wasm_bindgen]
pub fn rows_to_jsonl(rows: JsValue) -> Result<String, JsError> {
    let rows: Vec<KtoExample> = serde_wasm_bindgen::from_value(rows).map_err(|e| js_err(format!("bad rows: {e}")))?;
    Ok(to_jsonl(&rows))
}

/// TRL's class-balance advice for the given counts and weights (null when a class is empty).
#[wasm_bindgen]
pub fn imbalance_advice(
    n_desirable: usize,
    n_undesirable: usize,
    desirable_weight: f64,
    undesirable_weight: f64,
) -> Result<JsValue, JsError> {
    to_js(&advice(n_desirable, n_undesirable, desirable_weight, undesirable_weight))
}

/// Start a training run from the base model on `rows` with `config` (a TrainConfig object).
/// Returns `{rows, dropped, batches}`.
#[wasm_bindgen]
pub fn train_start(rows: JsValue, config: JsValue) -> Result<JsValue, JsError> {
    let rows: Vec<KtoExample> = serde_wasm_bindgen::from_value(rows).map_err(|e| js_err(format!("bad rows: {e}")))?;
    let cfg: TrainConfig =
        serde_wasm_bindgen::from_value(config).map_err(|e| js_err(format!("bad training settings: {e}")))?;
    let info = with(|s| {
        if s.stepping {
            return Err(Error::Config("a training step is still running".into()));
        }
        let bundle = need(&s.bundle, "load a model")?;
        let (device, _) = need(&s.device, "initialize a device")?;
        let data = cfg.dataset_for(&bundle.tokenizer, &bundle.weights.config, &rows)?;
        let info =
            serde_json::json!({ "rows": data.rows.len(), "dropped": data.dropped, "batches": data.num_batches() });
        s.lora = cfg.lora.clone();
        // Free the previous run's tensors before the new run allocates its own.
        s.trainer = None;
        s.trainer = Some(Trainer::new(&bundle.weights, &device, cfg)?);
        s.dataset = Some(Rc::new(data));
        Ok(info)
    })?;
    to_js(&info)
}

/// Take the trainer out of the state for an async operation; a second one meanwhile gets a
/// "busy" error instead of a borrow panic.
fn take_trainer() -> Result<(Trainer, Rc<KtoDataset>), JsError> {
    with(|s| {
        if s.stepping {
            return Err(Error::Config("a training step is already running; wait for it or cancel".into()));
        }
        let data = need(&s.dataset, "start a training run")?;
        let trainer = s.trainer.take().ok_or_else(|| Error::Config("start a training run first".into()))?;
        s.stepping = true;
        Ok((trainer, data))
    })
}

fn put_trainer(trainer: Trainer) -> Result<(), JsError> {
    with(|s| {
        s.stepping = false;
        if trainer.steps_done() > 0 {
            s.trained = Some(trainer.policy());
        }
        s.trainer = Some(trainer);
        Ok(())
    })
}

/// One optimizer step of the current run. Returns the step's metrics (TRL names).
#[wasm_bindgen]
pub async fn train_step() -> Result<JsValue, JsError> {
    let (mut trainer, data) = take_trainer()?;
    let result = trainer.step(&data).await;
    put_trainer(trainer)?;
    to_js(&result.map_err(js_err)?)
}

/// The trained model as one file, for the browser's storage and the download button: a llama2.c
/// checkpoint for llama2.c models; otherwise the LoRA adapter (PEFT safetensors) after a LoRA run,
/// or the merged weights (Hugging Face safetensors) after full fine-tuning. Each carries what it
/// needs to be restored.
#[wasm_bindgen]
pub async fn export_trained() -> Result<Vec<u8>, JsError> {
    let (model, bundle, lora) =
        with(|s| Ok((need(&s.trained, "train the model")?, need(&s.bundle, "load a model")?, s.lora.clone())))?;
    if bundle.format == "llama2.c" && !model.has_adapters() {
        let weights = model.to_weights().await.map_err(js_err)?;
        return llama2c::save(&weights).map_err(js_err);
    }
    let files = match (&lora, model.has_adapters()) {
        (Some(l), true) => crate::export::adapter(&model, l, &bundle).await,
        _ => crate::export::merged(&model, &bundle).await,
    }
    .map_err(js_err)?;
    Ok(files.into_iter().find(|(name, _)| name.ends_with(".safetensors")).map(|(_, b)| b).unwrap_or_default())
}

/// Restore what [`export_trained`] produced (or a PEFT adapter's safetensors) for the loaded model.
#[wasm_bindgen]
pub fn restore_trained(bytes: &[u8]) -> Result<(), JsError> {
    with(|s| {
        let bundle = need(&s.bundle, "load a model")?;
        let (device, _) = need(&s.device, "initialize a device")?;
        let c = &bundle.weights.config;
        if let Ok(Some(adapter_config)) = peft::embedded_config(bytes) {
            let (lora, adapters) = peft::load(adapter_config.as_bytes(), bytes, c)?;
            let base = need(&s.base, "load a model")?;
            s.trained = Some(base.with_adapters(&lora, &adapters, &device)?);
            s.lora = Some(lora);
            return Ok(());
        }
        let weights = match hf::embedded_config(bytes) {
            Ok(Some(config)) => hf::load(config.as_bytes(), &[("model.safetensors", bytes)])?,
            _ => llama2c::load(bytes)?,
        };
        let mut want = c.clone();
        want.rope_layout = weights.config.rope_layout;
        if weights.config != want {
            return Err(Error::Config("these trained weights belong to a different model architecture".into()));
        }
        s.trained = Some(Model::from_weights(&weights, &device));
        s.lora = None;
        Ok(())
    })
}

/// Files (`[[name, bytes], ...]`) of the trained model: `"adapter"` (PEFT) or `"merged"`
/// (Hugging Face folder).
#[wasm_bindgen]
pub async fn export_files(kind: String) -> Result<js_sys::Array, JsError> {
    let (model, bundle, lora) = with(|s| {
        Ok((
            need(&s.trained, "train the model (or load an adapter)")?,
            need(&s.bundle, "load a model")?,
            s.lora.clone(),
        ))
    })?;
    let files = match kind.as_str() {
        "adapter" => {
            let lora = lora
                .filter(|_| model.has_adapters())
                .ok_or_else(|| js_err("the trained model has no LoRA adapter: train with LoRA"))?;
            crate::export::adapter(&model, &lora, &bundle).await
        }
        "merged" => crate::export::merged(&model, &bundle).await,
        other => return Err(js_err(format!("unknown export '{other}': use adapter or merged"))),
    }
    .map_err(js_err)?;
    let out = js_sys::Array::new();
    for (name, bytes) in files {
        out.push(&js_sys::Array::of2(&JsValue::from_str(&name), &js_sys::Uint8Array::from(bytes.as_slice())));
    }
    Ok(out)
}

/// Load a PEFT adapter (`adapter_config.json` text and `adapter_model.safetensors` bytes) onto the
/// base model; the result becomes the "trained" model.
#[wasm_bindgen]
pub fn import_adapter(config: &[u8], tensors: &[u8]) -> Result<JsValue, JsError> {
    with(|s| {
        if s.stepping {
            return Err(Error::Config("a training step is running".into()));
        }
        let bundle = need(&s.bundle, "load a model")?;
        let (device, _) = need(&s.device, "initialize a device")?;
        let (lora, adapters) = peft::load(config, tensors, &bundle.weights.config)?;
        let base = need(&s.base, "load a model")?;
        s.trained = Some(base.with_adapters(&lora, &adapters, &device)?);
        let info = serde_json::json!({ "rank": lora.rank, "alpha": lora.alpha, "targets": lora.targets, "adapters": adapters.len() });
        s.lora = Some(lora);
        Ok(info)
    })
    .and_then(|v| to_js(&v))
}

/// Training memory estimate for `config` on the loaded model with rows up to `seq_len` tokens.
#[wasm_bindgen]
pub fn memory_estimate(config: JsValue, seq_len: usize) -> Result<JsValue, JsError> {
    let cfg: TrainConfig =
        serde_wasm_bindgen::from_value(config).map_err(|e| js_err(format!("bad training settings: {e}")))?;
    let bundle = with(|s| need(&s.bundle, "load a model"))?;
    to_js(&crate::memory::estimate(&bundle.weights.config, &cfg, seq_len.max(2)))
}

/// The longest tokenized row of `rows` under `config` (chat template applied), for the estimate.
#[wasm_bindgen]
pub fn max_row_tokens(rows: JsValue, config: JsValue) -> Result<usize, JsError> {
    let rows: Vec<KtoExample> = serde_wasm_bindgen::from_value(rows).map_err(|e| js_err(format!("bad rows: {e}")))?;
    let cfg: TrainConfig =
        serde_wasm_bindgen::from_value(config).map_err(|e| js_err(format!("bad training settings: {e}")))?;
    let bundle = with(|s| need(&s.bundle, "load a model"))?;
    if rows.is_empty() {
        return Ok(2);
    }
    Ok(cfg.dataset_for(&bundle.tokenizer, &bundle.weights.config, &rows).map_err(js_err)?.max_row_len())
}

/// Loss and metrics of the current run's trained policy on the run's data, without updating.
#[wasm_bindgen]
pub async fn train_evaluate() -> Result<JsValue, JsError> {
    let (trainer, data) = take_trainer()?;
    let result = trainer.evaluate(&data).await;
    put_trainer(trainer)?;
    to_js(&result.map_err(js_err)?)
}

/// Load the sentiment judge from the `sentiment` package's lexicon files (text of labels.json,
/// emoji.json, negators.json).
#[wasm_bindgen]
pub fn judge_load(labels: &str, emoji: &str, negators: &str) -> Result<(), JsError> {
    let judge = crate::judge::Judge::from_json(labels, emoji, negators).map_err(js_err)?;
    with(|s| {
        s.judge = Some(Rc::new(judge));
        Ok(())
    })
}

/// AFINN scores of `texts` (an array of strings).
#[wasm_bindgen]
pub fn judge_scores(texts: JsValue) -> Result<JsValue, JsError> {
    let texts: Vec<String> = serde_wasm_bindgen::from_value(texts).map_err(js_err)?;
    let judge = with(|s| need(&s.judge, "load the sentiment judge"))?;
    to_js(&texts.iter().map(|t| judge.score(t)).collect::<Vec<_>>())
}

/// The documented mood recipe ("happier" | "sadder") as a settings object.
#[wasm_bindgen]
pub fn mood_recipe(mood: String) -> Result<JsValue, JsError> {
    let mood = match mood.as_str() {
        "happier" => crate::mood::Mood::Happier,
        "sadder" => crate::mood::Mood::Sadder,
        other => return Err(js_err(format!("unknown mood '{other}': use happier or sadder"))),
    };
    to_js(&crate::mood::MoodRecipe::new(mood))
}

/// Judged samples `[{prompt, text, tokens, score}]` → training rows and class weights under `rule`.
#[wasm_bindgen]
pub fn auto_label_rows(samples: JsValue, rule: JsValue) -> Result<JsValue, JsError> {
    let samples: Vec<crate::mood::JudgedSample> = serde_wasm_bindgen::from_value(samples).map_err(js_err)?;
    let rule: crate::mood::AutoLabel = serde_wasm_bindgen::from_value(rule).map_err(js_err)?;
    to_js(&crate::mood::labelled_rows(&samples, &rule))
}

/// Held-out evaluation of the "base" or "trained" model: judged samples on held-out prompts
/// with the recipe's fixed seeds, and held-out NLL.
#[wasm_bindgen]
pub async fn heldout_eval(which: String, sets: JsValue, recipe: JsValue) -> Result<JsValue, JsError> {
    let sets: crate::eval::PromptSets = serde_wasm_bindgen::from_value(sets).map_err(js_err)?;
    let recipe: crate::mood::MoodRecipe = serde_wasm_bindgen::from_value(recipe).map_err(js_err)?;
    let (model, bundle, device, judge) = with(|s| {
        let model = match which.as_str() {
            "base" => need(&s.base, "load a model")?,
            "trained" => need(&s.trained, "train the model (or restore trained weights)")?,
            other => return Err(Error::Config(format!("unknown model '{other}': use base or trained"))),
        };
        Ok((
            model,
            need(&s.bundle, "load a model")?,
            need(&s.device, "initialize a device")?.0,
            need(&s.judge, "load the sentiment judge")?,
        ))
    })?;
    let report =
        crate::mood::heldout_eval(&model, &bundle.tokenizer, &device, &judge, &sets, &recipe).await.map_err(js_err)?;
    to_js(&report)
}

/// KTO loss of a desirable and of an undesirable example at each implied reward in `r`, from the
/// engine's loss function (for the explainer's curves). Returns `{desirable, undesirable}`.
#[wasm_bindgen]
pub async fn loss_curve(r: Vec<f64>, z: f64, loss: JsValue) -> Result<JsValue, JsError> {
    let cfg: crate::kto::KtoLossConfig = serde_wasm_bindgen::from_value(loss).map_err(js_err)?;
    let device = with(|s| Ok(need(&s.device, "initialize a device")?.0))?;
    let (desirable, undesirable) = crate::kto::loss::loss_curve(&r, z, &cfg, &device).await.map_err(js_err)?;
    to_js(&serde_json::json!({ "desirable": desirable, "undesirable": undesirable }))
}

/// The engine's benchmark (`crate::bench`, the same as `kto bench`) on the loaded model and the
/// current device; `lora_rank` 0 is full fine-tuning, `chat` wraps the rows in the chat template.
#[wasm_bindgen]
pub async fn bench(
    steps: usize,
    batch: usize,
    seq_len: usize,
    gen_tokens: usize,
    lora_rank: usize,
    chat: bool,
) -> Result<JsValue, JsError> {
    let ((device, kind), bundle) =
        with(|s| Ok((need(&s.device, "initialize a backend")?, need(&s.bundle, "load a model")?)))?;
    let cfg = crate::bench::BenchConfig { steps, batch, seq_len, gen_tokens, lora_rank, chat };
    let now = || js_sys::Date::now();
    let r = crate::bench::run(&bundle, &device, kind, &cfg, &now).await.map_err(js_err)?;
    to_js(&r)
}
