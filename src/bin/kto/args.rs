//! `kto`'s command line: the subcommands and their arguments (clap). The training settings'
//! flags come from the engine's settings list (`flags.rs`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use kto_studio::bench::BenchConfig;
use kto_studio::generate::SamplingConfig;
use kto_studio::kto::TrainConfig;
use kto_studio::mood::Mood;
use kto_studio::{BackendKind, Error, Result};

use crate::flags::TrainFlags;
use crate::read_text;

#[derive(Parser)]
#[command(name = "kto", version, about = "KTO fine-tuning of small language models (native engine of KTO Studio)")]
pub(crate) struct Cli {
    /// Compute backend: wgpu (WGSL kernels on Vulkan, as in the browser), cpu (burn flex: SIMD
    /// matmuls on all cores) or ndarray (burn's older CPU backend, for comparison).
    #[arg(long, global = true, default_value = "cpu")]
    pub(crate) backend: BackendArg,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum BackendArg {
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
pub(crate) struct ModelArgs {
    /// A Hugging Face folder (config.json + *.safetensors + tokenizer.json), a .gguf file, a
    /// llama2.c .bin (or a folder with model + tok*.bin), or a Hub model `hf:owner/name[@rev][:file]`
    /// (downloaded once into ~/.cache/huggingface/hub; HF_ENDPOINT, HF_HUB_CACHE, HF_HUB_OFFLINE as in
    /// huggingface_hub); default: built-in stories260K.
    #[arg(long)]
    pub(crate) model: Option<PathBuf>,
    /// A PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors) to apply.
    #[arg(long)]
    pub(crate) adapter: Option<PathBuf>,
    /// Tokenizer file, when it is not beside the model.
    #[arg(long)]
    pub(crate) tokenizer: Option<PathBuf>,
}

#[derive(Args)]
pub(crate) struct SampleArgs {
    #[arg(long, default_value = "")]
    pub(crate) prompt: String,
    /// Treat the prompt as a user message in the model's chat template (instruct models).
    #[arg(long)]
    pub(crate) chat: bool,
    /// 0 = greedy.
    #[arg(long, default_value_t = SamplingConfig::default().temperature)]
    pub(crate) temperature: f32,
    /// 0 = off.
    #[arg(long, default_value_t = SamplingConfig::default().top_k)]
    pub(crate) top_k: usize,
    /// 1 = off.
    #[arg(long, default_value_t = SamplingConfig::default().top_p)]
    pub(crate) top_p: f32,
    #[arg(long, default_value_t = SamplingConfig::default().seed)]
    pub(crate) seed: u64,
    #[arg(long, default_value_t = SamplingConfig::default().max_tokens)]
    pub(crate) max_tokens: usize,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum JudgeArg {
    /// AFINN-165 word scores with negation, as the npm package `sentiment`.
    Afinn,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum SizeArg {
    Full,
    Quick,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum MoodArg {
    Happier,
    Sadder,
}

#[derive(Args)]
pub(crate) struct TrainArgs {
    /// TRL JSONL: {"prompt", "completion", "label"} rows (or paired {"prompt", "chosen", "rejected"}).
    #[arg(long)]
    pub(crate) data: PathBuf,
    /// A JSON object of training settings (as `kto mood --run-out` writes): flags given here win.
    #[arg(long)]
    pub(crate) settings: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) flags: TrainFlags,
}

impl TrainArgs {
    pub(crate) fn config(&self) -> Result<TrainConfig> {
        let file = match &self.settings {
            Some(p) => match serde_json::from_str::<serde_json::Value>(&read_text(p)?) {
                Ok(serde_json::Value::Object(m)) => Some(m),
                _ => {
                    return Err(Error::Config(format!("{}: expected a JSON object of training settings", p.display())));
                }
            },
            None => None,
        };
        self.flags.config(file.as_ref())
    }
}

#[derive(Subcommand)]
pub(crate) enum Command {
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
        #[arg(long, default_value_t = TrainConfig::default().batch_size)]
        batch_size: usize,
        #[arg(long, default_value_t = TrainConfig::default().loss.beta)]
        beta: f64,
        #[arg(long, default_value_t = TrainConfig::default().max_length)]
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
        /// "quick": 8 training prompts, 4 samples each, 10 steps, 4 held-out prompts (the page's quick demo).
        #[arg(long, value_enum, default_value = "full")]
        size: SizeArg,
        #[arg(long)]
        save: Option<PathBuf>,
        /// Write the run's auto-labelled rows (rows.jsonl), its training settings (settings.json)
        /// and one line of metrics per step (metrics.jsonl) to this folder: `kto train --data
        /// DIR/rows.jsonl --settings DIR/settings.json` repeats the training.
        #[arg(long)]
        run_out: Option<PathBuf>,
    },
    /// Each token of a text with its log-probability under the base model and the trained one
    /// (`--trained FILE`: what the page saves or downloads as one file; or `--adapter DIR`).
    /// Prints one JSON array of {text, base, trained}.
    Diff {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long)]
        trained: Option<PathBuf>,
        #[arg(long)]
        text: String,
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
        #[arg(long, default_value_t = BenchConfig::default().steps)]
        steps: usize,
        #[arg(long, default_value_t = BenchConfig::default().batch)]
        batch_size: usize,
        #[arg(long, default_value_t = BenchConfig::default().seq_len)]
        seq_len: usize,
        #[arg(long, default_value_t = BenchConfig::default().gen_tokens)]
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
