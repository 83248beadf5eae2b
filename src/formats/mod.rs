//! Model file formats. Each loader turns bytes into host-side [`crate::model::ModelWeights`]
//! (PyTorch layout, `[out, in]`) so the model itself never knows where its weights came from.

pub mod gguf;
mod gguf_model;
pub mod hf;
mod hf_config;
pub mod kquants;
pub mod llama2c;
pub mod peft;

/// Little-endian reader over a byte slice that reports truncation instead of panicking.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8], what: &'static str) -> Self {
        Self { bytes, pos: 0, what }
    }
    pub fn pos(&self) -> usize {
        self.pos
    }
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }
    pub fn take(&mut self, n: usize) -> crate::Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(crate::error::format_err(format!(
                "{} is truncated: needed {} more bytes at offset {}, but only {} remain",
                self.what,
                n,
                self.pos,
                self.remaining()
            )));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    pub fn i32(&mut self) -> crate::Result<i32> {
        Ok(i32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    pub fn f32(&mut self) -> crate::Result<f32> {
        Ok(f32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    pub fn f32s(&mut self, n: usize) -> crate::Result<Vec<f32>> {
        let bytes = self.take(
            n.checked_mul(4)
                .ok_or_else(|| crate::error::format_err(format!("{}: tensor size overflows", self.what)))?,
        )?;
        Ok(bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect())
    }
}
