//! The fused CPU kernels (attention, RMSNorm, SwiGLU, RoPE, target log-probs) against the same maths
//! composed from burn tensor ops, on families of random shapes (and masks): outputs and the
//! gradients of every input.

use burn::tensor::{Distribution, Tensor, TensorData};
use kto_studio::model::fused::{self, KeyRanges};
use rand::{Rng, SeedableRng, rngs::StdRng};

use crate::common::cpu;

/// `a` and `b` agree wherever `keep` (one value per group of `a.len() / keep.len()` elements) is 1.
fn close<const D: usize>(name: &str, a: Tensor<D>, b: Tensor<D>, keep: &[f32]) {
    let (a, b) = (a.into_data().try_to_vec::<f32>().unwrap(), b.into_data().try_to_vec::<f32>().unwrap());
    let head = a.len() / keep.len();
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        if keep[i / head] == 1.0 {
            assert!((x - y).abs() <= 2e-5 + 2e-5 * y.abs(), "{name}[{i}]: fused {x}, composed {y}");
        }
    }
}

#[test]
fn fused_attention_matches_composed_ops_on_random_shapes_and_masks() {
    let mut rng = StdRng::seed_from_u64(7);
    let device = cpu().autodiff();
    assert!(fused::supported(&device), "the CPU device runs the fused kernel");
    for case in 0..40 {
        let (b, kv, g) = (rng.random_range(1..=3), rng.random_range(1..=3), rng.random_range(1..=3));
        let head = [1, 3, 8, 16, 64][rng.random_range(0..5)];
        let t = rng.random_range(1..=9);
        // Half the cases continue a KV cache (generation: no padding); half are padded batches.
        let (start, lengths) = if case % 2 == 0 {
            (rng.random_range(0..=5), Vec::new())
        } else {
            (0, (0..b).map(|_| rng.random_range(1..=t)).collect())
        };
        let window = rng.random_bool(0.4).then(|| rng.random_range(1..=5));
        let keys = start + t;
        let ranges = KeyRanges { queries: t, start, lengths: lengths.clone(), window };
        let mask = ranges.mask(b, t, keys, &device);
        // Rows that see no key at all (padding queries past a window) are never used: skip them.
        let hidden = mask.clone().into_data().try_to_vec::<bool>().unwrap();
        let seen = |row: usize, q: usize| if (0..keys).any(|k| !hidden[(row * t + q) * keys + k]) { 1.0 } else { 0.0 };
        // Per query row of q ([B, KV, g·T]) and per token of the output ([B, T]).
        let keep: Vec<f32> =
            (0..b).flat_map(|row| (0..kv * g * t).map(move |r| (row, r % t))).map(|(r, q)| seen(r, q)).collect();
        let keep_out: Vec<f32> =
            (0..b).flat_map(|row| (0..t).map(move |q| (row, q))).map(|(r, q)| seen(r, q)).collect();
        let rand = |rows: usize| Tensor::<4>::random([b, kv, rows, head], Distribution::Normal(0.0, 1.0), &device);
        let (q, k, v) = (rand(g * t), rand(keys), rand(keys));
        let weight = Tensor::<3>::random([b, t, kv * g * head], Distribution::Normal(0.0, 1.0), &device)
            * Tensor::<3>::from_data(TensorData::new(keep_out.clone(), [b, t, 1]), &device);
        let run = |attend: &dyn Fn(Tensor<4>, Tensor<4>, Tensor<4>) -> Tensor<3>| {
            let (q, k, v) = (q.clone().require_grad(), k.clone().require_grad(), v.clone().require_grad());
            let out = attend(q.clone(), k.clone(), v.clone());
            let grads = (out.clone() * weight.clone()).sum().backward();
            let g = |x: &Tensor<4>| x.grad(&grads).expect("gradient");
            (out.inner(), g(&q), g(&k), g(&v))
        };
        let f = run(&|q, k, v| fused::attention(q, k, v, ranges.clone()));
        let c = run(&|q, k, v| fused::composed(q, k, v, &mask));
        let what = format!(
            "case {case}: b {b} kv {kv} g {g} head {head} t {t} start {start} lengths {lengths:?} window {window:?}"
        );
        close(&format!("{what} out"), f.0, c.0, &keep_out);
        close(&format!("{what} dq"), f.1, c.1, &keep);
        let all = vec![1.0; b * kv * keys];
        close(&format!("{what} dk"), f.2, c.2, &all);
        close(&format!("{what} dv"), f.3, c.3, &all);
    }
}

/// Outputs and the gradients of every input: the fused op against its composition.
fn same_with_grads<const D: usize>(
    what: &str,
    inputs: Vec<Tensor<D>>,
    weight: Tensor<D>,
    fused: impl Fn(&[Tensor<D>]) -> Tensor<D>,
    composed: impl Fn(&[Tensor<D>]) -> Tensor<D>,
) {
    let run = |f: &dyn Fn(&[Tensor<D>]) -> Tensor<D>| {
        let inputs: Vec<Tensor<D>> = inputs.iter().map(|x| x.clone().require_grad()).collect();
        let out = f(&inputs);
        let grads = (out.clone() * weight.clone()).sum().backward();
        let mut all = vec![out.inner().into_data().try_to_vec::<f32>().unwrap()];
        all.extend(inputs.iter().map(|x| x.grad(&grads).expect("gradient").into_data().try_to_vec::<f32>().unwrap()));
        all
    };
    let (f, c) = (run(&fused), run(&composed));
    for (n, (f, c)) in f.iter().zip(&c).enumerate() {
        for (i, (x, y)) in f.iter().zip(c).enumerate() {
            assert!(
                (x - y).abs() <= 1e-4 + 1e-4 * y.abs(),
                "{what} (output 0, gradients 1..) #{n}[{i}]: fused {x}, composed {y}"
            );
        }
    }
}

#[test]
fn fused_rms_norm_and_swiglu_match_composed_ops() {
    use burn::tensor::activation::silu;
    let mut rng = StdRng::seed_from_u64(11);
    let device = cpu().autodiff();
    for case in 0..12 {
        let (rows, dim) = (rng.random_range(1..40), [1, 2, 7, 64, 130][case % 5]);
        let rand = |scale: f64| Tensor::<3>::random([2, rows, dim], Distribution::Normal(0.0, scale), &device);
        let eps = [1e-5, 1e-6, 1e-2][case % 3];
        let gamma = Tensor::<3>::random([1, 1, dim], Distribution::Normal(1.0, 0.3), &device);
        same_with_grads(
            &format!("rms_norm case {case}: rows {rows} dim {dim} eps {eps}"),
            vec![rand(2.0), gamma],
            rand(1.0),
            |x| fused::rms_norm(x[0].clone(), x[1].clone().reshape([dim]), eps),
            // burn-nn's RmsNorm, written out (its γ is a parameter, here an input to differentiate).
            |x| x[0].clone() / (x[0].clone().square().mean_dim(2) + eps).sqrt() * x[1].clone(),
        );
        same_with_grads(
            &format!("swiglu case {case}: rows {rows} dim {dim}"),
            vec![rand(4.0), rand(1.0)],
            rand(1.0),
            |x| fused::swiglu(x[0].clone(), x[1].clone()),
            |x| silu(x[0].clone()) * x[1].clone(),
        );
    }
}

#[test]
fn fused_rope_matches_the_rotation_matrix_form() {
    let mut rng = StdRng::seed_from_u64(5);
    let device = cpu().autodiff();
    for case in 0..12 {
        let rotate_half = case % 2 == 0;
        let (b, t, h, d) =
            (rng.random_range(1..3), rng.random_range(1..9), rng.random_range(1..5), [2, 4, 8, 64][case % 4]);
        // rot(x)[i] = ∓x[partner(i)]: the pair's first element takes the minus sign.
        let mut rot = vec![0.0f32; d * d];
        for i in 0..d {
            let (p, first) = if rotate_half { ((i + d / 2) % d, i < d / 2) } else { (i ^ 1, i % 2 == 0) };
            rot[p * d + i] = if first { -1.0 } else { 1.0 };
        }
        let rot = Tensor::<2>::from_data(TensorData::new(rot, [d, d]), &device);
        let table = |_| Tensor::<4>::random([1, t, 1, d], Distribution::Uniform(-1.0, 1.0), &device);
        let (cos, sin) = (table(0), table(1));
        let x = Tensor::<4>::random([b, t, h, d], Distribution::Normal(0.0, 1.0), &device);
        same_with_grads(
            &format!("rope case {case}: rotate_half {rotate_half} b {b} t {t} h {h} d {d}"),
            vec![x],
            Tensor::<4>::random([b, h, t, d], Distribution::Normal(0.0, 1.0), &device),
            |x| fused::rope(x[0].clone(), cos.clone(), sin.clone(), rotate_half),
            // The kernel writes heads first.
            |x| {
                let rotated = x[0].clone().reshape([b * t * h, d]).matmul(rot.clone()).reshape([b, t, h, d]);
                (x[0].clone() * cos.clone() + rotated * sin.clone()).swap_dims(1, 2)
            },
        );
    }
}

#[test]
fn fused_target_logps_match_gather_minus_logsumexp() {
    use burn::tensor::Int;
    let mut rng = StdRng::seed_from_u64(13);
    let device = cpu().autodiff();
    for case in 0..12 {
        // Vocabularies around the 8-lane edges, and wide logits (a model's early steps are not).
        let (rows, vocab) = (rng.random_range(1..150), [1, 7, 8, 9, 512, 1031][case % 6]);
        let scale = [1.0, 8.0, 30.0][case % 3];
        let targets: Vec<u32> = (0..rows).map(|_| rng.random_range(0..vocab) as u32).collect();
        let ids = Tensor::<2, Int>::from_data(
            TensorData::new(targets.iter().map(|&t| t as i32).collect::<Vec<_>>(), [rows, 1]),
            &device,
        );
        same_with_grads(
            &format!("target_logps case {case}: rows {rows} vocab {vocab} scale {scale}"),
            vec![Tensor::<2>::random([rows, vocab], Distribution::Normal(0.0, scale), &device)],
            Tensor::<2>::random([rows, 1], Distribution::Normal(0.0, 1.0), &device),
            |x| fused::target_logps(x[0].clone(), targets.clone()),
            |x| kto_studio::score::target_logps(x[0].clone(), ids.clone()),
        );
    }
}

#[test]
fn fused_linear_matches_burn_matmul_on_random_shapes_layouts_and_frozen_weights() {
    let compared = kto_studio::model::selfcheck::products(&cpu(), 28, 17).unwrap();
    assert!(compared > 100_000, "{compared} values compared");
}

#[test]
fn the_parallel_loop_runs_every_task_exactly_once_nested_or_not() {
    let ran = kto_studio::model::selfcheck::loops(200).unwrap();
    assert!(ran > 20_000, "{ran} tasks ran");
}
