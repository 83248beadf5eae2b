//! A sentiment judge for demos: the AFINN-165 lexicon (plus emoji scores) with the negation rule,
//! exactly as the npm package `sentiment` 5.x scores text. The lexicon is read from that package's
//! files (installed by the project's scripts), never vendored.

use std::collections::HashMap;

use crate::{Error, Result};

#[derive(Debug, Clone)]
pub struct Judge {
    scores: HashMap<String, i32>,
    negators: Vec<String>,
}

/// JavaScript's `\s`, which `sentiment` uses to collapse runs of whitespace.
fn js_space(c: char) -> bool {
    matches!(
        c,
        ' ' | '\t' | '\n' | '\u{0B}' | '\u{0C}' | '\r' | '\u{A0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200A}' | '\u{2028}' | '\u{2029}' | '\u{202F}' | '\u{205F}' | '\u{3000}' | '\u{FEFF}'
    )
}

impl Judge {
    /// `labels`: `languages/en/labels.json` (AFINN-165); `emoji`: `build/emoji.json`;
    /// `negators`: `languages/en/negators.json` — all from the `sentiment` package.
    pub fn from_json(labels: &str, emoji: &str, negators: &str) -> Result<Self> {
        let parse = |what: &str, text: &str| -> Result<HashMap<String, i32>> {
            serde_json::from_str(text)
                .map_err(|e| Error::Format(format!("the sentiment lexicon file {what} is not valid: {e}")))
        };
        let mut scores = parse("labels.json", labels)?;
        scores.extend(parse("emoji.json", emoji)?);
        let negators = parse("negators.json", negators)?.into_keys().collect();
        Ok(Self { scores, negators })
    }

    /// `sentiment`'s tokenizer: lowercase, punctuation to spaces, runs of whitespace to one space.
    pub fn tokenize(text: &str) -> Vec<String> {
        let lowered: String = text
            .to_lowercase()
            .chars()
            .map(|c| if c == '\n' || ".,/#!?$%^&*;:{}=_`\"~()".contains(c) { ' ' } else { c })
            .collect();
        let mut collapsed = String::with_capacity(lowered.len());
        let chars: Vec<char> = lowered.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            if js_space(chars[i]) && chars.get(i + 1).is_some_and(|&c| js_space(c)) {
                while i < chars.len() && js_space(chars[i]) {
                    i += 1;
                }
                collapsed.push(' ');
            } else {
                collapsed.push(chars[i]);
                i += 1;
            }
        }
        collapsed.trim_matches(js_space).split(' ').map(str::to_string).collect()
    }

    /// The AFINN score: the sum of word scores, a word's sign flipped after a negator ("not good").
    pub fn score(&self, text: &str) -> i32 {
        let tokens = Self::tokenize(text);
        let mut total = 0;
        for (i, t) in tokens.iter().enumerate() {
            if let Some(&s) = self.scores.get(t) {
                let negated = i > 0 && self.negators.iter().any(|n| n == &tokens[i - 1]);
                total += if negated { -s } else { s };
            }
        }
        total
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Judge {
    /// The lexicon from the installed npm package (`$KTO_SENTIMENT_DIR` or `node_modules/sentiment`).
    pub fn afinn() -> Result<Self> {
        let dir = std::env::var("KTO_SENTIMENT_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|_| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("node_modules/sentiment"));
        let read = |p: &str| {
            std::fs::read_to_string(dir.join(p)).map_err(|e| {
                Error::Config(format!(
                    "cannot read the AFINN lexicon {} ({e}); run scripts/setup.sh (it installs the npm package sentiment)",
                    dir.join(p).display()
                ))
            })
        };
        Self::from_json(
            &read("languages/en/labels.json")?,
            &read("build/emoji.json")?,
            &read("languages/en/negators.json")?,
        )
    }
}
