//! LoRA: the reference is the base with adapters off (no copy), only adapters train, and both
//! exports (PEFT adapter, merged Hugging Face model) reload to the same model.

use std::path::PathBuf;

use burn::tensor::Device;
use kto_studio::ModelBundle;
use kto_studio::export;
use kto_studio::formats::peft;
use kto_studio::kto::{OptimizerKind, TrainConfig, Trainer, parse_jsonl};
use kto_studio::model::{LoraConfig, Model};

use crate::common::*;

fn tiny_llama() -> ModelBundle {
    ModelBundle::load(Some(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/trl/llama")), None).unwrap()
}

fn lora_config() -> TrainConfig {
    TrainConfig {
        optimizer: OptimizerKind::Adamw,
        learning_rate: 2e-2,
        batch_size: 8,
        max_length: 64,
        shuffle: false,
        lora: Some(LoraConfig {
            rank: 4,
            alpha: 8.0,
            dropout: 0.0,
            targets: vec!["q".into(), "k".into(), "v".into(), "o".into(), "gate".into(), "up".into(), "down".into()],
        }),
        ..Default::default()
    }
}

fn logits(model: &Model, bundle: &ModelBundle, device: &Device) -> Vec<f32> {
    let ids = bundle.tokenizer.encode("Once upon a time, the little cat", true).unwrap();
    let n = ids.len();
    let t = kto_studio::model::token_ids(&ids, 1, device);
    model.forward(t, &[n]).into_data().try_to_vec::<f32>().unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn data() -> Vec<kto_studio::kto::KtoExample> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/trl/data.jsonl");
    parse_jsonl(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn train(bundle: &ModelBundle, device: &Device, steps: usize) -> Trainer {
    let cfg = lora_config();
    let examples =
        if bundle.name.starts_with("stories") { crate::training::sampled_dataset(bundle, device) } else { data() };
    let ds = cfg.dataset(&bundle.tokenizer, &examples).unwrap();
    let mut trainer = Trainer::new(&bundle.weights, device, cfg).unwrap();
    for _ in 0..steps {
        block(trainer.step(&ds)).unwrap_or_else(|e| panic!("{e}"));
    }
    trainer
}

#[test]
fn reference_is_the_base_and_only_adapters_train() {
    let device = cpu();
    let bundle = tiny_llama();
    let base = logits(&Model::from_weights(&bundle.weights, &device), &bundle, &device);
    let fresh = train(&bundle, &device, 0);
    // B = 0 at init: the policy starts as the base; the reference is the base.
    assert!(max_diff(&logits(&fresh.policy(), &bundle, &device), &base) <= 1e-6);
    assert!(fresh.policy().has_adapters() && !fresh.reference().has_adapters());
    // rank 4 on all 7 projections: r * (in + out) each.
    let c = &bundle.weights.config;
    let (d, h, kv) = (c.dim, c.hidden_dim, c.kv_dim());
    let per_layer = 4 * ((d + d) + 2 * (d + kv) + (d + d) + 2 * (d + h) + (h + d));
    assert_eq!(fresh.policy().adapter_params(), c.n_layers * per_layer);

    let trainer = train(&bundle, &device, 6);
    let trained = logits(&trainer.policy(), &bundle, &device);
    assert!(max_diff(&trained, &base) > 1e-3, "LoRA training changed nothing");
    // The reference still gives the base model's logits, and the base weights did not move.
    assert!(max_diff(&logits(trainer.reference(), &bundle, &device), &base) <= 1e-6);
    let frozen = block(trainer.policy().without_adapters().to_weights()).unwrap();
    assert_eq!(frozen, bundle.weights, "a frozen base weight changed");
}

/// Merged export reloads with the logits of base + adapter; the PEFT adapter reloads too. On a
/// Hugging Face model (rotate-half) and on stories260K (llama2.c's adjacent layout, permuted on export).
#[test]
fn exports_reload_to_the_same_model() {
    let device = cpu();
    for bundle in [tiny_llama(), model()] {
        let trainer = train(&bundle, &device, 4);
        let policy = trainer.policy();
        let want = logits(&policy, &bundle, &device);

        let merged = block(export::merged(&policy, &bundle)).unwrap();
        let names: Vec<&str> = merged.iter().map(|(n, _)| n.as_str()).collect();
        assert!(names.contains(&"config.json") && names.contains(&"model.safetensors"), "{names:?}");
        let reloaded = kto_studio::formats::hf::load(&merged[0].1, &[("model.safetensors", &merged[1].1)]).unwrap();
        let got = logits(&Model::from_weights(&reloaded, &device), &bundle, &device);
        assert!(max_diff(&got, &want) <= 1e-4, "{}: merged export differs by {}", bundle.name, max_diff(&got, &want));

        let lora = lora_config().lora.unwrap();
        let adapter = block(export::adapter(&policy, &lora, &bundle)).unwrap();
        let (cfg, adapters) = peft::load(&adapter[0].1, &adapter[1].1, &bundle.weights.config).unwrap();
        assert_eq!(
            (cfg.rank, cfg.alpha, cfg.modules(kto_studio::model::Arch::Llama).unwrap()),
            (lora.rank, lora.alpha, lora.modules(kto_studio::model::Arch::Llama).unwrap())
        );
        let again = Model::from_weights(&bundle.weights, &device).with_adapters(&cfg, &adapters, &device).unwrap();
        let got = logits(&again, &bundle, &device);
        assert!(
            max_diff(&got, &want) <= 1e-5,
            "{}: reloaded adapter differs by {}",
            bundle.name,
            max_diff(&got, &want)
        );
    }
}

#[test]
fn adapter_for_another_model_is_refused() {
    let device = cpu();
    let tiny = tiny_llama();
    let trainer = train(&tiny, &device, 1);
    let lora = lora_config().lora.unwrap();
    let adapter = block(export::adapter(&trainer.policy(), &lora, &tiny)).unwrap();
    let stories = model();
    let err = peft::load(&adapter[0].1, &adapter[1].1, &stories.weights.config).unwrap_err();
    assert!(err.to_string().contains("different model"), "{err}");
    let bad = peft::load(b"{\"peft_type\": \"PREFIX_TUNING\"}", &adapter[1].1, &stories.weights.config).unwrap_err();
    assert!(bad.to_string().contains("LoRA"), "{bad}");
}
