//! Tokenization and batching exactly as TRL's `KTOTrainer` (see `docs/kto.md`, "From rows to tensors"):
//! EOS appended as text, prompt and prompt+completion tokenized jointly and split at their common
//! prefix, KL completions rotated by one inside each batch-sized chunk, right truncation and padding.

use super::data::KtoExample;
use crate::Result;
use crate::error::config_err;
use crate::score::{Collated, collate};
use crate::tokenizer::Tokenizer;

#[derive(Debug, Clone, PartialEq)]
pub struct TokenizedRow {
    pub prompt_ids: Vec<u32>,
    pub completion_ids: Vec<u32>,
    pub label: bool,
}

/// Tokenize one row like TRL `_prepare_dataset`.
pub fn tokenize_row(tok: &Tokenizer, ex: &KtoExample) -> Result<TokenizedRow> {
    let eos = tok.eos_text();
    let completion =
        if ex.completion.ends_with(&eos) { ex.completion.clone() } else { format!("{}{eos}", ex.completion) };
    let prompt_tok = tok.encode(&ex.prompt, true)?;
    let full = tok.encode(&format!("{}{completion}", ex.prompt), true)?;
    let k = prompt_tok.iter().zip(&full).take_while(|(a, b)| a == b).count();
    Ok(TokenizedRow { prompt_ids: full[..k].to_vec(), completion_ids: full[k..].to_vec(), label: ex.label })
}

/// `KL_completion_ids[i] = completion_ids[i-1]` inside consecutive chunks of `batch_size` rows;
/// the first row of a chunk takes the chunk's last completion.
pub fn kl_completions(rows: &[TokenizedRow], batch_size: usize) -> Vec<Vec<u32>> {
    let mut out = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(batch_size.max(1)) {
        for i in 0..chunk.len() {
            let j = if i == 0 { chunk.len() - 1 } else { i - 1 };
            out.push(chunk[j].completion_ids.clone());
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq)]
pub struct KtoBatch {
    pub main: Collated,
    /// The mismatched (prompt_i, completion_{i-1}) sequences; `None` for `apo_zero_unpaired`.
    pub kl: Option<Collated>,
    pub labels: Vec<bool>,
    /// Which dataset rows these are.
    pub rows: Vec<usize>,
}

/// Tokenized rows in training order with their KL completions fixed, ready to batch.
#[derive(Debug, Clone)]
pub struct KtoDataset {
    pub rows: Vec<TokenizedRow>,
    /// The example each row came from (same order), for front ends that show a batch's rows.
    pub examples: Vec<KtoExample>,
    pub kl_completions: Vec<Vec<u32>>,
    pub batch_size: usize,
    pub max_length: usize,
    pub pad_id: u32,
    /// Rows dropped because the prompt alone reached `max_length`.
    pub dropped: usize,
}

impl KtoDataset {
    /// `examples` must already be in training order (shuffle before, as TRL users must).
    pub fn new(
        tok: &Tokenizer,
        examples: &[KtoExample],
        batch_size: usize,
        max_length: usize,
        with_kl: bool,
    ) -> Result<Self> {
        if batch_size == 0 {
            return Err(config_err("batch size must be at least 1"));
        }
        if with_kl && batch_size < 2 {
            return Err(config_err(
                "KTO needs a batch size of at least 2: its reference point (the KL term) pairs each prompt with \
                 another row's completion. Raise the batch size, or use the apo-zero loss, which has no KL term",
            ));
        }
        if max_length < 2 {
            return Err(config_err("max length must be at least 2 tokens"));
        }
        let all: Vec<TokenizedRow> = examples.iter().map(|e| tokenize_row(tok, e)).collect::<Result<_>>()?;
        let total = all.len();
        let (rows, examples): (Vec<TokenizedRow>, Vec<KtoExample>) =
            all.into_iter().zip(examples.iter().cloned()).filter(|(r, _)| r.prompt_ids.len() < max_length).unzip();
        let dropped = total - rows.len();
        if rows.is_empty() {
            return Err(crate::Error::Data(if total == 0 {
                "the dataset is empty: label some completions first".into()
            } else {
                format!("all {total} rows were dropped: every prompt is at least max length ({max_length}) tokens long")
            }));
        }
        let kl_completions = if with_kl { kl_completions(&rows, batch_size) } else { Vec::new() };
        Ok(Self { rows, examples, kl_completions, batch_size, max_length, pad_id: tok.pad_id(), dropped })
    }

    /// Tokens in the longest (truncated) row: the widest batch the run will see.
    pub fn max_row_len(&self) -> usize {
        let main = self.rows.iter().map(|r| r.prompt_ids.len() + r.completion_ids.len());
        let kl = self.rows.iter().zip(&self.kl_completions).map(|(r, c)| r.prompt_ids.len() + c.len());
        main.chain(kl).max().unwrap_or(0).min(self.max_length)
    }

    pub fn num_batches(&self) -> usize {
        self.rows.len().div_ceil(self.batch_size)
    }

    /// Batch `i` (modulo the number of batches, so training can run for more than one epoch).
    pub fn batch(&self, i: usize) -> KtoBatch {
        let b = i % self.num_batches();
        let range = b * self.batch_size..((b + 1) * self.batch_size).min(self.rows.len());
        let rows = &self.rows[range.clone()];
        let main: Vec<(&[u32], &[u32])> =
            rows.iter().map(|r| (r.prompt_ids.as_slice(), r.completion_ids.as_slice())).collect();
        let kl = (!self.kl_completions.is_empty()).then(|| {
            let seqs: Vec<(&[u32], &[u32])> = rows
                .iter()
                .zip(&self.kl_completions[range.clone()])
                .map(|(r, c)| (r.prompt_ids.as_slice(), c.as_slice()))
                .collect();
            collate(&seqs, self.max_length, self.pad_id)
        });
        KtoBatch {
            main: collate(&main, self.max_length, self.pad_id),
            kl,
            labels: rows.iter().map(|r| r.label).collect(),
            rows: range.collect(),
        }
    }
}
