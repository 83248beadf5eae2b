//! The engine against TRL 1.16's KTOTrainer on tiny random Hugging Face models (Llama and GPT-2
//! with byte-level BPE tokenizers). Golden files: tests/reference/trl_parity.py.

use std::path::PathBuf;

use kto_studio::ModelBundle;
use kto_studio::kto::{KtoLossConfig, OptimizerKind, TrainConfig, Trainer, parse_jsonl};
use kto_studio::model::Model;
use kto_studio::score::sequence_logps;
use serde_json::Value;

use crate::common::{block, cpu};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/trl")
}

fn golden(arch: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join(arch).join("golden.json")).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

/// The CLI's `--batch-size 8 --steps 5 --optimizer sgd --lr 1.0 --beta 0.1 --max-length 64 --max-grad-norm 0 --no-shuffle`.
fn trl_config() -> TrainConfig {
    TrainConfig {
        loss: KtoLossConfig { beta: 0.1, ..Default::default() },
        optimizer: OptimizerKind::Sgd,
        learning_rate: 1.0,
        batch_size: 8,
        max_length: 64,
        steps: 5,
        shuffle: false,
        max_grad_norm: None,
        ..Default::default()
    }
}

/// `|a - b| <= rel * max(|b|, floor)`: relative, with a floor for values that are ~0 in TRL.
/// Metrics use rel 1e-3 and floor [`METRIC_FLOOR`]: TRL's step-1 rewards are exactly 0 (policy ==
/// reference), ours are rounding noise of ~1e-6 (the CPU backend's autodiff forward sums in
/// another order than its plain one), so values near 0 are held to 1e-5 absolute.
const METRIC_FLOOR: f64 = 1e-2;

fn close(what: &str, a: f64, b: f64, rel: f64, floor: f64) {
    let tol = rel * b.abs().max(floor);
    assert!((a - b).abs() <= tol, "{what}: engine {a} vs TRL {b} (|diff| {} > {tol})", (a - b).abs());
}

fn check_arch(arch: &str) {
    let g = golden(arch);
    let bundle = ModelBundle::load(Some(&dir().join(arch)), None).unwrap();
    let examples = parse_jsonl(&std::fs::read_to_string(dir().join("data.jsonl")).unwrap()).unwrap();
    let cfg = trl_config();
    let data = cfg.dataset(&bundle.tokenizer, &examples).unwrap();

    // Tokenization, common-prefix split, KL rotation: identical ids.
    let rows = g["tokenized"].as_array().unwrap();
    assert_eq!(data.rows.len(), rows.len());
    for (i, (ours, theirs)) in data.rows.iter().zip(rows).enumerate() {
        assert_eq!(ours.prompt_ids, ids(&theirs["prompt_ids"]), "{arch} row {i} prompt ids");
        assert_eq!(ours.completion_ids, ids(&theirs["completion_ids"]), "{arch} row {i} completion ids");
        assert_eq!(data.kl_completions[i], ids(&theirs["KL_completion_ids"]), "{arch} row {i} KL completion");
    }

    // Step 0: per-row summed log-probs of every batch.
    let device = cpu();
    let model = Model::from_weights(&bundle.weights, &device);
    let mut logps = Vec::new();
    let mut kl_logps = Vec::new();
    for b in 0..data.num_batches() {
        let batch = data.batch(b);
        for (c, out) in [(&batch.main, &mut logps), (batch.kl.as_ref().unwrap(), &mut kl_logps)] {
            let ids = c.ids_tensor(&device);
            let lp = sequence_logps(model.forward(ids.clone(), &c.lengths), ids, c.mask_tensor(&device));
            out.extend(lp.into_data().try_to_vec::<f32>().unwrap());
        }
    }
    for (name, ours, key) in [("log-prob", &logps, "step0_logps"), ("KL log-prob", &kl_logps, "step0_kl_logps")] {
        let theirs = g[key].as_array().unwrap();
        assert_eq!(ours.len(), theirs.len());
        for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
            let b = b.as_f64().unwrap();
            assert!((*a as f64 - b).abs() <= 1e-4, "{arch} row {i} {name}: engine {a} vs TRL {b}");
        }
    }

    // Five SGD steps: every metric TRL logs.
    let mut trainer = Trainer::new(&bundle.weights, &device, cfg).unwrap();
    for (k, want) in g["steps"].as_array().unwrap().iter().enumerate() {
        let m = block(trainer.step(&data)).unwrap();
        let got = serde_json::to_value(&m).unwrap();
        if k == 0 {
            // 0.5 up to rounding (the policy's autodiff forward and the reference's plain one sum
            // in different orders on the CPU backend).
            assert!((m.loss - 0.5).abs() < 1e-6, "{arch}: the step-0 loss is 0.5, got {}", m.loss);
            close(
                &format!("{arch} step 1 grad_norm"),
                m.grad_norm.unwrap(),
                want["grad_norm"].as_f64().unwrap(),
                1e-5,
                0.0,
            );
        }
        for (key, value) in want.as_object().unwrap() {
            if key == "step" {
                continue;
            }
            let ours =
                got.get(key).and_then(Value::as_f64).unwrap_or_else(|| panic!("{arch} step {}: no {key}", k + 1));
            close(&format!("{arch} step {} {key}", k + 1), ours, value.as_f64().unwrap(), 1e-3, METRIC_FLOOR);
        }
        for absent in ["rewards/rejected", "rewards/margins", "logps/rejected"] {
            assert_eq!(
                got.get(absent).is_some(),
                want.get(absent).is_some(),
                "{arch} step {}: {absent} reported by one side only",
                k + 1
            );
        }
    }
}

#[test]
fn llama_matches_trl() {
    check_arch("llama");
}

#[test]
fn gpt2_matches_trl() {
    check_arch("gpt2");
}

#[test]
fn cli_reproduces_trl_metrics() {
    for arch in ["llama", "gpt2"] {
        let g = golden(arch);
        let out = std::env::temp_dir().join(format!("kto-trl-{arch}-{}.jsonl", std::process::id()));
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_kto"))
            .args(["train", "--model"])
            .arg(dir().join(arch))
            .arg("--data")
            .arg(dir().join("data.jsonl"))
            .args("--batch-size 8 --steps 5 --optimizer sgd --lr 1.0 --beta 0.1 --max-length 64 --max-grad-norm 0 --no-shuffle --metrics-out".split(' '))
            .arg(&out)
            .output()
            .unwrap();
        assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
        let lines: Vec<Value> =
            std::fs::read_to_string(&out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let want = g["steps"].as_array().unwrap();
        assert_eq!(lines.len(), want.len());
        for (k, (got, want)) in lines.iter().zip(want).enumerate() {
            for (key, value) in want.as_object().unwrap() {
                if key == "step" {
                    continue;
                }
                close(
                    &format!("CLI {arch} step {} {key}", k + 1),
                    got[key].as_f64().unwrap(),
                    value.as_f64().unwrap(),
                    1e-3,
                    METRIC_FLOOR,
                );
            }
        }
        let _ = std::fs::remove_file(out);
    }
}
