//! `kto-fuzz`: a mutation fuzzer for every file a user can hand the engine — llama2.c
//! checkpoints, GGUF, Hugging Face safetensors + config, tokenizer.json, PEFT adapters, KTO
//! JSONL and chat templates. Inputs are damaged copies of real seed files (the built-in model,
//! the committed goldens), generated deterministically from (seed, format, index).
//!
//! The parent runs the inputs in child processes (one per core) and watches them: a panic is
//! caught in the child and reported; an abort (a failed allocation, a stack overflow) kills the
//! child, and the parent records the input and restarts after it; an input running past the
//! time limit is a hang, and its child is killed. A counting allocator measures each input's
//! peak memory against what the file justifies (its own size, or the f32 weights its declared
//! shapes hold once accepted). Failing inputs are saved under `--out` for regression tests.
//!
//!     kto-fuzz --inputs 100000 --seed 1 [--format gguf] [--jobs 2] [--timeout-s 10] [--out DIR]

mod alloc;
mod mutate;
mod targets;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::Parser;

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

/// Memory an input may use beyond 4x what its file justifies: the engine's fixed costs (a
/// tokenizer's tables, burn's first allocations) that do not scale with the file. The budget
/// of an input is `SLACK + 4 * justified`.
const SLACK: usize = 64 << 20;

#[derive(Parser)]
#[command(name = "kto-fuzz", about = "Mutation fuzzer for every file format KTO Studio reads")]
struct Cli {
    /// Inputs per format.
    #[arg(long, default_value_t = 1000)]
    inputs: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// One format (llama2c, gguf, safetensors, tokenizer, peft, jsonl, template); default all.
    #[arg(long)]
    format: Option<String>,
    #[arg(long, default_value_t = 2)]
    jobs: u64,
    /// An input running longer than this is a hang.
    #[arg(long, default_value_t = 10.0)]
    timeout_s: f64,
    /// Where failing inputs are written (one folder per input).
    #[arg(long, default_value = "target/fuzz-failures")]
    out: PathBuf,
    /// Internal: run inputs FROM..TO step STRIDE of FORMAT and report on stdout.
    #[arg(long, hide = true, num_args = 4, value_names = ["FORMAT", "FROM", "TO", "STRIDE"])]
    worker: Option<Vec<String>>,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn main() {
    let cli = Cli::parse();
    if let Some(w) = &cli.worker {
        worker(&cli, &w[0], w[1].parse().unwrap(), w[2].parse().unwrap(), w[3].parse().unwrap());
        return;
    }
    let formats: Vec<&str> = match &cli.format {
        Some(f) => vec![targets::FORMATS.iter().copied().find(|x| x == f).unwrap_or_else(|| {
            eprintln!("unknown format {f}; one of {:?}", targets::FORMATS);
            std::process::exit(2)
        })],
        None => targets::FORMATS.to_vec(),
    };
    let corpus = targets::Corpus::load(&root());
    println!(
        "| format | inputs | accepted | refused | panics | aborts | hangs (> {} s) | slowest | over memory budget | max peak / justified (≥ 256 KiB) | largest peak |",
        cli.timeout_s
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut failures = 0;
    for f in formats {
        let s = supervise(&cli, &corpus, f);
        failures += s.panics + s.aborts + s.hangs + s.over_memory;
        println!(
            "| {f} | {} | {} | {} | {} | {} | {} | {:.0} ms | {} | {} | {:.1} MiB |",
            s.done,
            s.ok,
            s.err,
            s.panics,
            s.aborts,
            s.hangs,
            s.slowest_us as f64 / 1000.0,
            s.over_memory,
            if s.raw_ratio > 0.0 { format!("{:.2}", s.raw_ratio) } else { "–".into() },
            s.largest_peak as f64 / 1048576.0
        );
    }
    if failures > 0 {
        eprintln!("{failures} failing inputs; saved under {}", cli.out.display());
        std::process::exit(1);
    }
}

#[derive(Default)]
struct Summary {
    done: u64,
    ok: u64,
    err: u64,
    panics: u64,
    aborts: u64,
    hangs: u64,
    over_memory: u64,
    slowest_us: u64,
    /// The largest peak / justified, fixed costs included, over inputs that justify at least
    /// 256 KiB (below that the engine's fixed costs dominate any ratio).
    raw_ratio: f64,
    largest_peak: usize,
}

enum Event {
    Line(String),
    Exit(String),
}

/// Run `format`'s inputs in `jobs` children, each taking every `jobs`-th index.
fn supervise(cli: &Cli, corpus: &targets::Corpus, format: &str) -> Summary {
    // Events carry (lane, generation): a killed child's last words must not be taken for its successor's.
    let (tx, rx) = mpsc::channel::<((u64, u64), Event)>();
    let mut s = Summary::default();
    let mut children = Vec::new();
    let mut gens = vec![0u64; cli.jobs as usize];
    let spawn = |lane: u64, gen_: u64, from: u64, tx: mpsc::Sender<((u64, u64), Event)>| {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--seed", &cli.seed.to_string(), "--worker", format, &from.to_string(), &cli.inputs.to_string()])
            .arg(cli.jobs.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn a fuzz worker");
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let tx2 = tx.clone();
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            for line in BufReader::new(err).lines().map_while(|l| l.ok()) {
                if text.len() < 4000 {
                    text.push_str(&line);
                    text.push('\n');
                }
            }
            text
        });
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(|l| l.ok()) {
                let _ = tx2.send(((lane, gen_), Event::Line(line)));
            }
            let text = stderr.join().unwrap_or_default();
            let _ = tx2.send(((lane, gen_), Event::Exit(text)));
        });
        child
    };
    // Per lane: the child, the input it started and when.
    let mut running: Vec<Option<(u64, Instant)>> = vec![None; cli.jobs as usize];
    for lane in 0..cli.jobs {
        children.push(Some(spawn(lane, 0, lane, tx.clone())));
    }
    let mut alive = cli.jobs;
    let timeout = Duration::from_secs_f64(cli.timeout_s);
    while alive > 0 {
        let next_deadline = running.iter().flatten().map(|(_, t)| *t + timeout).min();
        let wait = next_deadline.map_or(Duration::from_secs(60), |d| d.saturating_duration_since(Instant::now()));
        match rx.recv_timeout(wait) {
            Ok(((lane, g), _)) if g != gens[lane as usize] => {}
            Ok(((lane, _), Event::Line(line))) => {
                let mut p = line.split(' ');
                match p.next() {
                    Some("S") => running[lane as usize] = Some((p.next().unwrap().parse().unwrap(), Instant::now())),
                    Some("E") => {
                        let i: u64 = p.next().unwrap().parse().unwrap();
                        let status = p.next().unwrap();
                        let peak: usize = p.next().unwrap().parse().unwrap();
                        let justified: usize = p.next().unwrap().parse().unwrap();
                        let us: u64 = p.next().unwrap().parse().unwrap();
                        running[lane as usize] = None;
                        s.done += 1;
                        s.slowest_us = s.slowest_us.max(us);
                        s.largest_peak = s.largest_peak.max(peak);
                        let ratio = peak.saturating_sub(SLACK) as f64 / justified.max(1) as f64;
                        if justified >= 256 << 10 {
                            s.raw_ratio = s.raw_ratio.max(peak as f64 / justified as f64);
                        }
                        if ratio > 4.0 {
                            s.over_memory += 1;
                            save(cli, corpus, format, i, &format!("memory: peak {peak} bytes, justified {justified}"));
                        }
                        match status {
                            "ok" => s.ok += 1,
                            "err" => s.err += 1,
                            _ => {
                                s.panics += 1;
                                let msg: Vec<&str> = p.collect();
                                save(cli, corpus, format, i, &format!("panic: {}", msg.join(" ")));
                            }
                        }
                    }
                    _ => {}
                }
            }
            Ok(((lane, _), Event::Exit(stderr))) => {
                let l = lane as usize;
                if let Some(mut c) = children[l].take() {
                    let status = c.wait().ok();
                    if let Some((i, _)) = running[l].take() {
                        // It died inside input i: an abort (allocation failure, overflow, ...).
                        s.aborts += 1;
                        s.done += 1;
                        save(cli, corpus, format, i, &format!("abort ({status:?}):\n{stderr}"));
                        if i + cli.jobs < cli.inputs {
                            gens[l] += 1;
                            children[l] = Some(spawn(lane, gens[l], i + cli.jobs, tx.clone()));
                            continue;
                        }
                    }
                }
                alive -= 1;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                for l in 0..running.len() {
                    if let Some((i, t)) = running[l]
                        && t.elapsed() >= timeout
                    {
                        s.hangs += 1;
                        s.done += 1;
                        running[l] = None;
                        save(cli, corpus, format, i, &format!("hang: still running after {:?}", timeout));
                        if let Some(mut c) = children[l].take() {
                            let _ = c.kill();
                            let _ = c.wait();
                        }
                        // Restart after the hang; the killed child's exit is ignored (old generation).
                        gens[l] += 1;
                        if i + cli.jobs < cli.inputs {
                            children[l] = Some(spawn(l as u64, gens[l], i + cli.jobs, tx.clone()));
                        } else {
                            alive -= 1;
                        }
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    s
}

fn save(cli: &Cli, corpus: &targets::Corpus, format: &str, i: u64, why: &str) {
    let dir = cli.out.join(format!("{format}-{}-{i}", cli.seed));
    let _ = std::fs::create_dir_all(&dir);
    for (name, bytes) in corpus.input(format, cli.seed, i) {
        let _ = std::fs::write(dir.join(name), bytes);
    }
    let _ = std::fs::write(dir.join("WHY.txt"), why);
    eprintln!("{format} input {i}: {}", why.lines().next().unwrap_or(""));
}

fn worker(cli: &Cli, format: &str, from: u64, to: u64, stride: u64) {
    let corpus = targets::Corpus::load(&root());
    let device = kto_studio::device::init(kto_studio::BackendKind::Cpu).expect("cpu device");
    std::panic::set_hook(Box::new(|_| {}));
    let mut out = std::io::stdout().lock();
    let mut i = from;
    while i < to {
        let input = corpus.input(format, cli.seed, i);
        let size: usize = input.iter().map(|(_, b)| b.len()).sum();
        writeln!(out, "S {i}").unwrap();
        out.flush().unwrap();
        let base = alloc::reset_peak();
        let t = Instant::now();
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| targets::run(&corpus, format, &input, &device)));
        let us = t.elapsed().as_micros() as u64;
        let peak = alloc::peak().saturating_sub(base);
        let (status, justified, msg) = match result {
            Ok(Ok(weights)) => ("ok", size.max(weights), String::new()),
            Ok(Err(_)) => ("err", size, String::new()),
            Err(p) => {
                let m = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                ("panic", size, m.replace('\n', " "))
            }
        };
        writeln!(out, "E {i} {status} {peak} {justified} {us} {msg}").unwrap();
        out.flush().unwrap();
        i += stride;
    }
}
