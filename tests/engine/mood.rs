use kto_studio::eval::prompt_sets;
use kto_studio::judge::Judge;
use std::future::ready;

use kto_studio::kto::Control;
use kto_studio::mood::{Mood, MoodEvent, MoodRecipe, run_recipe};

use crate::common::*;

/// A smaller version of the efficacy recipe (BENCHMARKS.md): it fails if KTO training on
/// auto-labelled samples does not move the judged rate on held-out prompts.
#[test]
fn a_small_sadder_run_moves_the_judged_rate_on_heldout_prompts() {
    let m = model();
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/tinystories_validation_100.txt"),
    )
    .unwrap();
    let mut sets = prompt_sets(&text, 60);
    sets.heldout.truncate(20);
    sets.heldout_stories.truncate(20);
    let mut recipe = MoodRecipe::new(Mood::Sadder);
    recipe.train.steps = 40;
    let mut steps = 0;
    let count = |e: MoodEvent| {
        if let MoodEvent::Step(_) = e {
            steps += 1;
        }
        ready(Control::Continue)
    };
    let (report, _) = block(run_recipe(&m, &cpu(), &Judge::afinn().unwrap(), &recipe, &sets, count)).unwrap();
    assert_eq!(steps, 40);
    assert_eq!(report.before.summary.samples, 80);
    assert!(report.desirable > 0 && report.labelled > report.desirable);
    assert!(report.desirable_weight > 1.0, "the rare sad class is up-weighted");
    assert!(
        report.target_rate_change_points >= 20.0,
        "sad rate {:.3} -> {:.3}",
        report.before.summary.target_rate,
        report.after.summary.target_rate
    );
    assert!(report.after.summary.mean_score < report.before.summary.mean_score);
    assert!(report.heldout_nll_change_percent < 15.0, "NLL +{:.1}%", report.heldout_nll_change_percent);
}

/// The mood recipe and `kto train` are one run driver: the recipe's auto-labelled rows and
/// settings (`kto mood --run-out`), trained again by `kto train --settings`, give the same
/// metrics at every step, to the last bit.
#[test]
fn the_mood_recipe_and_kto_train_give_identical_metrics_for_the_same_run() {
    let dir = std::env::temp_dir().join(format!("kto-mood-run-{}", std::process::id()));
    let kto = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kto")).args(args).output().unwrap();
        assert!(out.status.success(), "kto {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out
    };
    let d = dir.to_str().unwrap();
    kto(&["mood", "--size", "quick", "--direction", "sadder", "--run-out", d]);
    let cli = dir.join("cli-metrics.jsonl");
    kto(&[
        "train",
        "--data",
        &format!("{d}/rows.jsonl"),
        "--settings",
        &format!("{d}/settings.json"),
        "--metrics-out",
        cli.to_str().unwrap(),
    ]);
    let lines = |p: std::path::PathBuf| -> Vec<serde_json::Value> {
        std::fs::read_to_string(p).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    let (recipe, train) = (lines(dir.join("metrics.jsonl")), lines(cli));
    assert_eq!(recipe.len(), MoodRecipe::quick(Mood::Sadder).train.steps);
    assert_eq!(recipe, train);
    let settings: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("settings.json")).unwrap()).unwrap();
    assert!(settings["desirable_weight"].as_f64().unwrap() > 1.0, "the balanced weights travel with the settings");
}
