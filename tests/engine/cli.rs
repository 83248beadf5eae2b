use std::process::{Command, Output};

use kto_studio::kto::to_jsonl;

use crate::common::*;

fn kto(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kto")).args(args).output().unwrap()
}

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("kto-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn generate_prints_only_the_generated_text() {
    let golden: serde_json::Value = serde_json::from_str(include_str!("../golden/greedy.json")).unwrap();
    let case = &golden["cases"][1];
    let out =
        kto(&["generate", "--prompt", case["prompt"].as_str().unwrap(), "--temperature", "0", "--max-tokens", "200"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8(out.stdout).unwrap(), format!("{}\n", case["text"].as_str().unwrap()));
}

#[test]
fn train_writes_trl_metrics_saves_and_eval_reads_the_result() {
    let rows = crate::training::sampled_dataset(&model(), &cpu());
    let data = tmp("train.jsonl");
    std::fs::write(&data, to_jsonl(&rows)).unwrap();
    let metrics = tmp("metrics.jsonl");
    let saved = tmp("trained.bin");
    let out = kto(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--steps",
        "4",
        "--batch-size",
        "8",
        "--lr",
        "2e-3",
        "--max-length",
        "96",
        "--metrics-out",
        metrics.to_str().unwrap(),
        "--save",
        saved.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(&metrics).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 4);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["step"], i + 1);
        for key in ["loss", "kl", "grad_norm", "learning_rate"] {
            assert!(l[key].as_f64().unwrap().is_finite(), "{key} in {l}");
        }
    }
    assert_eq!(lines[0]["loss"], 0.5);
    // eval the saved model against the built-in base on the same data
    let tok = builtin_file("tok512.bin");
    std::fs::write(tmp("tok512.bin"), tok).unwrap();
    let base = kto_studio::bundle::builtin_dir().unwrap().join("stories260K.bin");
    let eval = |extra: &[&str]| {
        let mut args =
            vec!["eval", "--model", saved.to_str().unwrap(), "--data", data.to_str().unwrap(), "--max-length", "96"];
        args.extend_from_slice(extra);
        let out = kto(&args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let m = eval(&["--reference", base.to_str().unwrap()]);
    assert!(m["rewards/margins"].as_f64().unwrap() > 0.0, "{m}");
    assert!(m["loss"].as_f64().unwrap() < 0.5, "{m}");
    // Without --reference the reference is the model's own base (itself here): no reward at all.
    let m = eval(&[]);
    assert_eq!(m["loss"].as_f64().unwrap(), 0.5, "{m}");
    assert_eq!(m["rewards/margins"].as_f64().unwrap(), 0.0, "{m}");
}

#[test]
fn adapter_is_honoured_by_train_and_eval_and_refused_by_bench() {
    let rows = crate::training::sampled_dataset(&model(), &cpu());
    let data = tmp("adapter-train.jsonl");
    std::fs::write(&data, to_jsonl(&rows)).unwrap();
    let adapter = tmp("adapter");
    let d = data.to_str().unwrap();
    let lora = ["--lora-rank", "4", "--lora-alpha", "8", "--lr", "1e-2", "--batch-size", "8", "--max-length", "96"];
    let mut args = vec!["train", "--data", d, "--steps", "4", "--export-adapter", adapter.to_str().unwrap()];
    args.extend_from_slice(&lora);
    let out = kto(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let a = adapter.to_str().unwrap();
    // eval: base + adapter against the base (the default reference) has learned something.
    let out = kto(&["eval", "--adapter", a, "--data", d, "--max-length", "96"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(m["loss"].as_f64().unwrap() < 0.5 && m["rewards/margins"].as_f64().unwrap() > 0.0, "{m}");
    // train --adapter continues it: the first step already starts below 0.5.
    let metrics = tmp("adapter-metrics.jsonl");
    let out = kto(&[
        "train",
        "--adapter",
        a,
        "--data",
        d,
        "--steps",
        "1",
        "--lr",
        "1e-2",
        "--batch-size",
        "8",
        "--max-length",
        "96",
        "--metrics-out",
        metrics.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("continuing the adapter"));
    let first: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&metrics).unwrap().lines().next().unwrap()).unwrap();
    assert!(first["loss"].as_f64().unwrap() < 0.5, "{first}");
    // --adapter with new LoRA settings is ambiguous; bench does not use it.
    let mut args = vec!["train", "--adapter", a, "--data", d, "--steps", "1"];
    args.extend_from_slice(&lora);
    let out = kto(&args);
    assert!(String::from_utf8_lossy(&out.stderr).contains("leave out --lora-rank"));
    let out = kto(&["bench", "--adapter", a]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--adapter does not change it"));
}

#[test]
fn bad_inputs_exit_with_a_message_not_a_panic() {
    let blob = tmp("blob.bin");
    std::fs::write(&blob, b"definitely not a model").unwrap();
    let bad_jsonl = tmp("bad.jsonl");
    std::fs::write(&bad_jsonl, "{\"prompt\": \"a\", \"completion\": \"b\", \"label\": true}\n{\"prompt\": \"a\"}\n")
        .unwrap();
    let tok = kto_studio::bundle::builtin_dir().unwrap().join("tok512.bin");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["generate", "--model", blob.to_str().unwrap(), "--tokenizer", tok.to_str().unwrap()], "llama2.c"),
        (vec!["train", "--data", bad_jsonl.to_str().unwrap()], "line 2"),
        (vec!["train", "--data", "/nonexistent.jsonl"], "cannot read"),
        (vec!["train", "--data", bad_jsonl.to_str().unwrap(), "--batch-size", "1"], "line 2"),
    ];
    for (args, want) in cases {
        let out = kto(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("error:") && err.contains(want) && !err.contains("panicked"), "{args:?}: {err}");
    }
}
