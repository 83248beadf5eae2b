//! Held-out evaluation: teacher-forced negative log-likelihood of reference texts (how much
//! general language ability a tuning run cost).

use burn::tensor::Device;

use crate::Result;
use crate::model::Model;
use crate::score::{collate, completion_logps};
use crate::tokenizer::Tokenizer;

/// Total NLL (nats) and number of predicted tokens over `texts`, each encoded with BOS and cut to
/// the model's context; every token after BOS is predicted.
pub async fn nll(
    model: &Model,
    tok: &Tokenizer,
    device: &Device,
    texts: &[&str],
    batch_size: usize,
) -> Result<(f64, usize)> {
    let max_len = model.config().max_seq_len;
    let mut encoded: Vec<Vec<u32>> = Vec::with_capacity(texts.len());
    for t in texts {
        let ids = tok.encode(t, true)?;
        if ids.len() >= 2 {
            encoded.push(ids);
        }
    }
    let (mut total, mut count) = (0.0, 0usize);
    for chunk in encoded.chunks(batch_size.max(1)) {
        let seqs: Vec<(&[u32], &[u32])> = chunk.iter().map(|ids| (&ids[..1], &ids[1..])).collect();
        let batch = collate(&seqs, max_len, tok.pad_id());
        let logps = completion_logps(model, &batch, device);
        let host = crate::device::read_f32(logps).await?;
        total -= host.iter().map(|&x| x as f64).sum::<f64>();
        count += batch.lengths.iter().map(|l| l - 1).sum::<usize>();
    }
    Ok((total, count))
}

/// Split TinyStories-style text on `<|endoftext|>` lines into trimmed, non-empty stories.
pub fn split_stories(text: &str) -> Vec<String> {
    text.split("<|endoftext|>").map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
}

/// The demo prompt of a story: its first sentence, or two when the first is short.
pub fn first_sentences(story: &str) -> String {
    let flat = story.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut sentences = Vec::new();
    let mut start = 0;
    let chars: Vec<(usize, char)> = flat.char_indices().collect();
    let mut i = 0;
    while i < chars.len() {
        if matches!(chars[i].1, '.' | '!' | '?') {
            let mut j = i + 1;
            while j < chars.len() && matches!(chars[j].1, '.' | '!' | '?' | '"' | '”' | '\'') {
                j += 1;
            }
            let end = chars.get(j).map_or(flat.len(), |c| c.0);
            sentences.push(flat[start..end].trim().to_string());
            start = end;
            i = j;
        } else {
            i += 1;
        }
    }
    let mut p = sentences.first().cloned().unwrap_or_default();
    if p.chars().count() < 40
        && let Some(second) = sentences.get(1)
    {
        p = format!("{p} {second}");
    }
    p
}

/// Demo prompts and held-out material from TinyStories validation stories: the first story of
/// the file is cut off at its start and skipped; the first `n_train` stories give training
/// prompts, the rest held-out prompts and the held-out stories for NLL.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PromptSets {
    pub train: Vec<String>,
    pub heldout: Vec<String>,
    pub heldout_stories: Vec<String>,
}

pub fn prompt_sets(stories_text: &str, n_train: usize) -> PromptSets {
    let stories: Vec<String> = split_stories(stories_text).into_iter().skip(1).collect();
    let usable: Vec<(String, String)> = stories
        .into_iter()
        .map(|s| (first_sentences(&s), s))
        .filter(|(p, _)| (10..=200).contains(&p.chars().count()))
        .collect();
    let (train, rest) = usable.split_at(n_train.min(usable.len()));
    let mut train_prompts: Vec<String> = Vec::new();
    for (p, _) in train {
        if !train_prompts.contains(p) {
            train_prompts.push(p.clone());
        }
    }
    // Many stories open alike ("Once upon a time, there was a little girl named Lily."): a
    // held-out prompt must not also be a training prompt.
    let mut heldout = Vec::new();
    let mut heldout_stories = Vec::new();
    for (p, s) in rest {
        if !train_prompts.contains(p) && !heldout.contains(p) {
            heldout.push(p.clone());
            heldout_stories.push(s.clone());
        }
    }
    PromptSets { train: train_prompts, heldout, heldout_stories }
}
