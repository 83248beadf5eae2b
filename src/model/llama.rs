//! A Llama-family decoder in burn, readable in one sitting (after llama2.c's `run.c`):
//! RMSNorm → GQA attention with RoPE → RMSNorm → SwiGLU, then a final RMSNorm and the classifier.
//! One forward serves batched training (right-padded `[B, T]` with lengths) and incremental
//! generation (a KV cache of the positions seen so far).

use burn::module::{Module, Param};
use burn::nn::{Linear, RmsNorm};
use burn::tensor::activation::{silu, softmax};
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};

use super::weights::{LayerWeights, LlamaConfig, LlamaWeights, RopeLayout};
use crate::device::read_f32;

/// Masked attention scores: exp() of this underflows to exactly 0, like -inf, but a row can
/// never become all -inf (NaN).
const MASKED: f32 = -1.0e9;

#[derive(Module, Debug)]
pub struct Attention {
    wq: Linear,
    wk: Linear,
    wv: Linear,
    wo: Linear,
    n_heads: usize,
    n_kv_heads: usize,
}

#[derive(Module, Debug)]
pub struct FeedForward {
    w1: Linear,
    w2: Linear,
    w3: Linear,
}

#[derive(Module, Debug)]
pub struct Block {
    attn_norm: RmsNorm,
    attn: Attention,
    ffn_norm: RmsNorm,
    ffn: FeedForward,
}

#[derive(Module, Debug)]
pub struct Llama {
    tok_emb: Param<Tensor<2>>,
    blocks: Vec<Block>,
    norm: RmsNorm,
    /// `None` when the classifier is tied to `tok_emb`.
    lm_head: Option<Linear>,
    #[module(skip)]
    config: LlamaConfig,
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

/// RoPE rotation tables for the positions of one forward call, `[1, 1, T, head/2]`.
struct Rope {
    cos: Tensor<4>,
    sin: Tensor<4>,
    layout: RopeLayout,
}

impl Rope {
    fn new(c: &LlamaConfig, start: usize, len: usize, device: &Device) -> Self {
        let half = c.head_dim() / 2;
        let (mut cos, mut sin) = (Vec::with_capacity(len * half), Vec::with_capacity(len * half));
        for pos in start..start + len {
            for j in 0..half {
                let freq = 1.0 / c.rope_theta.powf((2 * j) as f64 / c.head_dim() as f64);
                let angle = pos as f64 * freq;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        let t = |v: Vec<f32>| Tensor::<4>::from_data(TensorData::new(v, [1, 1, len, half]), device);
        Rope { cos: t(cos), sin: t(sin), layout: c.rope_layout }
    }

    /// Rotate `x: [B, H, T, head]` pair by pair.
    fn apply(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, h, t, d] = x.dims();
        let half = d / 2;
        let (x0, x1) = match self.layout {
            RopeLayout::Adjacent => {
                let pairs = x.reshape([b, h, t, half, 2]);
                (pairs.clone().narrow(4, 0, 1).reshape([b, h, t, half]), pairs.narrow(4, 1, 1).reshape([b, h, t, half]))
            }
            RopeLayout::RotateHalf => (x.clone().narrow(3, 0, half), x.narrow(3, half, half)),
        };
        let r0 = x0.clone() * self.cos.clone() - x1.clone() * self.sin.clone();
        let r1 = x0 * self.sin.clone() + x1 * self.cos.clone();
        match self.layout {
            RopeLayout::Adjacent => Tensor::stack::<5>(vec![r0, r1], 4).reshape([b, h, t, d]),
            RopeLayout::RotateHalf => Tensor::cat(vec![r0, r1], 3),
        }
    }
}

impl Attention {
    fn forward(&self, x: Tensor<3>, rope: &Rope, mask: Tensor<4, Bool>, cache: Option<&mut LayerKv>) -> Tensor<3> {
        let [b, t, dim] = x.dims();
        let hd = dim / self.n_heads;
        let heads = |y: Tensor<3>, n: usize| y.reshape([b, t, n, hd]).swap_dims(1, 2);
        let q = rope.apply(heads(self.wq.forward(x.clone()), self.n_heads));
        let mut k = rope.apply(heads(self.wk.forward(x.clone()), self.n_kv_heads));
        let mut v = heads(self.wv.forward(x), self.n_kv_heads);
        if let Some(slot) = cache {
            if let Some((pk, pv)) = slot.take() {
                k = Tensor::cat(vec![pk, k], 2);
                v = Tensor::cat(vec![pv, v], 2);
            }
            *slot = Some((k.clone(), v.clone()));
        }
        let tk = k.dims()[2];
        // GQA: KV head j serves query heads j*g .. j*g+g-1.
        let group = self.n_heads / self.n_kv_heads;
        let expand = |y: Tensor<4>| {
            if group == 1 { y } else { y.unsqueeze_dim::<5>(2).repeat_dim(2, group).reshape([b, self.n_heads, tk, hd]) }
        };
        let (k, v) = (expand(k), expand(v));
        let scores = q.matmul(k.swap_dims(2, 3)) / (hd as f64).sqrt();
        let scores = scores.mask_fill(mask.expand([b, self.n_heads, t, tk]), MASKED);
        let out = softmax(scores, 3).matmul(v);
        self.wo.forward(out.swap_dims(1, 2).reshape([b, t, dim]))
    }
}

impl FeedForward {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.w2.forward(silu(self.w1.forward(x.clone())) * self.w3.forward(x))
    }
}

impl Block {
    fn forward(&self, x: Tensor<3>, rope: &Rope, mask: Tensor<4, Bool>, cache: Option<&mut LayerKv>) -> Tensor<3> {
        let x = x.clone() + self.attn.forward(self.attn_norm.forward(x), rope, mask, cache);
        x.clone() + self.ffn.forward(self.ffn_norm.forward(x))
    }
}

/// Token ids as the model's `[rows, len]` input tensor.
pub fn token_ids(ids: &[u32], rows: usize, device: &Device) -> Tensor<2, Int> {
    let data: Vec<i32> = ids.iter().map(|&t| t as i32).collect();
    let len = data.len() / rows.max(1);
    Tensor::from_data(TensorData::new(data, [rows, len]), device)
}

fn linear(w: &[f32], out: usize, inp: usize, device: &Device) -> Linear {
    // burn stores Linear weights as [in, out]; checkpoints store [out, in].
    let mut t = vec![0f32; w.len()];
    for o in 0..out {
        for i in 0..inp {
            t[i * out + o] = w[o * inp + i];
        }
    }
    Linear { weight: Param::from_data(TensorData::new(t, [inp, out]), device), bias: None }
}

fn rms(w: &[f32], eps: f64, device: &Device) -> RmsNorm {
    RmsNorm { gamma: Param::from_data(TensorData::new(w.to_vec(), [w.len()]), device), epsilon: eps }
}

impl Llama {
    pub fn from_weights(w: &LlamaWeights, device: &Device) -> Self {
        let c = &w.config;
        let (d, h, kv) = (c.dim, c.hidden_dim, c.kv_dim());
        let blocks = w
            .layers
            .iter()
            .map(|l| Block {
                attn_norm: rms(&l.attn_norm, c.norm_eps, device),
                attn: Attention {
                    wq: linear(&l.wq, d, d, device),
                    wk: linear(&l.wk, kv, d, device),
                    wv: linear(&l.wv, kv, d, device),
                    wo: linear(&l.wo, d, d, device),
                    n_heads: c.n_heads,
                    n_kv_heads: c.n_kv_heads,
                },
                ffn_norm: rms(&l.ffn_norm, c.norm_eps, device),
                ffn: FeedForward {
                    w1: linear(&l.w1, h, d, device),
                    w2: linear(&l.w2, d, h, device),
                    w3: linear(&l.w3, h, d, device),
                },
            })
            .collect();
        Llama {
            tok_emb: Param::from_data(TensorData::new(w.tok_emb.clone(), [c.vocab_size, d]), device),
            blocks,
            norm: rms(&w.norm, c.norm_eps, device),
            lm_head: w.lm_head.as_ref().map(|head| linear(head, c.vocab_size, d, device)),
            config: c.clone(),
        }
    }

    /// Read the weights back to the host (async: the browser cannot block on the GPU).
    pub async fn to_weights(&self) -> crate::Result<LlamaWeights> {
        async fn read_linear(l: &Linear) -> crate::Result<Vec<f32>> {
            // back from burn's [in, out] to [out, in]
            read_f32(l.weight.val().transpose()).await
        }
        let c = self.config.clone();
        let mut layers = Vec::with_capacity(self.blocks.len());
        for b in &self.blocks {
            layers.push(LayerWeights {
                attn_norm: read_f32(b.attn_norm.gamma.val()).await?,
                wq: read_linear(&b.attn.wq).await?,
                wk: read_linear(&b.attn.wk).await?,
                wv: read_linear(&b.attn.wv).await?,
                wo: read_linear(&b.attn.wo).await?,
                ffn_norm: read_f32(b.ffn_norm.gamma.val()).await?,
                w1: read_linear(&b.ffn.w1).await?,
                w2: read_linear(&b.ffn.w2).await?,
                w3: read_linear(&b.ffn.w3).await?,
            });
        }
        let lm_head = match &self.lm_head {
            Some(l) => Some(read_linear(l).await?),
            None => None,
        };
        Ok(LlamaWeights {
            tok_emb: read_f32(self.tok_emb.val()).await?,
            layers,
            norm: read_f32(self.norm.gamma.val()).await?,
            lm_head,
            config: c,
        })
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// Logits `[B, T, V]` for right-padded `ids: [B, T]`; `lengths[b]` real tokens in row `b`
    /// (padding keys are masked; padded query rows produce logits that callers mask out).
    pub fn forward(&self, ids: Tensor<2, Int>, lengths: &[usize]) -> Tensor<3> {
        let [b, t] = ids.dims();
        let device = ids.device();
        let mut mask = Vec::with_capacity(b * t * t);
        for &len in lengths {
            for q in 0..t {
                mask.extend((0..t).map(|k| k > q || k >= len));
            }
        }
        let mask = Tensor::<4, Bool>::from_data(TensorData::new(mask, [b, 1, t, t]), &device);
        self.run(ids, 0, mask, None)
    }

    /// Logits `[B, T, V]` for `ids` that continue the sequences in `cache` (all rows same length).
    pub fn forward_cached(&self, ids: Tensor<2, Int>, cache: &mut KvCache) -> Tensor<3> {
        let [b, t] = ids.dims();
        let device = ids.device();
        let start = cache.len;
        let tk = start + t;
        let mut mask = Vec::with_capacity(b * t * tk);
        for _ in 0..b {
            for q in 0..t {
                mask.extend((0..tk).map(|k| k > start + q));
            }
        }
        let mask = Tensor::<4, Bool>::from_data(TensorData::new(mask, [b, 1, t, tk]), &device);
        if cache.layers.is_empty() {
            cache.layers = (0..self.blocks.len()).map(|_| None).collect();
        }
        let logits = self.run(ids, start, mask, Some(&mut cache.layers));
        cache.len = tk;
        logits
    }

    fn run(
        &self,
        ids: Tensor<2, Int>,
        start: usize,
        mask: Tensor<4, Bool>,
        mut cache: Option<&mut Vec<LayerKv>>,
    ) -> Tensor<3> {
        let [b, t] = ids.dims();
        let device = ids.device();
        let d = self.config.dim;
        let rope = Rope::new(&self.config, start, t, &device);
        let emb = self.tok_emb.val();
        let mut x = emb.clone().select(0, ids.reshape([b * t])).reshape([b, t, d]);
        for (i, block) in self.blocks.iter().enumerate() {
            let slot = cache.as_deref_mut().map(|c| &mut c[i]);
            x = block.forward(x, &rope, mask.clone(), slot);
        }
        let x = self.norm.forward(x);

        match &self.lm_head {
            Some(head) => head.forward(x),
            None => x.reshape([b * t, d]).matmul(emb.transpose()).reshape([b, t, self.config.vocab_size]),
        }
    }
}
