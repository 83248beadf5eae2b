//! GGUF (llama.cpp) files, the container: metadata, the tensor table checked against the file,
//! tensors dequantized to f32 (F32, F16, BF16, Q8_0, Q4_0, Q4_1; Q5_0, Q5_1 and the k-quants in
//! `kquants.rs`). What the tensors and keys mean per architecture, and the embedded tokenizer, is
//! `gguf_model.rs`.

use std::collections::HashMap;

use super::Reader;
pub use super::gguf_model::load;
use crate::Result;
use crate::error::format_err;

const MAGIC: &[u8; 4] = b"GGUF";
const QK: usize = 32;

/// A metadata value (arrays of numbers are kept as f64, of strings as strings).
#[derive(Debug, Clone)]
pub enum Meta {
    Num(f64),
    Bool(bool),
    Str(String),
    Nums(Vec<f64>),
    Strs(Vec<String>),
}

struct TensorInfo {
    /// ggml order: `dims[0]` is the fastest-moving (a `[out, in]` matrix has dims `[in, out]`).
    dims: Vec<usize>,
    kind: u32,
    offset: usize,
}

pub struct Gguf<'a> {
    pub meta: HashMap<String, Meta>,
    tensors: HashMap<String, TensorInfo>,
    data: &'a [u8],
    /// Names of the tensors read so far: one never read is a weight the model would leave out.
    read: std::cell::RefCell<std::collections::BTreeSet<String>>,
}

impl Reader<'_> {
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn len(&mut self) -> Result<usize> {
        let n = self.u64()?;
        // Every element takes at least one byte, so a count past the file size is corruption.
        if n as usize > self.remaining() {
            return Err(format_err(format!(
                "GGUF: a length of {n} at offset {} runs past the end of the file",
                self.pos()
            )));
        }
        Ok(n as usize)
    }
    fn string(&mut self) -> Result<String> {
        let n = self.len()?;
        Ok(String::from_utf8_lossy(self.take(n)?).into_owned())
    }
    fn scalar(&mut self, ty: u32) -> Result<Option<f64>> {
        Ok(Some(match ty {
            0 => self.take(1)?[0] as f64,
            1 => self.take(1)?[0] as i8 as f64,
            2 => u16::from_le_bytes(self.take(2)?.try_into().unwrap()) as f64,
            3 => i16::from_le_bytes(self.take(2)?.try_into().unwrap()) as f64,
            4 => self.u32()? as f64,
            5 => self.i32()? as f64,
            6 => self.f32()? as f64,
            7 => self.take(1)?[0] as f64,
            10 => self.u64()? as f64,
            11 => self.u64()? as i64 as f64,
            12 => f64::from_le_bytes(self.take(8)?.try_into().unwrap()),
            _ => return Ok(None),
        }))
    }
    fn value(&mut self, ty: u32) -> Result<Meta> {
        Ok(match ty {
            7 => Meta::Bool(self.take(1)?[0] != 0),
            8 => Meta::Str(self.string()?),
            9 => {
                let inner = self.u32()?;
                let n = self.len()?;
                // Each element takes at least its own width (a string, its 8-byte length): a count
                // the rest of the file cannot hold is refused before anything is reserved for it.
                let width = match inner {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    _ => 8,
                };
                if n.saturating_mul(width) > self.remaining() {
                    return Err(format_err(format!(
                        "GGUF: an array of {n} elements at offset {} runs past the end of the file",
                        self.pos()
                    )));
                }
                if inner == 8 {
                    let mut v = Vec::with_capacity(n);
                    for _ in 0..n {
                        v.push(self.string()?);
                    }
                    Meta::Strs(v)
                } else {
                    // f64 per element: reserve in proportion to what was read, not what is claimed.
                    let mut v = Vec::with_capacity(n.min(1 << 16));
                    for _ in 0..n {
                        v.push(
                            self.scalar(inner)?
                                .ok_or_else(|| format_err(format!("GGUF: unknown array element type {inner}")))?,
                        );
                    }
                    Meta::Nums(v)
                }
            }
            t => {
                Meta::Num(self.scalar(t)?.ok_or_else(|| format_err(format!("GGUF: unknown metadata value type {t}")))?)
            }
        })
    }
}

pub(crate) fn f16(b: &[u8]) -> f32 {
    half::f16::from_le_bytes([b[0], b[1]]).to_f32()
}

/// `(bytes per block, values per block)` of the ggml types the engine reads.
fn block_layout(kind: u32) -> Option<(usize, usize)> {
    Some(match kind {
        0 => (4, 1),
        1 | 30 => (2, 1),
        2 => (18, QK),
        3 => (20, QK),
        8 => (34, QK),
        k => return super::kquants::layout(k),
    })
}

/// A readable name for a ggml type the engine does not read (the I-quants, mostly).
fn type_name(kind: u32) -> String {
    let name = match kind {
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        29 => "IQ1_M",
        34 => "TQ1_0",
        35 => "TQ2_0",
        _ => return format!("type {kind}"),
    };
    name.to_string()
}

/// Dequantize `n` values of ggml type `kind` from `bytes`.
pub fn dequantize(kind: u32, bytes: &[u8], n: usize) -> Result<Vec<f32>> {
    let (block_bytes, block_len) = block_layout(kind).ok_or_else(|| {
        format_err(format!(
            "GGUF tensors of {} are not supported (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 and the \
             k-quants Q2_K-Q6_K are; I-quants need lookup grids this engine does not carry): download a \
             Q4_K_M, Q5_K_M, Q6_K or Q8_0 file of the model instead, or re-quantize with llama-quantize",
            type_name(kind)
        ))
    })?;
    if !n.is_multiple_of(block_len) || bytes.len() < n / block_len * block_bytes {
        return Err(format_err("GGUF: tensor data is shorter than its shape implies"));
    }
    let blocks = bytes[..n / block_len * block_bytes].chunks_exact(block_bytes);
    let mut out = Vec::with_capacity(n);
    match kind {
        0 => out.extend(blocks.map(|c| f32::from_le_bytes(c.try_into().unwrap()))),
        1 => out.extend(blocks.map(f16)),
        30 => out.extend(blocks.map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())),
        // Q4_0: scale d, 16 bytes of nibbles; low nibbles are values 0..16, high nibbles 16..32.
        2 => blocks.for_each(|b| {
            let d = f16(b);
            let q = &b[2..];
            out.extend(q.iter().map(|x| ((x & 0xF) as i32 - 8) as f32 * d));
            out.extend(q.iter().map(|x| ((x >> 4) as i32 - 8) as f32 * d));
        }),
        // Q4_1: scale d and minimum m.
        3 => blocks.for_each(|b| {
            let (d, m) = (f16(b), f16(&b[2..]));
            let q = &b[4..];
            out.extend(q.iter().map(|x| (x & 0xF) as f32 * d + m));
            out.extend(q.iter().map(|x| (x >> 4) as f32 * d + m));
        }),
        // Q8_0: scale d, 32 signed bytes.
        8 => blocks.for_each(|b| {
            let d = f16(b);
            out.extend(b[2..].iter().map(|&x| x as i8 as f32 * d));
        }),
        k => blocks.for_each(|b| super::kquants::block(k, b, &mut out)),
    }
    Ok(out)
}

/// Values in a tensor of ggml dims `dims`, or `None` when the product overflows.
fn elements(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// Bytes a tensor of `n` values of type `kind` takes (`None`: unknown type, or not whole blocks).
fn data_size(kind: u32, n: usize) -> Option<usize> {
    let (bytes, len) = block_layout(kind)?;
    n.is_multiple_of(len).then(|| n / len * bytes)
}

/// Every tensor's bytes must lie inside the data section, start aligned, and fill the space up
/// to the next tensor (llama.cpp packs them): a tensor whose declared type does not match the
/// bytes it was given (a Q8_0 header over F32 data, say) is refused instead of read as noise.
fn check_extents(tensors: &HashMap<String, TensorInfo>, data_len: usize, align: usize) -> Result<()> {
    let mut spans = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let n = elements(&t.dims).ok_or_else(|| format_err(format!("GGUF tensor {name:?}: its shape overflows")))?;
        // Unknown types (K-quants, ...) are refused when read; only their start can be checked here.
        let size = data_size(t.kind, n);
        if block_layout(t.kind).is_some() && size.is_none() {
            return Err(format_err(format!(
                "GGUF tensor {name:?}: {n} values are not whole blocks of its type {}",
                t.kind
            )));
        }
        if t.offset % align != 0 {
            return Err(format_err(format!(
                "GGUF tensor {name:?} starts at offset {}, not aligned to {align}",
                t.offset
            )));
        }
        spans.push((t.offset, size, name));
    }
    spans.sort();
    for (i, (offset, size, name)) in spans.iter().enumerate() {
        let Some(size) = size else { continue };
        let end = offset.checked_add(*size).filter(|&e| e <= data_len).ok_or_else(|| {
            format_err(format!(
                "GGUF tensor {name:?} ({size} bytes at offset {offset}) lies outside the file's {data_len} bytes of \
                 tensor data: the file is truncated (re-download it) or its header is corrupt"
            ))
        })?;
        let room = spans.get(i + 1).map_or(data_len, |next| next.0);
        if room < end || room - end >= align.max(1) && i + 1 < spans.len() {
            return Err(format_err(format!(
                "GGUF tensor {name:?}: its type and shape need {size} bytes but the file gives it {}: the declared \
                 type does not match the data (corrupt header)",
                room - offset
            )));
        }
    }
    Ok(())
}

impl<'a> Gguf<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        if bytes.len() < 4 || &bytes[..4] != MAGIC {
            return Err(format_err("not a GGUF file (it does not start with \"GGUF\")"));
        }
        let mut r = Reader::new(&bytes[4..], "the GGUF file");
        let version = r.u32()?;
        if !(2..=3).contains(&version) {
            return Err(format_err(format!("GGUF version {version} is not supported (2 and 3 are)")));
        }
        let n_tensors = r.len()?;
        let n_kv = r.len()?;
        let mut meta = HashMap::new();
        for _ in 0..n_kv {
            let key = r.string()?;
            let ty = r.u32()?;
            meta.insert(key, r.value(ty)?);
        }
        let mut tensors = HashMap::new();
        for _ in 0..n_tensors {
            let name = r.string()?;
            let nd = r.u32()? as usize;
            if nd > 4 {
                return Err(format_err(format!("GGUF tensor {name:?} has {nd} dimensions (at most 4)")));
            }
            let dims = (0..nd).map(|_| r.u64().map(|d| d as usize)).collect::<Result<Vec<_>>>()?;
            let kind = r.u32()?;
            let offset = r.u64()? as usize;
            if tensors.insert(name.clone(), TensorInfo { dims, kind, offset }).is_some() {
                return Err(format_err(format!("GGUF tensor {name:?} is listed twice")));
            }
        }
        let align = match meta.get("general.alignment") {
            Some(Meta::Num(a)) if *a >= 1.0 && *a <= 65536.0 && (*a as usize).is_power_of_two() => *a as usize,
            Some(other) => {
                return Err(format_err(format!("GGUF general.alignment {other:?} is not a power of two up to 65536")));
            }
            None => 32,
        };
        let start = (4 + r.pos()).div_ceil(align) * align;
        let data = bytes.get(start..).ok_or_else(|| format_err("GGUF: the file ends before its tensor data"))?;
        check_extents(&tensors, data.len(), align)?;
        Ok(Self { meta, tensors, data, read: Default::default() })
    }

    pub(crate) fn num(&self, key: &str) -> Option<f64> {
        match self.meta.get(key) {
            Some(Meta::Num(v)) => Some(*v),
            _ => None,
        }
    }
    pub(crate) fn str(&self, key: &str) -> Option<&str> {
        match self.meta.get(key) {
            Some(Meta::Str(s)) => Some(s),
            _ => None,
        }
    }

    pub fn has_tensor(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Tensor `name` as f32, checked against the expected PyTorch-order shape.
    pub fn tensor(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let info = self.tensors.get(name).ok_or_else(|| format_err(format!("the GGUF file has no tensor {name}")))?;
        self.read.borrow_mut().insert(name.to_string());
        let torch_shape: Vec<usize> = info.dims.iter().rev().copied().collect();
        if torch_shape != shape {
            return Err(format_err(format!("GGUF tensor {name} has shape {torch_shape:?}, expected {shape:?}")));
        }
        let n = elements(shape).ok_or_else(|| format_err(format!("GGUF tensor {name}: its shape overflows")))?;
        // Unknown types fall through to dequantize, which names the type and what to do.
        let size = data_size(info.kind, n).unwrap_or(0);
        let bytes = info
            .offset
            .checked_add(size)
            .and_then(|end| self.data.get(info.offset..end))
            .ok_or_else(|| format_err(format!("GGUF tensor {name} lies outside the file (truncated download?)")))?;
        dequantize(info.kind, bytes, n)
    }

    pub fn tensor_opt(&self, name: &str, shape: &[usize]) -> Result<Option<Vec<f32>>> {
        if self.has_tensor(name) { self.tensor(name, shape).map(Some) } else { Ok(None) }
    }

    /// Refuse a file with tensors the model did not read (biases of an architecture that has
    /// none, say): computing without them would be silently wrong.
    pub(crate) fn check_all_read(&self) -> Result<()> {
        let read = self.read.borrow();
        let mut unused: Vec<&String> =
            self.tensors.keys().filter(|n| !read.contains(*n) && !n.ends_with("attn_rot_embd")).collect();
        unused.sort();
        if unused.is_empty() {
            return Ok(());
        }
        Err(format_err(format!(
            "the GGUF file has {} tensor(s) its architecture does not use ({}{}): they would be left out of the computation",
            unused.len(),
            unused.iter().take(4).map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
            if unused.len() > 4 { ", ..." } else { "" }
        )))
    }
}
