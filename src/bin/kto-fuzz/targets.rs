//! What is fuzzed: each format's seed files (real ones: the built-in model, the committed
//! goldens) and what a user's file goes through after it is read — load, validate, encode a
//! text, a forward pass, two generated tokens — exactly as the CLI and the page run it.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use kto_studio::bundle::FileSet;
use kto_studio::formats::peft;
use kto_studio::generate::{SamplingConfig, generate};
use kto_studio::kto::{TrainConfig, parse_jsonl_bytes};
use kto_studio::model::{LoraConfig, Model};
use kto_studio::tokenizer::{HfTokenizer, Message, chat};
use kto_studio::{ModelBundle, Result, export};
use rand::Rng;
use rand::rngs::StdRng;
use serde_json::Value;

use super::mutate;

pub const FORMATS: [&str; 7] = ["llama2c", "gguf", "safetensors", "tokenizer", "peft", "jsonl", "template"];

/// One input: named files (most formats are several files, of which one is damaged).
pub type Input = Vec<(String, Vec<u8>)>;

pub struct Corpus {
    /// Seed inputs per format.
    seeds: Vec<(String, Vec<Input>)>,
    /// A small healthy model the PEFT, JSONL and template targets load into.
    pub tiny: ModelBundle,
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("fuzz seed {}: {e}", p.display()))
}

/// The named files of `dir` that exist.
fn files(dir: &Path, names: &[&str]) -> Input {
    names.iter().filter(|n| dir.join(n).is_file()).map(|n| (n.to_string(), read(&dir.join(n)))).collect()
}

const TEMPLATES: [&str; 4] = [
    kto_studio::tokenizer::chat::CHATML,
    // Llama 3's, shortened.
    "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}",
    // Zephyr/TinyLlama style with a system fallback and raise_exception.
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% else %}{% set loop_messages = messages %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate') }}{% endif %}{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}",
    // Loops and namespaces, as Qwen's templates use them.
    "{%- set ns = namespace(n=0) -%}{%- for m in messages -%}{%- set ns.n = ns.n + 1 -%}{%- for i in range(ns.n) -%}{{ '#' }}{%- endfor -%}{{ m.role ~ ': ' ~ m.content ~ '\n' }}{%- endfor -%}{%- if add_generation_prompt -%}assistant: {%- endif -%}",
];

impl Corpus {
    pub fn load(root: &Path) -> Self {
        let golden = root.join("tests/golden");
        let builtin = kto_studio::bundle::builtin_dir().expect("the built-in model (scripts/setup.sh)");
        let llama2c = vec![vec![
            ("stories260K.bin".to_string(), read(&builtin.join("stories260K.bin"))),
            ("tok512.bin".to_string(), read(&builtin.join("tok512.bin"))),
        ]];
        let gguf = [
            "spm_tiny.gguf",
            "quant_types.gguf",
            "kquant_types.gguf",
            "family/gemma3_02.gguf",
            "family/rope_llama3_01.gguf",
            "family/qwen3_06.gguf",
        ]
        .iter()
        .map(|n| vec![(n.to_string(), read(&golden.join("gguf").join(n)))])
        .collect();
        let hf_names = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"];
        let hf_dirs: Vec<PathBuf> = [
            "trl/llama",
            "trl/gpt2",
            "family/llama_02",
            "family/qwen2_06",
            "family/gpt2_04",
            "family/qwen3_05",
            "family/rope_llama3_00",
            "family/gemma3_04",
        ]
        .iter()
        .map(|d| golden.join(d))
        .filter(|d| d.join("config.json").is_file())
        .collect();
        let hf: Vec<Input> = hf_dirs.iter().map(|d| files(d, &hf_names)).collect();
        let tokenizers: Vec<Input> =
            hf.iter().map(|f| f.iter().filter(|(n, _)| n.starts_with("tokenizer")).cloned().collect()).collect();
        let tiny = ModelBundle::load(Some(&golden.join("trl/llama")), None).expect("tests/golden/trl/llama");
        let device = kto_studio::device::init(kto_studio::BackendKind::Cpu).expect("cpu device");
        let lora =
            LoraConfig { rank: 2, alpha: 4.0, dropout: 0.0, targets: vec!["q".into(), "v".into(), "down".into()] };
        let model = Model::from_weights(&tiny.weights, &device).with_lora(&lora, 1, &device).expect("lora");
        let adapter = pollster::block_on(export::adapter(&model, &lora, &tiny)).expect("adapter export");
        let conversational = br#"{"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}], "completion": [{"role": "assistant", "content": "Hello."}], "label": true}"#;
        let jsonl = vec![
            vec![("data.jsonl".to_string(), read(&golden.join("trl/data.jsonl")))],
            vec![("chat.jsonl".to_string(), conversational.to_vec())],
        ];
        let templates = TEMPLATES.iter().map(|t| vec![("template.jinja".to_string(), t.as_bytes().to_vec())]).collect();
        let seeds = vec![
            ("llama2c".to_string(), llama2c),
            ("gguf".to_string(), gguf),
            ("safetensors".to_string(), hf),
            ("tokenizer".to_string(), tokenizers),
            ("peft".to_string(), vec![adapter]),
            ("jsonl".to_string(), jsonl),
            ("template".to_string(), templates),
        ];
        Self { seeds, tiny }
    }

    /// Input `i` of `format` under `seed`: deterministic, so the parent can save what a child
    /// crashed on without the child telling it.
    pub fn input(&self, format: &str, seed: u64, i: u64) -> Input {
        let mut rng = <StdRng as rand::SeedableRng>::seed_from_u64(
            seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (fnv(format) << 1),
        );
        let seeds = &self.seeds.iter().find(|(f, _)| f == format).expect("known format").1;
        let mut input = seeds[rng.random_range(0..seeds.len())].clone();
        let other = &seeds[rng.random_range(0..seeds.len())];
        let k = rng.random_range(0..input.len());
        let donor = &other[rng.random_range(0..other.len())].1;
        let (name, bytes) = &input[k];
        let json_like = name.ends_with(".json") || name.ends_with(".jsonl");
        input[k].1 = if json_like && rng.random_range(0..3) > 0 {
            if name.ends_with(".jsonl") {
                mutate_lines(&mut rng, bytes, donor)
            } else {
                mutate::json(&mut rng, bytes, donor)
            }
        } else {
            mutate::bytes(&mut rng, bytes, donor)
        };
        input
    }
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x1000_0000_01b3))
}

/// JSONL: mutate a few rows as JSON, keep the others.
fn mutate_lines(rng: &mut StdRng, bytes: &[u8], donor: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(bytes);
    let mut lines: Vec<Vec<u8>> = text.lines().map(|l| l.as_bytes().to_vec()).collect();
    if lines.is_empty() {
        return mutate::bytes(rng, bytes, donor);
    }
    for _ in 0..rng.random_range(1..=3) {
        let i = rng.random_range(0..lines.len());
        lines[i] = mutate::json(rng, &lines[i], donor);
    }
    lines.join(&b'\n')
}

fn get<'a>(input: &'a Input, name: &str) -> &'a [u8] {
    input.iter().find(|(n, _)| n == name).map(|(_, b)| b.as_slice()).unwrap_or_default()
}

/// What a loaded model goes through next: encode, a padded forward, two generated tokens.
fn exercise(bundle: &ModelBundle, device: &Device) -> Result<()> {
    let model = Model::from_weights(&bundle.weights, device);
    let ids = bundle.tokenizer.encode("Once upon a time", true)?;
    let ids: Vec<u32> = ids.into_iter().take(6).collect();
    if !ids.is_empty() {
        let _ = model.forward(kto_studio::model::token_ids(&ids, 1, device), &[ids.len()]);
    }
    let cfg = SamplingConfig { max_tokens: 2, temperature: 0.0, ..Default::default() };
    pollster::block_on(generate(&model, &bundle.tokenizer, device, "", 1, &cfg, |_, _| {}))?;
    Ok(())
}

/// Run one input; `Ok(bytes)`: the input was accepted and the model holds `bytes` of weights.
pub fn run(corpus: &Corpus, format: &str, input: &Input, device: &Device) -> Result<usize> {
    let weight_bytes = |b: &ModelBundle| b.weights.config.num_params() * 4;
    match format {
        "llama2c" => {
            let b = ModelBundle::from_llama2c("fuzz", get(input, "stories260K.bin"), get(input, "tok512.bin"))?;
            exercise(&b, device)?;
            Ok(weight_bytes(&b))
        }
        "gguf" | "safetensors" => {
            let b = ModelBundle::from_files("fuzz", input, FileSet::Folder)?;
            exercise(&b, device)?;
            Ok(weight_bytes(&b))
        }
        "tokenizer" => {
            let cfg: Value =
                kto_studio::bundle::json_file("tokenizer_config.json", get(input, "tokenizer_config.json"))
                    .unwrap_or(Value::Null);
            let t = HfTokenizer::from_json(get(input, "tokenizer.json"), &cfg, Some(0))?;
            for text in ["Once upon a time", "", "Café ✓ 🙂 naïve <|im_end|>\n\n  x"] {
                let ids = t.encode(text, true)?;
                let _ = t.decode(&ids);
            }
            Ok(0)
        }
        "peft" => {
            let (lora, adapters) = peft::load(
                get(input, "adapter_config.json"),
                get(input, "adapter_model.safetensors"),
                &corpus.tiny.weights.config,
            )?;
            let model = Model::from_weights(&corpus.tiny.weights, device).with_adapters(&lora, &adapters, device)?;
            let _ = model.forward(kto_studio::model::token_ids(&[1, 2, 3], 1, device), &[3]);
            Ok(0)
        }
        "jsonl" => {
            let rows = parse_jsonl_bytes(get(input, "data.jsonl"))?;
            let cfg = TrainConfig { batch_size: 4, max_length: 64, ..Default::default() };
            let data = cfg.dataset_for(&corpus.tiny.tokenizer, &corpus.tiny.weights.config, &rows)?;
            let _ = data.batch(0);
            Ok(0)
        }
        "template" => {
            let t = String::from_utf8_lossy(get(input, "template.jinja")).into_owned();
            let msgs =
                [Message::new("system", "Be brief."), Message::new("user", "Hi"), Message::new("assistant", "Hello")];
            chat::render(&t, &msgs, true, Some("<s>"), "</s>")?;
            chat::split(&t, &msgs[1..2], "Hello", Some("<s>"), "</s>")?;
            Ok(0)
        }
        other => panic!("unknown format {other}"),
    }
}
