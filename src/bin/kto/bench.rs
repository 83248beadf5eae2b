//! `kto bench`: rounds of the engine's benchmark (`kto_studio::bench`) on each backend, alternating
//! with the PyTorch reference (`tests/reference/torch_bench.py`) on the same rows, then the medians
//! and the ratios.

use std::path::{Path, PathBuf};

use kto_studio::bench::BenchConfig;
use kto_studio::bundle::checkout_roots;
use kto_studio::{BackendKind, Error, ModelBundle, Result, device};
use serde::Serialize;

use crate::median;

/// Each round times every backend, then PyTorch (alternating, so drifts in the machine's speed hit
/// both); prints one JSON line per backend and round, then the medians and the ratios.
pub async fn bench(
    bundle: &ModelBundle,
    kinds: &[BackendKind],
    cfg: &BenchConfig,
    torch: Option<&Path>,
    rounds: usize,
) -> Result<()> {
    let workload = match torch {
        Some(_) => Some(torch_workload(bundle, cfg)?),
        None => None,
    };
    let mut engine: Vec<Vec<f64>> = vec![Vec::new(); kinds.len()];
    let mut products: Vec<Vec<f64>> = vec![Vec::new(); kinds.len()];
    let mut kernels: Vec<Vec<f64>> = vec![Vec::new(); kinds.len()];
    let mut reference: Vec<(String, Vec<f64>)> = Vec::new();
    for round in 1..=rounds {
        for (i, &kind) in kinds.iter().enumerate() {
            let r = kto_studio::bench::run(bundle, &device::init(kind)?, kind, cfg).await?;
            println!("{}", serde_json::json!({ "round": round, "result": r }));
            engine[i].push(r.kto_step_ms);
            products[i].extend(r.products_ms);
            kernels[i].extend(r.kernels_ms);
        }
        if let (Some(python), Some(path)) = (torch, &workload) {
            for (j, imp) in ["lean", "transformers"].into_iter().enumerate() {
                let ms = torch_round(python, path, imp, cfg.steps)?;
                println!("{}", serde_json::json!({ "round": round, "pytorch": imp, "kto_step_ms": ms }));
                if reference.len() <= j {
                    reference.push((imp.to_string(), Vec::new()));
                }
                reference[j].1.push(ms);
            }
        }
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    eprintln!(
        "\nmedian ms / KTO step over {rounds} round(s), {} × {} tokens, {threads} threads:",
        cfg.batch, cfg.seq_len
    );
    // Name, median step, median times in the step's matrix products and fused kernels (CPU only).
    type Parts = Option<(f64, f64)>;
    let parts = |p: Vec<f64>, k: Vec<f64>| (!p.is_empty()).then(|| (median(p), median(k)));
    let medians: Vec<(String, f64, Parts)> = kinds
        .iter()
        .zip(engine.into_iter().zip(products.into_iter().zip(kernels)))
        .map(|(k, (t, (p, kk)))| (format!("kto {k}"), median(t), parts(p, kk)))
        .chain(reference.into_iter().map(|(imp, t)| (format!("pytorch {imp}"), median(t), None)))
        .collect();
    for (name, ms, parts) in &medians {
        let mut notes: Vec<String> = medians
            .iter()
            .filter(|(other, ..)| other.starts_with("pytorch") && other != name)
            .map(|(other, o, _)| format!("{:.2}× the speed of {other}", o / ms))
            .collect();
        if let Some((p, k)) = parts {
            notes.push(format!("products {p:.1} ms, fused kernels {k:.1} ms, burn's rest {:.1} ms", ms - p - k));
        }
        eprintln!("  {name:<22} {ms:>9.1} ms   {}", notes.join(", "));
    }
    Ok(())
}

/// Write the bench batch for `tests/reference/torch_bench.py`; returns the file's path.
fn torch_workload(bundle: &ModelBundle, cfg: &BenchConfig) -> Result<PathBuf> {
    let (true, Some(model)) = (bundle.format == "llama2.c", bundle.files.first()) else {
        return Err(Error::Config(
            "the PyTorch reference reads llama2.c models (the built-in stories260K); leave out --torch for this model"
                .into(),
        ));
    };
    if cfg.lora_rank > 0 || cfg.chat {
        return Err(Error::Config(
            "the PyTorch reference times full fine-tuning of plain rows: leave out --lora-rank and --chat".into(),
        ));
    }
    let tcfg = kto_studio::bench::train_config(cfg);
    let data = tcfg.dataset(&bundle.tokenizer, &kto_studio::bench::examples(cfg.batch))?;
    let batch = data.batch(0);
    let kl = batch.kl.as_ref().ok_or_else(|| Error::Config("the bench batch has no KL rows".into()))?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let w = TorchWorkload {
        model: model.clone(),
        threads,
        main: Rows::of(&batch.main),
        kl: Rows::of(kl),
        labels: &batch.labels,
        beta: tcfg.loss.beta,
        desirable_weight: tcfg.loss.desirable_weight,
        undesirable_weight: tcfg.loss.undesirable_weight,
        lr: tcfg.learning_rate,
        weight_decay: tcfg.weight_decay,
        max_grad_norm: tcfg.max_grad_norm.unwrap_or(f64::INFINITY),
    };
    let path = std::env::temp_dir().join(format!("kto-bench-workload-{}.json", std::process::id()));
    std::fs::write(&path, serde_json::to_vec(&w).map_err(|e| Error::Config(e.to_string()))?)
        .map_err(|e| Error::Config(format!("cannot write {}: {e}", path.display())))?;
    Ok(path)
}

fn torch_round(python: &Path, workload: &Path, imp: &str, steps: usize) -> Result<f64> {
    let rel = "tests/reference/torch_bench.py";
    let script = checkout_roots().map(|root| root.join(rel)).into_iter().find(|p| p.is_file()).unwrap_or(rel.into());
    let out = std::process::Command::new(python)
        .arg(&script)
        .arg(workload)
        .args(["--impl", imp, "--steps", &steps.to_string()])
        .output()
        .map_err(|e| Error::Config(format!("cannot run {}: {e}", python.display())))?;
    if !out.status.success() {
        return Err(Error::Config(format!(
            "the PyTorch reference failed ({}): {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
        )));
    }
    let line = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(line.trim())
        .map_err(|e| Error::Config(format!("unexpected output from the PyTorch reference ({e}): {line}")))?;
    v["kto_step_ms"].as_f64().ok_or_else(|| Error::Config(format!("no kto_step_ms in {line}")))
}

/// The workload as the PyTorch reference (`tests/reference/torch_bench.py`) reads it: the same
/// collated rows, labels and hyper-parameters.
#[derive(Debug, Serialize)]
pub struct TorchWorkload<'a> {
    pub model: String,
    pub threads: usize,
    pub main: Rows<'a>,
    pub kl: Rows<'a>,
    pub labels: &'a [bool],
    pub beta: f64,
    pub desirable_weight: f64,
    pub undesirable_weight: f64,
    pub lr: f64,
    pub weight_decay: f64,
    pub max_grad_norm: f64,
}

#[derive(Debug, Serialize)]
pub struct Rows<'a> {
    pub batch: usize,
    pub len: usize,
    pub ids: &'a [u32],
    pub lengths: &'a [usize],
    pub completion_mask: &'a [f32],
}

impl<'a> Rows<'a> {
    pub fn of(c: &'a kto_studio::score::Collated) -> Self {
        Rows { batch: c.batch, len: c.len, ids: &c.ids, lengths: &c.lengths, completion_mask: &c.completion_mask }
    }
}
