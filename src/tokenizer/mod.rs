//! Tokenizers behind one type, so batching and generation do not care which family a model uses.

pub mod chat;
mod guard;
pub mod hf;
pub mod llama2c;
mod precompiled;

pub use chat::Message;
pub use hf::HfTokenizer;
pub use llama2c::Llama2cTokenizer;

use crate::Result;

#[derive(Debug, Clone)]
pub enum Tokenizer {
    Llama2c(Llama2cTokenizer),
    Hf(Box<HfTokenizer>),
}

impl Tokenizer {
    /// Token ids of `text`, with the tokenizer's special prefix (BOS) when `add_special`.
    pub fn encode(&self, text: &str, add_special: bool) -> Result<Vec<u32>> {
        match self {
            Tokenizer::Llama2c(t) => Ok(t.encode(text, add_special)),
            Tokenizer::Hf(t) => t.encode(text, add_special),
        }
    }
    /// The beginning-of-sequence token, when the tokenizer names one.
    pub fn bos_id(&self) -> Option<u32> {
        match self {
            Tokenizer::Llama2c(_) => Some(llama2c::BOS),
            Tokenizer::Hf(t) => t.bos_text().and_then(|b| t.token_id(b)),
        }
    }
    /// The largest id the tokenizer can produce (checked against the model's vocabulary).
    pub fn max_id(&self) -> Option<u32> {
        match self {
            Tokenizer::Llama2c(t) => t.vocab_size().checked_sub(1).map(|m| m as u32),
            Tokenizer::Hf(t) => t.max_id(),
        }
    }
    /// Text of `ids` as a continuation of `prev` (the token before them, if any).
    pub fn decode_after(&self, prev: Option<u32>, ids: &[u32]) -> String {
        match self {
            Tokenizer::Llama2c(t) => t.decode_after(prev, ids),
            Tokenizer::Hf(t) => t.decode(ids),
        }
    }
    /// Raw bytes of `token` printed after `prev` (for streaming; may be part of a UTF-8 char).
    pub fn piece_bytes(&self, prev: Option<u32>, token: u32) -> Vec<u8> {
        match self {
            Tokenizer::Llama2c(t) => t.piece_bytes(prev, token),
            Tokenizer::Hf(t) => t.piece_bytes(token),
        }
    }
    pub fn decode(&self, ids: &[u32]) -> String {
        self.decode_after(None, ids)
    }
    /// The token that ends a completion: what generation stops on and what KTO appends.
    pub fn eos_id(&self) -> u32 {
        match self {
            Tokenizer::Llama2c(t) => t.eos_id(),
            Tokenizer::Hf(t) => t.eos_id(),
        }
    }
    /// The text form of [`Self::eos_id`], appended to completions as TRL does.
    pub fn eos_text(&self) -> String {
        match self {
            Tokenizer::Llama2c(t) => t.eos_text(),
            Tokenizer::Hf(t) => t.eos_text(),
        }
    }
    /// Padding id for batches (TRL: the EOS id when the tokenizer has no pad token).
    pub fn pad_id(&self) -> u32 {
        match self {
            Tokenizer::Llama2c(t) => t.eos_id(),
            Tokenizer::Hf(t) => t.pad_id(),
        }
    }

    /// The chat template for instruct models: the model's own, or ChatML when the vocabulary has
    /// ChatML's markers; `None` for base models (chat mode is then unavailable).
    pub fn chat_template(&self) -> Option<&str> {
        match self {
            Tokenizer::Llama2c(_) => None,
            Tokenizer::Hf(t) => t.chat_template().or_else(|| t.token_id("<|im_start|>").map(|_| chat::CHATML)),
        }
    }

    fn template(&self) -> Result<(&str, Option<&str>)> {
        let template = self.chat_template().ok_or_else(|| {
            crate::error::config_err(
                "this model has no chat template (it is not an instruct model); turn chat mode off",
            )
        })?;
        let bos = match self {
            Tokenizer::Hf(t) => t.bos_text(),
            Tokenizer::Llama2c(_) => None,
        };
        Ok((template, bos))
    }

    /// A user message wrapped as the model's chat prompt, ready for the assistant's answer.
    pub fn chat_prompt(&self, user: &str) -> Result<String> {
        let (template, bos) = self.template()?;
        chat::render(template, &[Message::new("user", user)], true, bos, &self.eos_text())
    }

    /// TRL's conversational (prompt, completion) as text: the templated prompt with the generation
    /// prompt, and the assistant turn with its end token.
    pub fn chat_split(&self, prompt: &[Message], completion: &str) -> Result<(String, String)> {
        let (template, bos) = self.template()?;
        chat::split(template, prompt, completion, bos, &self.eos_text())
    }
    pub fn vocab_size(&self) -> usize {
        match self {
            Tokenizer::Llama2c(t) => t.vocab_size(),
            Tokenizer::Hf(t) => t.vocab_size(),
        }
    }
}
