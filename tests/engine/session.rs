//! The engine session every front end drives, and the settings list the CLI flags and the page
//! form are built from.

use std::future::ready;

use kto_studio::BackendKind;
use kto_studio::kto::{Control, KtoExample, SettingKind, TrainConfig, parse_jsonl_report, settings};
use kto_studio::score::{collate, completion_logps};
use kto_studio::session::{Session, Which};

use crate::common::*;

fn session() -> Session {
    let s = Session::new(BackendKind::Cpu, cpu());
    s.open(model()).unwrap();
    s
}

fn rows() -> Vec<KtoExample> {
    [("Once upon a time", " there was a happy cat.", true), ("Tom had a ball.", " It was sad and lost.", false)]
        .iter()
        .cycle()
        .take(8)
        .map(|&(p, c, l)| KtoExample { prompt: p.into(), completion: c.into(), label: l, messages: None })
        .collect()
}

#[test]
fn settings_round_trip_and_name_the_bad_one() {
    let d = TrainConfig::default();
    assert_eq!(TrainConfig::from_settings(&d.to_settings()).unwrap(), d);
    let list = settings();
    let keys: Vec<&str> = list.iter().map(|s| s.key).collect();
    for k in d.to_settings().keys() {
        assert!(keys.contains(&k.as_str()), "{k} has a description");
    }
    for s in &list {
        assert_eq!(s.default, d.to_settings()[s.key], "{}'s default is TrainConfig's", s.key);
        assert!(!s.help.is_empty());
        if let SettingKind::Number { min, .. } = s.kind {
            let mut m = d.to_settings();
            m.insert(s.key.into(), (min - 1.0).into());
            let e = TrainConfig::from_settings(&m).unwrap_err().to_string();
            assert!(e.contains(s.key) && e.contains("must be"), "{e}");
        }
    }
    let mut m = d.to_settings();
    m.insert("method".into(), "lora".into());
    m.insert("lora_rank".into(), 4.into());
    assert_eq!(TrainConfig::from_settings(&m).unwrap().lora.unwrap().rank, 4);
    m.insert("nonsense".into(), 1.into());
    assert!(TrainConfig::from_settings(&m).unwrap_err().to_string().contains("unknown training setting 'nonsense'"));
}

#[test]
fn a_jsonl_report_lists_every_bad_line_and_counts_pairs() {
    let r = parse_jsonl_report(
        "{\"prompt\": \"a\", \"completion\": \"b\", \"label\": true}\n\nnot json\n{\"prompt\": \"p\", \"chosen\": \"c\", \"rejected\": \"r\"}\n{\"prompt\": 1}\n",
    );
    assert_eq!(r.rows.len(), 3);
    assert_eq!((r.paired, r.lines), (1, 4));
    assert_eq!(r.errors.len(), 2);
    assert!(r.errors[0].starts_with("JSONL line 3: not valid JSON"), "{:?}", r.errors);
    assert!(r.errors[1].starts_with("JSONL line 5:"), "{:?}", r.errors);
    let e = kto_studio::kto::parse_jsonl("x\ny\n").unwrap_err().to_string();
    assert!(e.contains("line 1") && e.contains("(and 1 more bad lines)"), "{e}");
}

#[test]
fn a_run_tokenizes_once_and_reports_each_step_until_stopped() {
    let s = session();
    let cfg = TrainConfig { steps: 5, batch_size: 4, ..Default::default() };
    let est = s.estimate(&rows(), &cfg).unwrap();
    assert_eq!((est.data.rows, est.data.batches), (8, 2));
    let summary = s.start_run(&rows(), cfg, false).unwrap();
    assert_eq!(summary.max_row_len, est.data.max_row_len);
    assert!(s.model(Which::Trained).is_err(), "nothing trained yet");
    let mut seen = Vec::new();
    let end = block(s.train(|r| {
        seen.push((r.metrics.step, r.total, r.rows.len()));
        assert!(r.rows.iter().all(|row| !row.prompt.is_empty() && row.completion.starts_with(' ')));
        ready(if r.metrics.step == 3 { Control::Stop } else { Control::Continue })
    }))
    .unwrap();
    assert_eq!(seen, vec![(1, 5, 4), (2, 5, 4), (3, 5, 4)]);
    assert!(end.stopped && end.steps == 3);
    // Training again continues the same run to its step count.
    let end = block(s.train(|_| ready(Control::Continue))).unwrap();
    assert!(!end.stopped && end.steps == 5);
    assert!(s.model(Which::Trained).is_ok());
    // The one-file export restores as the trained model.
    let one = block(s.export("one")).unwrap();
    assert_eq!(one[0].0, "model.bin");
    let other = session();
    other.restore(&one[0].1).unwrap();
    let a = block(s.token_diff("Once upon a time")).unwrap();
    let b = block(other.token_diff("Once upon a time")).unwrap();
    for (x, y) in a.iter().zip(&b) {
        assert!((x.trained - y.trained).abs() < 1e-5 && x.text == y.text);
    }
}

/// The token view's numbers are per-token log-probs whose sum is the completion log-prob the
/// trainer scores (an independent path: collated rows, classifier only at completion positions).
#[test]
fn token_diff_sums_to_the_scored_log_prob() {
    let s = session();
    assert!(block(s.export("one")).is_err(), "nothing trained: nothing to export");
    let bundle = model();
    s.restore(&kto_studio::formats::llama2c::save(&bundle.weights).unwrap()).unwrap();
    let text = "Once upon a time, there was a little girl named Lily.";
    let tokens = block(s.token_diff(text)).unwrap();
    assert!(tokens.iter().all(|t| t.base == t.trained), "the same weights: no change");
    let ids = bundle.tokenizer.encode(text, true).unwrap();
    assert_eq!(tokens.len(), ids.len() - 1);
    let joined: String = tokens.iter().map(|t| t.text.as_str()).collect();
    assert_eq!(joined.trim_start(), text);
    let c = collate(&[(&ids[..1], &ids[1..])], 512, 0);
    let m = s.model(Which::Base).unwrap();
    let scored = block(kto_studio::device::read_f32(completion_logps(&m, &c, &cpu()))).unwrap()[0] as f64;
    let sum: f64 = tokens.iter().map(|t| t.base).sum();
    assert!((sum - scored).abs() < 1e-3, "sum {sum} vs scored {scored}");
}

#[test]
fn held_out_rows_are_never_trained_on_and_are_reported_each_step() {
    let s = session();
    let cfg = TrainConfig { steps: 2, batch_size: 2, holdout: 2, ..Default::default() };
    let summary = s.start_run(&rows(), cfg.clone(), false).unwrap();
    assert_eq!((summary.rows, summary.heldout), (6, 2));
    let mut held = Vec::new();
    block(s.train(|r| {
        held.push(r.heldout.clone().expect("held-out metrics every step"));
        ready(Control::Continue)
    }))
    .unwrap();
    assert_eq!(held.len(), 2);
    assert!(held.iter().all(|m| m.loss.is_finite()));
    // Holding out every row leaves nothing to train on: an error that says so.
    let e = s.start_run(&rows(), TrainConfig { holdout: 8, ..cfg }, false).unwrap_err().to_string();
    assert!(e.contains("leave none of the 8 rows"), "{e}");
}

#[test]
fn conversational_rows_read_and_write_in_trls_format() {
    let line = r#"{"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}], "completion": [{"role": "assistant", "content": "Hello."}], "label": true}"#;
    let r = parse_jsonl_report(&format!("{line}\n"));
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let row = &r.rows[0];
    assert_eq!((row.prompt.as_str(), row.completion.as_str(), row.label), ("Hi?", "Hello.", true));
    assert_eq!(row.messages.as_ref().unwrap().prompt.len(), 2);
    let written = kto_studio::kto::to_jsonl(&r.rows);
    let a: serde_json::Value = serde_json::from_str(written.trim()).unwrap();
    let b: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(a, b, "written back as TRL's conversational row");
    let bad = parse_jsonl_report(
        r#"{"prompt": [{"role": "user", "content": "Hi"}], "completion": "text", "label": true}
{"prompt": [{"role": "user", "content": "Hi"}], "completion": [{"role": "user", "content": "x"}], "label": true}
{"prompt": [], "completion": [{"role": "assistant", "content": "x"}], "label": true}
"#,
    );
    assert_eq!(bad.errors.len(), 3, "{:?}", bad.errors);
    assert!(bad.errors[1].contains("one assistant message"), "{:?}", bad.errors);
}
