use kto_studio::Error;
use kto_studio::kto::batch::tokenize_row;
use kto_studio::kto::{KtoDataset, KtoExample, parse_jsonl, to_jsonl};
use kto_studio::score::collate;

use crate::common::*;

#[test]
fn jsonl_round_trips_and_unpairs_paired_rows() {
    let rows = vec![
        KtoExample {
            prompt: "Once upon a time".into(),
            completion: " there was a cat.".into(),
            label: true,
            messages: None,
        },
        KtoExample {
            prompt: "Tom said \"hi\"\n".into(), completion: " é ü 🙂".into(), label: false, messages: None
        },
    ];
    let text = to_jsonl(&rows);
    assert_eq!(text.lines().count(), 2);
    assert_eq!(parse_jsonl(&text).unwrap(), rows);
    let paired = "{\"prompt\": \"P\", \"chosen\": \" good\", \"rejected\": \" bad\"}\n\n";
    assert_eq!(
        parse_jsonl(paired).unwrap(),
        vec![
            KtoExample { prompt: "P".into(), completion: " good".into(), label: true, messages: None },
            KtoExample { prompt: "P".into(), completion: " bad".into(), label: false, messages: None },
        ]
    );
}

#[test]
fn bad_jsonl_rows_name_their_line() {
    let cases = [
        ("{\"prompt\": \"a\", \"completion\": \"b\", \"label\": true}\n{oops", "line 2", "not valid JSON"),
        ("\n{\"prompt\": \"a\", \"completion\": \"b\"}", "line 2", "label"),
        ("{\"prompt\": \"a\", \"completion\": \"b\", \"label\": \"yes\"}", "line 1", "true or false"),
        ("{\"prompt\": 3, \"completion\": \"b\", \"label\": true}", "line 1", "prompt"),
        ("[1, 2]", "line 1", "JSON object"),
        ("{\"prompt\": \"a\", \"chosen\": \"b\"}", "line 1", "rejected"),
    ];
    for (text, line, what) in cases {
        match parse_jsonl(text) {
            Err(Error::Data(msg)) => assert!(msg.contains(line) && msg.contains(what), "{msg}"),
            other => panic!("{text:?} gave {other:?}"),
        }
    }
}

#[test]
fn rows_are_tokenized_jointly_with_eos_appended() {
    let tok = model().tokenizer;
    let ex = KtoExample {
        prompt: "Once upon a time".into(),
        completion: " there was a dog.".into(),
        label: true,
        messages: None,
    };
    let row = tokenize_row(&tok, &ex).unwrap();
    assert_eq!(row.prompt_ids, tok.encode("Once upon a time", true).unwrap());
    assert_eq!(*row.completion_ids.last().unwrap(), tok.eos_id(), "EOS appended as text becomes the EOS token");
    let mut full = row.prompt_ids.clone();
    full.extend(&row.completion_ids);
    assert_eq!(full, tok.encode(&format!("Once upon a time there was a dog.{}", tok.eos_text()), true).unwrap());
    // a completion already ending in EOS text gets no second one
    let again =
        tokenize_row(&tok, &KtoExample { completion: format!(" there was a dog.{}", tok.eos_text()), ..ex.clone() })
            .unwrap();
    assert_eq!(again, row);
    // a prompt ending in a space gives its space to the completion (common-prefix split)
    let spaced = tokenize_row(
        &tok,
        &KtoExample { prompt: "Once upon a ".into(), completion: "time".into(), label: true, messages: None },
    )
    .unwrap();
    let mut joined = spaced.prompt_ids.clone();
    joined.extend(&spaced.completion_ids);
    assert_eq!(joined, tok.encode(&format!("Once upon a time{}", tok.eos_text()), true).unwrap());
    let prompt_alone = tok.encode("Once upon a ", true).unwrap();
    assert_eq!(
        spaced.prompt_ids,
        prompt_alone[..prompt_alone.len() - 1],
        "the trailing space token moves to the completion"
    );
}

#[test]
fn collation_truncates_right_pads_and_masks() {
    let c = collate(&[(&[1, 5, 6], &[7, 8, 1]), (&[1, 9], &[10])], 5, 1);
    assert_eq!((c.batch, c.len), (2, 5));
    assert_eq!(c.ids, vec![1, 5, 6, 7, 8, 1, 9, 10, 1, 1]);
    assert_eq!(c.completion_mask, vec![0., 0., 0., 1., 1., 0., 0., 1., 0., 0.]);
    assert_eq!(c.lengths, vec![5, 3]);
}

#[test]
fn batch_size_one_with_kl_is_refused_and_long_prompts_are_dropped() {
    let tok = model().tokenizer;
    let ex = vec![KtoExample { prompt: "a".into(), completion: "b".into(), label: true, messages: None }; 3];
    match KtoDataset::new(&tok, &ex, 1, 64, true) {
        Err(Error::Config(msg)) => assert!(msg.contains("batch size of at least 2"), "{msg}"),
        other => panic!("{other:?}"),
    }
    assert!(KtoDataset::new(&tok, &ex, 1, 64, false).is_ok(), "apo-zero has no KL term");
    let mut rows = ex.clone();
    rows.push(KtoExample { prompt: "word ".repeat(100), completion: "x".into(), label: false, messages: None });
    let ds = KtoDataset::new(&tok, &rows, 2, 32, true).unwrap();
    assert_eq!((ds.rows.len(), ds.dropped), (3, 1));
    assert_eq!(ds.num_batches(), 2);
    let b = ds.batch(1);
    assert_eq!(b.labels.len(), 1);
    assert!(KtoDataset::new(&tok, &[], 2, 32, true).is_err());
}

#[test]
fn settings_from_the_page_fill_in_defaults() {
    use kto_studio::kto::{LossType, OptimizerKind, TrainConfig};
    let cfg: TrainConfig = serde_json::from_str(
        r#"{"beta": 0.2, "steps": 3, "loss_type": "apo_zero_unpaired", "optimizer": "sgd", "max_grad_norm": null}"#,
    )
    .unwrap();
    assert_eq!(cfg.loss.beta, 0.2);
    assert_eq!(cfg.loss.desirable_weight, 1.0);
    assert_eq!(cfg.loss.loss_type, LossType::ApoZeroUnpaired);
    assert_eq!(cfg.optimizer, OptimizerKind::Sgd);
    assert_eq!(cfg.max_grad_norm, None);
    assert_eq!((cfg.steps, cfg.batch_size), (3, TrainConfig::default().batch_size));
    assert!(serde_json::from_str::<TrainConfig>(r#"{"loss_type": "dpo"}"#).is_err());
}
