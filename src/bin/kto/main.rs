//! `kto`: the engine from the command line — generate, train, eval, bench. Generated text goes to
//! stdout; logs and progress go to stderr.

mod bench;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::Device;
use clap::{Args, Parser, Subcommand, ValueEnum};
use kto_studio::bench::BenchConfig;
use kto_studio::export;
use kto_studio::formats::peft;
use kto_studio::generate::{SamplingConfig, generate};
use kto_studio::judge::Judge;
use kto_studio::kto::{KtoExample, KtoLossConfig, LossType, OptimizerKind, TrainConfig, Trainer, parse_jsonl_bytes};
use kto_studio::model::{HostAdapter, LoraConfig, Model, ModelWeights};
use kto_studio::mood::{Mood, MoodRecipe, heldout_eval, run_recipe};
use kto_studio::{BackendKind, Error, ModelBundle, Result, device};

#[derive(Parser)]
#[command(name = "kto", version, about = "KTO fine-tuning of small language models (native engine of KTO Studio)")]
struct Cli {
    /// Compute backend: wgpu (WGSL kernels on Vulkan, as in the browser), cpu (burn flex: SIMD
    /// matmuls on all cores) or ndarray (burn's older CPU backend, for comparison).
    #[arg(long, global = true, default_value = "cpu")]
    backend: BackendArg,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum BackendArg {
    Wgpu,
    Cpu,
    Ndarray,
}

impl From<MoodArg> for Mood {
    fn from(m: MoodArg) -> Self {
        match m {
            MoodArg::Happier => Mood::Happier,
            MoodArg::Sadder => Mood::Sadder,
        }
    }
}

impl From<BackendArg> for BackendKind {
    fn from(b: BackendArg) -> Self {
        match b {
            BackendArg::Wgpu => BackendKind::Wgpu,
            BackendArg::Cpu => BackendKind::Cpu,
            BackendArg::Ndarray => BackendKind::Ndarray,
        }
    }
}

#[derive(Args, Clone)]
struct ModelArgs {
    /// A Hugging Face folder (config.json + *.safetensors + tokenizer.json), a .gguf file, or a
    /// llama2.c .bin (or a folder with model + tok*.bin); default: built-in stories260K.
    #[arg(long)]
    model: Option<PathBuf>,
    /// A PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors) to apply.
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// Tokenizer file, when it is not beside the model.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
}

#[derive(Args)]
struct SampleArgs {
    #[arg(long, default_value = "")]
    prompt: String,
    /// Treat the prompt as a user message in the model's chat template (instruct models).
    #[arg(long)]
    chat: bool,
    /// 0 = greedy.
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    /// 0 = off.
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    /// 1 = off.
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
}

#[derive(Clone, Copy, ValueEnum)]
enum JudgeArg {
    /// AFINN-165 word scores with negation, as the npm package `sentiment`.
    Afinn,
}

#[derive(Clone, Copy, ValueEnum)]
enum MoodArg {
    Happier,
    Sadder,
}

#[derive(Clone, Copy, ValueEnum)]
enum LossArg {
    Kto,
    ApoZero,
}

#[derive(Clone, Copy, ValueEnum)]
enum OptimArg {
    Adamw,
    Sgd,
}

#[derive(Args)]
struct TrainArgs {
    /// TRL JSONL: {"prompt", "completion", "label"} rows (or paired {"prompt", "chosen", "rejected"}).
    #[arg(long)]
    data: PathBuf,
    #[arg(long, default_value_t = 30)]
    steps: usize,
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    #[arg(long, value_enum, default_value = "adamw")]
    optimizer: OptimArg,
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f64,
    #[arg(long, default_value_t = 0.1)]
    beta: f64,
    #[arg(long, default_value_t = 1.0)]
    desirable_weight: f64,
    #[arg(long, default_value_t = 1.0)]
    undesirable_weight: f64,
    #[arg(long, default_value_t = 1024)]
    max_length: usize,
    #[arg(long, value_enum, default_value = "kto")]
    loss: LossArg,
    /// Keep the file's row order (TRL's sequential sampler); by default rows are shuffled once.
    #[arg(long)]
    no_shuffle: bool,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[arg(long, default_value_t = 1)]
    grad_accum: usize,
    /// Clip the global gradient norm (Hugging Face's default is 1.0); 0, the default here, turns
    /// clipping off so that the TRL parity command needs no extra flag.
    #[arg(long, default_value_t = 0.0)]
    max_grad_norm: f64,
    /// Train LoRA adapters of this rank on the frozen model (0 = full fine-tuning).
    #[arg(long, default_value_t = 0)]
    lora_rank: usize,
    #[arg(long, default_value_t = 16.0)]
    lora_alpha: f64,
    #[arg(long, default_value_t = 0.0)]
    lora_dropout: f64,
    /// Projections that get adapters.
    #[arg(long, value_delimiter = ',', default_value = "q,k,v,o,gate,up,down")]
    lora_targets: Vec<String>,
    /// Wrap rows in the model's chat template (TRL's conversational format).
    #[arg(long)]
    chat: bool,
}

impl TrainArgs {
    fn config(&self) -> TrainConfig {
        TrainConfig {
            loss: KtoLossConfig {
                beta: self.beta,
                desirable_weight: self.desirable_weight,
                undesirable_weight: self.undesirable_weight,
                loss_type: match self.loss {
                    LossArg::Kto => LossType::Kto,
                    LossArg::ApoZero => LossType::ApoZeroUnpaired,
                },
            },
            optimizer: match self.optimizer {
                OptimArg::Adamw => OptimizerKind::Adamw,
                OptimArg::Sgd => OptimizerKind::Sgd,
            },
            learning_rate: self.lr,
            weight_decay: self.weight_decay,
            batch_size: self.batch_size,
            grad_accum: self.grad_accum,
            max_grad_norm: (self.max_grad_norm > 0.0).then_some(self.max_grad_norm),
            max_length: self.max_length,
            steps: self.steps,
            shuffle: !self.no_shuffle,
            seed: self.seed,
            lora: (self.lora_rank > 0).then(|| LoraConfig {
                rank: self.lora_rank,
                alpha: self.lora_alpha,
                dropout: self.lora_dropout,
                targets: self.lora_targets.clone(),
            }),
            chat: self.chat,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Sample text from the model (stdout: the generated text only).
    Generate {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        sample: SampleArgs,
    },
    /// Write a model (any supported format, plus an optional --adapter, merged) as a Hugging Face
    /// folder: config.json, model.safetensors and, when the model has one, tokenizer.json.
    Convert {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long)]
        out: PathBuf,
    },
    /// KTO fine-tuning on labelled completions.
    Train {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        train: TrainArgs,
        /// Write one JSON object of metrics per step.
        #[arg(long)]
        metrics_out: Option<PathBuf>,
        /// Save the trained weights as a llama2.c checkpoint.
        #[arg(long)]
        save: Option<PathBuf>,
        /// Write the trained LoRA adapter as a PEFT folder.
        #[arg(long)]
        export_adapter: Option<PathBuf>,
        /// Write the trained model (adapters merged) as a Hugging Face folder.
        #[arg(long)]
        export_merged: Option<PathBuf>,
    },
    /// KTO metrics of a model against a reference on a JSONL file, and/or held-out NLL of stories.
    Eval {
        #[command(flatten)]
        model: ModelArgs,
        /// Reference model (default: the model's own base weights — without `--adapter`).
        #[arg(long)]
        reference: Option<PathBuf>,
        #[arg(long)]
        data: Option<PathBuf>,
        /// Text file of stories separated by <|endoftext|>: prints teacher-forced NLL per token.
        #[arg(long)]
        stories: Option<PathBuf>,
        #[arg(long, default_value_t = 20)]
        max_stories: usize,
        #[arg(long, default_value_t = 8)]
        batch_size: usize,
        #[arg(long, default_value_t = 0.1)]
        beta: f64,
        #[arg(long, default_value_t = 1024)]
        max_length: usize,
        /// Judge samples on the held-out TinyStories prompts (fixed seeds) and report rates, mean
        /// score, length and held-out NLL.
        #[arg(long, value_enum)]
        judge: Option<JudgeArg>,
        /// With --judge: which mood's target rate to report, and its threshold.
        #[arg(long, value_enum, default_value = "sadder")]
        direction: MoodArg,
        #[arg(long)]
        threshold: Option<f64>,
    },
    /// The "teach the stories a mood" recipe: sample, auto-label with the AFINN judge, train,
    /// and report held-out judge rates and NLL before and after (one JSON object on stdout).
    Mood {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long, value_enum, default_value = "sadder")]
        direction: MoodArg,
        /// TinyStories-style text (stories separated by <|endoftext|>); default: ../shared/data.
        #[arg(long)]
        stories: Option<PathBuf>,
        /// Stories whose first sentences are training prompts; the rest are held out.
        #[arg(long, default_value_t = 60)]
        train_prompts: usize,
        #[arg(long)]
        steps: Option<usize>,
        #[arg(long)]
        lr: Option<f64>,
        #[arg(long)]
        beta: Option<f64>,
        #[arg(long)]
        threshold: Option<f64>,
        #[arg(long)]
        samples_per_prompt: Option<usize>,
        /// Held-out prompts to evaluate (default: all).
        #[arg(long)]
        heldout_prompts: Option<usize>,
        #[arg(long)]
        save: Option<PathBuf>,
    },
    /// Write the app's prompt sets (JSON): demo/training prompts, held-out prompts and stories.
    Prompts {
        /// TinyStories-style text; default ../shared/data (a few built-in prompts when absent).
        #[arg(long)]
        stories: Option<PathBuf>,
        #[arg(long, default_value_t = 60)]
        train_prompts: usize,
    },
    /// Time a KTO step (batch 8 x 64 tokens) and generation on each backend (one JSON line each).
    Bench {
        #[command(flatten)]
        model: ModelArgs,
        /// Backends to time, in order.
        #[arg(long, value_enum, value_delimiter = ',', default_value = "cpu,wgpu")]
        backends: Vec<BackendArg>,
        #[arg(long, default_value_t = 10)]
        steps: usize,
        #[arg(long, default_value_t = 8)]
        batch_size: usize,
        #[arg(long, default_value_t = 64)]
        seq_len: usize,
        #[arg(long, default_value_t = 128)]
        gen_tokens: usize,
        /// A Python with PyTorch: also time `tests/reference/torch_bench.py` on the same rows,
        /// alternating with the engine's rounds, and print the ratios (stories260K-style llama2.c
        /// models only). Default: $KTO_TORCH_PYTHON when set.
        #[arg(long)]
        torch: Option<PathBuf>,
        /// Rounds of (engine backends, PyTorch) timings; each number is the median over rounds.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Time LoRA steps of this rank (0: full fine-tuning).
        #[arg(long, default_value_t = 0)]
        lora_rank: usize,
        /// Wrap the rows in the model's chat template.
        #[arg(long)]
        chat: bool,
    },
}

fn read_rows(path: &Path) -> Result<Vec<KtoExample>> {
    let bytes = std::fs::read(path).map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
    parse_jsonl_bytes(&bytes).map_err(|e| Error::Data(format!("{}: {e}", path.display())))
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))
}

fn load(m: &ModelArgs) -> Result<ModelBundle> {
    let b = ModelBundle::load(m.model.as_deref(), m.tokenizer.as_deref())?;
    eprintln!("model {} ({}): read {}", b.name, b.format, b.files.join(", "));
    Ok(b)
}

/// The `--adapter` folder, read and checked against the model.
fn read_adapter(m: &ModelArgs, bundle: &ModelBundle) -> Result<Option<(LoraConfig, Vec<HostAdapter>)>> {
    let Some(dir) = &m.adapter else { return Ok(None) };
    let read = |n: &str| {
        std::fs::read(dir.join(n)).map_err(|e| Error::Config(format!("cannot read {}: {e}", dir.join(n).display())))
    };
    Ok(Some(peft::load(&read("adapter_config.json")?, &read("adapter_model.safetensors")?, &bundle.weights.config)?))
}

/// The model to run: the bundle's weights, plus the `--adapter` if one was given.
fn model_with_adapter(m: &ModelArgs, bundle: &ModelBundle, device: &Device) -> Result<Model> {
    let model = Model::from_weights(&bundle.weights, device);
    match read_adapter(m, bundle)? {
        None => Ok(model),
        Some((cfg, adapters)) => model.with_adapters(&cfg, &adapters, device),
    }
}

/// Host weights of the model as it behaves: the base with the `--adapter` merged in, if any.
async fn weights_with_adapter(m: &ModelArgs, bundle: &ModelBundle, device: &Device) -> Result<ModelWeights> {
    if m.adapter.is_none() {
        return Ok(bundle.weights.clone());
    }
    model_with_adapter(m, bundle, device)?.to_weights().await
}

fn write_files(dir: &Path, files: &[(String, Vec<u8>)]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Config(format!("cannot create {}: {e}", dir.display())))?;
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes)?;
    }
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = pollster::block_on(run(cli)) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<()> {
    let backend: BackendKind = cli.backend.into();
    if let Command::Bench { model, backends, steps, batch_size, seq_len, gen_tokens, torch, rounds, lora_rank, chat } =
        &cli.command
    {
        if model.adapter.is_some() {
            return Err(Error::Config(
                "bench measures a model's speed; --adapter does not change it, leave it out".into(),
            ));
        }
        let bundle = load(model)?;
        let cfg = BenchConfig {
            steps: *steps,
            batch: *batch_size,
            seq_len: *seq_len,
            gen_tokens: *gen_tokens,
            lora_rank: *lora_rank,
            chat: *chat,
        };
        let kinds: Vec<BackendKind> = backends.iter().map(|&b| b.into()).collect();
        let torch = torch.clone().or_else(|| std::env::var_os("KTO_TORCH_PYTHON").map(PathBuf::from));
        return bench::bench(&bundle, &kinds, &cfg, torch.as_deref(), (*rounds).max(1)).await;
    }
    let device = device::init(backend)?;
    match cli.command {
        Command::Generate { model, sample } => {
            let bundle = load(&model)?;
            let llama = model_with_adapter(&model, &bundle, &device)?;
            let prompt =
                if sample.chat { bundle.tokenizer.chat_prompt(&sample.prompt)? } else { sample.prompt.clone() };
            let cfg = SamplingConfig {
                max_tokens: sample.max_tokens,
                temperature: sample.temperature,
                top_k: sample.top_k,
                top_p: sample.top_p,
                seed: sample.seed,
                stop: vec![],
            };
            let mut out = std::io::stdout();
            generate(&llama, &bundle.tokenizer, &device, &prompt, 1, &cfg, |_, s| {
                let _ = out.write_all(s.as_bytes());
                let _ = out.flush();
            })
            .await?;
            println!();
        }
        Command::Convert { model, out } => {
            let bundle = load(&model)?;
            let m = model_with_adapter(&model, &bundle, &device)?;
            write_files(&out, &export::merged(&m, &bundle).await?)?;
            eprintln!("wrote {} as a Hugging Face folder to {}", bundle.name, out.display());
        }
        Command::Train { model, train, metrics_out, save, export_adapter, export_merged } => {
            let bundle = load(&model)?;
            let examples = read_rows(&train.data)?;
            let cfg = train.config();
            let data = cfg.dataset_for(&bundle.tokenizer, &bundle.weights.config, &examples)?;
            log_dataset(&examples, &data, &cfg);
            let mem = kto_studio::memory::estimate(&bundle.weights.config, &cfg, data.max_row_len());
            eprintln!(
                "memory estimate: {:.0} MiB ({} trainable parameters; rows up to {} tokens)",
                mem.total as f64 / 1048576.0,
                mem.trainable_params,
                data.max_row_len()
            );
            let (cfg, mut trainer) = match read_adapter(&model, &bundle)? {
                // Continue the adapter: its own rank, alpha and targets; the base is the reference.
                Some((lora, adapters)) => {
                    if cfg.lora.is_some() {
                        return Err(Error::Config(
                            "--adapter continues that adapter with its own settings; leave out --lora-rank".into(),
                        ));
                    }
                    eprintln!(
                        "continuing the adapter in {} (rank {})",
                        model.adapter.as_ref().unwrap().display(),
                        lora.rank
                    );
                    let cfg = TrainConfig { lora: Some(lora), ..cfg };
                    (cfg.clone(), Trainer::resume_lora(&bundle.weights, &adapters, &device, cfg)?)
                }
                None => (cfg.clone(), Trainer::new(&bundle.weights, &device, cfg)?),
            };
            let mut sink = match &metrics_out {
                Some(p) => Some(
                    std::fs::File::create(p)
                        .map_err(|e| Error::Config(format!("cannot write {}: {e}", p.display())))?,
                ),
                None => None,
            };
            let start = Instant::now();
            for _ in 0..cfg.steps {
                let m = trainer.step(&data).await?;
                eprintln!(
                    "step {:>4}  loss {:.6}  kl {:.5}  margin {}  grad_norm {:.4}",
                    m.step,
                    m.loss,
                    m.kl,
                    m.rewards_margins.map_or("-".into(), |x| format!("{x:.5}")),
                    m.grad_norm.unwrap_or(0.0)
                );
                if let Some(f) = sink.as_mut() {
                    let mut line = serde_json::to_value(&m).expect("metrics serialize");
                    let obj = line.as_object_mut().unwrap();
                    obj.remove("rewards");
                    obj.remove("labels");
                    writeln!(f, "{line}")?;
                }
            }
            eprintln!("{} steps in {:.2} s", cfg.steps, start.elapsed().as_secs_f64());
            if let Some(path) = save {
                let weights = trainer.policy().to_weights().await?;
                std::fs::write(&path, kto_studio::formats::llama2c::save(&weights)?)?;
                eprintln!("saved trained weights to {}", path.display());
            }
            if let Some(dir) = export_adapter {
                let lora = cfg
                    .lora
                    .as_ref()
                    .ok_or_else(|| Error::Config("--export-adapter needs a LoRA run (--lora-rank N)".into()))?;
                write_files(&dir, &export::adapter(&trainer.policy(), lora, &bundle).await?)?;
                eprintln!("wrote the PEFT adapter to {}", dir.display());
            }
            if let Some(dir) = export_merged {
                write_files(&dir, &export::merged(&trainer.policy(), &bundle).await?)?;
                eprintln!("wrote the merged model to {}", dir.display());
            }
        }
        Command::Eval {
            model,
            reference,
            data,
            stories,
            max_stories,
            batch_size,
            beta,
            max_length,
            judge,
            direction,
            threshold,
        } => {
            let bundle = load(&model)?;
            if data.is_none() && stories.is_none() && judge.is_none() {
                return Err(Error::Config("eval needs --data FILE.jsonl, --stories FILE and/or --judge afinn".into()));
            }
            if judge.is_some() {
                let mut recipe = MoodRecipe::new(direction.into());
                if let Some(t) = threshold {
                    recipe.labeling.threshold = t;
                }
                let text = read_text(&default_stories())?;
                let sets = kto_studio::eval::prompt_sets(&text, 60);
                let llama = model_with_adapter(&model, &bundle, &device)?;
                let report = heldout_eval(&llama, &bundle.tokenizer, &device, &Judge::afinn()?, &sets, &recipe).await?;
                println!("{}", serde_json::to_string(&report).expect("report serializes"));
            }
            if let Some(path) = data {
                // The reference defaults to the model's own base: its weights, without the adapter.
                let base = match &reference {
                    Some(r) => ModelBundle::load(Some(r), None)?.weights,
                    None => bundle.weights.clone(),
                };
                let policy = weights_with_adapter(&model, &bundle, &device).await?;
                let examples = read_rows(&path)?;
                let cfg = TrainConfig {
                    loss: KtoLossConfig { beta, ..Default::default() },
                    batch_size,
                    max_length,
                    shuffle: false,
                    ..Default::default()
                };
                let ds = cfg.dataset_for(&bundle.tokenizer, &bundle.weights.config, &examples)?;
                let trainer = Trainer::with_reference(&policy, &base, &device, cfg)?;
                let m = trainer.evaluate(&ds).await?;
                let mut v = serde_json::to_value(&m).expect("metrics serialize");
                v.as_object_mut()
                    .unwrap()
                    .retain(|k, _| k != "rewards" && k != "labels" && k != "step" && k != "learning_rate");
                println!("{v}");
            }
            if let Some(path) = stories {
                let text = read_text(&path)?;
                let all = kto_studio::eval::split_stories(&text);
                let texts: Vec<&str> = all.iter().take(max_stories).map(|s| s.as_str()).collect();
                let llama = model_with_adapter(&model, &bundle, &device)?;
                let (total, n) = kto_studio::eval::nll(&llama, &bundle.tokenizer, &device, &texts, batch_size).await?;
                println!("{{\"nll_per_token\": {}, \"tokens\": {n}, \"stories\": {}}}", total / n as f64, texts.len());
            }
        }
        Command::Bench { .. } => unreachable!("handled above"),
        Command::Prompts { stories, train_prompts } => {
            let path = stories.unwrap_or_else(default_stories);
            let sets = match std::fs::read_to_string(&path) {
                Ok(text) => kto_studio::eval::prompt_sets(&text, train_prompts),
                Err(_) => {
                    eprintln!(
                        "{} not found: writing a few built-in demo prompts (no held-out stories)",
                        path.display()
                    );
                    kto_studio::eval::PromptSets {
                        train: [
                            "Once upon a time, there was a little girl named Lily.",
                            "Tom had a big red ball.",
                            "One day, a cat saw a bird in the tree.",
                        ]
                        .map(String::from)
                        .to_vec(),
                        heldout: vec![],
                        heldout_stories: vec![],
                    }
                }
            };
            println!("{}", serde_json::to_string_pretty(&sets).expect("prompt sets serialize"));
        }
        Command::Mood {
            model,
            direction,
            stories,
            train_prompts,
            steps,
            lr,
            beta,
            threshold,
            samples_per_prompt,
            heldout_prompts,
            save,
        } => {
            let mut bundle = load(&model)?;
            // The recipe starts from the model as it behaves: base + adapter, merged.
            bundle.weights = weights_with_adapter(&model, &bundle, &device).await?;
            let mut recipe = MoodRecipe::new(direction.into());
            if let Some(s) = steps {
                recipe.train.steps = s;
            }
            if let Some(x) = lr {
                recipe.train.learning_rate = x;
            }
            if let Some(b) = beta {
                recipe.train.loss.beta = b;
            }
            if let Some(t) = threshold {
                recipe.labeling.threshold = t;
            }
            if let Some(k) = samples_per_prompt {
                recipe.samples_per_prompt = k;
            }
            let text = read_text(&stories.unwrap_or_else(default_stories))?;
            let mut sets = kto_studio::eval::prompt_sets(&text, train_prompts);
            if let Some(n) = heldout_prompts {
                sets.heldout.truncate(n);
                sets.heldout_stories.truncate(n);
            }
            let start = Instant::now();
            let (report, trainer) = run_recipe(&bundle, &device, &Judge::afinn()?, &recipe, &sets, |m| {
                if m.step % 10 == 0 {
                    eprintln!("step {:>4}  loss {:.5}  margin {:?}", m.step, m.loss, m.rewards_margins);
                }
            })
            .await?;
            eprintln!(
                "{} rate {:.1}% -> {:.1}%, held-out NLL {:.4} -> {:.4}",
                report.recipe.labeling.mood_name(),
                100.0 * report.before.summary.target_rate,
                100.0 * report.after.summary.target_rate,
                report.before.nll_per_token,
                report.after.nll_per_token
            );
            if let Some(path) = save {
                std::fs::write(&path, kto_studio::formats::llama2c::save(&trainer.policy().to_weights().await?)?)?;
            }
            let mut v = serde_json::to_value(&report).expect("report serializes");
            for side in ["before", "after"] {
                v[side].as_object_mut().unwrap().remove("samples");
            }
            v["wall_seconds"] = start.elapsed().as_secs_f64().into();
            println!("{}", serde_json::to_string_pretty(&v).expect("report serializes"));
        }
    }
    Ok(())
}

fn default_stories() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/tinystories_validation_100.txt")
}

fn log_dataset(examples: &[KtoExample], data: &kto_studio::kto::KtoDataset, cfg: &TrainConfig) {
    let nd = examples.iter().filter(|e| e.label).count();
    let nu = examples.len() - nd;
    eprintln!(
        "{} rows ({nd} desirable, {nu} undesirable), {} batches of {}{}",
        data.rows.len(),
        data.num_batches(),
        cfg.batch_size,
        if data.dropped > 0 { format!(", {} dropped (prompt >= max length)", data.dropped) } else { String::new() }
    );
    if let Some(a) = kto_studio::kto::imbalance_advice(nd, nu, cfg.loss.desirable_weight, cfg.loss.undesirable_weight)
        && a.warn
    {
        eprintln!(
            "warning: class imbalance: set desirable weight in [{}, {}] or undesirable weight in [{}, {}] \
                 so that desirable_weight*n_desirable / (undesirable_weight*n_undesirable) is in [1, 4/3]",
            a.desirable_weight.0, a.desirable_weight.1, a.undesirable_weight.0, a.undesirable_weight.1
        );
    }
}

pub(crate) fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}
