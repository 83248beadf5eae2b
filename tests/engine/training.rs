use burn::tensor::Device;
use kto_studio::ModelBundle;
use kto_studio::generate::{SamplingConfig, generate};
use kto_studio::kto::{KtoExample, LossType, Metrics, OptimizerKind, TrainConfig, Trainer};
use kto_studio::model::Model;

use crate::common::*;

const PROMPTS: [&str; 4] =
    ["Once upon a time, there was a", "One day, Tom went to the", "Lily saw a big", "The little bird"];

/// A labelled set from the model's own samples: completions that mention "happy" or "fun" are
/// desirable, the others undesirable (both classes are guaranteed present by construction).
pub fn sampled_dataset(m: &ModelBundle, device: &Device) -> Vec<KtoExample> {
    let llama = Model::from_weights(&m.weights, device);
    let cfg = SamplingConfig { temperature: 1.0, max_tokens: 40, seed: 1, ..Default::default() };
    let mut rows = Vec::new();
    for (p, prompt) in PROMPTS.iter().enumerate() {
        let samples = block(generate(
            &llama,
            &m.tokenizer,
            device,
            prompt,
            6,
            &SamplingConfig { seed: p as u64 * 100, ..cfg.clone() },
            |_, _| {},
        ))
        .unwrap();
        for (i, s) in samples.into_iter().enumerate() {
            let liked = s.text.contains("happy") || s.text.contains("fun");
            rows.push(KtoExample {
                prompt: prompt.to_string(),
                completion: s.text,
                label: if i < 2 { i == 0 } else { liked },
                messages: None,
            });
        }
    }
    rows
}

fn train(m: &ModelBundle, device: &Device, cfg: TrainConfig, rows: &[KtoExample]) -> (Vec<Metrics>, Trainer) {
    let data = cfg.dataset(&m.tokenizer, rows).unwrap();
    let mut trainer = Trainer::new(&m.weights, device, cfg.clone()).unwrap();
    let metrics = (0..cfg.steps).map(|_| block(trainer.step(&data)).unwrap()).collect();
    (metrics, trainer)
}

#[test]
fn thirty_adamw_steps_raise_margins_lower_loss_and_change_generations() {
    let m = model();
    let device = cpu();
    let rows = sampled_dataset(&m, &device);
    assert_eq!(rows.len(), 24);
    let cfg = TrainConfig {
        steps: 30,
        batch_size: 8,
        learning_rate: 1e-3,
        max_length: 128,
        optimizer: OptimizerKind::Adamw,
        ..Default::default()
    };
    let data = cfg.dataset(&m.tokenizer, &rows).unwrap();
    let (metrics, trainer) = train(&m, &device, cfg, &rows);
    for m in &metrics {
        assert!(m.loss.is_finite() && m.kl.is_finite() && m.grad_norm.unwrap().is_finite(), "{m:?}");
    }
    // Evaluate all batches before and after: the trained policy vs the same reference.
    let before = block(Trainer::new(&m.weights, &device, trainer.config().clone()).unwrap().evaluate(&data)).unwrap();
    let after = block(trainer.evaluate(&data)).unwrap();
    assert!((before.loss - 0.5).abs() < 1e-6 && before.rewards_margins.unwrap().abs() < 1e-5);
    assert!(after.loss < before.loss - 0.05, "loss {} -> {}", before.loss, after.loss);
    assert!(
        after.rewards_margins.unwrap() > before.rewards_margins.unwrap() + 0.5,
        "margins {:?} -> {:?}",
        before.rewards_margins,
        after.rewards_margins
    );
    assert!(metrics.last().unwrap().loss < metrics[0].loss);

    let greedy = SamplingConfig { temperature: 0.0, max_tokens: 60, ..Default::default() };
    let base = Model::from_weights(&m.weights, &device);
    let tuned = trainer.policy();
    let mut differ = 0;
    for prompt in PROMPTS {
        let a = block(generate(&base, &m.tokenizer, &device, prompt, 1, &greedy, |_, _| {})).unwrap();
        let b = block(generate(&tuned, &m.tokenizer, &device, prompt, 1, &greedy, |_, _| {})).unwrap();
        differ += (a[0].text != b[0].text) as usize;
    }
    assert!(differ >= 2, "only {differ} of 4 greedy generations changed");
}

#[test]
fn wgpu_and_cpu_agree_on_five_kto_steps() {
    let m = model();
    let rows = sampled_dataset(&m, &cpu());
    let cfg = TrainConfig { steps: 5, batch_size: 8, learning_rate: 1e-3, max_length: 96, ..Default::default() };
    let (a, _) = train(&m, &cpu(), cfg.clone(), &rows);
    let (b, _) = train(&m, &wgpu(), cfg, &rows);
    for (x, y) in a.iter().zip(&b) {
        let pairs = [
            (Some(x.loss), Some(y.loss)),
            (Some(x.kl), Some(y.kl)),
            (x.rewards_chosen, y.rewards_chosen),
            (x.rewards_rejected, y.rewards_rejected),
            (x.rewards_margins, y.rewards_margins),
            (x.logps_chosen, y.logps_chosen),
            (x.logps_rejected, y.logps_rejected),
            (x.grad_norm, y.grad_norm),
        ];
        // Relative 1e-4: summed log-probs are ~-100, where f32 accumulation order alone moves the
        // 4th decimal (measured: 1.6e-4 absolute, 2e-6 relative); logits themselves agree to 1e-4.
        for (p, q) in pairs {
            assert_eq!(p.is_some(), q.is_some(), "the same metrics are present on both backends");
            let (Some(p), Some(q)) = (p, q) else { continue };
            assert!((p - q).abs() <= 1e-4 * (1.0 + p.abs()), "step {}: cpu {p} vs wgpu {q}\n{x:?}\n{y:?}", x.step);
        }
    }
}

#[test]
fn apo_zero_sgd_grad_accum_and_clipping_run() {
    let m = model();
    let device = cpu();
    let rows = sampled_dataset(&m, &device);
    let cfg = TrainConfig {
        steps: 3,
        batch_size: 4,
        grad_accum: 2,
        optimizer: OptimizerKind::Sgd,
        learning_rate: 0.5,
        max_grad_norm: Some(0.01),
        loss: kto_studio::kto::KtoLossConfig { loss_type: LossType::ApoZeroUnpaired, ..Default::default() },
        max_length: 96,
        ..Default::default()
    };
    let (metrics, _) = train(&m, &device, cfg, &rows);
    assert!(metrics.iter().all(|m| m.kl == 0.0), "apo-zero has no reference point");
    assert!(metrics[1].loss < 0.5, "it learns");
    assert_eq!(metrics[2].step, 3);
}

#[test]
fn a_diverging_run_stops_with_a_clear_error_and_keeps_the_last_finite_weights() {
    let m = model();
    let device = cpu();
    let rows = sampled_dataset(&m, &device);
    let cfg = TrainConfig {
        steps: 6,
        batch_size: 8,
        learning_rate: 1e30,
        optimizer: OptimizerKind::Sgd,
        max_grad_norm: None,
        max_length: 96,
        ..Default::default()
    };
    let data = cfg.dataset(&m.tokenizer, &rows).unwrap();
    let mut trainer = Trainer::new(&m.weights, &device, cfg).unwrap();
    let mut error = None;
    for _ in 0..6 {
        match block(trainer.step(&data)) {
            Ok(_) => {}
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    let e = error.expect("an absurd learning rate must end in a non-finite loss");
    assert!(matches!(e, kto_studio::Error::NonFinite(_)), "{e:?}");
    assert!(e.to_string().contains("not finite") && e.to_string().contains("learning rate"), "{e}");
    let before = trainer.steps_done();
    assert!(block(trainer.step(&data)).is_err(), "it stays stopped rather than producing garbage");
    assert_eq!(trainer.steps_done(), before);
}
