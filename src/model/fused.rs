//! Fused CPU kernels for the step's hottest sub-graphs, each one autodiff node with its own backward
//! pass. The attention, masked `softmax(q·kᵀ)·v`, composed from tensor ops is ~9 graph nodes per
//! layer forward and ~15 backward, each a full pass over the `[B, H, T, T]` scores, and burn-flex
//! takes every exponential through scalar libm (a fifth of the CPU step in the profile,
//! BENCHMARKS.md). Here the mask is key *ranges* (causal, padding and sliding window each cut a row's
//! visible keys to one interval), so no mask tensor is built or applied; the softmax is one
//! vectorised pass per row; the backward pass is softmax's closed-form Jacobian; and every matrix
//! product, the model's projections (`linear`) included, is `gemm::product`'s.
//!
//! It is a burn backend extension (`#[backend_extension]`) on burn-flex, the CPU backend natively
//! and in the browser; other backends (wgpu/WebGPU, ndarray) run `composed` and burn's matmul, the
//! same maths from tensor ops, which the tests hold these kernels to.

use std::mem::MaybeUninit;
use std::ops::Range;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, DispatchDevice, Flex, backend_extension};
use burn::nn::Linear;
use burn::tensor::activation::softmax;
use burn::tensor::{Bool, DType, Device, Tensor, TensorData};

use super::gemm::{Band, Mat, Out, last, product, product_in_band, product_into};
use super::par::{self, Chunks};

/// Which keys each query may attend to, as a contiguous range per query: the causal limit, the
/// row's padding (`lengths`) and the sliding window all cut the same interval.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRanges {
    /// Query positions per head (`T`); a KV head's rows stack its query heads, `rows = g·T`.
    pub queries: usize,
    /// Position of the first query (the KV cache's length during generation).
    pub start: usize,
    /// Real tokens per batch row (empty: every key is real).
    pub lengths: Vec<usize>,
    /// Sliding-window width: a query sees at most this many keys, itself included.
    pub window: Option<usize>,
}

impl KeyRanges {
    /// Keys `lo..hi` visible to row `r` of batch row `b`, among `keys` keys.
    fn range(&self, b: usize, r: usize, keys: usize) -> (usize, usize) {
        let pos = self.start + r % self.queries;
        let len = self.lengths.get(b).copied().unwrap_or(keys);
        let hi = (pos + 1).min(len).min(keys);
        let lo = self.window.map_or(0, |w| (pos + 1).saturating_sub(w));
        (lo, hi.max(lo))
    }

    /// Keys `lo..hi` covering every key visible to rows `rows` of batch row `b` (`(0, 0)`: none).
    /// Within one head's positions both ends only grow with the position, and a row that sees no
    /// key (a padding row past its window) is followed by more such: the first row's start and the
    /// last's end. Rows across heads: the union, row by row.
    fn span(&self, b: usize, rows: Range<usize>, keys: usize) -> (usize, usize) {
        let (first, last) = (rows.start, rows.end - 1);
        if first / self.queries == last / self.queries {
            let ((lo, hi), (_, end)) = (self.range(b, first, keys), self.range(b, last, keys));
            return if lo < hi { (lo, end) } else { (0, 0) };
        }
        let (lo, hi) = rows
            .map(|r| self.range(b, r, keys))
            .filter(|(lo, hi)| lo < hi)
            .fold((usize::MAX, 0), |(lo, hi), (l, h)| (lo.min(l), hi.max(h)));
        if lo < hi { (lo, hi) } else { (0, 0) }
    }

    /// The same mask as a `[B, 1, rows, keys]` tensor (`true` = hidden), for the composed path.
    pub fn mask(&self, b: usize, rows: usize, keys: usize, device: &Device) -> Tensor<4, Bool> {
        let mut mask = Vec::with_capacity(b * rows * keys);
        for row in 0..b {
            for r in 0..rows {
                let (lo, hi) = self.range(row, r, keys);
                mask.extend((0..keys).map(|k| k < lo || k >= hi));
            }
        }
        Tensor::from_data(TensorData::new(mask, [b, 1, rows, keys]), device)
    }
}

/// Whether `device` runs the fused kernels (burn-flex, with or without autodiff).
pub fn supported(device: &Device) -> bool {
    matches!(device.clone().inner().as_dispatch(), DispatchDevice::Flex(_))
}

/// `softmax(q·kᵀ over the visible keys)·v` for `q: [B, KV, g·T, head]` (already scaled; a KV
/// head's g query heads stacked), `k, v: [B, KV, keys, head]`, with the heads merged back into
/// tokens, `[B, T, H·head]` (what the output projection reads); on a device where `supported` holds.
pub fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, ranges: KeyRanges) -> Tensor<3> {
    Tensor::from_dispatch(<burn::backend::Dispatch as FusedOps>::masked_attention(
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
        ranges,
    ))
}

/// RMSNorm over the last axis, `x / √(mean(x²) + ε) · γ`, on a `supported` device.
pub fn rms_norm<const D: usize>(x: Tensor<D>, gamma: Tensor<1>, epsilon: f64) -> Tensor<D> {
    Tensor::from_dispatch(<burn::backend::Dispatch as FusedOps>::rms_norm(
        x.into_dispatch(),
        gamma.into_dispatch(),
        epsilon,
    ))
}

/// RoPE on `x: [B, T, H, head]` as `x·cos + rot(x)·sin` (`cos, sin: [1, T, 1, head]`), where
/// `rot` pairs element i with its partner (i ^ 1 for adjacent pairs, i ± head/2 for rotate-half)
/// and negates the pair's first element, written heads first, `[B, H, T, head]` (attention's
/// layout: the kernel writes a fresh tensor anyway, so the transpose costs no copy of its own);
/// on a `supported` device.
pub fn rope(x: Tensor<4>, cos: Tensor<4>, sin: Tensor<4>, rotate_half: bool) -> Tensor<4> {
    Tensor::from_dispatch(<burn::backend::Dispatch as FusedOps>::rope(
        x.into_dispatch(),
        cos.into_dispatch(),
        sin.into_dispatch(),
        rotate_half,
    ))
}

/// log p(target) for each row of `logits: [N, V]`, `x[target] − logsumexp(x)` as `[N, 1]`, on a
/// `supported` device. One vectorised pass for the logsumexp and one for the backward pass
/// (`g · (onehot − softmax)`), where the composed ops (`score::target_logps`) take about eight passes
/// over the logits each way and every exponential through scalar libm: with SmolLM2's 49k-word
/// vocabulary the logits are tens of megabytes a step.
pub fn target_logps(logits: Tensor<2>, targets: Vec<u32>) -> Tensor<2> {
    Tensor::from_dispatch(<burn::backend::Dispatch as FusedOps>::target_logps(logits.into_dispatch(), targets))
}

/// `x·w` over the last axis of `x` (`w: [in, out]`), on any device: on a `supported` one as this
/// file's op (`gemm::product`: written once, no copies, the weight's gradient summed over all rows
/// by one product), elsewhere as burn's matmul.
pub fn linear<const D: usize>(x: Tensor<D>, w: Tensor<2>) -> Tensor<D> {
    if !supported(&x.device()) {
        return x.matmul(w.unsqueeze());
    }
    Tensor::from_dispatch(<burn::backend::Dispatch as FusedOps>::linear(x.into_dispatch(), w.into_dispatch()))
}

/// burn's `Linear` layer through `linear` (its weight is `[in, out]`).
pub fn project<const D: usize>(layer: &Linear, x: Tensor<D>) -> Tensor<D> {
    let y = linear(x, layer.weight.val());
    match &layer.bias {
        Some(b) => y + b.val().unsqueeze(),
        None => y,
    }
}

/// SwiGLU's gate, `silu(a) · b`, on a `supported` device.
pub fn swiglu<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<burn::backend::Dispatch as FusedOps>::swiglu(a.into_dispatch(), b.into_dispatch()))
}

/// The same attention from tensor ops, for backends without the kernel (and as the kernel's
/// reference in the tests); `mask: [B, 1, T, keys]` is one query head's (`T = rows / g`).
pub fn composed(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, mask: &Tensor<4, Bool>) -> Tensor<3> {
    let [b, kv, rows, _] = q.dims();
    let vd = v.dims()[3];
    let [_, _, t, tk] = mask.dims();
    let g = rows / t;
    let mask = if g == 1 {
        mask.clone()
    } else {
        mask.clone().unsqueeze_dim::<5>(2).expand([b, 1, g, t, tk]).reshape([b, 1, rows, tk])
    };
    let scores = q.matmul(k.swap_dims(2, 3)).mask_fill(mask.expand([b, kv, rows, tk]), MASKED);
    softmax(scores, 3).matmul(v).reshape([b, kv * g, t, vd]).swap_dims(1, 2).reshape([b, t, kv * g * vd])
}

/// Masked attention scores: exp() of this underflows to exactly 0, like -inf, but a row can
/// never become all -inf (NaN).
const MASKED: f32 = -1.0e9;

#[backend_extension(Flex, Autodiff)]
pub trait FusedOps: Backend {
    fn masked_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        ranges: KeyRanges,
    ) -> FloatTensor<Self>;
    fn rms_norm(x: FloatTensor<Self>, gamma: FloatTensor<Self>, epsilon: f64) -> FloatTensor<Self>;
    fn swiglu(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self>;
    fn linear(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self>;
    fn target_logps(logits: FloatTensor<Self>, targets: Vec<u32>) -> FloatTensor<Self>;
    fn rope(
        x: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
        rotate_half: bool,
    ) -> FloatTensor<Self>;
}

impl FusedOps for Flex {
    fn masked_attention(q: FlexTensor, k: FlexTensor, v: FlexTensor, ranges: KeyRanges) -> FlexTensor {
        forward(&q, &k, &v, &ranges).0
    }
    fn rms_norm(x: FlexTensor, gamma: FlexTensor, epsilon: f64) -> FlexTensor {
        rms_forward(&x, &gamma, epsilon).0
    }
    fn swiglu(a: FlexTensor, b: FlexTensor) -> FlexTensor {
        swiglu_forward(&a, &b)
    }
    fn linear(x: FlexTensor, w: FlexTensor) -> FlexTensor {
        linear_forward(&dense(x), &w)
    }
    fn target_logps(logits: FlexTensor, targets: Vec<u32>) -> FlexTensor {
        logps_forward(&logits, &targets).0
    }
    fn rope(x: FlexTensor, cos: FlexTensor, sin: FlexTensor, rotate_half: bool) -> FlexTensor {
        rope_apply(&x, &cos, &sin, rotate_half, false)
    }
}

impl<C: CheckpointStrategy> FusedOps for Autodiff<Flex, C> {
    fn masked_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        ranges: KeyRanges,
    ) -> FloatTensor<Self> {
        match AttentionBackward.prepare::<C>([q.node(), k.node(), v.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (q, k, v) = (q.into_primitive(), k.into_primitive(), v.into_primitive());
                let (out, probs) = forward(&q, &k, &v, &ranges);
                prep.finish(Saved { q, k, v, probs, ranges }, out)
            }
            OpsKind::UnTracked(prep) => {
                let (q, k, v) = (q.into_primitive(), k.into_primitive(), v.into_primitive());
                prep.finish(forward(&q, &k, &v, &ranges).0)
            }
        }
    }

    fn rms_norm(x: FloatTensor<Self>, gamma: FloatTensor<Self>, epsilon: f64) -> FloatTensor<Self> {
        match RmsBackward.prepare::<C>([x.node(), gamma.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (x, gamma) = (x.into_primitive(), gamma.into_primitive());
                let (y, inv) = rms_forward(&x, &gamma, epsilon);
                prep.finish((x, gamma, inv), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(rms_forward(x.primitive(), gamma.primitive(), epsilon).0),
        }
    }

    fn swiglu(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self> {
        match SwigluBackward.prepare::<C>([a.node(), b.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (a, b) = (a.into_primitive(), b.into_primitive());
                let y = swiglu_forward(&a, &b);
                prep.finish((a, b), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(swiglu_forward(a.primitive(), b.primitive())),
        }
    }

    fn linear(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
        match LinearBackward.prepare::<C>([x.node(), w.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (x, w) = (dense(x.into_primitive()), w.into_primitive());
                let y = linear_forward(&x, &w);
                prep.finish((x, w), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(linear_forward(&dense(x.into_primitive()), w.primitive())),
        }
    }

    fn target_logps(logits: FloatTensor<Self>, targets: Vec<u32>) -> FloatTensor<Self> {
        match LogpsBackward.prepare::<C>([logits.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let logits = logits.into_primitive();
                let (y, lse) = logps_forward(&logits, &targets);
                prep.finish((logits, targets, lse), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(logps_forward(logits.primitive(), &targets).0),
        }
    }

    fn rope(
        x: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
        rotate_half: bool,
    ) -> FloatTensor<Self> {
        let (cos, sin) = (cos.into_primitive(), sin.into_primitive());
        match RopeBackward.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let y = rope_apply(x.primitive(), &cos, &sin, rotate_half, false);
                prep.finish((cos, sin, rotate_half), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(rope_apply(x.primitive(), &cos, &sin, rotate_half, false)),
        }
    }
}

#[derive(Debug)]
struct RopeBackward;

impl Backward<Flex, 1> for RopeBackward {
    /// The angles' cos and sin, and the pairing.
    type State = (FlexTensor, FlexTensor, bool);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        register(ops, grads, |(cos, sin, rotate_half), grad| [rope_apply(&grad, &cos, &sin, rotate_half, true)]);
    }
}

#[derive(Debug)]
struct RmsBackward;

impl Backward<Flex, 2> for RmsBackward {
    /// The input, γ, and each row's 1/rms.
    type State = (FlexTensor, FlexTensor, Vec<f32>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        register(ops, grads, |(x, gamma, inv), grad| rms_backward(&x, &gamma, &inv, &grad).into());
    }
}

#[derive(Debug)]
struct SwigluBackward;

impl Backward<Flex, 2> for SwigluBackward {
    type State = (FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        register(ops, grads, |(a, b), grad| swiglu_backward(&a, &b, &grad).into());
    }
}

#[derive(Debug)]
struct LinearBackward;

impl Backward<Flex, 2> for LinearBackward {
    /// The input (row-major dense) and the weight.
    type State = (FlexTensor, FlexTensor);

    /// dx = dy·wᵀ and dw = xᵀ·dy over all rows at once, each only where its parent takes part
    /// (a LoRA model's frozen base weights need no dw).
    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = dense(grads.consume::<Flex>(&ops.node));
        let (x, w) = ops.state;
        let [px, pw] = ops.parents;
        if let Some(node) = px {
            grads.register::<Flex>(node.id, like(&x, product(&Mat::rows_of(&dy), &Mat::of(&w).t())));
        }
        if let Some(node) = pw {
            grads.register::<Flex>(node.id, like(&w, product(&Mat::rows_of(&x).t(), &Mat::rows_of(&dy))));
        }
    }
}

#[derive(Debug)]
struct LogpsBackward;

impl Backward<Flex, 1> for LogpsBackward {
    /// The logits, the targets and each row's logsumexp.
    type State = (FlexTensor, Vec<u32>, Vec<f32>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        register(ops, grads, |(x, targets, lse), grad| [logps_backward(&x, &targets, &lse, &grad)]);
    }
}

#[derive(Debug)]
struct AttentionBackward;

/// What the backward pass needs: the inputs, the attention probabilities and the key ranges.
#[derive(Clone, Debug)]
struct Saved {
    q: FlexTensor,
    k: FlexTensor,
    v: FlexTensor,
    probs: FlexTensor,
    ranges: KeyRanges,
}

impl Backward<Flex, 3> for AttentionBackward {
    type State = Saved;

    fn backward(self, ops: Ops<Saved, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        register(ops, grads, |s, grad| backward(&s.q, &s.k, &s.v, &s.probs, &s.ranges, &grad).into());
    }
}

/// Computes the parents' gradients from the saved state and the output's gradient, and hands
/// each parent that takes part in the graph its own.
fn register<S, const N: usize>(
    ops: Ops<S, N>,
    grads: &mut Gradients,
    compute: impl FnOnce(S, FlexTensor) -> [FlexTensor; N],
) {
    let grad = grads.consume::<Flex>(&ops.node);
    for (parent, value) in ops.parents.into_iter().zip(compute(ops.state, grad)) {
        if let Some(node) = parent {
            grads.register::<Flex>(node.id, value);
        }
    }
}

/// `x·w` for `x: [.., in]` (row-major dense), `w: [in, out]`.
fn linear_forward(x: &FlexTensor, w: &FlexTensor) -> FlexTensor {
    let y = product(&Mat::rows_of(x), &Mat::of(w));
    let s = x.layout().shape();
    let mut shape: Vec<usize> = (0..s.num_dims()).map(|i| s[i]).collect();
    *shape.last_mut().expect("a matrix") = last(w);
    FlexTensor::from_data(TensorData::new(y, shape))
}

/// `x` in row-major order (a copy only when it is not).
fn dense(x: FlexTensor) -> FlexTensor {
    if x.is_contiguous() { x } else { x.to_contiguous() }
}

/// The forward pass: the scores are `gemm::product`s batched over B·KV (the keys' transpose read
/// through its strides); the softmax is this file's, over each row's visible keys only; the
/// output product runs per query head (its KV head's V read in place) and writes each head's
/// rows straight into the token-major output. Returns the output and the probabilities
/// (`[B, H, T, keys]`, for the backward pass).
fn forward(q: &FlexTensor, k: &FlexTensor, v: &FlexTensor, ranges: &KeyRanges) -> (FlexTensor, FlexTensor) {
    let [b, kv, rows, _] = dims(q);
    let (keys, vd, t) = (dims(k)[2], dims(v)[3], ranges.queries);
    // Query heads per KV head (an empty batch of queries has no rows to count them by: any g).
    let g = rows.checked_div(t).unwrap_or(1);
    assert_eq!(rows, g * t, "attention: {rows} query rows are not whole heads of {t} positions");
    let h = kv * g;
    // Products over the visible keys only (the causal limit alone skips about half).
    let visible_kv = |bi: usize, r: Range<usize>| ranges.span(bi / kv, r, keys);
    let visible_h = |bi: usize, r: Range<usize>| ranges.span(bi / h, r, keys);
    let mut p = product_in_band(&Mat::of(q), &Mat::of(k).t(), &Out::dense(b * kv, rows, keys), Band::Cols(&visible_kv));
    for_rows(
        &mut p,
        keys,
        kv * rows,
        1,
        #[inline(always)]
        |b, r, row| {
            let (lo, hi) = ranges.range(b, r, keys);
            row[..lo].fill(0.0);
            row[hi..].fill(0.0);
            softmax_in_place(&mut row[lo..hi]);
        },
    );
    let p = FlexTensor::from_data(TensorData::new(p, [b, h, t, keys]));
    let (pv, heads) = (Mat::of(&p), Mat::of(v).repeat(h / kv));
    let out = product_in_band(&pv, &heads, &Out::interleaved(b, h, t, vd), Band::Depth(&visible_h));
    (FlexTensor::from_data(TensorData::new(out, [b, t, h * vd])), p)
}

/// The backward pass: dP = dO·vᵀ, dS = P ⊙ (dP − Σ P⊙dP) row-wise (softmax's Jacobian; masked
/// entries have P = 0 so get no gradient), then dq = dS·k, dk = dSᵀ·q, dv = Pᵀ·dO, the products
/// over a KV head's stacked query heads as in the forward pass (dO copied heads first for them:
/// one copy, where burn's reshapes of the transposed layouts made four), dv written token-major
/// (the layout of the projection V is a view of).
fn backward(
    q: &FlexTensor,
    k: &FlexTensor,
    v: &FlexTensor,
    p: &FlexTensor,
    ranges: &KeyRanges,
    grad: &FlexTensor,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let [b, kv, rows, _] = dims(q);
    let [_, h, t, keys] = dims(p);
    let vd = dims(v)[3];
    let p = p.reshape([b, kv, rows, keys].into());
    let grad = FlexTensor::from_data(TensorData::new(heads_first(grad, h, t), [b, kv, rows, vd]));
    // dP and dq over the visible keys only, as in the forward pass (dk and dv sum over a KV
    // head's stacked query heads, whose visible keys differ: those run whole).
    let visible = |bi: usize, r: Range<usize>| ranges.span(bi / kv, r, keys);
    let dp = Out::dense(b * kv, rows, keys);
    let mut ds = product_in_band(&Mat::of(&grad), &Mat::of(v).t(), &dp, Band::Cols(&visible));
    let probs = values(&p);
    let rows_per_batch = kv * rows;
    for_rows(
        &mut ds,
        keys,
        rows_per_batch,
        2,
        #[inline(always)]
        |b, r, row| {
            let i = (b * rows_per_batch + r) * keys;
            let pr = &probs[i..i + keys];
            let c = dot(pr, row);
            for (d, p) in row.iter_mut().zip(pr) {
                *d = p * (*d - c);
            }
        },
    );
    let ds = like(&p, ds);
    let dq = like(
        q,
        product_in_band(&Mat::of(&ds), &Mat::of(k), &Out::dense(b * kv, rows, dims(k)[3]), Band::Depth(&visible)),
    );
    let dk = like(k, product(&Mat::of(&ds).t(), &Mat::of(q)));
    let dv = product_into(&Mat::of(&p).t(), &Mat::of(&grad), &Out::interleaved(b, kv, keys, vd));
    let dv = FlexTensor::from_data(TensorData::new(dv, [b, keys, kv, vd])).transpose(1, 2);
    (dq, dk, dv)
}

/// `x: [B, T, H·n]` (token-major, contiguous or not) as `[B, H, T, n]` values.
fn heads_first(x: &FlexTensor, h: usize, t: usize) -> Vec<f32> {
    let xv = values(x);
    let n = last(x) / h;
    written(xv.len(), |y| {
        for_rows(
            y,
            n,
            t,
            1,
            #[inline(always)]
            |bh, pos, out| {
                let src = token_major(bh, pos, h, t) * n;
                out.write_copy_of_slice(&xv[src..src + n]);
            },
        )
    })
}

/// Row `pos` of head `bh` (batch row · H + head) of a `[B, H, T, ·]` tensor: the same batch row,
/// head and position's row in `[B, T, H, ·]`.
#[inline(always)]
fn token_major(bh: usize, pos: usize, h: usize, t: usize) -> usize {
    ((bh / h) * t + pos) * h + bh % h
}

/// Head `head` of token `bt` (batch row · T + position) of a `[B, T, H, ·]` tensor: its row in
/// `[B, H, T, ·]` (`token_major`'s inverse).
#[inline(always)]
fn head_major(bt: usize, head: usize, h: usize, t: usize) -> usize {
    ((bt / t) * h + head) * t + bt % t
}

/// Rows of `x` (its last axis) normalised: `y = x · inv · γ` with `inv = 1/√(mean(x²) + ε)` per
/// row, returned for the backward pass.
fn rms_forward(x: &FlexTensor, gamma: &FlexTensor, epsilon: f64) -> (FlexTensor, Vec<f32>) {
    let (xv, gv) = (values(x), values(gamma));
    let n = gv.len();
    let inv: Vec<f32> = wide(
        #[inline(always)]
        || xv.chunks(n).map(|xr| 1.0 / (dot(xr, xr) / n as f32 + epsilon as f32).sqrt()).collect(),
    );
    let y = written(xv.len(), |y| {
        for_rows(
            y,
            n,
            1,
            2,
            #[inline(always)]
            |i, _, row| {
                for ((y, x), g) in row.iter_mut().zip(&xv[i * n..(i + 1) * n]).zip(gv.iter()) {
                    y.write(x * inv[i] * g);
                }
            },
        )
    });
    (like(x, y), inv)
}

/// With x̂ = x·inv: dγ = Σ_rows dy ⊙ x̂, and dx = inv · (g − x̂ · mean(g ⊙ x̂)) where g = dy ⊙ γ.
fn rms_backward(x: &FlexTensor, gamma: &FlexTensor, inv: &[f32], grad: &FlexTensor) -> (FlexTensor, FlexTensor) {
    let (xv, gv, dyv) = (values(x), values(gamma), values(grad));
    let n = gv.len();
    let dx = written(xv.len(), |dx| {
        for_rows(
            dx,
            n,
            1,
            3,
            #[inline(always)]
            |i, _, row| {
                let (xr, dy, r) = (&xv[i * n..(i + 1) * n], &dyv[i * n..(i + 1) * n], inv[i]);
                let m = r * dot_scaled(dy, &gv, xr) / n as f32;
                for (((o, d), g), x) in row.iter_mut().zip(dy).zip(gv.iter()).zip(xr) {
                    o.write(r * (d * g - x * r * m));
                }
            },
        )
    });
    let mut dgamma = vec![0.0f32; n];
    KERNELS.time(|| {
        wide(
            #[inline(always)]
            || {
                for (i, r) in inv.iter().enumerate() {
                    for ((o, x), d) in dgamma.iter_mut().zip(&xv[i * n..(i + 1) * n]).zip(&dyv[i * n..(i + 1) * n]) {
                        *o += d * x * r;
                    }
                }
            },
        )
    });
    (like(x, dx), like(gamma, dgamma))
}

/// Each row's `x[target] − lse` (`[N, 1]`) and its `lse = max + ln Σ exp(x − max)`.
fn logps_forward(x: &FlexTensor, targets: &[u32]) -> (FlexTensor, Vec<f32>) {
    let xv = values(x);
    let v = last(x);
    assert_eq!(xv.len(), targets.len() * v, "one target per row of logits");
    let mut lse = vec![0.0f32; targets.len()];
    for_rows(
        &mut lse,
        1,
        1,
        v,
        #[inline(always)]
        |i, _, out| {
            let row = &xv[i * v..(i + 1) * v];
            let m = max(row);
            out[0] = m + sum_exp(row, m).ln();
        },
    );
    let y = lse.iter().zip(targets).enumerate().map(|(i, (l, &t))| xv[i * v + t as usize] - l).collect();
    (FlexTensor::from_data(TensorData::new(y, [targets.len(), 1])), lse)
}

/// d logits = g · (onehot(target) − softmax), row by row.
fn logps_backward(x: &FlexTensor, targets: &[u32], lse: &[f32], grad: &FlexTensor) -> FlexTensor {
    let (xv, g) = (values(x), values(grad));
    let v = last(x);
    let dx = written(xv.len(), |dx| {
        for_rows(
            dx,
            v,
            1,
            1,
            #[inline(always)]
            |i, _, row| {
                let (d, l, xr, t) = (g[i], lse[i], &xv[i * v..(i + 1) * v], targets[i] as usize);
                for (o, x) in row.iter_mut().zip(xr) {
                    o.write(-d * exp(x - l));
                }
                row[t].write(-d * exp(xr[t] - l) + d);
            },
        )
    });
    like(x, dx)
}

/// `y[i] = x[i]·cos[i] + sign(i)·x[p(i)]·sin[i]` (p pairs elements, sign is − for a pair's first)
/// for `x: [B, T, H, head]`, written as `y: [B, H, T, head]`; `transposed` is the backward pass,
/// the adjoint `dx[j] = dy[j]·cos[j] − sign(j)·dy[p(j)]·sin[p(j)]` from `dy: [B, H, T, head]`
/// written as `dx: [B, T, H, head]`.
fn rope_apply(x: &FlexTensor, cos: &FlexTensor, sin: &FlexTensor, rotate_half: bool, transposed: bool) -> FlexTensor {
    let (xv, cv, sv) = (values(x), values(cos), values(sin));
    let [b, t, h, d] = match dims(x) {
        [b, h, t, d] if transposed => [b, t, h, d],
        dims => dims,
    };
    // Pairs: every value of a row is written below (the output is not zero-filled first).
    assert!(d % 2 == 0, "RoPE rotates pairs of values: a head of {d} values has an odd one out");
    let half = d / 2;
    // Output rows by (head, position) heads first, by (token, head) transposed.
    let y = written(xv.len(), |y| {
        for_rows(
            y,
            d,
            if transposed { h } else { t },
            1,
            #[inline(always)]
            |outer, inner, out| {
                // The output row's position, and the input row of the same batch row, position and head.
                let (pos, from) = if transposed {
                    (outer % t, head_major(outer, inner, h, t))
                } else {
                    (inner, token_major(outer, inner, h, t))
                };
                let xr = &xv[from * d..(from + 1) * d];
                let (c, s) = (&cv[pos * d..(pos + 1) * d], &sv[pos * d..(pos + 1) * d]);
                // Written per half / per pair, without index arithmetic in the loop, so it vectorises.
                match (rotate_half, transposed) {
                    (true, false) => {
                        for i in 0..half {
                            out[i].write(xr[i] * c[i] - xr[i + half] * s[i]);
                            out[i + half].write(xr[i + half] * c[i + half] + xr[i] * s[i + half]);
                        }
                    }
                    (true, true) => {
                        for i in 0..half {
                            out[i].write(xr[i] * c[i] + xr[i + half] * s[i + half]);
                            out[i + half].write(xr[i + half] * c[i + half] - xr[i] * s[i]);
                        }
                    }
                    (false, false) => {
                        for i in (0..d).step_by(2) {
                            out[i].write(xr[i] * c[i] - xr[i + 1] * s[i]);
                            out[i + 1].write(xr[i + 1] * c[i + 1] + xr[i] * s[i + 1]);
                        }
                    }
                    (false, true) => {
                        for i in (0..d).step_by(2) {
                            out[i].write(xr[i] * c[i] + xr[i + 1] * s[i + 1]);
                            out[i + 1].write(xr[i + 1] * c[i + 1] - xr[i] * s[i]);
                        }
                    }
                }
            },
        )
    });
    let shape = if transposed { [b, t, h, d] } else { [b, h, t, d] };
    FlexTensor::from_data(TensorData::new(y, shape))
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

fn swiglu_forward(a: &FlexTensor, b: &FlexTensor) -> FlexTensor {
    let (av, bv) = (values(a), values(b));
    let n = last(a);
    let y = written(av.len(), |y| {
        for_rows(
            y,
            n,
            1,
            2,
            #[inline(always)]
            |i, _, row| {
                for ((y, a), b) in row.iter_mut().zip(&av[i * n..(i + 1) * n]).zip(&bv[i * n..(i + 1) * n]) {
                    y.write(a * sigmoid(*a) * b);
                }
            },
        )
    });
    like(a, y)
}

/// With s = σ(a): da = dy · b · s · (1 + a(1 − s)), db = dy · a · s.
fn swiglu_backward(a: &FlexTensor, b: &FlexTensor, grad: &FlexTensor) -> (FlexTensor, FlexTensor) {
    let (av, bv, dyv) = (values(a), values(b), values(grad));
    let n = last(a);
    if n == 0 {
        return (like(a, Vec::new()), like(b, Vec::new()));
    }
    let chunk = n * ROWS_PER_TASK;
    let mut db = Vec::new();
    let da = written(av.len(), |da| {
        db = written(av.len(), |db| {
            let (das, dbs) = (Chunks::new(da, chunk), Chunks::new(db, chunk));
            kernel_tasks(
                das.count(),
                av.len(),
                #[inline(always)]
                |g| {
                    // SAFETY: task `g` alone takes chunk `g` of each.
                    let (da, db) = unsafe { (das.get(g), dbs.get(g)) };
                    let r = g * chunk..g * chunk + da.len();
                    for ((((da, db), a), b), dy) in
                        da.iter_mut().zip(db.iter_mut()).zip(&av[r.clone()]).zip(&bv[r.clone()]).zip(&dyv[r])
                    {
                        let s = sigmoid(*a);
                        da.write(dy * b * s * (1.0 + a * (1.0 - s)));
                        db.write(dy * a * s);
                    }
                },
            )
        })
    });
    (like(a, da), like(b, db))
}

/// A tensor of `x`'s shape holding `v`.
fn like(x: &FlexTensor, v: Vec<f32>) -> FlexTensor {
    let s = x.layout().shape();
    FlexTensor::from_data(TensorData::new(v, (0..s.num_dims()).map(|i| s[i]).collect::<Vec<_>>()))
}

fn dims(x: &FlexTensor) -> [usize; 4] {
    let s = x.layout().shape();
    [s[0], s[1], s[2], s[3]]
}

/// A contiguous f32 view (copying only a non-contiguous tensor).
fn values(t: &FlexTensor) -> std::borrow::Cow<'_, [f32]> {
    assert_eq!(t.dtype(), DType::F32, "fused attention runs in f32");
    match t.as_slice::<f32>() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(t.to_contiguous().as_slice::<f32>().expect("contiguous").to_vec()),
    }
}

/// `len` values, every one of which `fill` writes: handed out uninitialised, as zero-filling them
/// first (a `vec![0.0; len]`) was 2–6 % of the tab's step, a memset of each kernel's output.
#[inline(always)]
fn written(len: usize, fill: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
    let mut v = Vec::with_capacity(len);
    fill(&mut v.spare_capacity_mut()[..len]);
    // SAFETY: each caller's `fill` writes all `len` values (its loops cover every row).
    unsafe { v.set_len(len) };
    v
}

/// Time inside these kernels' loops (not their tensors' allocation), for the bench: of a CPU step's
/// time outside the matrix products, what is this file's and what is burn's (autodiff, optimizer).
pub static KERNELS: crate::clock::Tally = crate::clock::Tally::new();

/// Rows per parallel task (small tensors stay on one thread).
const ROWS_PER_TASK: usize = 64;
/// Values per task at least: rows of a small model's head (8 values) would otherwise make tasks
/// of a microsecond, as long as handing them out.
const TASK_VALUES: usize = 4096;

/// Runs `f(batch row, row within it, row values)` over every row of `len` values
/// (`per_batch` rows per batch row; `f` reads about `reads` input values per value it writes),
/// `ROWS_PER_TASK` rows (or `TASK_VALUES` values) per task of a [`par::for_each`]. The indices
/// are counted, not divided out per row: a division costs more than a short row's work.
fn for_rows<T: Send, F>(data: &mut [T], len: usize, per_batch: usize, reads: usize, f: F)
where
    F: Fn(usize, usize, &mut [T]) + Sync + Send,
{
    if len == 0 {
        return;
    }
    let work = data.len() * reads;
    let per_task = ROWS_PER_TASK.max(TASK_VALUES / len);
    let chunks = Chunks::new(data, len * per_task);
    kernel_tasks(
        chunks.count(),
        work,
        #[inline(always)]
        |g| {
            // SAFETY: task `g` alone takes chunk `g`.
            let rows = unsafe { chunks.get(g) };
            let first = g * per_task;
            let (mut b, mut r) = (first / per_batch, first % per_batch);
            for row in rows.chunks_mut(len) {
                f(b, r, row);
                r += 1;
                if r == per_batch {
                    (b, r) = (b + 1, 0);
                }
            }
        },
    );
}

/// Runs `task(0..tasks)` as a [`par::for_each`] of `work`, each task compiled for AVX2 where the
/// CPU has it (`task`, and what it calls, must be `#[inline(always)]` to be inlined into `wide`'s
/// copy), the loop's time counted in [`KERNELS`]: this file's parallel kernels all run here.
fn kernel_tasks(tasks: usize, work: usize, task: impl Fn(usize) + Sync + Send) {
    KERNELS.time(|| {
        par::for_each(tasks, work, |g| {
            wide(
                #[inline(always)]
                || task(g),
            )
        })
    });
}

/// Runs `body` compiled for AVX2 + FMA where the CPU has them (8 lanes instead of SSE2's 4:
/// the crate is built for baseline x86-64, as burn-flex's own kernels are, which dispatch the
/// same way); elsewhere as is (wasm: `simd128` from the build flags).
#[inline(always)]
fn wide<R>(body: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma")]
        fn avx2<R>(body: impl FnOnce() -> R) -> R {
            body()
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU was just checked for both features.
            return unsafe { avx2(body) };
        }
    }
    body()
}

/// In-place softmax of one row.
#[inline(always)]
fn softmax_in_place(row: &mut [f32]) {
    if row.is_empty() {
        return;
    }
    let max = max(row);
    for x in row.iter_mut() {
        *x = exp(*x - max);
    }
    let inv = 1.0 / total(row);
    for x in row.iter_mut() {
        *x *= inv;
    }
}

/// Σ exp(aᵢ − m), in 8 lanes.
#[inline(always)]
fn sum_exp(a: &[f32], m: f32) -> f32 {
    let chunks = a.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().map(|&x| exp(x - m)).sum();
    let mut acc = [0.0f32; 8];
    for x in chunks {
        for l in 0..8 {
            acc[l] += exp(x[l] - m);
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Σ aᵢ·bᵢ in 8 independent lanes, so it vectorises (one running sum is a serial chain the
/// compiler may not reorder).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ac.remainder().iter().zip(bc.remainder()).map(|(x, y)| x * y).sum();
    let mut acc = [0.0f32; 8];
    for (x, y) in ac.zip(bc) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Σ (aᵢ·bᵢ)·cᵢ in 8 lanes, as `dot` of a⊙b (rounded) with c, without storing a⊙b.
#[inline(always)]
fn dot_scaled(a: &[f32], b: &[f32], c: &[f32]) -> f32 {
    let (ac, bc, cc) = (a.chunks_exact(8), b.chunks_exact(8), c.chunks_exact(8));
    let tail: f32 = ac.remainder().iter().zip(bc.remainder()).zip(cc.remainder()).map(|((x, y), z)| x * y * z).sum();
    let mut acc = [0.0f32; 8];
    for ((x, y), z) in ac.zip(bc).zip(cc) {
        for l in 0..8 {
            acc[l] += x[l] * y[l] * z[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Σ aᵢ, in 8 lanes likewise.
#[inline(always)]
fn total(a: &[f32]) -> f32 {
    let chunks = a.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().sum();
    let mut acc = [0.0f32; 8];
    for x in chunks {
        for l in 0..8 {
            acc[l] += x[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// The largest value, in 8 lanes likewise.
#[inline(always)]
fn max(a: &[f32]) -> f32 {
    let chunks = a.chunks_exact(8);
    let mut m = chunks.remainder().iter().fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m });
    let mut acc = [f32::NEG_INFINITY; 8];
    for x in chunks {
        for l in 0..8 {
            acc[l] = if x[l] > acc[l] { x[l] } else { acc[l] };
        }
    }
    for x in acc {
        m = if x > m { x } else { m };
    }
    m
}

/// `eˣ` to ~1 ulp, branch-free so loops over it vectorise (Cephes' `expf`: x = n·ln2 + r,
/// a degree-6 polynomial in r, 2ⁿ through the exponent bits). Inputs below −87 return ~1e-38
/// rather than 0 — the callers only take x − max ≤ 0 and normalise.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0; // 1.5·2²³: adding and subtracting it rounds to an integer
    let x = x.clamp(-87.0, 88.0);
    // t holds n = round(x·log2 e) in its low mantissa bits: 2ⁿ comes from t's bits alone, with no
    // float→int conversion (whose saturating form does not vectorise on baseline x86-64).
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 5e-1;
    let y = p * r * r + r + 1.0;
    // (t + 127)'s mantissa ends in the bits of n + 127 ∈ [1, 254]; shifted up they are 2ⁿ's exponent.
    y * f32::from_bits((t + 127.0).to_bits() << 23)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_two_ulp_of_libm() {
        let mut x = -87.0f32;
        while x < 88.0 {
            let (a, b) = (exp(x), x.exp());
            assert!(((a - b) / b).abs() < 2.5e-7, "exp({x}) = {a}, libm {b}");
            x += 0.0137;
        }
    }
}
