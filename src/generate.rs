//! Sampling: greedy, temperature, top-k, top-p, seeded and deterministic; N samples of one prompt
//! run as one batch over a KV cache. Logits come back to the host each step (async, so the
//! browser can await the GPU), where the sampler picks the next token.

use burn::tensor::Device;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::device::read_f32;
use crate::error::config_err;
use crate::model::{KvCache, Model, token_ids};
use crate::tokenizer::Tokenizer;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplingConfig {
    pub max_tokens: usize,
    /// 0 means greedy (argmax, first maximum on ties, as run.c).
    pub temperature: f32,
    /// Keep only the k most likely tokens; 0 turns it off.
    pub top_k: usize,
    /// Nucleus sampling: keep the smallest set of tokens whose probability reaches p; 1 turns it off.
    pub top_p: f32,
    pub seed: u64,
    /// Extra stop tokens besides the tokenizer's end-of-sequence token.
    pub stop: Vec<u32>,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self { max_tokens: 256, temperature: 1.0, top_k: 0, top_p: 1.0, seed: 42, stop: Vec::new() }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Sample {
    pub ids: Vec<u32>,
    pub text: String,
    /// True when a stop token ended it (false: it ran into max_tokens or the context length).
    pub finished: bool,
}

/// Generate `n` samples continuing `prompt`; `on_text(i, s)` receives sample i's new text as it comes.
pub async fn generate(
    model: &Model,
    tok: &Tokenizer,
    device: &Device,
    prompt: &str,
    n: usize,
    cfg: &SamplingConfig,
    mut on_text: impl FnMut(usize, &str),
) -> Result<Vec<Sample>> {
    if n == 0 {
        return Err(config_err("number of samples must be at least 1"));
    }
    if !(cfg.temperature >= 0.0 && cfg.temperature.is_finite()) {
        return Err(config_err(format!("temperature must be a finite number >= 0, got {}", cfg.temperature)));
    }
    if !(cfg.top_p > 0.0 && cfg.top_p <= 1.0) {
        return Err(config_err(format!("top-p must be in (0, 1], got {}", cfg.top_p)));
    }
    let mut prompt_ids = tok.encode(prompt, true)?;
    if prompt_ids.is_empty() {
        // A tokenizer that adds no BOS (GPT-2) encodes "" to nothing; like transformers'
        // generate, start from the beginning-of-text token, which for these models is the EOS.
        prompt_ids.push(tok.bos_id().unwrap_or(tok.eos_id()));
    }
    let max_seq = model.config().max_seq_len;
    if prompt_ids.len() > max_seq {
        return Err(config_err(format!(
            "the prompt has {} tokens; this model's context is {max_seq}",
            prompt_ids.len()
        )));
    }
    let budget = cfg.max_tokens.min(max_seq + 1 - prompt_ids.len());
    let vocab = model.config().vocab_size;
    let mut stops = cfg.stop.clone();
    stops.push(tok.eos_id());

    let mut rngs: Vec<StdRng> = (0..n).map(|i| StdRng::seed_from_u64(cfg.seed.wrapping_add(i as u64))).collect();
    let mut samples: Vec<Sample> =
        (0..n).map(|_| Sample { ids: vec![], text: String::new(), finished: false }).collect();
    let mut pending: Vec<Vec<u8>> = vec![Vec::new(); n];
    let mut prev: Vec<u32> = vec![*prompt_ids.last().unwrap(); n];

    let mut cache = KvCache::default();
    let p = prompt_ids.len();
    let input: Vec<u32> = (0..n).flat_map(|_| prompt_ids.iter().copied()).collect();
    let mut ids = token_ids(&input, n, device);
    let mut t_in = p;
    for _ in 0..budget {
        let logits = model.forward_cached(ids, &mut cache);
        let last = logits.narrow(1, t_in - 1, 1).reshape([n, vocab]);
        let host = read_f32(last).await?;
        let mut next = Vec::with_capacity(n);
        for i in 0..n {
            let s = &mut samples[i];
            if s.finished {
                next.push(prev[i]);
                continue;
            }
            let tok_id = sample(&host[i * vocab..(i + 1) * vocab], cfg, &mut rngs[i]);
            if stops.contains(&tok_id) {
                s.finished = true;
                next.push(tok_id);
                continue;
            }
            s.ids.push(tok_id);
            pending[i].extend(tok.piece_bytes(Some(prev[i]), tok_id));
            let text = take_utf8(&mut pending[i]);
            if !text.is_empty() {
                on_text(i, &text);
                s.text.push_str(&text);
            }
            prev[i] = tok_id;
            next.push(tok_id);
        }
        if samples.iter().all(|s| s.finished) {
            break;
        }
        ids = token_ids(&next, n, device);
        t_in = 1;
    }
    for (i, s) in samples.iter_mut().enumerate() {
        if !pending[i].is_empty() {
            let rest = String::from_utf8_lossy(&pending[i]).into_owned();
            on_text(i, &rest);
            s.text.push_str(&rest);
        }
    }
    Ok(samples)
}

/// Take the longest complete UTF-8 prefix out of `buf` (a character may span byte tokens).
fn take_utf8(buf: &mut Vec<u8>) -> String {
    match std::str::from_utf8(buf) {
        Ok(s) => {
            let s = s.to_owned();
            buf.clear();
            s
        }
        Err(e) if e.error_len().is_none() => {
            let n = e.valid_up_to();
            let s = String::from_utf8_lossy(&buf[..n]).into_owned();
            buf.drain(..n);
            s
        }
        Err(_) => String::from_utf8_lossy(&std::mem::take(buf)).into_owned(),
    }
}

/// Pick the next token from one row of logits.
pub fn sample(logits: &[f32], cfg: &SamplingConfig, rng: &mut StdRng) -> u32 {
    if cfg.temperature == 0.0 {
        return argmax(logits);
    }
    let mut order: Vec<usize> = (0..logits.len()).collect();
    // Descending by logit, ties by index: a total order, so sampling is reproducible.
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    if cfg.top_k > 0 {
        order.truncate(cfg.top_k);
    }
    let max = logits[order[0]] as f64;
    let t = cfg.temperature as f64;
    let mut probs: Vec<f64> = order.iter().map(|&i| ((logits[i] as f64 - max) / t).exp()).collect();
    let total: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= total);
    if cfg.top_p < 1.0 {
        let mut cum = 0.0;
        let mut keep = probs.len();
        for (j, p) in probs.iter().enumerate() {
            cum += p;
            if cum >= cfg.top_p as f64 {
                keep = j + 1;
                break;
            }
        }
        probs.truncate(keep);
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
    }
    let u: f64 = rng.random();
    let mut cum = 0.0;
    for (j, p) in probs.iter().enumerate() {
        cum += p;
        if u < cum {
            return order[j] as u32;
        }
    }
    order[probs.len() - 1] as u32
}

pub fn argmax(xs: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best as u32
}
