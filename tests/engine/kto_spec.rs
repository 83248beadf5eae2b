//! Ten hand-checked cases of the KTO loss (T1–T10: values worked out by hand in each test) and the
//! step-0 identities of `docs/kto.md`, run through the engine's own loss code (autodiff on the CPU backend).

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Int, Tensor, TensorData};
use kto_studio::kto::batch::{TokenizedRow, kl_completions};
use kto_studio::kto::loss::{batch_metrics, kto_losses};
use kto_studio::kto::{KtoExample, KtoLossConfig, LossType, TrainConfig, Trainer, imbalance_advice, reference_point};
use kto_studio::score::sequence_logps;

use crate::common::*;

const POL: [f64; 4] = [-10.0, -12.0, -15.0, -9.0];
const REF: [f64; 4] = [-11.0, -12.5, -14.0, -9.5];
const LABELS: [bool; 4] = [true, true, false, false];
const POL_KL: [f64; 4] = [-20.0, -18.0, -22.0, -25.0];
const REF_KL: [f64; 4] = [-20.5, -18.2, -21.9, -25.2];

/// Loss, per-example losses and d loss / d policy logp, from the engine's loss function.
fn run(pol: &[f64], refs: &[f64], labels: &[bool], z: f64, cfg: &KtoLossConfig) -> (f64, Vec<f64>, Vec<f64>) {
    let device = cpu().autodiff();
    let n = pol.len();
    let p = Tensor::<1>::from_data(TensorData::new(pol.iter().map(|&x| x as f32).collect::<Vec<_>>(), [n]), &device)
        .require_grad();
    let r = Tensor::<1>::from_data(TensorData::new(refs.iter().map(|&x| x as f32).collect::<Vec<_>>(), [n]), &device);
    let losses = kto_losses(p.clone() - r, z, labels, cfg);
    let loss = losses.clone().mean();
    let grads = loss.backward();
    let g = p.grad(&grads).unwrap().into_data().convert::<f64>().try_into_vec::<f64>().unwrap();
    let l = losses.into_data().convert::<f64>().try_into_vec::<f64>().unwrap();
    (loss.into_scalar::<f32>() as f64, l, g)
}

fn z_of(pol_kl: &[f64], ref_kl: &[f64]) -> f64 {
    let d: Vec<f64> = pol_kl.iter().zip(ref_kl).map(|(a, b)| a - b).collect();
    reference_point(&[&d])
}

fn close(a: &[f64], b: &[f64], tol: f64) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= tol, "{a:?} vs {b:?}");
    }
}

fn cfg() -> KtoLossConfig {
    KtoLossConfig::default()
}

#[test]
fn t1_basic_batch() {
    let z = z_of(&POL_KL, &REF_KL);
    assert!((z - 0.2).abs() < 1e-12);
    let (loss, l, g) = run(&POL, &REF, &LABELS, z, &cfg());
    close(&l, &[0.4800107, 0.4925006, 0.4700359, 0.5074994], 1e-6);
    assert!((loss - 0.4875117).abs() < 1e-6, "{loss}");
    close(&g, &[-0.0062400, -0.0062486, 0.0062276, 0.0062486], 1e-6);
    let m = batch_metrics(&POL, &REF, &LABELS, z, loss, 0.1);
    assert!((m.rewards_chosen.unwrap() - 0.075).abs() < 1e-12);
    assert!((m.rewards_rejected.unwrap() + 0.025).abs() < 1e-12);
    assert!((m.rewards_margins.unwrap() - 0.1).abs() < 1e-12);
    assert_eq!(m.logps_chosen, Some(-11.0));
    assert_eq!(m.logps_rejected, Some(-12.0));
    assert!((m.kl - 0.2).abs() < 1e-12);
}

#[test]
fn t2_kl_is_clamped_at_zero() {
    let z = z_of(&POL_KL, &[-19.0, -17.5, -22.0, -24.5]);
    assert_eq!(z, 0.0);
    let (loss, l, g) = run(&POL, &REF, &LABELS, z, &cfg());
    close(&l, &[0.4750208, 0.4875026, 0.4750208, 0.5124974], 1e-6);
    assert!((loss - 0.4875104).abs() < 1e-6);
    close(&g, &[-0.0062344, -0.0062461, 0.0062344, 0.0062461], 1e-6);
}

#[test]
fn t3_single_class_batch_averages_over_present_rows_and_omits_absent_metrics() {
    let z = z_of(&POL_KL[..2], &REF_KL[..2]);
    assert!((z - 0.35).abs() < 1e-12);
    let (loss, l, g) = run(&POL[..2], &REF[..2], &LABELS[..2], z, &cfg());
    close(&l, &[0.4837557, 0.4962501], 1e-6);
    assert!((loss - 0.4900029).abs() < 1e-6);
    close(&g, &[-0.0124868, -0.0124993], 1e-6);
    let m = batch_metrics(&POL[..2], &REF[..2], &LABELS[..2], z, loss, 0.1);
    assert!(m.rewards_rejected.is_none() && m.rewards_margins.is_none() && m.logps_rejected.is_none());
    let json = serde_json::to_value(&m).unwrap();
    assert!(json.get("rewards/rejected").is_none() && json.get("rewards/margins").is_none());
    assert!(json.get("rewards/chosen").is_some());
}

#[test]
fn t4_weights_are_not_normalized() {
    let c = KtoLossConfig { desirable_weight: 2.0, ..cfg() };
    let (loss, l, _) = run(&POL, &REF, &LABELS, z_of(&POL_KL, &REF_KL), &c);
    close(&l, &[0.9600213, 0.9850011, 0.4700359, 0.5074994], 1e-6);
    assert!((loss - 0.7306395).abs() < 1e-6);
}

#[test]
fn t5_apo_zero_is_kto_with_z_zero() {
    // apo_zero_unpaired: the trainer passes z = 0 and builds no KL rows.
    let c = KtoLossConfig { loss_type: LossType::ApoZeroUnpaired, ..cfg() };
    let (loss, _, _) = run(&POL, &REF, &LABELS, 0.0, &c);
    assert!((loss - 0.4875104).abs() < 1e-6);
}

#[test]
fn t6_saturation() {
    let (loss, _, g) = run(&[-1.0, -1001.0], &[-1001.0, -1.0], &[true, false], 0.0, &cfg());
    assert!(loss.abs() < 1e-6);
    assert!(g.iter().all(|x| x.abs() < 1e-6));
    let (loss, _, g) = run(&[-1001.0, -1.0], &[-1.0, -1001.0], &[true, false], 0.0, &cfg());
    assert!((loss - 1.0).abs() < 1e-6);
    assert!(g.iter().all(|x| x.abs() < 1e-6));
}

#[test]
fn t7_reference_point_is_mean_of_group_means_then_clamp() {
    assert_eq!(reference_point(&[&[0.5, 0.1, 0.4, 0.2], &[-0.6, -0.4]]), 0.0);
    assert!((reference_point(&[&[0.5, 0.1, 0.4, 0.2], &[0.6, 0.4]]) - 0.4).abs() < 1e-12);
}

#[test]
fn t8_kl_pairs_take_the_previous_completion_within_each_chunk() {
    let rows: Vec<TokenizedRow> =
        (1..=4).map(|i| TokenizedRow { prompt_ids: vec![1], completion_ids: vec![i], label: true }).collect();
    assert_eq!(kl_completions(&rows, 4), vec![vec![4], vec![1], vec![2], vec![3]]);
    assert_eq!(kl_completions(&rows, 2), vec![vec![2], vec![1], vec![4], vec![3]]);
    // a chunk of size >= 2 never pairs a row with its own completion
    for bs in 2..=4 {
        for (i, c) in kl_completions(&rows, bs).iter().enumerate() {
            let chunk_len = rows.len().min((i / bs + 1) * bs) - (i / bs) * bs;
            if chunk_len >= 2 {
                assert_ne!(c, &rows[i].completion_ids, "batch {bs}, row {i}");
            }
        }
    }
    // last chunk of 3 (5 rows, batch 2 → chunks 2,2,1): a lone last row pairs with itself (TRL)
    let mut five = rows.clone();
    five.push(TokenizedRow { prompt_ids: vec![1], completion_ids: vec![5], label: false });
    assert_eq!(kl_completions(&five, 2)[4], vec![5]);
}

#[test]
fn t9_token_mask_sums_shifted_completion_log_probs() {
    let device = cpu();
    // Two-token vocabulary; logits [ln p, ln(1-p)] make log_softmax(target 0) = ln p exactly.
    let lp = [-1.0f64, -2.0, -0.5, -0.25, -0.1];
    let logits: Vec<f32> = lp.iter().flat_map(|&l| [l as f32, (1.0 - l.exp()).ln() as f32]).collect();
    let logits = Tensor::<3>::from_data(TensorData::new(logits, [1, 5, 2]), &device);
    let ids = Tensor::<2, Int>::from_data(TensorData::new(vec![0i32; 5], [1, 5]), &device);
    let mask = Tensor::<2>::from_data(TensorData::new(vec![0f32, 0.0, 1.0, 1.0, 1.0], [1, 5]), &device);
    let s = sequence_logps(logits, ids, mask).into_scalar::<f32>();
    assert!((s + 2.75).abs() < 1e-5, "{s}");
}

#[test]
fn t10_imbalance_advice() {
    let a = imbalance_advice(100, 1000, 1.0, 1.0).unwrap();
    assert_eq!(a.desirable_weight, (10.0, 13.3));
    assert_eq!(a.undesirable_weight, (0.08, 0.1));
    assert!(a.warn);
    assert!(!imbalance_advice(100, 100, 1.0, 1.0).unwrap().warn);
    assert!(imbalance_advice(0, 10, 1.0, 1.0).is_none());
}

fn stories_examples(n: usize) -> Vec<KtoExample> {
    stories()
        .iter()
        .take(n)
        .enumerate()
        .map(|(i, s)| {
            let cut = s.char_indices().nth(60).map_or(s.len(), |(j, _)| j);
            let end = s.char_indices().nth(160).map_or(s.len(), |(j, _)| j);
            KtoExample {
                prompt: s[..cut].to_string(),
                completion: s[cut..end].to_string(),
                label: i % 3 != 0,
                messages: None,
            }
        })
        .collect()
}

struct Collect<'a> {
    a: &'a GradientsParams,
    b: &'a GradientsParams,
    max_diff: f64,
    count: usize,
}

impl ModuleVisitor for Collect<'_> {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        let ga =
            self.a.get::<D>(p.id).expect("kto gradient").into_data().convert::<f64>().try_into_vec::<f64>().unwrap();
        let gb = self
            .b
            .get::<D>(p.id)
            .expect("closed-form gradient")
            .into_data()
            .convert::<f64>()
            .try_into_vec::<f64>()
            .unwrap();
        for (x, y) in ga.iter().zip(&gb) {
            self.max_diff = self.max_diff.max((x - y).abs());
        }
        self.count += 1;
    }
}

#[test]
fn step_zero_on_stories260k_loss_is_half_and_gradient_is_the_closed_form() {
    let m = model();
    let device = cpu();
    for (wd, wu) in [(1.0, 1.0), (1.3, 0.7)] {
        let cfg = TrainConfig {
            batch_size: 6,
            max_length: 128,
            shuffle: false,
            loss: KtoLossConfig { desirable_weight: wd, undesirable_weight: wu, ..Default::default() },
            ..Default::default()
        };
        let data = cfg.dataset(&m.tokenizer, &stories_examples(6)).unwrap();
        let trainer = Trainer::new(&m.weights, &device, cfg.clone()).unwrap();
        let batch = data.batch(0);
        let (metrics, grads) = block(trainer.microbatch(&batch, true, 1.0)).unwrap();
        let mean_w = batch.labels.iter().map(|&d| if d { wd } else { wu }).sum::<f64>() / batch.labels.len() as f64;
        // policy == reference at step 0, up to rounding: burn-flex's autodiff forward (the policy's)
        // sums in another order than its plain one (the cached reference's), ~1e-7 relative.
        assert!((metrics.loss - 0.5 * mean_w).abs() < 1e-6, "{} vs {}", metrics.loss, 0.5 * mean_w);
        assert_eq!(metrics.kl, 0.0, "z compares the policy and reference on the same (plain) path: exactly 0");
        assert!(metrics.rewards_margins.unwrap().abs() < 1e-6, "{:?}", metrics.rewards_margins);
        let grads = grads.unwrap();

        // Closed form: grad = β/(4B) · (λ_U Σ_undesirable ∇logp_i − λ_D Σ_desirable ∇logp_i).
        let policy = trainer.policy_autodiff();
        let ad = device.clone().autodiff();
        let ids = batch.main.ids_tensor(&ad);
        let logps = sequence_logps(policy.forward(ids.clone(), &batch.main.lengths), ids, batch.main.mask_tensor(&ad));
        let b = batch.labels.len() as f64;
        let coef: Vec<f32> =
            batch.labels.iter().map(|&d| (cfg.loss.beta / (4.0 * b) * if d { -wd } else { wu }) as f32).collect();
        let coef = Tensor::<1>::from_data(TensorData::new(coef, [batch.labels.len()]), &ad);
        let closed = GradientsParams::from_grads((logps * coef).sum().backward(), policy);
        let mut c = Collect { a: &grads, b: &closed, max_diff: 0.0, count: 0 };
        policy.visit(&mut c);
        assert_eq!(c.count, 1 + 5 * 9 + 1, "every parameter has a gradient (tied embedding once)");
        assert!(c.max_diff <= 1e-6, "max |kto grad - closed form| = {}", c.max_diff);
    }
}

#[test]
fn loss_curve_is_the_loss_function_on_a_grid() {
    let r: Vec<f64> = (-40..=40).map(|i| i as f64 * 0.5).collect();
    let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
    for (loss_type, z) in [(LossType::Kto, 1.5), (LossType::ApoZeroUnpaired, 1.5)] {
        let cfg = KtoLossConfig { beta: 0.3, desirable_weight: 1.4, undesirable_weight: 0.8, loss_type };
        let c = block(kto_studio::kto::loss::loss_curve(&r, z, &cfg, &cpu())).unwrap();
        let (d, u) = (c.desirable, c.undesirable);
        let z_eff = if loss_type == LossType::Kto { z } else { 0.0 };
        for (i, &x) in r.iter().enumerate() {
            assert!((d[i] - 1.4 * (1.0 - sig(0.3 * (x - z_eff)))).abs() < 1e-6);
            assert!((u[i] - 0.8 * (1.0 - sig(0.3 * (z_eff - x)))).abs() < 1e-6);
        }
        // loss aversion made visible: at r = z both sit at half their weight
        let mid = r.iter().position(|&x| (x - z_eff).abs() < 1e-9).unwrap();
        assert!((d[mid] - 0.7).abs() < 1e-6 && (u[mid] - 0.4).abs() < 1e-6);
    }
}
