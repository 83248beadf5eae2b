//! The speed benchmark every front end runs (`kto bench`, the page's bench): one workload, one
//! timing loop, and the numbers that say how far a backend is from its machine's limit — the
//! step's matrix-multiplication FLOPs over the matmul rate measured on the same device in the
//! same run.

use burn::tensor::{Device, Distribution, Tensor};
use serde::{Deserialize, Serialize};

use crate::generate::{SamplingConfig, generate};
use crate::kto::{KtoBatch, KtoExample, TrainConfig, Trainer};
use crate::model::{LoraConfig, Model, ModelConfig};
use crate::{BackendKind, ModelBundle, Result};

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default)]
pub struct BenchConfig {
    /// Timed KTO steps (after the warm-up: the first step, which also compiles kernels, and more up to `WARMUP_MS`).
    pub steps: usize,
    pub batch: usize,
    pub seq_len: usize,
    pub gen_tokens: usize,
    /// LoRA rank on every projection (0: full fine-tuning).
    pub lora_rank: usize,
    /// Wrap the rows in the model's chat template (instruct models).
    pub chat: bool,
}

impl Default for BenchConfig {
    fn default() -> Self {
        Self { steps: 10, batch: 8, seq_len: 64, gen_tokens: 128, lora_rank: 0, chat: false }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    pub backend: BackendKind,
    pub model: String,
    pub lora_rank: usize,
    pub kto_step_ms: f64,
    /// The first step: kernel compilation on a GPU backend, the baseline wasm compiler in a tab.
    pub first_step_ms: f64,
    pub kto_batch: usize,
    pub kto_tokens_per_step: usize,
    pub kto_tokens_per_s: f64,
    /// Matrix-multiplication work of one step (2 forwards + backward), in GFLOP.
    pub step_matmul_gflop: f64,
    /// The backend's matmul rate on the model's feed-forward shape, measured in this run.
    pub matmul_gflops: f64,
    /// `step_matmul_gflop / matmul_gflops`: the step if it were nothing but matmuls at that rate.
    pub matmul_ms: f64,
    /// `kto_step_ms / matmul_ms`: 1 means the step is all matmul; more is overhead elsewhere.
    pub step_over_matmul: f64,
    /// Of the (median) step, the time measured inside the CPU kernels' matrix products
    /// (`gemm::product`); the rest of the step is everything else. `None` on backends whose
    /// products are burn's (wgpu/WebGPU: queued GPU work, not timed on the host).
    pub products_ms: Option<f64>,
    /// Of the step, the time inside the fused CPU kernels' loops (norms, RoPE, softmax, SwiGLU,
    /// log-probs: `model::fused`); the step less the products and these is burn's (autodiff,
    /// optimizer, allocation). `None` where `products_ms` is.
    pub kernels_ms: Option<f64>,
    pub generate_tokens: usize,
    pub generate_tokens_per_s: f64,
}

/// Synthetic but real-token rows, cut from one story so every row fills `seq_len` tokens (a
/// quarter prompt, the rest completion), labels alternating.
pub fn examples(batch: usize) -> Vec<KtoExample> {
    let words: Vec<&str> =
        "Once upon a time there was a little girl named Lily who loved to play in the park with her friends every day"
            .split(' ')
            .collect();
    (0..batch)
        .map(|i| KtoExample {
            prompt: words[..4 + i % 3].join(" "),
            completion: format!(" {}", words[4 + i % 3..].join(" ").repeat(4)),
            label: i % 2 == 0,
            messages: None,
        })
        .collect()
}

pub fn train_config(cfg: &BenchConfig) -> TrainConfig {
    TrainConfig {
        batch_size: cfg.batch,
        max_length: cfg.seq_len,
        shuffle: false,
        steps: cfg.steps,
        lora: (cfg.lora_rank > 0).then(|| LoraConfig { rank: cfg.lora_rank, ..Default::default() }),
        chat: cfg.chat,
        ..Default::default()
    }
}

/// Matmul FLOPs of one forward over `rows × len` padded tokens (projections, attention) whose
/// classifier runs at `classified` positions (the trainer classifies only those that predict a
/// completion token).
pub fn forward_flops(c: &ModelConfig, rows: usize, len: usize, classified: usize) -> f64 {
    let n = (rows * len) as f64;
    let (d, h, q, kv, v) =
        (c.dim as f64, c.hidden_dim as f64, c.q_dim() as f64, c.kv_dim() as f64, c.vocab_size as f64);
    let mlp = if c.gated() { 3.0 } else { 2.0 };
    let per_layer = 2.0 * n * (d * q + 2.0 * d * kv + q * d + mlp * d * h)
        + 4.0 * (rows as f64) * (c.n_heads as f64) * (len as f64).powi(2) * c.head_dim() as f64;
    per_layer * c.n_layers as f64 + 2.0 * classified as f64 * d * v
}

/// Positions of a collated batch whose next token is a completion token.
fn classified(c: &crate::score::Collated) -> usize {
    (0..c.batch).map(|r| c.completion_mask[r * c.len + 1..(r + 1) * c.len].iter().filter(|&&m| m != 0.0).count()).sum()
}

/// A training step's matmul FLOPs: the KL forward, the main forward and its backward (twice the
/// forward: gradients of inputs and of weights; LoRA's frozen weights need only the former).
pub fn step_flops(c: &ModelConfig, batch: &KtoBatch, lora: bool) -> f64 {
    let main = forward_flops(c, batch.main.batch, batch.main.len, classified(&batch.main));
    let kl = batch.kl.as_ref().map_or(0.0, |k| forward_flops(c, k.batch, k.len, classified(k)));
    kl + main * if lora { 2.0 } else { 3.0 }
}

/// GFLOP/s of `[tokens, dim] · [dim, hidden]` on `device` through the model's own projection
/// (`fused::linear`), timed over enough repeats to last about `budget_ms` (one read-back at the
/// end, so the GPU queue is drained inside the timing).
pub async fn matmul_rate(device: &Device, m: usize, k: usize, n: usize, budget_ms: f64) -> Result<f64> {
    let now = crate::clock::now_ms;
    let a = Tensor::<2>::random([m, k], Distribution::Default, device);
    let b = Tensor::<2>::random([k, n], Distribution::Default, device);
    let run = async |reps: usize| -> Result<f64> {
        let t0 = now();
        let mut acc = Tensor::<1>::zeros([1], device);
        for _ in 0..reps {
            acc = acc + crate::model::fused::linear(a.clone(), b.clone()).narrow(0, 0, 1).narrow(1, 0, 1).reshape([1]);
        }
        crate::device::read_f32(acc).await?;
        Ok(now() - t0)
    };
    run(1).await?; // compile
    let once = run(1).await?.max(0.01);
    let reps = ((budget_ms / once) as usize).clamp(1, 1000);
    let ms = run(reps).await?;
    Ok(2.0 * (m * k * n) as f64 * reps as f64 / (ms / 1e3) / 1e9)
}

/// Warm-up before the timed steps: at least one step, at most this long or this many.
const WARMUP_MS: f64 = 2000.0;
const MAX_WARMUP_STEPS: usize = 20;

/// Runs `run` until `WARMUP_MS` have passed since `t0` or it has run `MAX_WARMUP_STEPS` times
/// (`done` of them already), and at least once. The browser compiles wasm twice: a fast baseline
/// first, optimized code for hot functions later, in the background; a small model's first
/// seconds run partly on the former. Warmed up, the timed runs are the steady ones a user's
/// training run (or generations after the first) spends its time in.
async fn warm_up(t0: f64, mut done: usize, mut run: impl AsyncFnMut() -> Result<()>) -> Result<()> {
    while done == 0 || (crate::clock::now_ms() - t0 < WARMUP_MS && done < MAX_WARMUP_STEPS) {
        run().await?;
        done += 1;
    }
    Ok(())
}

/// Greedy generation speed, then `cfg.steps` KTO steps after a warm-up (`WARMUP_MS`), then the matmul rate.
pub async fn run(
    bundle: &ModelBundle,
    device: &Device,
    backend: BackendKind,
    cfg: &BenchConfig,
) -> Result<BenchResult> {
    let now = crate::clock::now_ms;
    let tok = &bundle.tokenizer;
    let c = &bundle.weights.config;
    let model = Model::from_weights(&bundle.weights, device);
    let greedy = SamplingConfig { temperature: 0.0, max_tokens: cfg.gen_tokens, ..Default::default() };
    // The first run also compiles kernels.
    warm_up(now(), 0, async || {
        generate(&model, tok, device, "Once upon a time", 1, &greedy, |_, _| {}).await.map(drop)
    })
    .await?;
    let t0 = now();
    let out = generate(&model, tok, device, "Once upon a time", 1, &greedy, |_, _| {}).await?;
    let gen_ms = now() - t0;
    drop(model);

    let tcfg = train_config(cfg);
    let data = tcfg.dataset_for(tok, c, &examples(cfg.batch))?;
    let batch = data.batch(0);
    let tokens = batch.main.lengths.iter().sum::<usize>();
    let mut trainer = Trainer::new(&bundle.weights, device, tcfg)?;
    let t0 = now();
    trainer.step(&data).await?;
    let first_step_ms = now() - t0;
    warm_up(t0, 1, async || trainer.step(&data).await.map(drop)).await?;
    // Each step timed, and the time inside its matrix products and its fused kernels (zero where
    // burn computes: wgpu/WebGPU).
    let (products, kernels) = (&crate::model::PRODUCTS, &crate::model::KERNELS);
    let mut times = Vec::with_capacity(cfg.steps);
    for _ in 0..cfg.steps.max(1) {
        let t = now();
        products.start();
        kernels.start();
        trainer.step(&data).await?;
        let (in_products, in_kernels) = (products.stop(), kernels.stop());
        times.push((now() - t, in_products, in_kernels));
    }
    drop(trainer);
    // The median step, and its products' and kernels' shares.
    times.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (kto_step_ms, in_products, in_kernels) = times[times.len() / 2];
    let products_ms = (in_products > 0.0).then_some(in_products);
    let kernels_ms = products_ms.map(|_| in_kernels);
    let matmul_gflops = matmul_rate(device, tokens, c.dim, c.hidden_dim, 300.0).await?;
    let step_matmul_gflop = step_flops(c, &batch, cfg.lora_rank > 0) / 1e9;
    let matmul_ms = step_matmul_gflop / matmul_gflops * 1e3;
    Ok(BenchResult {
        backend,
        model: bundle.name.clone(),
        lora_rank: cfg.lora_rank,
        kto_step_ms,
        first_step_ms,
        kto_batch: cfg.batch,
        kto_tokens_per_step: tokens,
        kto_tokens_per_s: tokens as f64 / (kto_step_ms / 1e3),
        step_matmul_gflop,
        matmul_gflops,
        matmul_ms,
        step_over_matmul: kto_step_ms / matmul_ms,
        products_ms,
        kernels_ms,
        generate_tokens: out[0].ids.len(),
        generate_tokens_per_s: out[0].ids.len() as f64 / (gen_ms / 1e3),
    })
}
