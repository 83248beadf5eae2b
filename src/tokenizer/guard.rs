//! Checks on a `tokenizer.json` before the `tokenizers` crate sees it. The crate assumes files
//! written by itself and panics on some malformed ones; in the browser a panic kills the worker,
//! so every construct found (by the fuzz harness) to panic it is refused here with a message.

use serde_json::Value;

use crate::Result;
use crate::error::format_err;

fn bad(msg: String) -> crate::Error {
    format_err(format!("tokenizer.json is malformed: {msg}"))
}

/// Walk the normalizer / pre-tokenizer / decoder trees (they nest through `Sequence`).
fn walk(v: &Value, f: &mut impl FnMut(&serde_json::Map<String, Value>) -> Result<()>) -> Result<()> {
    match v {
        Value::Object(o) => {
            f(o)?;
            o.values().try_for_each(|c| walk(c, f))
        }
        Value::Array(a) => a.iter().try_for_each(|c| walk(c, f)),
        _ => Ok(()),
    }
}

/// Checks the file; returns the largest id its post-processor can insert (its template's
/// special tokens are outside the vocabulary's reach of `get_vocab`).
pub fn check_tokenizer_json(bytes: &[u8]) -> Result<Option<u32>> {
    // A syntax error inside the decoder panics the crate (an `expect` on its untagged helper).
    let root = serde_json::from_slice::<Value>(bytes)
        .map_err(|e| format_err(format!("tokenizer.json is not valid JSON: {e}")))?;
    if let Some(model) = root.get("model") {
        check_bpe_merges(model)?;
    }
    let mut max_id: Option<u32> = None;
    for part in ["normalizer", "pre_tokenizer", "decoder", "post_processor"] {
        let Some(tree) = root.get(part) else { continue };
        walk(tree, &mut |o| {
            match o.get("type").and_then(Value::as_str) {
                // An empty pattern matches between every character and never advances.
                Some("Replace") | Some("Split") => {
                    let pattern = o.get("pattern");
                    let empty = match pattern {
                        Some(Value::Object(p)) => p.values().any(|s| s.as_str().is_some_and(str::is_empty)),
                        Some(Value::String(s)) => s.is_empty(),
                        _ => false,
                    };
                    if empty {
                        return Err(bad(format!("a {part} {} step has an empty pattern", o["type"])));
                    }
                }
                // Anything the crate cannot parse here is an `expect` panic inside it.
                Some("Precompiled") => match o.get("precompiled_charsmap").and_then(Value::as_str) {
                    Some(map) => {
                        super::precompiled::check(map).map_err(|e| bad(format!("its Precompiled normalizer {e}")))?
                    }
                    None => return Err(bad("its Precompiled normalizer has no precompiled_charsmap string".into())),
                },
                // The template's special tokens are looked up by name when encoding (a panic if absent).
                Some("TemplateProcessing") => {
                    let defined = o.get("special_tokens").and_then(Value::as_object);
                    for part in ["single", "pair"] {
                        for piece in o.get(part).and_then(Value::as_array).into_iter().flatten() {
                            if let Some(id) =
                                piece.get("SpecialToken").and_then(|t| t.get("id")).and_then(Value::as_str)
                                && !defined.is_some_and(|d| d.contains_key(id))
                            {
                                return Err(bad(format!(
                                    "its post-processor template uses {id:?}, which its special_tokens do not define"
                                )));
                            }
                        }
                    }
                    for t in defined.into_iter().flat_map(|d| d.values()) {
                        for id in t.get("ids").and_then(Value::as_array).into_iter().flatten() {
                            let id = id
                                .as_u64()
                                .filter(|&i| i <= u32::MAX as u64)
                                .ok_or_else(|| bad(format!("a special token id {id} is not a token id")))?;
                            max_id = max_id.max(Some(id as u32));
                        }
                    }
                }
                _ => {}
            }
            Ok(())
        })?;
    }
    Ok(max_id)
}

/// The crate's BPE builder joins each merge pair into a buffer as long as the longest vocabulary
/// token, after cutting `continuing_subword_prefix` off the second token, without checking
/// either: a pair longer than every token, or a second token without the prefix, panics (or
/// slices UTF-8 apart). Real vocabularies contain every merge result, so these never hold there.
fn check_bpe_merges(model: &Value) -> Result<()> {
    let (Some(vocab), Some(merges)) =
        (model.get("vocab").and_then(Value::as_object), model.get("merges").and_then(Value::as_array))
    else {
        return Ok(());
    };
    let prefix = model.get("continuing_subword_prefix").and_then(Value::as_str).unwrap_or("");
    let longest = vocab.keys().map(String::len).max().unwrap_or(0);
    for (i, m) in merges.iter().enumerate() {
        let (a, b) = match m {
            Value::String(s) => match s.split_once(' ') {
                Some(p) => p,
                None => continue,
            },
            Value::Array(p) if p.len() == 2 => match (p[0].as_str(), p[1].as_str()) {
                (Some(a), Some(b)) => (a, b),
                _ => continue,
            },
            _ => continue,
        };
        // Pairs outside the vocabulary are reported by the crate itself, as errors.
        if !vocab.contains_key(a) || !vocab.contains_key(b) {
            continue;
        }
        if !b.starts_with(prefix) || a.len() + b.len() - prefix.len() > longest {
            return Err(bad(format!(
                "BPE merge {i} ({a:?} {b:?}) cannot form a vocabulary token (its second part lacks the continuing-subword \
                 prefix {prefix:?}, or the pair is longer than every token)"
            )));
        }
    }
    Ok(())
}
