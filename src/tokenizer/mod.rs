//! Tokenizers behind one type, so batching and generation do not care which family a model uses.

pub mod llama2c;

pub use llama2c::Llama2cTokenizer;

#[derive(Debug, Clone)]
pub enum Tokenizer {
    Llama2c(Llama2cTokenizer),
}

impl Tokenizer {
    /// Token ids of `text`, with the tokenizer's special prefix (BOS) when `add_special`.
    pub fn encode(&self, text: &str, add_special: bool) -> Vec<u32> {
        match self {
            Tokenizer::Llama2c(t) => t.encode(text, add_special),
        }
    }
    /// Text of `ids` as a continuation of `prev` (the token before them, if any).
    pub fn decode_after(&self, prev: Option<u32>, ids: &[u32]) -> String {
        match self {
            Tokenizer::Llama2c(t) => t.decode_after(prev, ids),
        }
    }
    /// Raw bytes of `token` printed after `prev` (for streaming; may be part of a UTF-8 char).
    pub fn piece_bytes(&self, prev: Option<u32>, token: u32) -> Vec<u8> {
        match self {
            Tokenizer::Llama2c(t) => t.piece_bytes(prev, token),
        }
    }
    pub fn decode(&self, ids: &[u32]) -> String {
        self.decode_after(None, ids)
    }
    /// The token that ends a completion: what generation stops on and what KTO appends.
    pub fn eos_id(&self) -> u32 {
        match self {
            Tokenizer::Llama2c(t) => t.eos_id(),
        }
    }
    /// The text form of [`Self::eos_id`], appended to completions as TRL does.
    pub fn eos_text(&self) -> String {
        match self {
            Tokenizer::Llama2c(t) => t.eos_text(),
        }
    }
    /// Padding id for batches (TRL: the EOS id when the tokenizer has no pad token).
    pub fn pad_id(&self) -> u32 {
        self.eos_id()
    }
    pub fn vocab_size(&self) -> usize {
        match self {
            Tokenizer::Llama2c(t) => t.vocab_size(),
        }
    }
}
