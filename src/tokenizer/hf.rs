//! Hugging Face tokenizers (`tokenizer.json`, or one rebuilt from a GGUF file's vocabulary) via
//! the `tokenizers` crate, plus what `tokenizer_config.json` adds: the special tokens and the chat
//! template.

use std::collections::HashMap;

use serde_json::Value;
use tokenizers::DecoderWrapper;

use crate::Result;
use crate::error::format_err;

#[derive(Debug, Clone)]
pub struct HfTokenizer {
    inner: tokenizers::Tokenizer,
    eos_id: u32,
    eos_text: String,
    pad_id: u32,
    bos_text: Option<String>,
    chat_template: Option<String>,
    /// Byte-level BPE (GPT-2 style): token strings encode bytes through GPT-2's printable map.
    byte_level: bool,
    byte_of_char: HashMap<char, u8>,
    /// The largest id the post-processor's template inserts (it need not be in the vocabulary).
    template_max_id: Option<u32>,
}

/// A special-token field of tokenizer_config.json: a string or `{"content": ...}`.
fn token_field(cfg: &Value, key: &str) -> Option<String> {
    match cfg.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

/// GPT-2's `bytes_to_unicode`: every byte gets a printable character; the inverse decodes tokens.
fn byte_level_map() -> HashMap<char, u8> {
    let mut printable: Vec<u32> = (b'!' as u32..=b'~' as u32).chain(0xA1..=0xAC).chain(0xAE..=0xFF).collect();
    let mut chars = printable.clone();
    let mut n = 0;
    for b in 0..=255u32 {
        if !printable.contains(&b) {
            printable.push(b);
            chars.push(256 + n);
            n += 1;
        }
    }
    printable.into_iter().zip(chars).map(|(b, c)| (char::from_u32(c).unwrap(), b as u8)).collect()
}

impl HfTokenizer {
    /// `tokenizer_json`: the tokenizer itself; `config`: tokenizer_config.json (may be `Null`);
    /// `eos_fallback`: the model config's `eos_token_id` when tokenizer_config names none.
    pub fn new(mut inner: tokenizers::Tokenizer, config: &Value, eos_fallback: Option<u32>) -> Result<Self> {
        // transformers turns both off unless a call asks for them; batching pads and truncates
        // itself (a tokenizer.json padding to a fixed 10^9 tokens would otherwise allocate 4 GB).
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| format_err(format!("tokenizer.json: cannot turn truncation off: {e}")))?;
        let lookup = |text: &str| inner.token_to_id(text);
        let eos_text = token_field(config, "eos_token");
        let eos_id = match &eos_text {
            Some(t) => lookup(t).ok_or_else(|| {
                format_err(format!("tokenizer_config.json names eos_token {t:?}, which is not in the vocabulary"))
            })?,
            None => eos_fallback.ok_or_else(|| {
                format_err(
                    "no end-of-sequence token: tokenizer_config.json has no eos_token and config.json no eos_token_id",
                )
            })?,
        };
        let eos_text = match eos_text {
            Some(t) => t,
            None => inner
                .id_to_token(eos_id)
                .ok_or_else(|| format_err(format!("eos_token_id {eos_id} is not in the vocabulary")))?,
        };
        // TRL pads with EOS when the tokenizer has no pad token.
        let pad_id = token_field(config, "pad_token").and_then(|t| lookup(&t)).unwrap_or(eos_id);
        let chat_template = match config.get("chat_template") {
            Some(Value::String(s)) => Some(s.clone()),
            // A list of named templates: the "default" one.
            Some(Value::Array(list)) => list
                .iter()
                .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                .and_then(|t| t.get("template")?.as_str().map(str::to_string)),
            _ => None,
        };
        let byte_level = matches!(inner.get_decoder(), Some(DecoderWrapper::ByteLevel(_)));
        Ok(Self {
            eos_id,
            eos_text,
            pad_id,
            bos_text: token_field(config, "bos_token"),
            chat_template,
            byte_level,
            byte_of_char: if byte_level { byte_level_map() } else { HashMap::new() },
            template_max_id: None,
            inner,
        })
    }

    pub fn from_json(tokenizer_json: &[u8], config: &Value, eos_fallback: Option<u32>) -> Result<Self> {
        let tokenizer_json = tokenizer_json.strip_prefix(b"\xEF\xBB\xBF".as_slice()).unwrap_or(tokenizer_json);
        let template_max = super::guard::check_tokenizer_json(tokenizer_json)?;
        let inner = tokenizers::Tokenizer::from_bytes(tokenizer_json)
            .map_err(|e| format_err(format!("tokenizer.json cannot be read: {e}")))?;
        let mut t = Self::new(inner, config, eos_fallback)?;
        t.template_max_id = template_max;
        Ok(t)
    }

    pub fn encode(&self, text: &str, add_special: bool) -> Result<Vec<u32>> {
        self.inner
            .encode(text, add_special)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| crate::Error::Data(format!("the tokenizer cannot encode this text: {e}")))
    }

    pub fn max_id(&self) -> Option<u32> {
        self.inner.get_vocab(true).values().copied().max().max(self.template_max_id)
    }

    /// Bytes of one token. Byte-level BPE maps characters back to bytes; SentencePiece-style
    /// vocabularies use `▁` for spaces and `<0xNN>` byte tokens.
    pub fn piece_bytes(&self, token: u32) -> Vec<u8> {
        let Some(piece) = self.inner.id_to_token(token) else { return Vec::new() };
        if self.byte_level {
            if let Some(bytes) = piece.chars().map(|c| self.byte_of_char.get(&c).copied()).collect::<Option<Vec<u8>>>()
            {
                return bytes;
            }
            return piece.into_bytes(); // an added token such as <|im_end|>
        }
        if piece.len() == 6
            && piece.starts_with("<0x")
            && piece.ends_with('>')
            && let Ok(b) = u8::from_str_radix(&piece[3..5], 16)
        {
            return vec![b];
        }
        piece.replace('\u{2581}', " ").into_bytes()
    }

    pub fn decode(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids.iter().flat_map(|&t| self.piece_bytes(t)).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    pub fn eos_id(&self) -> u32 {
        self.eos_id
    }
    pub fn eos_text(&self) -> String {
        self.eos_text.clone()
    }
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }
    pub fn bos_text(&self) -> Option<&str> {
        self.bos_text.as_deref()
    }
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.inner.token_to_id(text)
    }
    /// The tokenizer as `tokenizer.json` (for merged-model export).
    pub fn to_json(&self) -> Result<String> {
        self.inner.to_string(false).map_err(|e| format_err(format!("cannot serialize the tokenizer: {e}")))
    }
}
