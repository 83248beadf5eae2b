//! llama2.c "legacy" checkpoints (`run.c`'s format): 7 int32 header fields, then f32 arrays.
//! See `../shared/models/stories260K/README.md` for the layout.

use super::Reader;
use crate::Result;
use crate::error::format_err;
use crate::model::{Arch, LayerWeights, ModelConfig, ModelWeights, RopeLayout};

const HEADER_BYTES: usize = 7 * 4;
/// Limits that no llama2.c-sized model comes near; they turn a garbage header into an error
/// before any allocation is attempted.
const MAX_DIM: usize = 1 << 15;
const MAX_LAYERS: usize = 512;
const MAX_VOCAB: usize = 1 << 20;
const MAX_SEQ: usize = 1 << 20;

/// Parse a llama2.c checkpoint. The file size must match the header exactly.
pub fn load(bytes: &[u8]) -> Result<ModelWeights> {
    if bytes.is_empty() {
        return Err(format_err("the model file is empty: expected a llama2.c checkpoint (.bin)"));
    }
    let mut r = Reader::new(bytes, "the llama2.c model file");
    let mut h = [0i32; 7];
    for v in h.iter_mut() {
        *v = r.i32()?;
    }
    let [dim, hidden, layers, heads, kv_heads, vocab, seq] = h;
    let tied = vocab > 0;
    let check = |name: &str, v: i32, max: usize| -> Result<usize> {
        if v <= 0 || v as usize > max {
            Err(format_err(format!(
                "not a llama2.c checkpoint: header field {name} = {v} is outside 1..={max} \
                 (is this the right file? llama2.c models are the .bin files written by export.py --version 0)"
            )))
        } else {
            Ok(v as usize)
        }
    };
    let dim = check("dim", dim, MAX_DIM)?;
    let hidden = check("hidden_dim", hidden, MAX_DIM * 8)?;
    let layers = check("n_layers", layers, MAX_LAYERS)?;
    let heads = check("n_heads", heads, dim)?;
    let kv_heads = check("n_kv_heads", kv_heads, heads)?;
    let vocab = check("vocab_size", vocab.checked_abs().unwrap_or(0), MAX_VOCAB)?;
    let seq = check("seq_len", seq, MAX_SEQ)?;
    if dim % heads != 0 || heads % kv_heads != 0 || (dim / heads) % 2 != 0 {
        return Err(format_err(format!(
            "not a valid llama2.c checkpoint: dim {dim}, n_heads {heads}, n_kv_heads {kv_heads} \
             do not give an even head size shared by whole KV groups"
        )));
    }
    let hs = dim / heads;
    let kv_dim = kv_heads * hs;
    // Count before reading, in u128 so that no header can overflow it.
    let (d, hd, l, v, s, kv) =
        (dim as u128, hidden as u128, layers as u128, vocab as u128, seq as u128, kv_dim as u128);
    let floats = v * d
        + l * (2 * d + 2 * d * d + 2 * kv * d + 3 * hd * d)
        + d
        + s * (hs as u128 / 2) * 2
        + if tied { 0 } else { v * d };
    let expected = HEADER_BYTES as u128 + 4 * floats;
    if expected != bytes.len() as u128 {
        return Err(format_err(format!(
            "the llama2.c model file has {} bytes but its header (dim {dim}, hidden {hidden}, \
             layers {layers}, heads {heads}/{kv_heads}, vocab {vocab}, seq_len {seq}, {}) \
             needs exactly {expected}: the file is truncated or not a llama2.c checkpoint",
            bytes.len(),
            if tied { "tied classifier" } else { "separate classifier" }
        )));
    }
    let tok_emb = r.f32s(vocab * dim)?;
    let per_layer = |r: &mut Reader, n: usize| -> Result<Vec<Vec<f32>>> { (0..layers).map(|_| r.f32s(n)).collect() };
    let rms_att = per_layer(&mut r, dim)?;
    let wq = per_layer(&mut r, dim * dim)?;
    let wk = per_layer(&mut r, kv_dim * dim)?;
    let wv = per_layer(&mut r, kv_dim * dim)?;
    let wo = per_layer(&mut r, dim * dim)?;
    let rms_ffn = per_layer(&mut r, dim)?;
    let w1 = per_layer(&mut r, hidden * dim)?;
    let w2 = per_layer(&mut r, dim * hidden)?;
    let w3 = per_layer(&mut r, hidden * dim)?;
    let norm = r.f32s(dim)?;
    r.take(seq * (hs / 2) * 2 * 4)?; // precomputed RoPE tables: recomputed instead
    let lm_head = if tied { None } else { Some(r.f32s(vocab * dim)?) };
    debug_assert_eq!(r.remaining(), 0);

    let mut layer_weights = Vec::with_capacity(layers);
    let mut it = rms_att.into_iter().zip(wq).zip(wk).zip(wv).zip(wo).zip(rms_ffn).zip(w1).zip(w2).zip(w3);
    for _ in 0..layers {
        let ((((((((attn_norm, wq), wk), wv), wo), ffn_norm), w1), w2), w3) = it.next().unwrap();
        layer_weights.push(LayerWeights { attn_norm, wq, wk, wv, wo, ffn_norm, w1, w2, w3, ..Default::default() });
    }
    let config = ModelConfig {
        dim,
        hidden_dim: hidden,
        n_layers: layers,
        n_heads: heads,
        n_kv_heads: kv_heads,
        vocab_size: vocab,
        max_seq_len: seq,
        norm_eps: 1e-5,
        rope_theta: 10000.0,
        rope_layout: RopeLayout::Adjacent,
        tied_embeddings: tied,
        arch: Arch::Llama,
        qkv_bias: false,
        o_bias: false,
        ..Default::default()
    };
    let weights =
        ModelWeights { config, tok_emb, pos_emb: None, layers: layer_weights, norm, norm_bias: None, lm_head };
    weights.validate()?;
    Ok(weights)
}

/// Write weights back as a llama2.c legacy checkpoint (what `--save` and the page's download produce).
pub fn save(w: &ModelWeights) -> Result<Vec<u8>> {
    let c = &w.config;
    if c.arch != Arch::Llama || c.qkv_bias || c.o_bias {
        return Err(format_err("only plain Model models (no biases) can be written as llama2.c checkpoints"));
    }
    if c.head_dim.is_some() {
        return Err(format_err("llama2.c checkpoints cannot store a head size other than dim / n_heads"));
    }
    if c.rope_layout != RopeLayout::Adjacent {
        return Err(format_err(
            "only models with llama2.c's adjacent-pair RoPE layout can be written as llama2.c checkpoints",
        ));
    }
    let vocab = if c.tied_embeddings { c.vocab_size as i32 } else { -(c.vocab_size as i32) };
    let header = [
        c.dim as i32,
        c.hidden_dim as i32,
        c.n_layers as i32,
        c.n_heads as i32,
        c.n_kv_heads as i32,
        vocab,
        c.max_seq_len as i32,
    ];
    let mut out = Vec::new();
    header.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
    let mut put = |xs: &[f32]| xs.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
    put(&w.tok_emb);
    for i in 0..9 {
        w.layers.iter().for_each(|l| put(l.arrays()[i]));
    }
    put(&w.norm);
    // RoPE tables as run.c expects them (it ignores them, but its reader skips over them).
    let hs = c.dim / c.n_heads;
    let (mut re, mut im) = (Vec::new(), Vec::new());
    for pos in 0..c.max_seq_len {
        for j in 0..hs / 2 {
            let freq = 1.0 / (c.rope_theta as f32).powf((2 * j) as f32 / hs as f32);
            let val = pos as f32 * freq;
            re.push(val.cos());
            im.push(val.sin());
        }
    }
    put(&re);
    put(&im);
    if let Some(head) = &w.lm_head {
        put(head);
    }
    Ok(out)
}
