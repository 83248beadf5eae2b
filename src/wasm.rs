//! The wasm boundary: conversions between JavaScript values and the engine's `Session`, and
//! nothing else. Every engine error becomes a JavaScript `Error` with its message.

use std::cell::RefCell;
use std::rc::Rc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use crate::bundle::FileSet;
use crate::kto::{Control, KtoExample, TrainConfig};
use crate::session::{Session, Which};

unsafe extern "C" {
    fn __wasm_call_ctors();
}

/// Runs when the module is instantiated. cubecl registers kernels through static
/// constructors; if nothing calls them here, wasm-ld wraps every export in a stub that re-runs
/// them all on each call (a 10x slowdown, see docs/wasm.md). The threaded build instantiates the
/// module once per pool worker over the same memory: the constructors must still run only once.
#[wasm_bindgen(start)]
pub fn start() {
    static CTORS: std::sync::Once = std::sync::Once::new();
    CTORS.call_once(|| unsafe { __wasm_call_ctors() });
    console_error_panic_hook::set_once();
}

/// Bytes of wasm linear memory: the engine's host-side peak (it never shrinks).
#[wasm_bindgen]
pub fn memory_bytes() -> f64 {
    (core::arch::wasm32::memory_size::<0>() * 65536) as f64
}

thread_local! {
    static SESSION: RefCell<Option<Rc<Session>>> = const { RefCell::new(None) };
}

fn session() -> Result<Rc<Session>, JsError> {
    SESSION.with(|s| s.borrow().clone()).ok_or_else(|| JsError::new("initialize a device (init) first"))
}

fn js_err(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

fn to_js<T: Serialize>(v: &T) -> Result<JsValue, JsError> {
    v.serialize(&serde_wasm_bindgen::Serializer::json_compatible()).map_err(js_err)
}

fn from_js<T: DeserializeOwned>(v: JsValue, what: &str) -> Result<T, JsError> {
    serde_wasm_bindgen::from_value(v).map_err(|e| js_err(format!("bad {what}: {e}")))
}

/// Flat training settings (the keys of `settings()`) → a validated config.
fn config(settings: JsValue) -> Result<TrainConfig, JsError> {
    TrainConfig::from_settings(&from_js(settings, "training settings")?).map_err(js_err)
}

/// Await the page's answer to an event: a Promise (or value) of `false` stops the run.
async fn ask(f: &js_sys::Function, event: JsValue) -> Control {
    let answer = match f.call1(&JsValue::NULL, &event) {
        Ok(v) if v.has_type::<js_sys::Promise>() => {
            JsFuture::from(js_sys::Promise::from(v)).await.unwrap_or(JsValue::FALSE)
        }
        Ok(v) => v,
        Err(_) => JsValue::FALSE,
    };
    if answer.is_falsy() && !answer.is_undefined() { Control::Stop } else { Control::Continue }
}

/// Start (or move) the session onto "wgpu" (WebGPU) or "cpu". Returns `{backend, device}`.
#[wasm_bindgen]
pub async fn init(backend: String) -> Result<JsValue, JsError> {
    let kind: crate::BackendKind = backend.parse().map_err(js_err)?;
    let device = crate::device::init_async(kind).await.map_err(js_err)?;
    let info = serde_json::json!({
        "backend": kind.to_string(),
        "device": format!("{device:?}"),
        "threads": crate::device::cpu_threads(),
    });
    match SESSION.with(|s| s.borrow().clone()) {
        Some(s) => s.set_device(kind, device).map_err(js_err)?,
        None => SESSION.with(|s| *s.borrow_mut() = Some(Rc::new(Session::new(kind, device)))),
    }
    to_js(&info)
}

/// A model from files picked together (names and bytes in order); `folder`: a whole folder's.
#[wasm_bindgen]
pub fn load_files(name: String, names: Vec<String>, files: js_sys::Array, folder: bool) -> Result<JsValue, JsError> {
    if names.len() as u32 != files.length() {
        return Err(js_err("load_files: names and files differ in length"));
    }
    let files: Vec<(String, Vec<u8>)> =
        names.into_iter().zip(files.iter()).map(|(n, f)| (n, js_sys::Uint8Array::new(&f).to_vec())).collect();
    let set = if folder { FileSet::Folder } else { FileSet::Picked };
    to_js(&session()?.open_files(&name, &files, set).map_err(js_err)?)
}

/// `n` samples of `prompt` from "base" or "trained"; `on_text(i, text)` as each grows.
#[wasm_bindgen]
pub async fn generate(
    prompt: String,
    n: usize,
    sampling: JsValue,
    which: String,
    chat: bool,
    on_text: js_sys::Function,
) -> Result<JsValue, JsError> {
    let cfg = if sampling.is_undefined() || sampling.is_null() {
        Default::default()
    } else {
        from_js(sampling, "sampling settings")?
    };
    let which: Which = which.parse().map_err(js_err)?;
    let on_text = |i: usize, text: &str| {
        let _ = on_text.call2(&JsValue::NULL, &JsValue::from(i as u32), &JsValue::from_str(text));
    };
    to_js(&session()?.generate(which, &prompt, n, &cfg, chat, on_text).await.map_err(js_err)?)
}

/// The training settings with their defaults, ranges and explanations.
#[wasm_bindgen]
pub fn settings() -> Result<JsValue, JsError> {
    to_js(&crate::kto::settings())
}

/// Every good row of a JSONL text, every bad line's error, and how many paired rows were split.
#[wasm_bindgen]
pub fn parse_jsonl_rows(text: &str) -> Result<JsValue, JsError> {
    to_js(&crate::kto::parse_jsonl_report(text))
}
#[wasm_bindgen]
pub fn rows_to_jsonl(rows: JsValue) -> Result<String, JsError> {
    Ok(crate::kto::to_jsonl(&from_js::<Vec<KtoExample>>(rows, "rows")?))
}

/// TRL's class-balance advice for the counts and the settings' weights (null: a class is empty).
#[wasm_bindgen]
pub fn imbalance_advice(n_desirable: usize, n_undesirable: usize, settings: JsValue) -> Result<JsValue, JsError> {
    let l = config(settings)?.loss;
    to_js(&crate::kto::imbalance_advice(n_desirable, n_undesirable, l.desirable_weight, l.undesirable_weight))
}

/// The rows as a run with `settings` would see them, and its memory estimate.
#[wasm_bindgen]
pub fn estimate(rows: JsValue, settings: JsValue) -> Result<JsValue, JsError> {
    let rows: Vec<KtoExample> = from_js(rows, "rows")?;
    to_js(&session()?.estimate(&rows, &config(settings)?).map_err(js_err)?)
}

/// Start a run on `rows` (tokenized once: an estimate of the same rows is reused).
#[wasm_bindgen]
pub fn train_start(rows: JsValue, settings: JsValue) -> Result<JsValue, JsError> {
    let rows: Vec<KtoExample> = from_js(rows, "rows")?;
    to_js(&session()?.start_run(&rows, config(settings)?, false).map_err(js_err)?)
}

/// Run the current run to its end; `on_step(report)` after each step may return (a Promise of)
/// `false` to stop. Returns `{steps, stopped, last}`.
#[wasm_bindgen]
pub async fn train(on_step: js_sys::Function) -> Result<JsValue, JsError> {
    let session = session()?;
    let end = session.train(|r| {
        let event = to_js(r).unwrap_or(JsValue::NULL);
        let f = on_step.clone();
        async move { ask(&f, event).await }
    });
    to_js(&end.await.map_err(js_err)?)
}

#[wasm_bindgen]
pub async fn train_evaluate() -> Result<JsValue, JsError> {
    to_js(&session()?.evaluate().await.map_err(js_err)?)
}
/// The trained model as `[[name, bytes], ...]`: kind "one" (one file), "adapter" or "merged".
#[wasm_bindgen]
pub async fn export_files(kind: String) -> Result<js_sys::Array, JsError> {
    let out = js_sys::Array::new();
    for (name, bytes) in session()?.export(&kind).await.map_err(js_err)? {
        out.push(&js_sys::Array::of2(&JsValue::from_str(&name), &js_sys::Uint8Array::from(bytes.as_slice())));
    }
    Ok(out)
}

/// Each token of `text` with its log-probability under the base and the trained model.
#[wasm_bindgen]
pub async fn token_diff(text: String) -> Result<JsValue, JsError> {
    to_js(&session()?.token_diff(&text).await.map_err(js_err)?)
}

#[wasm_bindgen]
pub fn restore_trained(bytes: &[u8]) -> Result<(), JsError> {
    session()?.restore(bytes).map_err(js_err)
}
#[wasm_bindgen]
pub fn import_adapter(config: &[u8], tensors: &[u8]) -> Result<JsValue, JsError> {
    to_js(&session()?.import_adapter(config, tensors).map_err(js_err)?)
}

/// Load the sentiment judge from the npm `sentiment` package's lexicon texts.
#[wasm_bindgen]
pub fn judge_load(labels: &str, emoji: &str, negators: &str) -> Result<(), JsError> {
    session()?.set_judge(crate::judge::Judge::from_json(labels, emoji, negators).map_err(js_err)?);
    Ok(())
}

/// `[score, label]`: the judge's score of `text` and the label `rule` gives it (null: none).
#[wasm_bindgen]
pub fn judge_label(text: &str, rule: JsValue) -> Result<JsValue, JsError> {
    to_js(&session()?.judge_label(text, &from_js(rule, "labelling rule")?).map_err(js_err)?)
}

/// The mood recipe: `mood` "happier" | "sadder", `size` "full" | "quick".
#[wasm_bindgen]
pub fn mood_recipe(mood: JsValue, size: String) -> Result<JsValue, JsError> {
    let mood = from_js(mood, "mood (use happier or sadder)")?;
    to_js(&crate::mood::MoodRecipe::sized(mood, &size).map_err(js_err)?)
}

/// Run the engine's mood recipe; `on_event(event)` sees each stage (a step may return false).
#[wasm_bindgen]
pub async fn mood_run(recipe: JsValue, sets: JsValue, on_event: js_sys::Function) -> Result<JsValue, JsError> {
    let recipe: crate::mood::MoodRecipe = from_js(recipe, "recipe")?;
    let sets: crate::eval::PromptSets = from_js(sets, "prompt sets")?;
    let session = session()?;
    let report = session.mood(&recipe, &sets, |e| {
        let event = to_js(&e).unwrap_or(JsValue::NULL);
        let f = on_event.clone();
        async move { ask(&f, event).await }
    });
    to_js(&report.await.map_err(js_err)?)
}

/// Held-out evaluation of "base" or "trained" under the recipe.
#[wasm_bindgen]
pub async fn heldout_eval(which: String, sets: JsValue, recipe: JsValue) -> Result<JsValue, JsError> {
    let which: Which = which.parse().map_err(js_err)?;
    let (sets, recipe) = (from_js(sets, "prompt sets")?, from_js(recipe, "recipe")?);
    to_js(&session()?.heldout(which, &sets, &recipe).await.map_err(js_err)?)
}

/// `{desirable, undesirable}`: the engine's loss at each implied reward in `r` (the explainer).
#[wasm_bindgen]
pub async fn loss_curve(r: Vec<f64>, z: f64, loss: JsValue) -> Result<JsValue, JsError> {
    to_js(&session()?.loss_curve(&r, z, &from_js(loss, "loss settings")?).await.map_err(js_err)?)
}

/// The engine's benchmark (`kto bench`) on the loaded model and the current device.
#[wasm_bindgen]
pub async fn bench(config: JsValue) -> Result<JsValue, JsError> {
    let cfg: crate::bench::BenchConfig = from_js(config, "bench settings")?;
    to_js(&session()?.bench(&cfg).await.map_err(js_err)?)
}

/// The CPU backend's parallel loop checked (`cases × 8` loops: every task runs once), then its
/// matrix products against burn's matmul on `cases` random shapes and layouts in this build (the
/// threaded one multiplies with its own kernel), and its attention against burn's composed ops on
/// as many random masks; the values compared.
#[wasm_bindgen]
pub async fn check_products(cases: usize) -> Result<usize, JsError> {
    let device = crate::device::init_async(crate::BackendKind::Cpu).await.map_err(js_err)?;
    crate::model::selfcheck::loops(cases * 8).map_err(js_err)?;
    let products = crate::model::selfcheck::products(&device, cases, 17).map_err(js_err)?;
    Ok(products + crate::model::selfcheck::attention(&device, cases, 7).map_err(js_err)?)
}

/// A Hub model id (`owner/name[@rev][:file]`) → `{ id, revision, file, url }`: where to list it.
#[wasm_bindgen]
pub fn hub_listing(spec: &str, endpoint: &str) -> Result<JsValue, JsError> {
    let repo = crate::hub::RepoRef::parse(spec).map_err(js_err)?;
    let url = repo.listing_url(endpoint);
    to_js(&serde_json::json!({ "id": repo.id, "revision": repo.revision, "file": repo.file, "url": url }))
}

/// The Hub's listing (JSON text) → `{ kind: 'plan', ...crate::hub::Plan }` or, for a repo of
/// several GGUF files and none named, `{ kind: 'choose', id, revision, files: [[name, size]] }`.
#[wasm_bindgen]
pub fn hub_plan(spec: &str, endpoint: &str, listing: &str) -> Result<JsValue, JsError> {
    let repo = crate::hub::RepoRef::parse(spec).map_err(js_err)?;
    let listing = crate::hub::Listing::parse(listing.as_bytes()).map_err(js_err)?;
    to_js(&crate::hub::next(&repo, endpoint, &listing).map_err(js_err)?)
}
