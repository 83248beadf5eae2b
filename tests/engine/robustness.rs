//! Regression tests for every input that once panicked, aborted, hung or ate memory (found by
//! hand and by `kto-fuzz`), and for inputs that were accepted silently. Each must now be a clear
//! error — or, where the input is legitimate, work.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use kto_studio::ModelBundle;
use kto_studio::bundle::FileSet;
use kto_studio::formats::{gguf, hf, peft};
use kto_studio::generate::{SamplingConfig, generate};
use kto_studio::kto::{KtoExample, TrainConfig, Trainer, parse_jsonl, parse_jsonl_bytes};
use kto_studio::tokenizer::{HfTokenizer, Llama2cTokenizer, Message, chat};
use serde_json::{Value, json};

use crate::common::{block, builtin_file, cpu};

fn golden(p: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(p)
}

fn read(p: PathBuf) -> Vec<u8> {
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The tiny TRL Llama's files, with config.json edited by `edit`.
fn hf_with_config(dir: &str, edit: impl FnOnce(&mut Value)) -> Vec<(String, Vec<u8>)> {
    let d = golden(dir);
    let mut cfg: Value = serde_json::from_slice(&read(d.join("config.json"))).unwrap();
    edit(&mut cfg);
    let mut files = vec![("config.json".to_string(), serde_json::to_vec(&cfg).unwrap())];
    for f in ["model.safetensors", "tokenizer.json", "tokenizer_config.json"] {
        files.push((f.to_string(), read(d.join(f))));
    }
    files
}

fn load_err(files: &[(String, Vec<u8>)]) -> String {
    match ModelBundle::from_files("x", files, FileSet::Folder) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    }
}

fn gguf_err(name: &str) -> String {
    match ModelBundle::from_gguf(&read(golden("gguf/bad").join(name))) {
        Ok(_) => panic!("{name} was accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn prompts_that_encode_to_nothing_generate() {
    // GPT-2 adds no BOS, so "" encodes to no tokens (an unwrap on None in generate.rs).
    let bundle = ModelBundle::load(Some(&golden("trl/gpt2")), None).unwrap();
    let device = cpu();
    let model = kto_studio::model::Model::from_weights(&bundle.weights, &device);
    let cfg = SamplingConfig { max_tokens: 4, temperature: 0.0, ..Default::default() };
    for prompt in ["", "Once upon a time"] {
        let out = block(generate(&model, &bundle.tokenizer, &device, prompt, 1, &cfg, |_, _| {})).unwrap();
        assert!(out[0].ids.len() <= 4);
    }
}

#[test]
fn impossible_shapes_are_refused_before_anything_is_allocated() {
    for (key, value, says) in [
        ("num_attention_heads", json!(0), "attention heads = 0"),
        ("num_hidden_layers", json!(1u64 << 31), "layer count"),
        ("num_hidden_layers", json!(u64::MAX), "layer count"),
        ("hidden_size", json!(33), "not divisible"),
        ("num_key_value_heads", json!(3), "key/value heads"),
        ("intermediate_size", json!(0), "intermediate size = 0"),
        ("vocab_size", json!(0), "vocabulary size = 0"),
        ("head_dim", json!(7), "odd"),
    ] {
        // Without head_dim, so the hidden size alone decides the head size.
        let err = load_err(&hf_with_config("trl/llama", |c| {
            c.as_object_mut().unwrap().remove("head_dim");
            c[key] = value.clone()
        }));
        assert!(err.contains(says), "{key} = {value}: {err}");
    }
    let err = load_err(&hf_with_config("trl/gpt2", |c| c["n_head"] = json!(0)));
    assert!(err.contains("attention heads = 0"), "{err}");
    for (name, says) in
        [("layers_2p63.gguf", "layer count"), ("zero_heads.gguf", "attention heads = 0"), ("odd_head.gguf", "odd")]
    {
        let err = gguf_err(name);
        assert!(err.contains(says), "{name}: {err}");
    }
}

#[test]
fn gguf_tokenizer_arrays_are_checked() {
    for (name, says) in [
        ("scores_short.gguf", "tokenizer.ggml.scores has 295 entries but the vocabulary has 300"),
        ("types_long.gguf", "tokenizer.ggml.token_type has 304 entries"),
        ("eos_out_of_vocab.gguf", "eos_token_id = 5000 is not a token id"),
    ] {
        let err = gguf_err(name);
        assert!(err.contains(says), "{name}: {err}");
    }
}

#[test]
fn gguf_type_that_does_not_match_its_bytes_is_refused() {
    let err = gguf_err("type_mismatch.gguf");
    assert!(err.contains("blk.0.ffn_up.weight") && err.contains("does not match"), "{err}");
}

#[test]
fn gguf_names_are_escaped_in_messages() {
    // The tensor name carries a newline and a terminal escape; the message must not.
    let err = gguf_err("newline_name.gguf");
    assert!(!err.contains('\n') && !err.contains('\x1b'), "{err:?}");
}

#[test]
fn token_ids_outside_the_embedding_are_refused_at_load() {
    // A tokenizer with an id past the model's rows (an assertion in the embedding gather).
    let mut files = hf_with_config("trl/llama", |_| {});
    let vocab = serde_json::from_slice::<Value>(&files[0].1).unwrap()["vocab_size"].as_u64().unwrap();
    let mut tok: Value = serde_json::from_slice(&files[2].1).unwrap();
    tok["added_tokens"]
        .as_array_mut()
        .unwrap()
        .push(json!({"id": vocab + 50, "content": "<extra>", "single_word": false,
        "lstrip": false, "rstrip": false, "normalized": false, "special": true}));
    files[2].1 = serde_json::to_vec(&tok).unwrap();
    let err = load_err(&files);
    assert!(err.contains("token ids up to") && err.contains(&format!("only {vocab} rows")), "{err}");
}

#[test]
fn malformed_tokenizer_json_is_an_error_not_a_panic() {
    let base: Value = serde_json::from_slice(&read(golden("trl/llama/tokenizer.json"))).unwrap();
    let cfg = json!({"eos_token": "</s>"});
    let try_json = |v: &Value| HfTokenizer::from_json(&serde_json::to_vec(v).unwrap(), &cfg, None);
    // An empty Replace pattern.
    let mut t = base.clone();
    t["normalizer"] = json!({"type": "Replace", "pattern": {"String": ""}, "content": "x"});
    let err = try_json(&t).expect_err("refused").to_string();
    assert!(err.contains("empty pattern"), "{err}");
    // A Precompiled normalizer whose charsmap claims more than it holds, and one with a trie
    // pointing outside itself.
    for blob in [vec![0xff, 0xff, 0xff, 0x7f, 1, 2, 3], vec![8, 0, 0, 0, 0xff, 0xff, 0xff, 0x00, 1, 2, 3, 4]] {
        use base64::Engine;
        let mut t = base.clone();
        t["normalizer"] = json!({"type": "Precompiled", "precompiled_charsmap": base64::engine::general_purpose::STANDARD.encode(&blob)});
        let err = try_json(&t).expect_err("refused").to_string();
        assert!(err.contains("Precompiled"), "{err}");
    }
    // Padding to a fixed 10^9 tokens: turned off (transformers does the same), so encoding is cheap.
    let mut t = base.clone();
    t["padding"] = json!({"strategy": {"Fixed": 1_000_000_000u64}, "direction": "Right", "pad_to_multiple_of": null,
        "pad_id": 0, "pad_type_id": 0, "pad_token": "<s>"});
    let tok = try_json(&t).unwrap();
    assert!(tok.encode("Once upon a time", true).unwrap().len() < 32);
    // Found by kto-fuzz: a continuing-subword prefix the merges do not carry (a slice panic in the
    // crate's BPE builder), a template special token left undefined (a map-index panic when
    // encoding), and a syntax error inside the decoder (an `expect` in the crate).
    let mut t = base.clone();
    t["model"]["continuing_subword_prefix"] = json!("\n\u{0}<|im_end|>");
    assert!(try_json(&t).expect_err("refused").to_string().contains("continuing-subword prefix"));
    let mut t = base.clone();
    t["post_processor"]["special_tokens"].as_object_mut().unwrap().clear();
    assert!(try_json(&t).expect_err("refused").to_string().contains("special_tokens do not define"));
    let text = serde_json::to_string(&base).unwrap().replacen("\"decoder\":{", "\"decoder\":{\"x\":\"\u{1}\",", 1);
    let err = HfTokenizer::from_json(text.as_bytes(), &cfg, None).expect_err("refused").to_string();
    assert!(err.contains("not valid JSON"), "{err}");
    // A byte-order mark in front of the JSON.
    let mut bom = b"\xEF\xBB\xBF".to_vec();
    bom.extend(serde_json::to_vec(&base).unwrap());
    assert!(HfTokenizer::from_json(&bom, &cfg, None).is_ok());
}

#[test]
fn one_token_rows_and_long_rows_train() {
    // A GPT-2 (no BOS) row whose prompt is "" and completion only the EOS: one token in all,
    // the loss's narrow(…, t - 1 = 0) panicked. And rows longer than GPT-2's 128 positions at
    // the default max length (1024).
    let bundle = ModelBundle::load(Some(&golden("trl/gpt2")), None).unwrap();
    let long = "and then they walked ".repeat(40);
    let rows = vec![
        KtoExample { prompt: String::new(), completion: String::new(), label: true, messages: None },
        KtoExample { prompt: String::new(), completion: String::new(), label: false, messages: None },
        KtoExample { prompt: "Once".into(), completion: long.clone(), label: true, messages: None },
        KtoExample { prompt: "The".into(), completion: long, label: false, messages: None },
    ];
    let cfg = TrainConfig { batch_size: 2, shuffle: false, steps: 2, ..Default::default() };
    let data = cfg.dataset_for(&bundle.tokenizer, &bundle.weights.config, &rows).unwrap();
    assert_eq!(data.max_length, 128, "capped at the model's context");
    let mut trainer = Trainer::new(&bundle.weights, &cpu(), cfg).unwrap();
    for _ in 0..2 {
        let m = block(trainer.step(&data)).unwrap();
        assert!(m.loss.is_finite());
    }
    // Past the context on purpose (no cap): an error, not an index panic.
    let cfg = TrainConfig { batch_size: 2, shuffle: false, max_length: 1024, ..Default::default() };
    let data = cfg.dataset(&bundle.tokenizer, &rows[2..]).unwrap();
    let mut trainer = Trainer::new(&bundle.weights, &cpu(), cfg).unwrap();
    let err = block(trainer.step(&data)).unwrap_err().to_string();
    assert!(err.contains("context is 128"), "{err}");
}

#[test]
fn an_empty_eos_piece_does_not_loop() {
    // llama2.c tokenizer whose EOS (BOS, id 1) piece is empty: `find("")` matched forever.
    let mut tok = builtin_file("tok512.bin");
    // Layout: max_len i32, then per token: score f32, len i32, bytes. Token 1 follows token 0.
    let len0 = i32::from_le_bytes(tok[8..12].try_into().unwrap()) as usize;
    let at = 12 + len0 + 4; // token 1's length field
    let len1 = i32::from_le_bytes(tok[at..at + 4].try_into().unwrap()) as usize;
    tok.splice(at..at + 4 + len1, 0i32.to_le_bytes());
    let t = Llama2cTokenizer::from_bytes(&tok, 512).unwrap();
    let start = Instant::now();
    let ids = t.encode("Once upon a time", true);
    assert!(ids.len() > 2 && start.elapsed() < Duration::from_secs(1));
}

#[test]
fn llama2c_encoding_is_fast_on_a_megabyte() {
    // run.c's merge loop is quadratic: a 1 MB row never finished. The heap version gives the
    // same ids (checked against run.c by the greedy goldens) in well under a second per MB.
    let t = ModelBundle::load(None, None).unwrap().tokenizer;
    let text = "Once upon a time, there was a little girl named Lily. She loved to play outside. ".repeat(13_000);
    assert!(text.len() > 1_000_000);
    let start = Instant::now();
    let ids = t.encode(&text, true).unwrap();
    let took = start.elapsed();
    assert!(ids.len() > 100_000);
    assert!(took < Duration::from_secs(20), "took {took:?}");
    // Same ids as encoding the pieces separately joined at the sentence boundary (a cheap
    // consistency check that merges do not cross where run.c would not merge).
    let small = t.encode("Once upon a time, there was a little girl named Lily.", true).unwrap();
    assert_eq!(&ids[..small.len()], &small[..]);
}

#[test]
fn chat_templates_that_never_end_run_out_of_fuel() {
    let t = "{% for i in range(100000) %}{% for j in range(100000) %}{{ '' }}{% endfor %}{% endfor %}";
    let start = Instant::now();
    let err = chat::render(t, &[Message::new("user", "hi")], true, None, "</s>").unwrap_err().to_string();
    assert!(start.elapsed() < Duration::from_secs(10), "took {:?}", start.elapsed());
    assert!(err.contains("fuel") || err.contains("chat template"), "{err}");
    let huge = "{% for i in range(100000) %}{{ 'x' * 10000 }}{% endfor %}";
    let err = chat::render(huge, &[Message::new("user", "hi")], true, None, "</s>").unwrap_err().to_string();
    assert!(err.contains("chat template"), "{err}");
}

#[test]
fn peft_tensors_outside_target_modules_are_refused() {
    let bundle = ModelBundle::load(Some(&golden("trl/llama")), None).unwrap();
    let c = &bundle.weights.config;
    let (d, r) = (c.dim, 2);
    let cfg = json!({"peft_type": "LORA", "r": r, "lora_alpha": 4, "target_modules": ["q_proj"]});
    let tensors = vec![
        ("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight".into(), vec![r, d], vec![0.1; r * d]),
        ("base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight".into(), vec![d, r], vec![0.1; r * d]),
        ("base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight".into(), vec![r, d], vec![0.1; r * d]),
        (
            "base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight".into(),
            vec![c.kv_dim(), r],
            vec![0.1; r * c.kv_dim()],
        ),
    ];
    let st = hf::write_safetensors(tensors, None).unwrap();
    let err = peft::load(&serde_json::to_vec(&cfg).unwrap(), &st, c).unwrap_err().to_string();
    assert!(err.contains("v_proj") && err.contains("target_modules"), "{err}");
}

#[test]
fn jsonl_with_a_bom_or_bad_bytes_names_the_line() {
    let rows = parse_jsonl("\u{feff}{\"prompt\": \"a\", \"completion\": \"b\", \"label\": true}\n").unwrap();
    assert_eq!(rows.len(), 1);
    let mut bytes = b"{\"prompt\": \"a\", \"completion\": \"b\", \"label\": true}\n".to_vec();
    bytes.extend(b"{\"prompt\": \"\xff\", \"completion\": \"b\", \"label\": true}\n");
    let err = parse_jsonl_bytes(&bytes).unwrap_err().to_string();
    assert!(err.contains("line 2") && err.contains("UTF-8"), "{err}");
}

#[test]
fn json_files_with_a_byte_order_mark_load() {
    let mut files = hf_with_config("trl/llama", |_| {});
    for i in [0, 2, 3] {
        let mut bom = b"\xEF\xBB\xBF".to_vec();
        bom.extend(&files[i].1);
        files[i].1 = bom;
    }
    assert!(ModelBundle::from_files("x", &files, FileSet::Folder).is_ok());
}

#[test]
fn safetensors_errors_name_the_tensor() {
    let mut st = read(golden("trl/llama/model.safetensors"));
    // Cut the file inside its data: the last tensor now ends past the end.
    st.truncate(st.len() - 100);
    let mut files = hf_with_config("trl/llama", |_| {});
    files[1].1 = st;
    let err = load_err(&files);
    assert!(err.contains("tensor \"") && err.contains("truncated"), "{err}");
}

#[test]
fn a_gguf_with_a_tokenizer_but_bad_metadata_types_is_refused() {
    // Real GGUF, healthy: still loads after all these checks.
    let ok = ModelBundle::from_gguf(&read(golden("gguf/spm_tiny.gguf"))).unwrap();
    assert_eq!(ok.weights.config.vocab_size, 300);
    assert!(gguf::Gguf::parse(b"GGUF\x03\0\0\0\xff\xff\xff\xff\xff\xff\xff\xff\0\0\0\0\0\0\0\0").is_err());
}
