//! llama.cpp's k-quants (super-blocks of 256 values: Q2_K … Q6_K, Q8_K) and the 5-bit legacy
//! types (Q5_0, Q5_1), dequantized to f32 exactly as ggml and the `gguf` Python package do —
//! `tests/reference/kquants.py` checks every type on random blocks. Any bytes are a valid block,
//! so there is nothing to validate beyond the block count.

use super::gguf::f16;

/// Values per k-quant super-block.
pub const QK_K: usize = 256;

/// `(bytes per block, values per block)` of the types this module reads.
pub fn layout(kind: u32) -> Option<(usize, usize)> {
    Some(match kind {
        6 => (22, 32),     // Q5_0
        7 => (24, 32),     // Q5_1
        10 => (84, QK_K),  // Q2_K
        11 => (110, QK_K), // Q3_K
        12 => (144, QK_K), // Q4_K
        13 => (176, QK_K), // Q5_K
        14 => (210, QK_K), // Q6_K
        15 => (292, QK_K), // Q8_K
        _ => return None,
    })
}

/// Dequantize one block of `kind` (a type [`layout`] knows) onto `out`.
pub fn block(kind: u32, b: &[u8], out: &mut Vec<f32>) {
    match kind {
        6 => q5_0(b, out),
        7 => q5_1(b, out),
        10 => q2_k(b, out),
        11 => q3_k(b, out),
        12 => q4_k(b, out),
        13 => q5_k(b, out),
        14 => q6_k(b, out),
        15 => {
            let d = f32::from_le_bytes(b[..4].try_into().unwrap());
            out.extend(b[4..4 + QK_K].iter().map(|&q| d * q as i8 as f32));
        }
        _ => unreachable!("layout() admits only the types above"),
    }
}

/// Q5_0: scale d, 32 high bits, 16 bytes of low nibbles; value = (q − 16)·d.
fn q5_0(b: &[u8], out: &mut Vec<f32>) {
    let d = f16(b);
    let qh = u32::from_le_bytes(b[2..6].try_into().unwrap());
    let qs = &b[6..22];
    let q = |j: usize, hi: bool| {
        let nib = if hi { qs[j] >> 4 } else { qs[j] & 0xF } as u32;
        let bit = (qh >> (j + if hi { 16 } else { 0 })) & 1;
        (nib | (bit << 4)) as i32 - 16
    };
    out.extend((0..16).map(|j| q(j, false) as f32 * d));
    out.extend((0..16).map(|j| q(j, true) as f32 * d));
}

/// Q5_1: scale d, minimum m, then as Q5_0 without the offset; value = q·d + m.
fn q5_1(b: &[u8], out: &mut Vec<f32>) {
    let (d, m) = (f16(b), f16(&b[2..]));
    let qh = u32::from_le_bytes(b[4..8].try_into().unwrap());
    let qs = &b[8..24];
    let q = |j: usize, hi: bool| {
        let nib = if hi { qs[j] >> 4 } else { qs[j] & 0xF } as u32;
        (nib | (((qh >> (j + if hi { 16 } else { 0 })) & 1) << 4)) as f32
    };
    out.extend((0..16).map(|j| q(j, false) * d + m));
    out.extend((0..16).map(|j| q(j, true) * d + m));
}

/// Q2_K: 16 scale bytes (low nibble scale, high nibble min, per 16 values), 64 bytes of 2-bit
/// values, d and dmin. Value i = j·128 + s·32 + l sits in byte j·32 + l at bit 2s.
fn q2_k(b: &[u8], out: &mut Vec<f32>) {
    let (scales, qs) = (&b[..16], &b[16..80]);
    let (d, dmin) = (f16(&b[80..]), f16(&b[82..]));
    for i in 0..QK_K {
        let (j, s, l) = (i / 128, (i / 32) % 4, i % 32);
        let q = ((qs[j * 32 + l] >> (2 * s)) & 3) as f32;
        let sc = scales[i / 16];
        out.push(d * (sc & 0xF) as f32 * q - dmin * (sc >> 4) as f32);
    }
}

/// Q3_K: a high-bit mask (32 bytes), 2-bit low values (64), 12 bytes of packed 6-bit signed
/// scales, d. A set mask bit means no offset; a clear one subtracts 4.
fn q3_k(b: &[u8], out: &mut Vec<f32>) {
    let (hmask, qs, packed) = (&b[..32], &b[32..96], &b[96..108]);
    let d = f16(&b[108..]);
    let scale = |g: usize| {
        let low = if g < 8 { packed[g] & 0xF } else { packed[g - 8] >> 4 };
        let high = (packed[8 + g % 4] >> (2 * (g / 4))) & 3;
        ((low | (high << 4)) as i8 - 32) as f32
    };
    for i in 0..QK_K {
        let (j, s, l) = (i / 128, (i / 32) % 4, i % 32);
        let low = ((qs[j * 32 + l] >> (2 * s)) & 3) as i8;
        let high = ((hmask[i % 32] >> (i / 32)) & 1) ^ 1;
        let q = (low - ((high << 2) as i8)) as f32;
        out.push(d * scale(i / 16) * q);
    }
}

/// The 6-bit scales and mins of Q4_K / Q5_K, 8 of each packed in 12 bytes.
fn scale_min(packed: &[u8]) -> ([f32; 8], [f32; 8]) {
    let (d, m, md) = (&packed[..4], &packed[4..8], &packed[8..12]);
    let mut sc = [0f32; 8];
    let mut mn = [0f32; 8];
    for k in 0..4 {
        sc[k] = (d[k] & 0x3F) as f32;
        sc[k + 4] = ((md[k] & 0x0F) | ((d[k] >> 2) & 0x30)) as f32;
        mn[k] = (m[k] & 0x3F) as f32;
        mn[k + 4] = ((md[k] >> 4) | ((m[k] >> 2) & 0x30)) as f32;
    }
    (sc, mn)
}

/// Q4_K: d, dmin, packed scales/mins, 128 bytes of nibbles. Value i = j·64 + s·32 + l is the
/// nibble s of byte j·32 + l; group i/32 has its own scale and min.
fn q4_k(b: &[u8], out: &mut Vec<f32>) {
    let (d, dmin) = (f16(b), f16(&b[2..]));
    let (sc, mn) = scale_min(&b[4..16]);
    let qs = &b[16..144];
    for i in 0..QK_K {
        let (j, s, l, g) = (i / 64, (i / 32) % 2, i % 32, i / 32);
        let q = ((qs[j * 32 + l] >> (4 * s)) & 0xF) as f32;
        out.push(d * sc[g] * q - dmin * mn[g]);
    }
}

/// Q5_K: as Q4_K plus a fifth bit per value from 32 bytes of high bits (bit i/32 of byte i%32).
fn q5_k(b: &[u8], out: &mut Vec<f32>) {
    let (d, dmin) = (f16(b), f16(&b[2..]));
    let (sc, mn) = scale_min(&b[4..16]);
    let (qh, qs) = (&b[16..48], &b[48..176]);
    for i in 0..QK_K {
        let (j, s, l, g) = (i / 64, (i / 32) % 2, i % 32, i / 32);
        let low = (qs[j * 32 + l] >> (4 * s)) & 0xF;
        let high = (qh[i % 32] >> (i / 32)) & 1;
        out.push(d * sc[g] * (low | (high << 4)) as f32 - dmin * mn[g]);
    }
}

/// Q6_K: 128 bytes of low nibbles, 64 of 2-bit highs, 16 signed scales, d; q − 32.
fn q6_k(b: &[u8], out: &mut Vec<f32>) {
    let (ql, qh, scales) = (&b[..128], &b[128..192], &b[192..208]);
    let d = f16(&b[208..]);
    for i in 0..QK_K {
        let (j, r) = (i / 128, i % 128);
        let low = (ql[j * 64 + r % 64] >> (4 * (r / 64))) & 0xF;
        let high = (qh[j * 32 + r % 32] >> (2 * (r / 32))) & 3;
        let q = ((low | (high << 4)) as i8 - 32) as f32;
        out.push(d * scales[i / 16] as i8 as f32 * q);
    }
}
