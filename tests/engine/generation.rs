use burn::tensor::{Device, Tensor};
use kto_studio::generate::{SamplingConfig, generate};
use kto_studio::model::{KvCache, Model, token_ids};
use serde_json::Value;

use crate::common::*;

fn golden() -> Value {
    serde_json::from_str(include_str!("../golden/greedy.json")).unwrap()
}

fn check_golden(device: &Device) {
    let m = model();
    let llama = Model::from_weights(&m.weights, device);
    for case in golden()["cases"].as_array().unwrap() {
        let prompt = case["prompt"].as_str().unwrap();
        let want_ids: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        let want_prompt: Vec<u32> = serde_json::from_value(case["prompt_ids"].clone()).unwrap();
        assert_eq!(m.tokenizer.encode(prompt, true).unwrap(), want_prompt, "prompt tokens of {prompt:?}");
        let cfg = SamplingConfig {
            temperature: 0.0,
            max_tokens: case["max_tokens"].as_u64().unwrap() as usize,
            ..Default::default()
        };
        let mut streamed = String::new();
        let out = block(generate(&llama, &m.tokenizer, device, prompt, 1, &cfg, |_, s| streamed.push_str(s))).unwrap();
        assert_eq!(out[0].ids, want_ids, "greedy ids for {prompt:?}");
        assert_eq!(out[0].text, case["text"].as_str().unwrap(), "greedy text for {prompt:?}");
        assert_eq!(streamed, out[0].text);
    }
}

#[test]
fn greedy_matches_the_numpy_llama2c_reference_on_cpu() {
    check_golden(&cpu());
}

#[test]
fn greedy_matches_the_numpy_llama2c_reference_on_wgpu() {
    check_golden(&wgpu());
}

#[test]
fn kv_cache_path_equals_the_full_forward() {
    let m = model();
    let device = cpu();
    let llama = Model::from_weights(&m.weights, &device);
    let ids = m.tokenizer.encode("Once upon a time there was a cat", true).unwrap();
    let t = ids.len();
    let full = llama.forward(token_ids(&ids, 1, &device), &[t]);
    let mut cache = KvCache::default();
    let mut steps = Vec::new();
    for (i, &id) in ids.iter().enumerate() {
        let chunk = if i < 3 {
            continue;
        } else if i == 3 {
            ids[..4].to_vec()
        } else {
            vec![id]
        };
        let x = token_ids(&chunk, 1, &device);
        steps.push(llama.forward_cached(x, &mut cache));
    }
    let cached = Tensor::cat(steps, 1);
    let diff = (full - cached).abs().max().into_scalar::<f32>();
    assert!(diff < 1e-4, "cached vs full logits differ by {diff}");
}

#[test]
fn padded_batch_rows_equal_their_unpadded_forward() {
    let m = model();
    let device = cpu();
    let llama = Model::from_weights(&m.weights, &device);
    let a = m.tokenizer.encode("The sun was shining and the birds sang", true).unwrap();
    let b = m.tokenizer.encode("Tom had a red ball", true).unwrap();
    let t = a.len();
    let mut padded = a.clone();
    padded.extend(b.iter().copied().chain(std::iter::repeat_n(1, t - b.len())));
    let batch = llama.forward(token_ids(&padded, 2, &device), &[a.len(), b.len()]);
    let single = llama.forward(token_ids(&b, 1, &device), &[b.len()]);
    let row = batch.narrow(0, 1, 1).narrow(1, 0, b.len());
    let diff = (row - single).abs().max().into_scalar::<f32>();
    // Logits of ~10: 5e-5 is a few ulps, the difference of summing a [T, T] attention of another
    // width (burn-flex's gemm blocks by shape).
    assert!(diff < 5e-5, "padded row differs by {diff}");
}

#[test]
fn wgpu_and_cpu_agree_on_logits() {
    let m = model();
    let ids = m.tokenizer.encode("Lily and Ben went to the park. They saw a big dog.", true).unwrap();
    let t = ids.len();
    let run = |device: &Device| {
        let llama = Model::from_weights(&m.weights, device);
        let x = token_ids(&ids, 1, device);
        llama.forward(x, &[t]).into_data().try_into_vec::<f32>().unwrap()
    };
    let (a, b) = (run(&cpu()), run(&wgpu()));
    let diff = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    assert!(diff <= 1e-4, "wgpu vs cpu logits differ by {diff}");
}

#[test]
fn sampling_is_deterministic_per_seed_and_respects_top_k() {
    let m = model();
    let device = cpu();
    let llama = Model::from_weights(&m.weights, &device);
    let cfg = SamplingConfig { temperature: 1.0, top_k: 20, top_p: 0.9, max_tokens: 40, seed: 7, ..Default::default() };
    let run = |cfg: &SamplingConfig| {
        block(generate(&llama, &m.tokenizer, &device, "Once upon a time", 3, cfg, |_, _| {})).unwrap()
    };
    let a = run(&cfg);
    let b = run(&cfg);
    assert_eq!(a, b, "same seed, same samples");
    assert_ne!(a[0].ids, a[1].ids, "different samples in one batch use different streams");
    let c = run(&SamplingConfig { seed: 8, ..cfg.clone() });
    assert_ne!(a, c, "another seed gives other samples");
    // top-k 1 is greedy whatever the temperature
    let k1 = run(&SamplingConfig { top_k: 1, temperature: 1.5, ..cfg.clone() });
    let greedy = run(&SamplingConfig { temperature: 0.0, ..cfg.clone() });
    assert_eq!(k1[0].ids, greedy[0].ids);
    assert!(a.iter().all(|s| s.ids.len() <= 40));
}

#[test]
fn bad_sampling_settings_are_errors() {
    let m = model();
    let device = cpu();
    let llama = Model::from_weights(&m.weights, &device);
    for cfg in [
        SamplingConfig { temperature: -1.0, ..Default::default() },
        SamplingConfig { top_p: 0.0, ..Default::default() },
        SamplingConfig { temperature: f32::NAN, ..Default::default() },
    ] {
        assert!(block(generate(&llama, &m.tokenizer, &device, "Hi", 1, &cfg, |_, _| {})).is_err());
    }
    let long = "word ".repeat(600);
    let err =
        block(generate(&llama, &m.tokenizer, &device, &long, 1, &SamplingConfig::default(), |_, _| {})).unwrap_err();
    assert!(err.to_string().contains("context"), "{err}");
}
