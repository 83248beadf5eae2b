use std::io::Write;
use std::process::{Command, Stdio};

use kto_studio::eval::{first_sentences, prompt_sets};
use kto_studio::judge::Judge;
use kto_studio::mood::{AutoLabel, JudgedSample, Mood, auto_label};

use crate::common::*;

/// The npm package `sentiment` itself, run by node, scoring the same texts.
fn node_scores(texts: &[String]) -> Vec<i64> {
    let root = env!("CARGO_MANIFEST_DIR");
    let script = "const S = require('sentiment'); const s = new S(); let d = ''; process.stdin.on('data', c => d += c); \
                  process.stdin.on('end', () => console.log(JSON.stringify(JSON.parse(d).map(t => s.analyze(t).score))));";
    let mut child = Command::new("node")
        .args(["-e", script])
        .current_dir(root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node (installed by scripts/setup.sh)");
    child.stdin.take().unwrap().write_all(serde_json::to_string(texts).unwrap().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn afinn_judge_scores_exactly_like_the_npm_sentiment_package() {
    let judge = Judge::afinn().unwrap();
    let mut texts: Vec<String> = stories();
    texts.extend(
        [
            "I am not happy. This is NOT good!!",
            "She was sad,\tbut   then she smiled :) 😀",
            "Don't worry; don't cry. It isn't bad.",
            "",
            "   ",
            "Tom said \"no\" — he can't play; he was angry (very angry).",
            "ÉLAN and joy: joyful joyous",
        ]
        .map(String::from),
    );
    let ours: Vec<i64> = texts.iter().map(|t| judge.score(t) as i64).collect();
    let theirs = node_scores(&texts);
    for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        assert_eq!(a, b, "text {i}: {:?}", &texts[i][..texts[i].len().min(80)]);
    }
    assert!(ours.iter().any(|&s| s > 0) && ours.iter().any(|&s| s < 0));
}

#[test]
fn auto_labels_follow_threshold_band_and_mood() {
    let happier = AutoLabel { mood: Mood::Happier, threshold: 2.0, band: 1.0 };
    assert_eq!(happier.label(3.5), Some(true));
    assert_eq!(happier.label(3.0), None, "inside the neutral band");
    assert_eq!(happier.label(0.5), Some(false));
    let sadder = AutoLabel { mood: Mood::Sadder, threshold: 0.0, band: 0.0 };
    assert_eq!(sadder.label(-1.0), Some(true));
    assert_eq!(sadder.label(0.0), None);
    assert_eq!(sadder.label(4.0), Some(false));
    let s = |score| JudgedSample { prompt: "p".into(), text: format!("{score}"), tokens: 3, score };
    let rows = auto_label(&[s(-2.0), s(0.0), s(3.0)], &sadder);
    assert_eq!(rows.iter().map(|r| r.label).collect::<Vec<_>>(), vec![true, false]);
}

#[test]
fn prompts_are_first_sentences_and_splits_do_not_overlap() {
    assert_eq!(
        first_sentences("Tom ran. He was fast and very happy to win. The end."),
        "Tom ran. He was fast and very happy to win."
    );
    assert_eq!(
        first_sentences("Once upon a time, there was a big dog named Max. He liked bones."),
        "Once upon a time, there was a big dog named Max."
    );
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/tinystories_validation_100.txt"),
    )
    .unwrap();
    let sets = prompt_sets(&text, 60);
    assert!(sets.train.len() >= 55, "{} distinct training prompts", sets.train.len());
    assert!(sets.heldout.len() >= 30);
    assert_eq!(sets.heldout.len(), sets.heldout_stories.len());
    assert!(sets.heldout.iter().all(|p| !sets.train.contains(p)));
    for (p, story) in sets.heldout.iter().zip(&sets.heldout_stories) {
        assert!(story.split_whitespace().collect::<Vec<_>>().join(" ").starts_with(p.as_str()));
    }
}
