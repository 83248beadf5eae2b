//! The benchmark's numbers: its FLOP count by hand for stories260K, and one real run on the CPU
//! (the step, the matmul rate, their ratio and the step's time in products are consistent).

use kto_studio::BackendKind;
use kto_studio::bench::{BenchConfig, forward_flops, run, step_flops, train_config};

use crate::common::{block, cpu, model};

#[test]
fn step_flops_are_the_hand_count_for_stories260k() {
    let m = model();
    let c = &m.weights.config;
    assert_eq!((c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.vocab_size), (64, 172, 5, 8, 4, 512));
    // Per layer, 512 tokens: q and o 64×64, k and v 64×32, three 64×172 MLP matrices (2 FLOP per
    // multiply-add), plus QKᵀ and PV over 8 heads of 8 dims, 64×64 positions per row.
    let layer = 2 * 512 * (64 * 64 + 2 * 64 * 32 + 64 * 64 + 3 * 64 * 172) + 2 * 2 * 8 * 8 * 64 * 64 * 8;
    // The classifier (64 → 512) runs only at the positions that predict a completion token.
    let fwd_at = |classified: usize| (5 * layer + 2 * classified * 64 * 512) as f64;
    assert_eq!(forward_flops(c, 8, 64, 100), fwd_at(100));
    let cfg = BenchConfig::default();
    let data = train_config(&cfg).dataset(&m.tokenizer, &kto_studio::bench::examples(cfg.batch)).unwrap();
    let batch = data.batch(0);
    assert_eq!((batch.main.batch, batch.main.len), (8, 64));
    let predicting = |c: &kto_studio::score::Collated| -> usize {
        (0..c.batch).map(|r| (1..c.len).filter(|&i| c.completion_mask[r * c.len + i] == 1.0).count()).sum()
    };
    let fwd = fwd_at(predicting(&batch.main));
    let kl = batch.kl.as_ref().unwrap();
    let kl_fwd = forward_flops(c, kl.batch, kl.len, predicting(kl));
    assert_eq!(step_flops(c, &batch, false), kl_fwd + 3.0 * fwd, "KL forward + main forward + backward (2×)");
    assert_eq!(step_flops(c, &batch, true), kl_fwd + 2.0 * fwd, "LoRA: the frozen weights need input gradients only");
}

#[test]
fn a_bench_run_reports_consistent_numbers() {
    let m = model();
    let cfg = BenchConfig { steps: 2, gen_tokens: 8, ..Default::default() };
    let r = block(run(&m, &cpu(), BackendKind::Cpu, &cfg)).unwrap();
    assert!(r.kto_step_ms > 0.0 && r.matmul_gflops > 0.0 && r.generate_tokens == 8, "{r:?}");
    assert!((r.matmul_ms - r.step_matmul_gflop / r.matmul_gflops * 1e3).abs() < 1e-6);
    assert!((r.step_over_matmul - r.kto_step_ms / r.matmul_ms).abs() < 1e-9);
    assert_eq!(r.kto_tokens_per_step, 512);
    // The CPU step's split: its products and its fused kernels took some but not all of it (the
    // step has burn's autodiff and AdamW besides; other tests' products and kernels, running
    // meanwhile, are not counted).
    let (p, k) = (r.products_ms.unwrap(), r.kernels_ms.unwrap());
    assert!(p > 0.0 && k > 0.0 && p + k < r.kto_step_ms, "{r:?}");
}
