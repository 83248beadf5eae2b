//! The decoder in burn, readable in one sitting (after llama2.c's `run.c`). Model family:
//! RMSNorm → GQA attention with RoPE → RMSNorm → SwiGLU, then a final RMSNorm and the classifier.
//! GPT-2 is the same skeleton with LayerNorm, learned positions and a GELU MLP; Gemma 3 adds
//! norms after attention and MLP, a GeGLU MLP, scaled embeddings, soft-capping and
//! sliding-window layers.
//! One forward serves batched training (right-padded `[B, T]` with lengths) and incremental
//! generation (a KV cache of the positions seen so far).
//! Long on purpose: the whole model in one file, like `run.c`, so it can be read top to bottom.

use burn::module::{Module, Param};
use burn::nn::{LayerNorm, LayerNormConfig, Linear, RmsNorm};
use burn::tensor::activation::{gelu_approximate, silu, tanh};
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};

use super::fused::{self, KeyRanges};
use super::lora::Proj;
use super::weights::{Arch, LayerWeights, ModelConfig, ModelWeights, RopeLayout, transpose};
use crate::device::read_f32;

#[derive(Module, Debug)]
pub enum Norm {
    Rms(RmsNorm),
    Layer(LayerNorm),
}

impl Norm {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        match self {
            Norm::Rms(n) => rms(n, x),
            Norm::Layer(n) => n.forward(x),
        }
    }
}

/// RMSNorm through the fused CPU kernel where the device has it.
fn rms<const D: usize>(n: &RmsNorm, x: Tensor<D>) -> Tensor<D> {
    if fused::supported(&x.device()) { fused::rms_norm(x, n.gamma.val(), n.epsilon) } else { n.forward(x) }
}

/// The query, key and value projections.
// One per layer, built once and never moved on a hot path: boxing the larger variant buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Qkv {
    /// Apart (Llama family): each its own LoRA target.
    Split(SplitQkv),
    /// GPT-2's fused `c_attn` (outputs `[q | k | v]`): one LoRA target, as PEFT adapts it.
    Fused(Proj),
}

#[derive(Module, Debug)]
pub struct SplitQkv {
    pub(crate) wq: Proj,
    pub(crate) wk: Proj,
    pub(crate) wv: Proj,
}

#[derive(Module, Debug)]
pub struct Attention {
    pub(crate) qkv: Qkv,
    pub(crate) wo: Proj,
    /// Qwen3: RMSNorm over each head's queries / keys, before RoPE.
    q_norm: Option<RmsNorm>,
    k_norm: Option<RmsNorm>,
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
}

#[derive(Module, Debug)]
pub struct FeedForward {
    /// The SwiGLU gate; `None` for GPT-2's plain GELU MLP.
    pub(crate) w1: Option<Proj>,
    pub(crate) w2: Proj,
    pub(crate) w3: Proj,
    /// The gate's activation is GELU (tanh) instead of SiLU: Gemma's GeGLU.
    gelu_gate: bool,
}

#[derive(Module, Debug)]
pub struct Block {
    attn_norm: Norm,
    pub(crate) attn: Attention,
    /// Gemma 3's norms on the attention and MLP outputs, before each residual add.
    post_attn_norm: Option<Norm>,
    ffn_norm: Norm,
    pub(crate) ffn: FeedForward,
    post_ffn_norm: Option<Norm>,
    /// Attends through the sliding window (its own mask and RoPE).
    sliding: bool,
}

#[derive(Module, Debug)]
pub struct Model {
    tok_emb: Param<Tensor<2>>,
    /// Learned positions (GPT-2); `None` for RoPE models.
    pos_emb: Option<Param<Tensor<2>>>,
    pub(crate) blocks: Vec<Block>,
    norm: Norm,
    /// `None` when the classifier is tied to `tok_emb`.
    lm_head: Option<Linear>,
    #[module(skip)]
    config: ModelConfig,
    /// cos/sin of every position's RoPE angles, computed once per model (`None` for GPT-2), and
    /// of the sliding-window layers' own RoPE (Gemma 3).
    #[module(skip)]
    rope_table: Option<std::sync::Arc<RopeTable>>,
    #[module(skip)]
    local_rope_table: Option<std::sync::Arc<RopeTable>>,
}

/// Attention masks of one forward call: every layer's, and the sliding-window layers'.
struct Masks {
    global: Mask,
    local: Option<Mask>,
}

/// One attention mask as key ranges (what the fused CPU kernel reads) and, on backends without
/// that kernel, as a `[B, 1, T, T_k]` tensor (`true` = hidden).
#[derive(Clone)]
struct Mask {
    ranges: KeyRanges,
    tensor: Option<Tensor<4, Bool>>,
}

/// One layer's cached keys and values, `[B, KV heads, T, head]` each (`None` before the first call).
type LayerKv = Option<(Tensor<4>, Tensor<4>)>;

/// Keys and values of every layer for the positions already processed.
#[derive(Debug, Default)]
pub struct KvCache {
    layers: Vec<LayerKv>,
    len: usize,
}

impl KvCache {
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// RoPE for the positions of one forward call, as `x·cos + rot(x)·sin` on `[B, T, H, head]`:
/// `rot` swaps each rotated pair with a sign (a fixed ±1 permutation matrix, so the product is
/// exact), which keeps RoPE at one small matmul and three elementwise ops, with no slicing or
/// re-stacking of the pairs. The queries' tables carry the attention scale 1/√head, so the
/// scores need no pass of their own.
struct Rope {
    cos: Tensor<4>,
    sin: Tensor<4>,
    q_cos: Tensor<4>,
    q_sin: Tensor<4>,
    /// `[head, head]`: `x · rot` pairs element i with its partner.
    rot: Tensor<2>,
    /// The pairs are (i, i + head/2) rather than (2i, 2i + 1).
    rotate_half: bool,
}

/// Host-side RoPE angles for the first positions (up to 8192: a long-context model's full table
/// would be tens of MB for positions training never reaches), `[pos, head/2]` row-major.
#[derive(Debug)]
struct RopeTable {
    cos: Vec<f32>,
    sin: Vec<f32>,
    half: usize,
    freqs: Vec<f64>,
}

impl RopeTable {
    fn new(c: &ModelConfig, freqs: Vec<f64>) -> Self {
        let half = c.head_dim() / 2;
        let n = c.max_seq_len.min(8192);
        let (mut cos, mut sin) = (Vec::with_capacity(n * half), Vec::with_capacity(n * half));
        for pos in 0..n {
            for f in &freqs {
                let (s, co) = (pos as f64 * f).sin_cos();
                cos.push(co as f32);
                sin.push(s as f32);
            }
        }
        Self { cos, sin, half, freqs }
    }
}

impl Rope {
    fn new(c: &ModelConfig, table: &RopeTable, start: usize, len: usize, device: &Device) -> Self {
        let (half, hd) = (table.half, c.head_dim());
        let scale = c.attn_scale() as f32;
        // Which pair (angle index) head element i belongs to, and its partner element.
        type Index = fn(usize, usize) -> usize;
        let (pair, partner): (Index, Index) = match c.rope_layout {
            RopeLayout::Adjacent => (|i, _| i / 2, |i, _| i ^ 1),
            RopeLayout::RotateHalf => (|i, h| i % h, |i, h| (i + h) % (2 * h)),
        };
        let freqs = &table.freqs;
        let angle = |v: &[f32], trig: fn(f64) -> f64, pos: usize, j: usize| match v.get(pos * half + j) {
            Some(&x) => x,
            // Positions past the table (long contexts, generation beyond it) are computed here.
            None => trig(pos as f64 * freqs[j]) as f32,
        };
        let full = |v: &[f32], trig: fn(f64) -> f64, s: f32| -> Vec<f32> {
            (start..start + len).flat_map(|pos| (0..hd).map(move |i| angle(v, trig, pos, pair(i, half)) * s)).collect()
        };
        let t = |v: Vec<f32>| Tensor::<4>::from_data(TensorData::new(v, [1, len, 1, hd]), device);
        // rot(x)[i] = -x[partner] for the first element of a pair, +x[partner] for the second.
        let mut rot = vec![0.0f32; hd * hd];
        for i in 0..hd {
            let first = match c.rope_layout {
                RopeLayout::Adjacent => i % 2 == 0,
                RopeLayout::RotateHalf => i < half,
            };
            rot[partner(i, half) * hd + i] = if first { -1.0 } else { 1.0 };
        }
        Rope {
            cos: t(full(&table.cos, f64::cos, 1.0)),
            sin: t(full(&table.sin, f64::sin, 1.0)),
            q_cos: t(full(&table.cos, f64::cos, scale)),
            q_sin: t(full(&table.sin, f64::sin, scale)),
            rot: Tensor::from_data(TensorData::new(rot, [hd, hd]), device),
            rotate_half: c.rope_layout == RopeLayout::RotateHalf,
        }
    }

    /// Rotate keys `x: [B, T, H, head]`, returned heads first, `[B, H, T, head]`.
    fn keys(&self, x: Tensor<4>) -> Tensor<4> {
        self.apply(x, &self.cos, &self.sin)
    }

    /// Rotate queries and scale them by 1/√head (heads first, as `keys`).
    fn queries(&self, x: Tensor<4>) -> Tensor<4> {
        self.apply(x, &self.q_cos, &self.q_sin)
    }

    fn apply(&self, x: Tensor<4>, cos: &Tensor<4>, sin: &Tensor<4>) -> Tensor<4> {
        if fused::supported(&x.device()) {
            return fused::rope(x, cos.clone(), sin.clone(), self.rotate_half);
        }
        let [b, t, h, d] = x.dims();
        let rotated = x.clone().reshape([b * t * h, d]).matmul(self.rot.clone()).reshape([b, t, h, d]);
        (x * cos.clone() + rotated * sin.clone()).swap_dims(1, 2)
    }
}

impl Attention {
    fn forward(&self, x: Tensor<3>, rope: Option<&Rope>, mask: &Mask, cache: Option<&mut LayerKv>) -> Tensor<3> {
        let [b, t, _] = x.dims();
        let hd = self.head_dim;
        // [B, T, H, head]: RoPE works on this layout; attention on [B, H, T, head].
        let split = |y: Tensor<3>, n: usize| y.reshape([b, t, n, hd]);
        let head_norm = |n: &Option<RmsNorm>, y: Tensor<4>| match n {
            Some(n) => rms(n, y),
            None => y,
        };
        let (q, k, v) = match &self.qkv {
            Qkv::Split(s) => (s.wq.forward(x.clone()), s.wk.forward(x.clone()), s.wv.forward(x)),
            Qkv::Fused(p) => {
                let (qd, kvd) = (self.n_heads * hd, self.n_kv_heads * hd);
                let y = p.forward(x);
                (y.clone().narrow(2, 0, qd), y.clone().narrow(2, qd, kvd), y.narrow(2, qd + kvd, kvd))
            }
        };
        let q = head_norm(&self.q_norm, split(q, self.n_heads));
        // Queries leave here already scaled by 1/√head (folded into RoPE's tables, or one multiply
        // for GPT-2) rather than scaling the larger [B, H, T, T] scores; RoPE returns heads first.
        let q = match rope {
            Some(r) => r.queries(q),
            None => q.mul_scalar(1.0 / (hd as f64).sqrt()).swap_dims(1, 2),
        };
        let k = head_norm(&self.k_norm, split(k, self.n_kv_heads));
        let mut k = match rope {
            Some(r) => r.keys(k),
            None => k.swap_dims(1, 2),
        };
        let mut v = split(v, self.n_kv_heads).swap_dims(1, 2);
        if let Some(slot) = cache {
            if let Some((pk, pv)) = slot.take() {
                k = Tensor::cat(vec![pk, k], 2);
                v = Tensor::cat(vec![pv, v], 2);
            }
            *slot = Some((k.clone(), v.clone()));
        }
        // GQA without copying K/V: KV head j serves query heads j*g .. j*g+g-1, so the g query
        // heads of a group are stacked along the time axis and share one [T_k, head] matmul.
        let (kv, g) = (self.n_kv_heads, self.n_heads / self.n_kv_heads);
        let q = q.reshape([b, kv, g * t, hd]);
        // [B, T, H·head]: the heads merged back into tokens.
        let out = match &mask.tensor {
            None => fused::attention(q, k, v, mask.ranges.clone()),
            Some(mask) => fused::composed(q, k, v, mask),
        };
        self.wo.forward(out)
    }
}

impl FeedForward {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        match &self.w1 {
            Some(gate) if self.gelu_gate => {
                self.w2.forward(gelu_approximate(gate.forward(x.clone())) * self.w3.forward(x))
            }
            Some(gate) => {
                let (a, b) = (gate.forward(x.clone()), self.w3.forward(x));
                self.w2.forward(if fused::supported(&a.device()) { fused::swiglu(a, b) } else { silu(a) * b })
            }
            // GPT-2's gelu_new is the tanh approximation.
            None => self.w2.forward(gelu_approximate(self.w3.forward(x))),
        }
    }
}

impl Block {
    fn forward(&self, x: Tensor<3>, rope: Option<&Rope>, mask: &Mask, cache: Option<&mut LayerKv>) -> Tensor<3> {
        let post = |n: &Option<Norm>, y: Tensor<3>| match n {
            Some(n) => n.forward(y),
            None => y,
        };
        let x = x.clone() + post(&self.post_attn_norm, self.attn.forward(self.attn_norm.forward(x), rope, mask, cache));
        x.clone() + post(&self.post_ffn_norm, self.ffn.forward(self.ffn_norm.forward(x)))
    }
}

/// Token ids as the model's `[rows, len]` input tensor.
pub fn token_ids(ids: &[u32], rows: usize, device: &Device) -> Tensor<2, Int> {
    let data: Vec<i32> = ids.iter().map(|&t| t as i32).collect();
    let len = data.len() / rows.max(1);
    Tensor::from_data(TensorData::new(data, [rows, len]), device)
}

fn param(v: &[f32], shape: [usize; 2], device: &Device) -> Param<Tensor<2>> {
    Param::from_data(TensorData::new(v.to_vec(), shape), device)
}

fn vector(v: &[f32], device: &Device) -> Param<Tensor<1>> {
    Param::from_data(TensorData::new(v.to_vec(), [v.len()]), device)
}

/// A `[out, in]` checkpoint matrix as burn's `[in, out]` Linear.
fn linear(w: &[f32], bias: Option<&Vec<f32>>, out: usize, inp: usize, device: &Device) -> Linear {
    Linear { weight: param(&transpose(w, out, inp), [inp, out], device), bias: bias.map(|b| vector(b, device)) }
}

fn proj(w: &[f32], bias: Option<&Vec<f32>>, out: usize, inp: usize, device: &Device) -> Proj {
    Proj::new(linear(w, bias, out, inp, device))
}

fn norm(c: &ModelConfig, w: &[f32], bias: Option<&Vec<f32>>, device: &Device) -> Norm {
    match c.arch {
        Arch::Llama | Arch::Gemma3 => Norm::Rms(RmsNorm { gamma: vector(w, device), epsilon: c.norm_eps }),
        Arch::Gpt2 => {
            let mut n = LayerNormConfig::new(w.len()).with_epsilon(c.norm_eps).init(device);
            n.gamma = vector(w, device);
            n.beta = bias.map(|b| vector(b, device));
            Norm::Layer(n)
        }
    }
}

async fn read_norm(n: &Norm) -> crate::Result<(Vec<f32>, Option<Vec<f32>>)> {
    Ok(match n {
        Norm::Rms(n) => (read_f32(n.gamma.val()).await?, None),
        Norm::Layer(n) => (
            read_f32(n.gamma.val()).await?,
            match &n.beta {
                Some(b) => Some(read_f32(b.val()).await?),
                None => None,
            },
        ),
    })
}

/// A projection back to the host as `[out, in]` and its bias (an adapter must be merged first).
async fn read_linear(l: &Linear) -> crate::Result<(Vec<f32>, Option<Vec<f32>>)> {
    let w = read_f32(l.weight.val().transpose()).await?;
    let b = match &l.bias {
        Some(b) => Some(read_f32(b.val()).await?),
        None => None,
    };
    Ok((w, b))
}

impl Model {
    pub fn from_weights(w: &ModelWeights, device: &Device) -> Self {
        let c = &w.config;
        let (d, h, q, kv) = (c.dim, c.hidden_dim, c.q_dim(), c.kv_dim());
        let blocks = w
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| Block {
                attn_norm: norm(c, &l.attn_norm, l.attn_norm_bias.as_ref(), device),
                attn: Attention {
                    qkv: if c.arch == Arch::Gpt2 {
                        let w = [&l.wq[..], &l.wk, &l.wv].concat();
                        let bias = |b: &Option<Vec<f32>>| b.clone().unwrap_or_default();
                        let b = [bias(&l.bq), bias(&l.bk), bias(&l.bv)].concat();
                        Qkv::Fused(proj(&w, Some(&b), q + 2 * kv, d, device))
                    } else {
                        Qkv::Split(SplitQkv {
                            wq: proj(&l.wq, l.bq.as_ref(), q, d, device),
                            wk: proj(&l.wk, l.bk.as_ref(), kv, d, device),
                            wv: proj(&l.wv, l.bv.as_ref(), kv, d, device),
                        })
                    },
                    wo: proj(&l.wo, l.bo.as_ref(), d, q, device),
                    q_norm: l.q_norm.as_ref().map(|w| RmsNorm { gamma: vector(w, device), epsilon: c.norm_eps }),
                    k_norm: l.k_norm.as_ref().map(|w| RmsNorm { gamma: vector(w, device), epsilon: c.norm_eps }),
                    n_heads: c.n_heads,
                    n_kv_heads: c.n_kv_heads,
                    head_dim: c.head_dim(),
                },
                post_attn_norm: l.post_attn_norm.as_ref().map(|w| norm(c, w, None, device)),
                ffn_norm: norm(c, &l.ffn_norm, l.ffn_norm_bias.as_ref(), device),
                ffn: FeedForward {
                    w1: c.gated().then(|| proj(&l.w1, None, h, d, device)),
                    w2: proj(&l.w2, l.b2.as_ref(), d, h, device),
                    w3: proj(&l.w3, l.b3.as_ref(), h, d, device),
                    gelu_gate: c.arch == Arch::Gemma3,
                },
                post_ffn_norm: l.post_ffn_norm.as_ref().map(|w| norm(c, w, None, device)),
                sliding: c.is_sliding(i),
            })
            .collect();
        Model {
            tok_emb: param(&w.tok_emb, [c.vocab_size, d], device),
            pos_emb: w.pos_emb.as_ref().map(|p| param(p, [c.max_seq_len, d], device)),
            blocks,
            norm: norm(c, &w.norm, w.norm_bias.as_ref(), device),
            lm_head: w.lm_head.as_ref().map(|head| linear(head, None, c.vocab_size, d, device)),
            config: c.clone(),
            rope_table: w.pos_emb.is_none().then(|| std::sync::Arc::new(RopeTable::new(c, c.rope_freqs()))),
            local_rope_table: c.local_rope_freqs().map(|f| std::sync::Arc::new(RopeTable::new(c, f))),
        }
    }

    /// Read the weights back to the host (async: the browser cannot block on the GPU). LoRA
    /// adapters are merged in, so the result is the model as it behaves.
    pub async fn to_weights(&self) -> crate::Result<ModelWeights> {
        let c = self.config.clone();
        let mut layers = Vec::with_capacity(self.blocks.len());
        for b in &self.blocks {
            let (attn_norm, attn_norm_bias) = read_norm(&b.attn_norm).await?;
            let (ffn_norm, ffn_norm_bias) = read_norm(&b.ffn_norm).await?;
            let ((wq, bq), (wk, bk), (wv, bv)) = match &b.attn.qkv {
                Qkv::Split(s) => (
                    read_linear(&s.wq.merged().base).await?,
                    read_linear(&s.wk.merged().base).await?,
                    read_linear(&s.wv.merged().base).await?,
                ),
                Qkv::Fused(p) => {
                    let (w, bias) = read_linear(&p.merged().base).await?;
                    let mut l = LayerWeights::default();
                    l.set_fused_qkv(&w, &bias.unwrap_or_default(), c.dim);
                    ((l.wq, l.bq), (l.wk, l.bk), (l.wv, l.bv))
                }
            };
            let (wo, bo) = read_linear(&b.attn.wo.merged().base).await?;
            let w1 = match &b.ffn.w1 {
                Some(g) => read_linear(&g.merged().base).await?.0,
                None => Vec::new(),
            };
            let (w2, b2) = read_linear(&b.ffn.w2.merged().base).await?;
            let (w3, b3) = read_linear(&b.ffn.w3.merged().base).await?;
            let q_norm = match &b.attn.q_norm {
                Some(n) => Some(read_f32(n.gamma.val()).await?),
                None => None,
            };
            let k_norm = match &b.attn.k_norm {
                Some(n) => Some(read_f32(n.gamma.val()).await?),
                None => None,
            };
            let post_attn_norm = match &b.post_attn_norm {
                Some(n) => Some(read_norm(n).await?.0),
                None => None,
            };
            let post_ffn_norm = match &b.post_ffn_norm {
                Some(n) => Some(read_norm(n).await?.0),
                None => None,
            };
            layers.push(LayerWeights {
                attn_norm,
                attn_norm_bias,
                wq,
                wk,
                wv,
                wo,
                bq,
                bk,
                bv,
                bo,
                ffn_norm,
                ffn_norm_bias,
                w1,
                w2,
                w3,
                b2,
                b3,
                q_norm,
                k_norm,
                post_attn_norm,
                post_ffn_norm,
            });
        }
        let lm_head = match &self.lm_head {
            Some(l) => Some(read_linear(l).await?.0),
            None => None,
        };
        let (norm, norm_bias) = read_norm(&self.norm).await?;
        let pos_emb = match &self.pos_emb {
            Some(p) => Some(read_f32(p.val()).await?),
            None => None,
        };
        Ok(ModelWeights {
            tok_emb: read_f32(self.tok_emb.val()).await?,
            pos_emb,
            layers,
            norm,
            norm_bias,
            lm_head,
            config: c,
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Logits `[B, T, V]` for right-padded `ids: [B, T]`; `lengths[b]` real tokens in row `b`
    /// (padding keys are masked; padded query rows produce logits that callers mask out).
    pub fn forward(&self, ids: Tensor<2, Int>, lengths: &[usize]) -> Tensor<3> {
        let [b, t] = ids.dims();
        self.classify(self.hidden(ids, lengths).reshape([b * t, self.config.dim])).reshape([
            b,
            t,
            self.config.vocab_size,
        ])
    }

    /// The final (normed) hidden states `[B, T, dim]` of a padded batch, before the classifier:
    /// callers that need a few positions' logits classify only those (`classify`).
    pub fn hidden(&self, ids: Tensor<2, Int>, lengths: &[usize]) -> Tensor<3> {
        let [b, t] = ids.dims();
        let masks = self.masks(b, t, 0, lengths, &ids.device());
        self.run(ids, 0, masks, None)
    }

    /// The attention masks (`true` = hidden) of `t` queries from position `start` over all keys
    /// so far: causal and padding for every layer, plus the window for sliding layers.
    fn masks(&self, b: usize, t: usize, start: usize, lengths: &[usize], device: &Device) -> Masks {
        let fused = fused::supported(device);
        let build = |window: Option<usize>| {
            let ranges = KeyRanges { queries: t, start, lengths: lengths.to_vec(), window };
            let tensor = (!fused).then(|| ranges.mask(b, t, start + t, device));
            Mask { ranges, tensor }
        };
        Masks { global: build(None), local: self.config.sliding.as_ref().map(|s| build(Some(s.window))) }
    }

    /// Logits `[N, V]` of hidden states `[N, dim]`.
    pub fn classify(&self, x: Tensor<2>) -> Tensor<2> {
        let logits = match &self.lm_head {
            Some(head) => fused::project(head, x),
            None => fused::linear(x, self.tok_emb.val().transpose()),
        };
        match self.config.final_logit_softcapping {
            Some(cap) => tanh(logits.div_scalar(cap)).mul_scalar(cap),
            None => logits,
        }
    }

    /// Logits `[B, T, V]` for `ids` that continue the sequences in `cache` (all rows same length).
    pub fn forward_cached(&self, ids: Tensor<2, Int>, cache: &mut KvCache) -> Tensor<3> {
        let [b, t] = ids.dims();
        let start = cache.len;
        let masks = self.masks(b, t, start, &[], &ids.device());
        if cache.layers.is_empty() {
            cache.layers = (0..self.blocks.len()).map(|_| None).collect();
        }
        let x = self.run(ids, start, masks, Some(&mut cache.layers));
        cache.len = start + t;
        self.classify(x.reshape([b * t, self.config.dim])).reshape([b, t, self.config.vocab_size])
    }

    fn run(&self, ids: Tensor<2, Int>, start: usize, masks: Masks, mut cache: Option<&mut Vec<LayerKv>>) -> Tensor<3> {
        let [b, t] = ids.dims();
        let device = ids.device();
        let c = &self.config;
        let emb = self.tok_emb.val();
        let mut x = emb.select(0, ids.reshape([b * t])).reshape([b, t, c.dim]);
        if c.arch == Arch::Gemma3 {
            // Gemma scales the embeddings (not the tied classifier) by √hidden, rounded to f32.
            x = x.mul_scalar((c.dim as f64).sqrt() as f32);
        }
        let rope_of = |table: &Option<std::sync::Arc<RopeTable>>, freqs: fn(&ModelConfig) -> Vec<f64>| match table {
            Some(table) => Rope::new(c, table, start, t, &device),
            None => Rope::new(c, &RopeTable::new(c, freqs(c)), start, t, &device),
        };
        let rope = match &self.pos_emb {
            Some(pos) => {
                x = x + pos.val().narrow(0, start, t).unsqueeze::<3>();
                None
            }
            None => Some(rope_of(&self.rope_table, ModelConfig::rope_freqs)),
        };
        let local_rope = (rope.is_some() && c.sliding.is_some())
            .then(|| rope_of(&self.local_rope_table, |c| c.local_rope_freqs().unwrap_or_default()));
        for (i, block) in self.blocks.iter().enumerate() {
            let slot = cache.as_deref_mut().map(|c| &mut c[i]);
            let (rope, mask) = match (&local_rope, &masks.local) {
                (Some(r), Some(m)) if block.sliding => (Some(r), m),
                _ => (rope.as_ref(), &masks.global),
            };
            x = block.forward(x, rope, mask, slot);
        }
        self.norm.forward(x)
    }
}

/// LoRA plumbing: every adaptable projection by (layer, PEFT module name): Llama's `q_proj` ...
/// `down_proj`; GPT-2's `c_attn`, `attn.c_proj`, `c_fc`, `mlp.c_proj` (its two `c_proj` told apart
/// by their parent, as PEFT's suffix match allows).
impl Model {
    fn out_names(&self) -> [&'static str; 3] {
        if self.config.arch == Arch::Gpt2 {
            ["attn.c_proj", "c_fc", "mlp.c_proj"]
        } else {
            ["o_proj", "up_proj", "down_proj"]
        }
    }

    pub(crate) fn map_projs(mut self, mut f: impl FnMut(usize, &'static str, Proj) -> Proj) -> Self {
        let [o, up, down] = self.out_names();
        self.blocks = std::mem::take(&mut self.blocks)
            .into_iter()
            .enumerate()
            .map(|(i, mut b)| {
                b.attn.qkv = match b.attn.qkv {
                    Qkv::Split(s) => Qkv::Split(SplitQkv {
                        wq: f(i, "q_proj", s.wq),
                        wk: f(i, "k_proj", s.wk),
                        wv: f(i, "v_proj", s.wv),
                    }),
                    Qkv::Fused(p) => Qkv::Fused(f(i, "c_attn", p)),
                };
                b.attn.wo = f(i, o, b.attn.wo);
                b.ffn.w1 = b.ffn.w1.map(|g| f(i, "gate_proj", g));
                b.ffn.w3 = f(i, up, b.ffn.w3);
                b.ffn.w2 = f(i, down, b.ffn.w2);
                b
            })
            .collect();
        self
    }

    pub(crate) fn projs(&self) -> Vec<(usize, &'static str, &Proj)> {
        let [o, up, down] = self.out_names();
        let mut out = Vec::new();
        for (i, b) in self.blocks.iter().enumerate() {
            match &b.attn.qkv {
                Qkv::Split(s) => out.extend([(i, "q_proj", &s.wq), (i, "k_proj", &s.wk), (i, "v_proj", &s.wv)]),
                Qkv::Fused(p) => out.push((i, "c_attn", p)),
            }
            out.push((i, o, &b.attn.wo));
            if let Some(g) = &b.ffn.w1 {
                out.push((i, "gate_proj", g));
            }
            out.extend([(i, up, &b.ffn.w3), (i, down, &b.ffn.w2)]);
        }
        out
    }
}
