//! TRL's unpaired preference rows `{"prompt", "completion", "label"}` as JSONL, in its standard
//! form (text) or its conversational form (`prompt` and `completion` as lists of `{role, content}`
//! messages, which are always trained through the model's chat template, as TRL does). Paired rows
//! `{"prompt", "chosen", "rejected"}` are unpaired into two rows, as TRL's
//! `unpair_preference_dataset` does (here each pair's two rows stay adjacent; TRL emits a
//! 1000-row block's chosen rows before its rejected ones, which only changes the order).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::tokenizer::Message;
use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KtoExample {
    /// The prompt's text (conversational rows: the last message's content, for display).
    pub prompt: String,
    /// The completion's text (conversational rows: the assistant's reply).
    pub completion: String,
    /// true = desirable (👍), false = undesirable (👎)
    pub label: bool,
    /// A conversational row's messages (TRL's conversational format).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Conversation>,
}

/// The messages of a conversational row: the prompt's turns and the one assistant reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    pub prompt: Vec<Message>,
    pub completion: Vec<Message>,
}

impl KtoExample {
    /// A conversational row (the page's chat-mode labels, an imported chat dataset).
    pub fn chat(prompt: Vec<Message>, reply: &str, label: bool) -> Self {
        let last = prompt.last().map(|m| m.content.clone()).unwrap_or_default();
        let completion = vec![Message::new("assistant", reply)];
        Self { prompt: last, completion: reply.into(), label, messages: Some(Conversation { prompt, completion }) }
    }
}

/// A message list field of a conversational row.
fn messages_field(obj: &serde_json::Map<String, Value>, key: &str, line: usize) -> Result<Vec<Message>> {
    let bad = || row_err(line, format!("field \"{key}\" must be text or a list of {{\"role\", \"content\"}} messages"));
    let list: Vec<Message> = serde_json::from_value(obj.get(key).cloned().ok_or_else(bad)?).map_err(|_| bad())?;
    if list.is_empty() {
        return Err(row_err(line, format!("field \"{key}\" has no messages")));
    }
    Ok(list)
}

fn row_err(line: usize, msg: impl std::fmt::Display) -> Error {
    Error::Data(format!("JSONL line {line}: {msg}"))
}

fn string_field(obj: &serde_json::Map<String, Value>, key: &str, line: usize) -> Result<String> {
    match obj.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(row_err(line, format!("field \"{key}\" must be a string, got {other}"))),
        None => Err(row_err(line, format!("missing field \"{key}\""))),
    }
}

/// Parse JSONL bytes as a file holds them: a UTF-8 byte-order mark is skipped, and bytes that
/// are not UTF-8 are reported with their line number.
pub fn parse_jsonl_bytes(bytes: &[u8]) -> Result<Vec<KtoExample>> {
    match std::str::from_utf8(bytes) {
        Ok(text) => parse_jsonl(text),
        Err(e) => {
            let line = bytes[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count() + 1;
            Err(row_err(line, "is not UTF-8 text (save the file as UTF-8)"))
        }
    }
}

/// Parse JSONL text; blank lines are skipped, any bad row is an error naming its line number.
pub fn parse_jsonl(text: &str) -> Result<Vec<KtoExample>> {
    let report = parse_jsonl_report(text);
    match report.errors.as_slice() {
        [] => Ok(report.rows),
        [only] => Err(Error::Data(only.clone())),
        [first, rest @ ..] => Err(Error::Data(format!("{first} (and {} more bad lines)", rest.len()))),
    }
}

/// What a JSONL file held, line by line: the good rows, every bad line's error, and how many
/// paired rows were split in two (the page's import confirms all of it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JsonlReport {
    pub rows: Vec<KtoExample>,
    pub errors: Vec<String>,
    /// Paired `{"prompt", "chosen", "rejected"}` lines, each now two rows.
    pub paired: usize,
    /// Non-blank lines read.
    pub lines: usize,
}

pub fn parse_jsonl_report(text: &str) -> JsonlReport {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut report = JsonlReport::default();
    for (i, raw) in text.lines().enumerate().filter(|(_, raw)| !raw.trim().is_empty()) {
        report.lines += 1;
        match parse_line(raw, i + 1) {
            Ok(rows) => {
                report.paired += usize::from(rows.len() == 2);
                report.rows.extend(rows);
            }
            Err(e) => report.errors.push(e.to_string()),
        }
    }
    report
}

/// One line: an unpaired row, or a paired row as its two unpaired rows.
fn parse_line(raw: &str, line: usize) -> Result<Vec<KtoExample>> {
    let value: Value = serde_json::from_str(raw).map_err(|e| row_err(line, format!("not valid JSON ({e})")))?;
    let Value::Object(obj) = value else {
        return Err(row_err(
            line,
            "expected a JSON object like {\"prompt\": ..., \"completion\": ..., \"label\": true}",
        ));
    };
    if obj.get("prompt").is_some_and(Value::is_array) {
        // Conversational: the completion is one assistant message (TRL's KTO format).
        let prompt = messages_field(&obj, "prompt", line)?;
        let reply = match obj.get("completion") {
            Some(Value::Array(_)) => match messages_field(&obj, "completion", line)?.as_slice() {
                [m] if m.role == "assistant" => m.content.clone(),
                _ => return Err(row_err(line, "a conversational completion must be one assistant message")),
            },
            _ => return Err(row_err(line, "a conversational row's completion must be a list of messages too")),
        };
        let label = match obj.get("label") {
            Some(Value::Bool(b)) => *b,
            _ => return Err(row_err(line, "field \"label\" must be true or false")),
        };
        return Ok(vec![KtoExample::chat(prompt, &reply, label)]);
    }
    if obj.contains_key("chosen") || obj.contains_key("rejected") {
        let prompt = string_field(&obj, "prompt", line)?;
        let chosen = string_field(&obj, "chosen", line)?;
        let rejected = string_field(&obj, "rejected", line)?;
        return Ok(vec![
            KtoExample { prompt: prompt.clone(), completion: chosen, label: true, messages: None },
            KtoExample { prompt, completion: rejected, label: false, messages: None },
        ]);
    }
    let prompt = string_field(&obj, "prompt", line)?;
    let completion = string_field(&obj, "completion", line)?;
    let label = match obj.get("label") {
        Some(Value::Bool(b)) => *b,
        Some(other) => return Err(row_err(line, format!("field \"label\" must be true or false, got {other}"))),
        None => return Err(row_err(line, "missing field \"label\" (true = desirable, false = undesirable)")),
    };
    Ok(vec![KtoExample { prompt, completion, label, messages: None }])
}

/// TRL JSONL: text rows as `{"prompt", "completion", "label"}` strings, conversational rows with
/// message lists (what [`parse_jsonl`] reads back).
pub fn to_jsonl(rows: &[KtoExample]) -> String {
    let line = |r: &KtoExample| match &r.messages {
        Some(c) => serde_json::json!({ "prompt": c.prompt, "completion": c.completion, "label": r.label }),
        None => serde_json::json!({ "prompt": r.prompt, "completion": r.completion, "label": r.label }),
    };
    rows.iter().map(|r| line(r).to_string() + "\n").collect()
}
