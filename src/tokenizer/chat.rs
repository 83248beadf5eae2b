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

/// A calendar date `(year, month 1..=12, day 1..=31)`.
pub type Date = (i64, u32, u32);

/// Render `messages` through `template` (today's date for templates that ask `strftime_now`).
pub fn render(
    template: &str,
    messages: &[Message],
    add_generation_prompt: bool,
    bos: Option<&str>,
    eos: &str,
) -> Result<String> {
    render_on(template, messages, add_generation_prompt, bos, eos, today())
}

/// [`render`] on a given date (Llama 3's template writes "Today Date: 15 Jan 2026").
pub fn render_on(
    template: &str,
    messages: &[Message],
    add_generation_prompt: bool,
    bos: Option<&str>,
    eos: &str,
    date: Date,
) -> Result<String> {
    let mut env = minijinja::Environment::new();
    env.add_function("strftime_now", move |format: String| strftime(&format, date));
    // Python string and dict methods (`.startswith`, `.split`, `.strip`, `.items` ...), which
    // Qwen3's and many other templates call as Jinja2 allows.
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
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

/// TRL's conversational prompt/completion split (`trl.data_utils.apply_chat_template`): the
/// prompt is the conversation with the generation prompt, cut to what it shares with the full
/// conversation (Qwen3's full conversation adds an empty `<think>` block after the generation
/// prompt, DeepSeek-R1's replaces part of it); the completion is the rest of the full conversation.
pub fn split(
    template: &str,
    prompt: &[Message],
    completion: &str,
    bos: Option<&str>,
    eos: &str,
) -> Result<(String, String)> {
    split_on(template, prompt, completion, bos, eos, today())
}

/// [`split`] on a given date.
pub fn split_on(
    template: &str,
    prompt: &[Message],
    completion: &str,
    bos: Option<&str>,
    eos: &str,
    date: Date,
) -> Result<(String, String)> {
    let p = render_on(template, prompt, true, bos, eos, date)?;
    let mut all = prompt.to_vec();
    all.push(Message::new("assistant", completion));
    let full = render_on(template, &all, false, bos, eos, date)?;
    // The longest common prefix, by characters as Python compares strings.
    let common =
        p.char_indices().zip(full.chars()).find(|((_, a), b)| a != b).map_or(p.len().min(full.len()), |((i, _), _)| i);
    Ok((full[..common].to_string(), full[common..].to_string()))
}

/// Today's date (UTC), from the system clock natively and from JavaScript's clock in the browser.
pub fn today() -> Date {
    #[cfg(target_arch = "wasm32")]
    let ms = js_sys::Date::now();
    #[cfg(not(target_arch = "wasm32"))]
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_millis() as f64);
    civil_from_days((ms / 86_400_000.0).floor() as i64)
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> Date {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Python's `strftime` for the date directives templates use (%d %-d %e %m %-m %Y %y %b %B %a %A
/// %j %%); time-of-day directives render midnight, anything else is kept as written.
fn strftime(format: &str, (y, m, d): Date) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    const DAYS: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let day_of_year =
        [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334][(m - 1) as usize] + d + u32::from(leap && m > 2);
    // 1970-01-01 was a Thursday (index 3).
    let days = days_from_civil((y, m, d));
    let weekday = DAYS[(days + 3).rem_euclid(7) as usize];
    let month = MONTHS[(m - 1) as usize];
    let mut out = String::new();
    let mut it = format.chars().peekable();
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let dash = it.peek() == Some(&'-');
        if dash {
            it.next();
        }
        match it.next() {
            Some('d') if dash => out += &d.to_string(),
            Some('d') => out += &format!("{d:02}"),
            Some('e') => out += &format!("{d:>2}"),
            Some('m') if dash => out += &m.to_string(),
            Some('m') => out += &format!("{m:02}"),
            Some('Y') => out += &y.to_string(),
            Some('y') => out += &format!("{:02}", y.rem_euclid(100)),
            Some('b') => out += &month[..3],
            Some('B') => out += month,
            Some('a') => out += &weekday[..3],
            Some('A') => out += weekday,
            Some('j') => out += &format!("{day_of_year:03}"),
            Some('H' | 'M' | 'S') => out += "00",
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                if dash {
                    out.push('-');
                }
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

fn days_from_civil((y, m, d): Date) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 } as i64;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}
