//! Chat templates: the model's own Jinja template (tokenizer_config.json or GGUF
//! `tokenizer.chat_template`) rendered with minijinja, as transformers' `apply_chat_template`
//! renders it with Jinja2; ChatML when an instruct vocabulary has `<|im_start|>` but no template.

use serde::{Deserialize, Serialize};

use crate::Result;
use crate::error::config_err;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: &str, content: &str) -> Self {
        Self { role: role.into(), content: content.into() }
    }
}

pub const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// Render `messages` through `template`.
pub fn render(
    template: &str,
    messages: &[Message],
    add_generation_prompt: bool,
    bos: Option<&str>,
    eos: &str,
) -> Result<String> {
    let mut env = minijinja::Environment::new();
    // A chat template is code from the model file: bound its work (nested range() loops ran
    // forever) and its output. Real templates use a few thousand instructions.
    env.set_fuel(Some(TEMPLATE_FUEL));
    // transformers' template helpers.
    env.add_function("raise_exception", |msg: String| -> std::result::Result<String, minijinja::Error> {
        Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, msg))
    });
    env.add_template("chat", template)
        .map_err(|e| config_err(format!("the model's chat template does not parse: {e}")))?;
    let ctx = minijinja::context! {
        messages => messages,
        add_generation_prompt => add_generation_prompt,
        bos_token => bos.unwrap_or(""),
        eos_token => eos,
    };
    let mut out = Capped(Vec::new());
    env.get_template("chat")
        .and_then(|t| t.render_captured_to(ctx, &mut out).map(|_| ()))
        .map_err(|e| config_err(format!("the chat template failed to render: {e}")))?;
    String::from_utf8(out.0).map_err(|_| config_err("the chat template rendered invalid UTF-8"))
}

const TEMPLATE_FUEL: u64 = 1_000_000;
/// Larger than any prompt a model here can take (contexts are at most a few MB of text).
const MAX_RENDERED: usize = 16 << 20;

/// A writer that refuses to grow past [`MAX_RENDERED`].
struct Capped(Vec<u8>);

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > MAX_RENDERED {
            return Err(std::io::Error::other(format!("its output passed {} MiB", MAX_RENDERED >> 20)));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// TRL's conversational prompt/completion split: the prompt is the conversation with the
/// generation prompt; the completion is what the full conversation adds after it.
pub fn split(
    template: &str,
    prompt: &[Message],
    completion: &str,
    bos: Option<&str>,
    eos: &str,
) -> Result<(String, String)> {
    let p = render(template, prompt, true, bos, eos)?;
    let mut all = prompt.to_vec();
    all.push(Message::new("assistant", completion));
    let full = render(template, &all, false, bos, eos)?;
    match full.strip_prefix(&p) {
        Some(rest) => Ok((p, rest.to_string())),
        None => Err(config_err(
            "the chat template renders the prompt differently inside the full conversation, so the completion \
             cannot be split off; turn chat mode off for this model",
        )),
    }
}
