use kto_studio::eval::prompt_sets;
use kto_studio::judge::Judge;
use kto_studio::mood::{Mood, MoodRecipe, run_recipe};

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
    let (report, _) = block(run_recipe(&m, &cpu(), &Judge::afinn().unwrap(), &recipe, &sets, |_| steps += 1)).unwrap();
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
