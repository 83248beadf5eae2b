//! The fused CPU kernels (attention, RMSNorm, SwiGLU, RoPE, target log-probs) against the same maths
//! composed from burn tensor ops, on families of random shapes (and masks): outputs and the
//! gradients of every input.

use burn::tensor::{Distribution, Tensor, TensorData};
use kto_studio::model::fused;
use rand::{Rng, SeedableRng, rngs::StdRng};

use crate::common::cpu;

#[test]
fn fused_attention_matches_composed_ops_on_random_shapes_and_masks() {
    assert!(fused::supported(&cpu()), "the CPU device runs the fused kernel");
    let compared = kto_studio::model::selfcheck::attention(&cpu(), 60, 7).unwrap();
    assert!(compared > 100_000, "{compared} values compared");
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
