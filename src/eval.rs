//! Held-out evaluation: teacher-forced negative log-likelihood of reference texts (how much
//! general language ability a tuning run cost).

use burn::tensor::Device;

use crate::Result;
use crate::kto::batch::collate;
use crate::kto::loss::sequence_logps;
use crate::model::Llama;
use crate::tokenizer::Tokenizer;

/// Total NLL (nats) and number of predicted tokens over `texts`, each encoded with BOS and cut to
/// the model's context; every token after BOS is predicted.
pub async fn nll(
    model: &Llama,
    tok: &Tokenizer,
    device: &Device,
    texts: &[&str],
    batch_size: usize,
) -> Result<(f64, usize)> {
    let max_len = model.config().max_seq_len;
    let encoded: Vec<Vec<u32>> = texts.iter().map(|t| tok.encode(t, true)).filter(|ids| ids.len() >= 2).collect();
    let (mut total, mut count) = (0.0, 0usize);
    for chunk in encoded.chunks(batch_size.max(1)) {
        let seqs: Vec<(&[u32], &[u32])> = chunk.iter().map(|ids| (&ids[..1], &ids[1..])).collect();
        let batch = collate(&seqs, max_len, tok.pad_id());
        let ids = batch.ids_tensor(device);
        let logps = sequence_logps(model.forward(ids.clone(), &batch.lengths), ids, batch.mask_tensor(device));
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
