//! `kto`: the engine from the command line — generate, train, eval, bench. Generated text goes to
//! stdout; logs and progress go to stderr.

mod args;
mod bench;
mod flags;
mod hub;

use std::future::ready;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use args::{Cli, Command, ModelArgs, SizeArg};
use burn::tensor::Device;
use clap::Parser;
use kto_studio::bench::BenchConfig;
use kto_studio::eval::PromptSets;
use kto_studio::export;
use kto_studio::generate::SamplingConfig;
use kto_studio::judge::Judge;
use kto_studio::kto::{
    Control, KtoExample, KtoLossConfig, TrainConfig, Trainer, imbalance_advice, parse_jsonl_bytes, to_jsonl,
};
use kto_studio::mood::{MoodEvent, MoodRecipe};
use kto_studio::session::{Estimate, Session, Which};
use kto_studio::{BackendKind, Error, ModelBundle, Result, device};

fn read_rows(path: &Path) -> Result<Vec<KtoExample>> {
    parse_jsonl_bytes(&read(path)?).map_err(|e| Error::Data(format!("{}: {e}", path.display())))
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))
}

pub(crate) fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))
}

fn write_files(dir: &Path, files: &[(String, Vec<u8>)]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Config(format!("cannot create {}: {e}", dir.display())))?;
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes)?;
    }
    Ok(())
}

fn create(path: &Path) -> Result<std::fs::File> {
    std::fs::File::create(path).map_err(|e| Error::Config(format!("cannot write {}: {e}", path.display())))
}

/// A session on `device` with the `--model` loaded and its `--adapter` (if any) as the trained
/// model. Returns the session and which model behaves as asked: the adapter's when given.
fn open(m: &ModelArgs, backend: BackendKind, device: Device) -> Result<(Session, Which)> {
    let b = load(m.model.as_deref(), m.tokenizer.as_deref())?;
    eprintln!("model {} ({}): read {}", b.name, b.format, b.files.join(", "));
    let session = Session::new(backend, device);
    session.open(b)?;
    let Some(dir) = &m.adapter else { return Ok((session, Which::Base)) };
    let info = session
        .import_adapter(&read(&dir.join("adapter_config.json"))?, &read(&dir.join("adapter_model.safetensors"))?)?;
    eprintln!("adapter {} (rank {}, {} projections)", dir.display(), info.rank, info.adapters);
    Ok((session, Which::Trained))
}

/// A model from a path, or from the Hub (`hf:owner/name[@rev][:file]`, downloaded into its cache).
fn load(model: Option<&Path>, tokenizer: Option<&Path>) -> Result<ModelBundle> {
    match model.and_then(|p| p.to_str()).filter(|s| s.starts_with("hf:")) {
        Some(spec) => {
            let mut b = ModelBundle::load(Some(&hub::resolve(spec)?), tokenizer)?;
            // The snapshot folder is named by its commit; the repo id says which model it is.
            if b.name.len() == 40 && b.name.chars().all(|c| c.is_ascii_hexdigit()) {
                b.name = kto_studio::hub::RepoRef::parse(spec)?.id;
            }
            Ok(b)
        }
        None => ModelBundle::load(model, tokenizer),
    }
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = kto_studio::device::on_cpu_threads(|| pollster::block_on(run(cli))) {
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
        let bundle = load(model.model.as_deref(), model.tokenizer.as_deref())?;
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
    if let Command::Prompts { stories, train_prompts } = cli.command {
        let sets = prompt_sets_or_builtin(&stories.unwrap_or_else(default_stories), train_prompts);
        println!("{}", serde_json::to_string_pretty(&sets).expect("prompt sets serialize"));
        return Ok(());
    }
    let device = device::init(backend)?;
    match cli.command {
        Command::Generate { model, sample } => {
            let (session, which) = open(&model, backend, device)?;
            let cfg = SamplingConfig {
                max_tokens: sample.max_tokens,
                temperature: sample.temperature,
                top_k: sample.top_k,
                top_p: sample.top_p,
                seed: sample.seed,
                stop: vec![],
            };
            let mut out = std::io::stdout();
            session
                .generate(which, &sample.prompt, 1, &cfg, sample.chat, |_, s| {
                    let _ = out.write_all(s.as_bytes());
                    let _ = out.flush();
                })
                .await?;
            println!();
        }
        Command::Convert { model, out } => {
            let (session, which) = open(&model, backend, device)?;
            let files = export::merged(&session.model(which)?, &*session.bundle()?).await?;
            write_files(&out, &files)?;
            eprintln!("wrote {} as a Hugging Face folder to {}", session.bundle()?.name, out.display());
        }
        Command::Train { model, train, metrics_out, save, export_adapter, export_merged } => {
            let (session, which) = open(&model, backend, device)?;
            let rows = read_rows(&train.data)?;
            let cfg = train.config()?;
            let continuing = which == Which::Trained;
            if continuing && train.flags.given("method") {
                return Err(Error::Config(
                    "--adapter continues that adapter with its own settings; leave out --lora-rank, the other --lora-* flags and --method".into(),
                ));
            }
            if continuing {
                let lora = session.trained_lora().expect("an imported adapter has LoRA settings");
                eprintln!("continuing the adapter (rank {}, alpha {}): its own settings", lora.rank, lora.alpha);
            }
            let planned =
                TrainConfig { lora: session.trained_lora().filter(|_| continuing).or(cfg.lora.clone()), ..cfg.clone() };
            let est = session.estimate(&rows, &planned)?;
            log_dataset(&est, &cfg);
            let steps = cfg.steps;
            session.start_run(&rows, cfg, continuing)?;
            let mut sink = metrics_out.as_deref().map(create).transpose()?;
            let start = Instant::now();
            session
                .train(|r| {
                    let m = &r.metrics;
                    eprintln!(
                        "step {:>4}  loss {:.6}  kl {:.5}  margin {}  grad_norm {:.4}",
                        m.step,
                        m.loss,
                        m.kl,
                        m.rewards_margins.map_or("-".into(), |x| format!("{x:.5}")),
                        m.grad_norm.unwrap_or(0.0)
                    );
                    let mut line = serde_json::to_value(m).expect("metrics serialize");
                    if let Some(h) = &r.heldout {
                        eprintln!(
                            "      held-out loss {:.6}  margin {}",
                            h.loss,
                            h.rewards_margins.map_or("-".into(), |x| format!("{x:.5}"))
                        );
                        line["heldout"] = serde_json::to_value(h).expect("metrics serialize");
                    }
                    let written = sink.as_mut().map(|f| writeln!(f, "{line}"));
                    ready(if matches!(written, Some(Err(_))) { Control::Stop } else { Control::Continue })
                })
                .await?;
            eprintln!("{steps} steps in {:.2} s", start.elapsed().as_secs_f64());
            if let Some(path) = save {
                let weights = session.model(Which::Trained)?.to_weights().await?;
                std::fs::write(&path, kto_studio::formats::llama2c::save(&weights)?)?;
                eprintln!("saved trained weights to {}", path.display());
            }
            if let Some(dir) = export_adapter {
                write_files(&dir, &session.export("adapter").await?)?;
                eprintln!("wrote the PEFT adapter to {}", dir.display());
            }
            if let Some(dir) = export_merged {
                write_files(&dir, &session.export("merged").await?)?;
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
            if data.is_none() && stories.is_none() && judge.is_none() {
                return Err(Error::Config("eval needs --data FILE.jsonl, --stories FILE and/or --judge afinn".into()));
            }
            let (session, which) = open(&model, backend, device.clone())?;
            let (llama, bundle) = (session.model(which)?, session.bundle()?);
            if judge.is_some() {
                let mut recipe = MoodRecipe::new(direction.into());
                if let Some(t) = threshold {
                    recipe.labeling.threshold = t;
                }
                let sets = kto_studio::eval::prompt_sets(&read_text(&default_stories())?, 60);
                session.set_judge(Judge::afinn()?);
                let report = session.heldout(which, &sets, &recipe).await?;
                println!("{}", serde_json::to_string(&report).expect("report serializes"));
            }
            if let Some(path) = data {
                // The reference defaults to the model's own base: its weights, without the adapter.
                let base = match &reference {
                    Some(r) => load(Some(r), None)?.weights,
                    None => bundle.weights.clone(),
                };
                let policy = llama.to_weights().await?;
                let cfg = TrainConfig {
                    loss: KtoLossConfig { beta, ..Default::default() },
                    batch_size,
                    max_length,
                    shuffle: false,
                    ..Default::default()
                };
                let ds = cfg.dataset_for(&bundle.tokenizer, &bundle.weights.config, &read_rows(&path)?)?;
                let m = Trainer::with_reference(&policy, &base, &device, cfg)?.evaluate(&ds).await?;
                let mut v = serde_json::to_value(&m).expect("metrics serialize");
                v.as_object_mut().unwrap().retain(|k, _| k != "step" && k != "learning_rate");
                println!("{v}");
            }
            if let Some(path) = stories {
                let all = kto_studio::eval::split_stories(&read_text(&path)?);
                let texts: Vec<&str> = all.iter().take(max_stories).map(|s| s.as_str()).collect();
                let (total, n) = kto_studio::eval::nll(&llama, &bundle.tokenizer, &device, &texts, batch_size).await?;
                println!("{{\"nll_per_token\": {}, \"tokens\": {n}, \"stories\": {}}}", total / n as f64, texts.len());
            }
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
            size,
            save,
            run_out,
        } => {
            let (session, which) = open(&model, backend, device)?;
            if which == Which::Trained {
                // The recipe starts from the model as it behaves: base + adapter, merged.
                let mut bundle = (*session.bundle()?).clone();
                bundle.weights = session.model(which)?.to_weights().await?;
                session.open(bundle)?;
            }
            let mut recipe = match size {
                SizeArg::Full => MoodRecipe::new(direction.into()),
                SizeArg::Quick => MoodRecipe::quick(direction.into()),
            };
            recipe.train.steps = steps.unwrap_or(recipe.train.steps);
            recipe.train.learning_rate = lr.unwrap_or(recipe.train.learning_rate);
            recipe.train.loss.beta = beta.unwrap_or(recipe.train.loss.beta);
            recipe.labeling.threshold = threshold.unwrap_or(recipe.labeling.threshold);
            recipe.samples_per_prompt = samples_per_prompt.unwrap_or(recipe.samples_per_prompt);
            recipe.max_heldout_prompts = heldout_prompts.or(recipe.max_heldout_prompts);
            let sets =
                kto_studio::eval::prompt_sets(&read_text(&stories.unwrap_or_else(default_stories))?, train_prompts);
            session.set_judge(Judge::afinn()?);
            let mut metrics = Vec::new();
            let mut labelled = None;
            let start = Instant::now();
            let report = session
                .mood(&recipe, &sets, |e| {
                    match e {
                        MoodEvent::Step(r) => {
                            if r.metrics.step % 10 == 0 {
                                let m = &r.metrics;
                                eprintln!("step {:>4}  loss {:.5}  margin {:?}", m.step, m.loss, m.rewards_margins);
                            }
                            metrics.push(r.metrics);
                        }
                        MoodEvent::Labelled { rows, settings, .. } => labelled = Some((rows, settings)),
                        _ => {}
                    }
                    ready(Control::Continue)
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
                let weights = session.model(Which::Trained)?.to_weights().await?;
                std::fs::write(&path, kto_studio::formats::llama2c::save(&weights)?)?;
            }
            if let (Some(dir), Some((rows, settings))) = (run_out, labelled) {
                let lines: String = metrics.iter().map(|m| serde_json::to_string(m).unwrap() + "\n").collect();
                let files = [
                    ("rows.jsonl".to_string(), to_jsonl(&rows).into_bytes()),
                    ("settings.json".to_string(), serde_json::to_vec_pretty(&settings).unwrap()),
                    ("metrics.jsonl".to_string(), lines.into_bytes()),
                ];
                write_files(&dir, &files)?;
            }
            let mut v = serde_json::to_value(&report).expect("report serializes");
            for side in ["before", "after"] {
                v[side].as_object_mut().unwrap().remove("samples");
            }
            v["wall_seconds"] = start.elapsed().as_secs_f64().into();
            println!("{}", serde_json::to_string_pretty(&v).expect("report serializes"));
        }
        Command::Diff { model, trained, text } => {
            let (session, which) = open(&model, backend, device)?;
            match (&trained, which) {
                (Some(path), Which::Base) => session.restore(&read(path)?)?,
                (None, Which::Trained) => {}
                _ => {
                    return Err(Error::Config(
                        "diff compares a trained model with its base: give --trained FILE or --adapter DIR".into(),
                    ));
                }
            }
            println!("{}", serde_json::to_string(&session.token_diff(&text).await?).expect("tokens serialize"));
        }
        Command::Bench { .. } | Command::Prompts { .. } => unreachable!("handled above"),
    }
    Ok(())
}

fn default_stories() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/tinystories_validation_100.txt")
}

/// The prompt sets of a stories file, or a few built-in demo prompts when it is missing.
fn prompt_sets_or_builtin(path: &Path, train_prompts: usize) -> PromptSets {
    match std::fs::read_to_string(path) {
        Ok(text) => kto_studio::eval::prompt_sets(&text, train_prompts),
        Err(_) => {
            eprintln!("{} not found: writing a few built-in demo prompts (no held-out stories)", path.display());
            let train = [
                "Once upon a time, there was a little girl named Lily.",
                "Tom had a big red ball.",
                "One day, a cat saw a bird in the tree.",
            ];
            PromptSets { train: train.map(String::from).to_vec(), heldout: vec![], heldout_stories: vec![] }
        }
    }
}

fn log_dataset(est: &Estimate, cfg: &TrainConfig) {
    let d = &est.data;
    eprintln!(
        "{} rows ({} desirable, {} undesirable), {} batches of {}{}",
        d.rows,
        d.desirable,
        d.undesirable,
        d.batches,
        cfg.batch_size,
        if d.dropped > 0 { format!(", {} dropped (prompt >= max length)", d.dropped) } else { String::new() }
            + &if d.heldout > 0 { format!("; {} more held out", d.heldout) } else { String::new() }
    );
    eprintln!(
        "memory estimate: {:.0} MiB ({} trainable parameters; rows up to {} tokens)",
        est.memory.total as f64 / 1048576.0,
        est.memory.trainable_params,
        d.max_row_len
    );
    let l = &cfg.loss;
    if let Some(a) = imbalance_advice(d.desirable, d.undesirable, l.desirable_weight, l.undesirable_weight)
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
