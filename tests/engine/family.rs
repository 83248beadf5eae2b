//! The differential test over a family of random configurations: 24 tiny Llama / Qwen2 / GPT-2
//! (plus Llama with RoPE scaling, `llama3` and `linear`, and Qwen3: tests/reference/rope_configs.py;
//! Gemma 3 with sliding windows, soft-capping and its sandwich norms: tests/reference/gemma3_configs.py)
//! models that transformers saved (tests/reference/random_configs.py: hidden 32..128, head_dim
//! 8..64 also != hidden/heads, GQA 1/2/4, vocab 257..1024, tied/untied, random norms and biases,
//! rope_theta 1e4/1e6, F32/F16/BF16 files). Each is opened from a folder with the clutter real
//! folders carry — a second safetensors file with the same tensor names, a model.fp16 copy, an
//! adapter, READMEs and training JSONs — and must match transformers' logits within 1e-4 on cpu
//! and wgpu, in the padded training forward and in the KV-cached generation path; six of them
//! also match TRL 1.16's step-0 summed log-probs.

use std::path::PathBuf;

use burn::tensor::Device;
use kto_studio::ModelBundle;
use kto_studio::formats::hf;
use kto_studio::kto::{TrainConfig, parse_jsonl};
use kto_studio::model::{KvCache, Model, token_ids};
use kto_studio::score::sequence_logps;
use serde_json::Value;

use crate::common::{block, cpu, wgpu};

const TOL: f64 = 1e-4;

fn family_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/family")
}

fn names() -> Vec<String> {
    let index = std::fs::read_to_string(family_dir().join("index.json")).unwrap();
    serde_json::from_str(&index).unwrap()
}

fn golden(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(family_dir().join(name).join("reference.json")).unwrap()).unwrap()
}

fn u32s(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

/// A copy of the model folder with the files a real download or training folder accumulates.
/// `grads.safetensors` has the model's tensor names and other values: reading it as weights
/// (the bug this guards against) changes every logit.
pub fn cluttered_copy(name: &str, test: &str) -> PathBuf {
    let src = family_dir().join(name);
    // Tests run in parallel threads of one process: one folder per (test, model).
    let dst = std::env::temp_dir().join(format!("kto-family-{}-{test}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dst);
    std::fs::create_dir_all(&dst).unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(src.join(f), dst.join(f)).unwrap();
    }
    let model = std::fs::read(src.join("model.safetensors")).unwrap();
    let mut map = hf::TensorMap::from_safetensors(&[("model.safetensors", &model)]).unwrap();
    let grads: Vec<(String, Vec<usize>, Vec<f32>)> = map
        .names()
        .into_iter()
        .map(|n| {
            let (shape, v) = map.remove(&n).unwrap();
            let g = v.iter().enumerate().map(|(i, x)| 1e-3 * ((i % 7) as f32 - 3.0) - x * 0.5).collect();
            (n, shape, g)
        })
        .collect();
    let lora_a =
        vec![("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight".to_string(), vec![2, 4], vec![0.5; 8])];
    for (file, bytes) in [
        ("grads.safetensors", hf::write_safetensors(grads, None).unwrap()),
        ("model.fp16.safetensors", model.clone()),
        ("adapter_model.safetensors", hf::write_safetensors(lora_a, None).unwrap()),
        ("README.md", b"# my fine-tune\n\nTrained with TRL.\n".to_vec()),
        ("training_args.json", br#"{"learning_rate": 5e-7, "per_device_train_batch_size": 8}"#.to_vec()),
        ("trainer_state.json", br#"{"global_step": 120, "log_history": []}"#.to_vec()),
        ("generation_config.json", br#"{"do_sample": false, "eos_token_id": 256}"#.to_vec()),
        ("optimizer.pt", vec![0x80, 0x02, 0x7d, 0x71, 0x00]),
    ] {
        std::fs::write(dst.join(file), bytes).unwrap();
    }
    dst
}

/// Our logits `[T, V]` of one text against transformers': the probed ids, the logsumexp of
/// every position, and the argmax (ours may pick another id only on a near-tie).
fn compare(what: &str, got: &[f32], vocab: usize, want: &Value, probe: &[usize]) {
    let t = want["logsumexp"].as_array().unwrap().len();
    assert_eq!(got.len(), t * vocab, "{what}: logits shape");
    for pos in 0..t {
        let row = &got[pos * vocab..(pos + 1) * vocab];
        let max = row.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x as f64));
        let lse = max + row.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln();
        let want_lse = want["logsumexp"][pos].as_f64().unwrap();
        assert!((lse - want_lse).abs() <= TOL, "{what} position {pos}: logsumexp {lse} vs transformers {want_lse}");
        for (j, &id) in probe.iter().enumerate() {
            let (a, b) = (row[id] as f64, want["probe_logits"][pos][j].as_f64().unwrap());
            assert!((a - b).abs() <= TOL, "{what} position {pos} token {id}: logit {a} vs transformers {b}");
        }
        let arg = want["argmax"][pos].as_u64().unwrap() as usize;
        assert!(max - row[arg] as f64 <= TOL, "{what} position {pos}: transformers' argmax {arg} is not ours");
    }
}

/// All texts in one right-padded batch (the training forward).
fn check_padded(name: &str, model: &Model, g: &Value, device: &Device, backend: &str) {
    let texts = g["texts"].as_array().unwrap();
    let seqs: Vec<Vec<u32>> = texts.iter().map(|t| u32s(&t["ids"])).collect();
    let t = seqs.iter().map(Vec::len).max().unwrap();
    let lengths: Vec<usize> = seqs.iter().map(Vec::len).collect();
    let ids: Vec<u32> =
        seqs.iter().flat_map(|s| s.iter().copied().chain(std::iter::repeat_n(256, t - s.len()))).collect();
    let logits = model.forward(token_ids(&ids, seqs.len(), device), &lengths).into_data().try_to_vec::<f32>().unwrap();
    let vocab = model.config().vocab_size;
    let probe: Vec<usize> = g["probe"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    for (i, text) in texts.iter().enumerate() {
        let row = &logits[i * t * vocab..i * t * vocab + lengths[i] * vocab];
        compare(&format!("{name} {backend} padded text {i}"), row, vocab, text, &probe);
    }
}

/// One text through the KV cache: a prefill of a few tokens, then one token per call.
fn check_cached(name: &str, model: &Model, g: &Value, device: &Device, backend: &str, which: &[usize]) {
    let vocab = model.config().vocab_size;
    let probe: Vec<usize> = g["probe"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    for &i in which {
        let text = &g["texts"][i];
        let ids = u32s(&text["ids"]);
        let prefill = ids.len().min(5);
        let mut cache = KvCache::default();
        let mut got = model
            .forward_cached(token_ids(&ids[..prefill], 1, device), &mut cache)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        for &id in &ids[prefill..] {
            got.extend(
                model.forward_cached(token_ids(&[id], 1, device), &mut cache).into_data().try_to_vec::<f32>().unwrap(),
            );
        }
        compare(&format!("{name} {backend} cached text {i}"), &got, vocab, text, &probe);
    }
}

fn open(name: &str, test: &str) -> (ModelBundle, PathBuf) {
    let dir = cluttered_copy(name, test);
    let bundle = ModelBundle::load(Some(&dir), None).unwrap_or_else(|e| panic!("{name}: {e}"));
    (bundle, dir)
}

#[test]
fn family_matches_transformers_on_cpu() {
    let names = names();
    assert!(names.len() >= 24, "the family has {} models", names.len());
    let device = cpu();
    for name in &names {
        let g = golden(name);
        let (bundle, dir) = open(name, "cpu");
        assert_eq!(
            bundle.files.iter().filter(|f| f.ends_with(".safetensors")).collect::<Vec<_>>(),
            ["model.safetensors"]
        );
        let model = Model::from_weights(&bundle.weights, &device);
        check_padded(name, &model, &g, &device, "cpu");
        check_cached(name, &model, &g, &device, "cpu", &(0..g["texts"].as_array().unwrap().len()).collect::<Vec<_>>());
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn family_matches_transformers_on_wgpu() {
    let device = wgpu();
    for name in names() {
        let g = golden(&name);
        let (bundle, dir) = open(&name, "wgpu");
        let model = Model::from_weights(&bundle.weights, &device);
        check_padded(&name, &model, &g, &device, "wgpu");
        check_cached(&name, &model, &g, &device, "wgpu", &[1]);
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn family_matches_trl_step0_logps() {
    let device = cpu();
    let mut checked = 0;
    for name in names() {
        let g = golden(&name);
        let Some(trl) = g.get("trl") else { continue };
        let (bundle, dir) = open(&name, "trl");
        let rows: String = trl["rows"].as_array().unwrap().iter().map(|r| r.to_string() + "\n").collect();
        let examples = parse_jsonl(&rows).unwrap();
        let cfg = TrainConfig {
            batch_size: trl["batch_size"].as_u64().unwrap() as usize,
            max_length: trl["max_length"].as_u64().unwrap() as usize,
            shuffle: false,
            ..Default::default()
        };
        let data = cfg.dataset_for(&bundle.tokenizer, &bundle.weights.config, &examples).unwrap();
        for (i, (ours, theirs)) in data.rows.iter().zip(trl["tokenized"].as_array().unwrap()).enumerate() {
            assert_eq!(ours.prompt_ids, u32s(&theirs["prompt_ids"]), "{name} row {i} prompt ids");
            assert_eq!(ours.completion_ids, u32s(&theirs["completion_ids"]), "{name} row {i} completion ids");
            assert_eq!(data.kl_completions[i], u32s(&theirs["KL_completion_ids"]), "{name} row {i} KL ids");
        }
        let model = Model::from_weights(&bundle.weights, &device);
        let batch = data.batch(0);
        for (c, key) in [(&batch.main, "step0_logps"), (batch.kl.as_ref().unwrap(), "step0_kl_logps")] {
            let ids = c.ids_tensor(&device);
            let lp = sequence_logps(model.forward(ids.clone(), &c.lengths), ids, c.mask_tensor(&device));
            let ours = lp.into_data().try_to_vec::<f32>().unwrap();
            for (i, (a, b)) in ours.iter().zip(trl[key].as_array().unwrap()).enumerate() {
                let b = b.as_f64().unwrap();
                assert!((*a as f64 - b).abs() <= TOL, "{name} row {i} {key}: engine {a} vs TRL {b}");
            }
        }
        checked += 1;
        std::fs::remove_dir_all(dir).unwrap();
    }
    assert_eq!(checked, 6, "six models carry TRL goldens");
}

#[test]
fn cluttered_folder_reads_only_the_model_weights() {
    let dir = cluttered_copy("llama_01", "resolve");
    let bundle = ModelBundle::load(Some(&dir), None).unwrap();
    assert_eq!(bundle.files, ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]);
    // Without model.safetensors, several candidates: refused, naming them, never mixed.
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    let err = ModelBundle::load(Some(&dir), None).unwrap_err().to_string();
    assert!(err.contains("grads.safetensors") && err.contains("model.fp16.safetensors"), "{err}");
    assert!(err.contains("--model"), "says how to name one: {err}");
    // Naming one file reads that file alone.
    let named = ModelBundle::load(Some(&dir.join("model.fp16.safetensors")), None).unwrap();
    assert_eq!(named.files[1], "model.fp16.safetensors");
    // Two files read together (shards) that share a tensor name: refused.
    let bytes = std::fs::read(dir.join("model.fp16.safetensors")).unwrap();
    let err = hf::TensorMap::from_safetensors(&[("a.safetensors", &bytes), ("b.safetensors", &bytes)]).err().unwrap();
    assert!(err.to_string().contains("in both a.safetensors and b.safetensors"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Qwen3, Gemma 3 and RoPE-scaled models write back as Hugging Face folders that read as the same
/// model (q/k norms, Gemma's `1 + w` norms, layer types and `rope_parameters` included), and train
/// with LoRA.
#[test]
fn new_architectures_round_trip_and_train_with_lora() {
    for name in ["qwen3_05", "qwen3_08", "rope_llama3_00", "rope_linear_03", "gemma3_02", "gemma3_04"] {
        let (bundle, _) = open(name, "roundtrip");
        let (config, tensors) = kto_studio::formats::hf::save(&bundle.weights).unwrap();
        let back =
            kto_studio::formats::hf::load(config.as_bytes(), &[("model.safetensors", tensors.as_slice())]).unwrap();
        assert_eq!(back.config, bundle.weights.config, "{name}");
        assert_eq!(back, bundle.weights, "{name}");
        let rows = vec![
            kto_studio::kto::KtoExample {
                prompt: "Once".into(),
                completion: " upon".into(),
                label: true,
                messages: None,
            },
            kto_studio::kto::KtoExample {
                prompt: "The".into(),
                completion: " cat".into(),
                label: false,
                messages: None,
            },
        ];
        let cfg = kto_studio::kto::TrainConfig {
            batch_size: 2,
            lora: Some(kto_studio::model::LoraConfig::default()),
            ..Default::default()
        };
        let data = cfg.dataset_for(&bundle.tokenizer, &bundle.weights.config, &rows).unwrap();
        let mut trainer = kto_studio::kto::Trainer::new(&bundle.weights, &cpu(), cfg).unwrap();
        let m = block(trainer.step(&data)).unwrap();
        assert!(m.loss.is_finite() && m.grad_norm.unwrap() > 0.0, "{name}: {m:?}");
    }
}

/// The same models as llama.cpp's converter writes them to GGUF (tests/reference/family_gguf.py: GPT-2's
/// Conv1D weights transposed and fused attn_qkv,
/// Llama Q/K permuted, Llama 3 scaling as the `rope_freqs` tensor, linear scaling as metadata, Gemma
/// 3's `1 + w` norms, layer types and local RoPE base as keys) give transformers' logits too.
#[test]
fn family_gguf_files_match_transformers() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/gguf/family");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(files.len() >= 8, "{files:?}");
    let device = cpu();
    for path in files {
        let name = path.file_stem().unwrap().to_str().unwrap().to_string();
        let g = golden(&name);
        let bundle = ModelBundle::from_gguf(&std::fs::read(&path).unwrap()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let c = &bundle.weights.config;
        if name.starts_with("rope_llama3") {
            assert!(c.rope_freq_factors.is_some() && c.rope_scaling.is_none(), "{name}: {c:?}");
            let err = hf::save(&bundle.weights).unwrap_err().to_string();
            assert!(err.contains("rope_freqs") && err.contains("adapter"), "{err}");
        }
        let model = Model::from_weights(&bundle.weights, &device);
        check_padded(&name, &model, &g, &device, "cpu gguf");
        check_cached(&name, &model, &g, &device, "cpu gguf", &[1, 4]);
    }
}

/// GPT-2 LoRA as PEFT makes it (tests/reference/peft_gpt2.py: `fan_in_fan_out` adapters on the fused
/// `c_attn`, both `c_proj` and `c_fc`, random A and B): read onto the family's base, the logits are
/// PEFT's; written back, the adapter is the same tensors under the same names; and a fresh GPT-2
/// LoRA run trains only its adapters.
#[test]
fn gpt2_lora_matches_peft() {
    use kto_studio::formats::peft;
    let device = cpu();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/peft_gpt2");
    for base in ["gpt2_03", "gpt2_02"] {
        let dir = root.join(base);
        let g: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap()).unwrap();
        let bundle = ModelBundle::load(Some(&family_dir().join(base)), None).unwrap();
        let config = std::fs::read(dir.join("adapter_config.json")).unwrap();
        let tensors = std::fs::read(dir.join("adapter_model.safetensors")).unwrap();
        let (lora, adapters) = peft::load(&config, &tensors, &bundle.weights.config).unwrap();
        let model = Model::from_weights(&bundle.weights, &device).with_adapters(&lora, &adapters, &device).unwrap();
        check_padded(&format!("{base}+peft"), &model, &g, &device, "cpu");
        check_cached(&format!("{base}+peft"), &model, &g, &device, "cpu", &[1]);
        // Written back: PEFT's names and values.
        let (_, written) = peft::save(&block(model.adapters()).unwrap(), &lora, &bundle.weights.config, base).unwrap();
        let (ours, theirs) = (
            hf::TensorMap::from_safetensors(&[("a", &written)]).unwrap(),
            hf::TensorMap::from_safetensors(&[("b", &tensors)]).unwrap(),
        );
        assert_eq!(ours.names(), theirs.names(), "{base}");
        let (mut ours, mut theirs) = (ours, theirs);
        for n in theirs.names() {
            assert_eq!(ours.remove(&n).unwrap(), theirs.remove(&n).unwrap(), "{base} {n}");
        }
    }
    // A fresh LoRA run on GPT-2 (the default targets map onto c_attn, both c_proj and c_fc).
    let bundle = ModelBundle::load(Some(&family_dir().join("gpt2_03")), None).unwrap();
    let rows = parse_jsonl("{\"prompt\":\"Once\",\"completion\":\" upon\",\"label\":true}\n{\"prompt\":\"The\",\"completion\":\" cat\",\"label\":false}\n").unwrap();
    let cfg = TrainConfig { batch_size: 2, lora: Some(kto_studio::model::LoraConfig::default()), ..Default::default() };
    let data = cfg.dataset_for(&bundle.tokenizer, &bundle.weights.config, &rows).unwrap();
    let mut trainer = kto_studio::kto::Trainer::new(&bundle.weights, &device, cfg).unwrap();
    let m = block(trainer.step(&data)).unwrap();
    assert!(m.loss.is_finite() && m.grad_norm.unwrap() > 0.0, "{m:?}");
    let adapters = block(trainer.policy().adapters()).unwrap();
    let targets: std::collections::BTreeSet<&str> = adapters.iter().map(|a| a.target.as_str()).collect();
    assert_eq!(targets.into_iter().collect::<Vec<_>>(), ["attn.c_proj", "c_attn", "c_fc", "mlp.c_proj"]);
    let merged = block(trainer.policy().to_weights()).unwrap();
    assert_eq!(merged.layers[0].wq.len(), bundle.weights.layers[0].wq.len());
    assert_ne!(merged.layers[0].wq, bundle.weights.layers[0].wq, "the trained c_attn adapter moved q");
}
