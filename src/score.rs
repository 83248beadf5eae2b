//! Scoring: how likely a model finds each row's completion. Rows are collated on the host (the
//! prompt and completion, cut and right-padded) and scored as summed completion log-probabilities — the
//! quantity KTO's rewards and the held-out NLL are both made of (`kto::trainer`, `eval`).

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::model::Model;

/// A right-padded batch of sequences on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct Collated {
    pub batch: usize,
    pub len: usize,
    /// `[batch * len]`, padded with `pad_id`
    pub ids: Vec<u32>,
    /// `[batch * len]`: 1 on kept completion tokens, 0 on prompt and padding
    pub completion_mask: Vec<f32>,
    /// real (unpadded) length of each row
    pub lengths: Vec<usize>,
}

/// `(prompt_ids + completion_ids)[:max_length]`, right-padded to the longest row.
pub fn collate(seqs: &[(&[u32], &[u32])], max_length: usize, pad_id: u32) -> Collated {
    let rows: Vec<(Vec<u32>, Vec<f32>)> = seqs
        .iter()
        .map(|(p, c)| {
            let mut ids: Vec<u32> = p.iter().chain(c.iter()).copied().collect();
            let mut mask: Vec<f32> = p.iter().map(|_| 0.0).chain(c.iter().map(|_| 1.0)).collect();
            ids.truncate(max_length);
            mask.truncate(max_length);
            (ids, mask)
        })
        .collect();
    let len = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let mut out = Collated { batch: rows.len(), len, ids: vec![], completion_mask: vec![], lengths: vec![] };
    for (ids, mask) in rows {
        out.lengths.push(ids.len());
        let pad = len - ids.len();
        out.ids.extend(ids.into_iter().chain(std::iter::repeat_n(pad_id, pad)));
        out.completion_mask.extend(mask.into_iter().chain(std::iter::repeat_n(0.0, pad)));
    }
    out
}

impl Collated {
    pub fn ids_tensor(&self, device: &Device) -> Tensor<2, Int> {
        crate::model::token_ids(&self.ids, self.batch, device)
    }
    pub fn mask_tensor(&self, device: &Device) -> Tensor<2> {
        Tensor::from_data(TensorData::new(self.completion_mask.clone(), [self.batch, self.len]), device)
    }
}

/// Summed log-probability of the completion tokens of each row: logits at position t predict
/// token t+1, and `completion_mask` (shifted the same way) selects which predictions count.
pub fn sequence_logps(logits: Tensor<3>, ids: Tensor<2, Int>, completion_mask: Tensor<2>) -> Tensor<1> {
    let [b, t, _] = logits.dims();
    if t < 2 {
        // Rows of one token predict nothing: their completion log-prob is an empty sum. Adding
        // `sum * 0` keeps the result on the logits' autodiff graph, so backward() still runs.
        return Tensor::zeros([b], &logits.device()) + logits.sum() * 0.0;
    }
    (next_token_logps(logits, ids) * completion_mask.narrow(1, 1, t - 1)).sum_dim(1).reshape([b])
}

/// log p(token t+1 | tokens ..= t) at every position but the last, `[B, T - 1]` (T ≥ 2).
fn next_token_logps(logits: Tensor<3>, ids: Tensor<2, Int>) -> Tensor<2> {
    let [b, t, _] = logits.dims();
    let targets = ids.narrow(1, 1, t - 1).unsqueeze_dim::<3>(2);
    target_logps(logits.narrow(1, 0, t - 1), targets).reshape([b, t - 1])
}

/// log p(target) along the last axis = logit(target) − logsumexp(logits): no log-softmax tensor
/// over the vocabulary (nor its backward). The max is detached: it only keeps exp() in range and
/// cancels in the gradient. `targets` has the logits' shape with 1 in the last axis.
pub fn target_logps<const D: usize>(logits: Tensor<D>, targets: Tensor<D, Int>) -> Tensor<D> {
    let v = D - 1;
    let max = logits.clone().detach().max_dim(v);
    let lse = (logits.clone() - max.clone()).exp().sum_dim(v).log() + max;
    logits.gather(v, targets) - lse
}

/// [`sequence_logps`] of `model` on the collated rows, computing the classifier (and its
/// logsumexp) only at the positions that predict a completion token: prompt and padding positions
/// never reach the `[·, V]` matmul. With long prompts or a large vocabulary that is most of it.
pub fn completion_logps(model: &Model, c: &Collated, device: &Device) -> Tensor<1> {
    let (b, t) = (c.batch, c.len);
    let (mut positions, mut targets, mut owners) = (Vec::new(), Vec::new(), Vec::new());
    for row in 0..b {
        for i in 0..t.saturating_sub(1) {
            let w = c.completion_mask[row * t + i + 1];
            if w != 0.0 {
                positions.push((row * t + i) as i32);
                targets.push(c.ids[row * t + i + 1] as i32);
                owners.push((row, w));
            }
        }
    }
    let hidden = model.hidden(c.ids_tensor(device), &c.lengths);
    let n = positions.len();
    if n == 0 {
        // No completion token predicted: an empty sum, kept on the graph (see sequence_logps).
        return Tensor::zeros([b], device) + hidden.sum() * 0.0;
    }
    let d = hidden.dims()[2];
    let picked =
        hidden.reshape([b * t, d]).select(0, Tensor::<1, Int>::from_data(TensorData::new(positions, [n]), device));
    let logits = model.classify(picked);
    let token_logp = if crate::model::fused::supported(device) {
        crate::model::fused::target_logps(logits, targets.into_iter().map(|t| t as u32).collect())
    } else {
        target_logps(logits, Tensor::<2, Int>::from_data(TensorData::new(targets, [n, 1]), device))
    };
    // Row sums as one [B, N] · [N, 1] product with the completion-mask weights.
    let mut w = vec![0.0f32; b * n];
    for (j, (row, m)) in owners.into_iter().enumerate() {
        w[row * n + j] = m;
    }
    Tensor::<2>::from_data(TensorData::new(w, [b, n]), device).matmul(token_logp).reshape([b])
}

/// log p(token | the tokens before it) of every token of one row after its first, `[len - 1]`.
pub fn token_logps(model: &Model, ids: &[u32], device: &Device) -> Tensor<1> {
    let t = ids.len();
    let ids = crate::model::token_ids(ids, 1, device);
    next_token_logps(model.forward(ids.clone(), &[t]), ids).reshape([t - 1])
}
