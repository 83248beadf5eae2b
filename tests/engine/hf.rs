//! Hugging Face checkpoints: Qwen2 logits against transformers (tests/reference/hf_logits.py),
//! sharded checkpoints, and the errors a user sees for incomplete or unsupported folders.

use std::path::PathBuf;

use kto_studio::ModelBundle;
use kto_studio::bundle::FileSet;
use kto_studio::formats::hf;
use kto_studio::model::Model;
use serde_json::Value;

use crate::common::*;

fn golden(sub: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(sub)
}

fn read(p: PathBuf) -> Vec<u8> {
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn qwen2_logits_match_transformers() {
    let dir = golden("hf/qwen2");
    let weights =
        hf::load(&read(dir.join("config.json")), &[("model.safetensors", &read(dir.join("model.safetensors")))])
            .unwrap();
    assert!(weights.config.qkv_bias && !weights.config.tied_embeddings);
    assert_eq!(weights.config.rope_theta, 1e6);
    let want: Value = serde_json::from_slice(&read(dir.join("logits.json"))).unwrap();
    let ids: Vec<u32> = want["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
    let device = cpu();
    let model = Model::from_weights(&weights, &device);
    let got = model
        .forward(kto_studio::model::token_ids(&ids, 1, &device), &[ids.len()])
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let want: Vec<f64> = want["logits"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    let diff = got.iter().zip(&want).map(|(a, b)| (*a as f64 - b).abs()).fold(0.0, f64::max);
    assert!(diff <= 1e-4, "max |logit diff| {diff}");
}

fn tiny_llama_files() -> Vec<(String, Vec<u8>)> {
    let dir = golden("trl/llama");
    ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
        .iter()
        .map(|n| (n.to_string(), read(dir.join(n))))
        .collect()
}

#[test]
fn sharded_checkpoint_loads_like_the_single_file() {
    let files = tiny_llama_files();
    let single = ModelBundle::from_files("tiny", &files, FileSet::Folder).unwrap();
    // Split the tensors over two shards with an index, as save_pretrained does for big models.
    let map = hf::TensorMap::from_safetensors(&[("model.safetensors", &files[1].1)]).unwrap();
    let mut names = map.names();
    let mut map = map;
    let second: Vec<String> = names.split_off(names.len() / 2);
    let mut shard = |list: &[String]| {
        let tensors = list
            .iter()
            .map(|n| {
                let (s, v) = map.remove(n).unwrap();
                (n.clone(), s, v)
            })
            .collect();
        hf::write_safetensors(tensors, None).unwrap()
    };
    let (a, b) = (shard(&names), shard(&second));
    let weight_map: serde_json::Map<String, Value> = names
        .iter()
        .map(|n| (n.clone(), "model-00001-of-00002.safetensors".into()))
        .chain(second.iter().map(|n| (n.clone(), "model-00002-of-00002.safetensors".into())))
        .collect();
    let index = serde_json::to_vec(&serde_json::json!({ "metadata": {}, "weight_map": weight_map })).unwrap();
    let mut sharded: Vec<(String, Vec<u8>)> = vec![
        files[0].clone(),
        files[2].clone(),
        files[3].clone(),
        ("model.safetensors.index.json".into(), index),
        ("model-00001-of-00002.safetensors".into(), a),
    ];
    let err = ModelBundle::from_files("tiny", &sharded, FileSet::Folder).unwrap_err().to_string();
    assert!(err.contains("model-00002-of-00002.safetensors") && err.contains("missing"), "{err}");
    sharded.push(("model-00002-of-00002.safetensors".into(), b));
    assert_eq!(ModelBundle::from_files("tiny", &sharded, FileSet::Folder).unwrap().weights, single.weights);
}

#[test]
fn incomplete_or_unsupported_folders_get_clear_errors() {
    let files = tiny_llama_files();
    let without = |name: &str| files.iter().filter(|(n, _)| n != name).cloned().collect::<Vec<_>>();
    let err = |f: &[(String, Vec<u8>)]| ModelBundle::from_files("tiny", f, FileSet::Folder).unwrap_err().to_string();
    assert!(err(&without("tokenizer.json")).contains("tokenizer.json is missing"));
    assert!(err(&without("model.safetensors")).contains("without weights"));

    let mut cfg: Value = serde_json::from_slice(&files[0].1).unwrap();
    cfg["architectures"] = serde_json::json!(["MambaForCausalLM"]);
    cfg["model_type"] = "mamba".into();
    let mut other = files.clone();
    other[0].1 = serde_json::to_vec(&cfg).unwrap();
    let e = err(&other);
    assert!(e.contains("MambaForCausalLM") && e.contains("LlamaForCausalLM"), "{e}");

    // A checkpoint missing one tensor names it.
    let mut map = hf::TensorMap::from_safetensors(&[("model.safetensors", &files[1].1)]).unwrap();
    let tensors = map
        .names()
        .into_iter()
        .filter(|n| !n.ends_with("layers.1.mlp.up_proj.weight"))
        .map(|n| {
            let (s, v) = map.remove(&n).unwrap();
            (n, s, v)
        })
        .collect();
    let mut missing = files.clone();
    missing[1].1 = hf::write_safetensors(tensors, None).unwrap();
    let e = err(&missing);
    assert!(e.contains("model.layers.1.mlp.up_proj.weight"), "{e}");

    let e = err(&[("notes.txt".into(), b"hello".to_vec())]);
    assert!(e.contains(".gguf") && e.contains("config.json"), "{e}");
}

/// `kto train --lora-rank ... --export-adapter --export-merged`, then `generate --adapter` and
/// `generate --model merged/` give the same greedy text.
#[test]
fn cli_adapter_and_merged_exports_generate_alike() {
    let kto = env!("CARGO_BIN_EXE_kto");
    let tmp = std::env::temp_dir().join(format!("kto-cli-lora-{}", std::process::id()));
    let run = |args: &[&str]| {
        let out = std::process::Command::new(kto).args(args).output().unwrap();
        assert!(out.status.success(), "kto {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let model = golden("trl/llama");
    let (m, data) = (model.to_str().unwrap(), golden("trl/data.jsonl"));
    let (adapter, merged) = (tmp.join("adapter"), tmp.join("merged"));
    run(&[
        "train",
        "--model",
        m,
        "--data",
        data.to_str().unwrap(),
        "--steps",
        "4",
        "--lr",
        "0.02",
        "--lora-rank",
        "4",
        "--max-length",
        "64",
        "--export-adapter",
        adapter.to_str().unwrap(),
        "--export-merged",
        merged.to_str().unwrap(),
    ]);
    let greedy = ["generate", "--prompt", "Once upon a time", "--temperature", "0", "--max-tokens", "20"];
    let with_adapter = run(&[&greedy[..], &["--model", m, "--adapter", adapter.to_str().unwrap()]].concat());
    let from_merged = run(&[&greedy[..], &["--model", merged.to_str().unwrap()]].concat());
    let base = run(&[&greedy[..], &["--model", m]].concat());
    assert_eq!(with_adapter, from_merged);
    assert_ne!(with_adapter, base, "the adapter should change the greedy text");
    let _ = std::fs::remove_dir_all(tmp);
}
