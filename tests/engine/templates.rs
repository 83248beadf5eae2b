//! Chat templates of the new architectures (Qwen3, Llama 3.x, Qwen2.5, Gemma 3) rendered by the
//! engine (minijinja) exactly as transformers' `apply_chat_template` renders them, and split into
//! prompt and completion exactly as TRL's `apply_chat_template` splits them
//! (tests/reference/chat_templates.py wrote the golden, with Llama 3's "Today Date" fixed).

use kto_studio::tokenizer::{Message, chat};
use serde_json::Value;

fn messages(v: &Value) -> Vec<Message> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|m| Message::new(m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
        .collect()
}

#[test]
fn chat_templates_render_and_split_as_transformers_and_trl() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/templates/templates.json");
    let g: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let d = &g["date"];
    let date = (d[0].as_i64().unwrap(), d[1].as_u64().unwrap() as u32, d[2].as_u64().unwrap() as u32);
    let models = g["models"].as_object().unwrap();
    assert!(["qwen3", "llama3", "qwen2.5", "gemma3"].iter().all(|m| models.contains_key(*m)), "{:?}", models.keys());
    for (name, m) in models {
        let (template, bos, eos) = (m["template"].as_str().unwrap(), m["bos"].as_str(), m["eos"].as_str().unwrap());
        for (i, case) in m["cases"].as_array().unwrap().iter().enumerate() {
            let got = chat::render_on(
                template,
                &messages(&case["messages"]),
                case["add_generation_prompt"].as_bool().unwrap(),
                bos,
                eos,
                date,
            )
            .unwrap_or_else(|e| panic!("{name} case {i}: {e}"));
            assert_eq!(got, case["rendered"].as_str().unwrap(), "{name} case {i}");
        }
        for (i, s) in m["splits"].as_array().unwrap().iter().enumerate() {
            let (p, c) =
                chat::split_on(template, &messages(&s["prompt"]), s["completion"].as_str().unwrap(), bos, eos, date)
                    .unwrap_or_else(|e| panic!("{name} split {i}: {e}"));
            assert_eq!(p, s["trl_prompt"].as_str().unwrap(), "{name} split {i} prompt");
            assert_eq!(c, s["trl_completion"].as_str().unwrap(), "{name} split {i} completion");
        }
    }
}

/// The date directives against Python's strftime on dates around leap days and year ends.
#[test]
fn strftime_now_renders_dates_as_python_does() {
    let t = "{{ strftime_now('%d %b %Y|%-d %B %y|%a %A %j|%m/%-m') }}";
    let r = |date| chat::render_on(t, &[], false, None, "", date).unwrap();
    // datetime(2024, 2, 29).strftime(...), datetime(2026, 1, 15), datetime(1999, 12, 31)
    assert_eq!(r((2024, 2, 29)), "29 Feb 2024|29 February 24|Thu Thursday 060|02/2");
    assert_eq!(r((2026, 1, 15)), "15 Jan 2026|15 January 26|Thu Thursday 015|01/1");
    assert_eq!(r((1999, 12, 31)), "31 Dec 1999|31 December 99|Fri Friday 365|12/12");
    let (y, m, d) = chat::today();
    assert!((2025..2200).contains(&y) && (1..=12).contains(&m) && (1..=31).contains(&d), "{y}-{m}-{d}");
}
