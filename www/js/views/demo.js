// The guided demo "teach the stories a mood", and held-out evaluation of base vs trained:
// the documented recipe (the engine's MoodRecipe), run step by step in the worker.
import { $, el, showError } from '../util.js';

const QUICK = { trainPrompts: 8, samplesPerPrompt: 4, steps: 10, heldoutPrompts: 4, evalSamples: 2 };

export function initDemoView(app) {
  const status = (t) => ($('#demo-status').textContent = t);
  let recipe = null;
  let sets = null;

  async function prepare() {
    const mood = $('#demo-mood').value;
    recipe = await app.engine.call('recipe', { mood });
    const all = await app.prompts;
    sets = { ...all };
    if ($('#demo-size').value === 'quick') {
      recipe.samples_per_prompt = QUICK.samplesPerPrompt;
      recipe.train.steps = QUICK.steps;
      recipe.eval_samples_per_prompt = QUICK.evalSamples;
      sets = { train: all.train.slice(0, QUICK.trainPrompts), heldout: all.heldout.slice(0, QUICK.heldoutPrompts), heldout_stories: all.heldout_stories.slice(0, QUICK.heldoutPrompts) };
    }
    if (!sets.heldout.length) throw new Error('this build has no held-out TinyStories prompts (data/prompts.json)');
    return { recipe, sets };
  }

  /** Sample the training prompts with the recipe's seeds and let the judge score each sample. */
  async function sampleAndJudge() {
    const judged = [];
    for (let i = 0; i < sets.train.length; i++) {
      status(`sampling prompt ${i + 1}/${sets.train.length}…`);
      const sampling = { ...recipe.sampling, seed: recipe.sampling.seed + 1000 * i };
      const out = await app.engine.call('generate', { prompt: sets.train[i], n: recipe.samples_per_prompt, sampling, which: 'base' });
      const scores = await app.engine.call('judge', { texts: out.map((s) => s.text) });
      out.forEach((s, j) => judged.push({ prompt: sets.train[i], text: s.text, tokens: s.ids.length, score: scores[j] }));
      $('#demo-progress').value = (i + 1) / sets.train.length / 3;
    }
    return judged;
  }

  function renderResults(before, after) {
    const f = (x, pct) => (x === undefined ? '—' : pct ? `${(100 * x).toFixed(1)} %` : x.toFixed(3));
    const rows = [
      [`target rate (${recipe.labeling.mood}, threshold ${recipe.labeling.threshold})`, (r) => r.summary.target_rate, true, 'target_rate'],
      ['judged positive (score > 0)', (r) => r.summary.positive_rate, true, 'positive_rate'],
      ['judged negative (score < 0)', (r) => r.summary.negative_rate, true, 'negative_rate'],
      ['mean judge score', (r) => r.summary.mean_score, false, 'mean_score'],
      ['mean completion length (tokens)', (r) => r.summary.mean_tokens, false, 'mean_tokens'],
      ['held-out NLL (nats/token)', (r) => r.nll_per_token, false, 'nll_per_token'],
    ];
    $('#demo-results').replaceChildren(...rows.map(([name, get, pct, key]) => el('tr', { 'data-metric': key },
      el('th', {}, name),
      el('td', { 'data-side': 'base', 'data-value': String(get(before)) }, f(get(before), pct)),
      el('td', { 'data-side': 'trained', 'data-value': after ? String(get(after)) : '' }, after ? f(get(after), pct) : '—'))));
    const byPrompt = new Map();
    for (const [side, rep] of [['base', before], ['trained', after]]) {
      for (const s of rep?.samples || []) {
        if (!byPrompt.has(s.prompt)) byPrompt.set(s.prompt, { base: [], trained: [] });
        byPrompt.get(s.prompt)[side].push(`${s.text.trim()} (${s.score})`);
      }
    }
    $('#demo-samples').replaceChildren(...[...byPrompt].map(([prompt, v]) => el('tr', {},
      el('td', {}, prompt), el('td', {}, v.base.join('\n\n')), el('td', {}, v.trained.join('\n\n')))));
  }

  async function evaluateBoth(withTrained) {
    status('evaluating the base model on held-out prompts…');
    const before = await app.engine.call('heldout', { which: 'base', sets, recipe });
    renderResults(before, null);
    if (!withTrained) return { before };
    status('evaluating the trained model on held-out prompts…');
    const after = await app.engine.call('heldout', { which: 'trained', sets, recipe });
    renderResults(before, after);
    return { before, after };
  }

  async function run() {
    showError($('#demo-error'), null);
    $('#demo-run').disabled = true;
    delete $('#demo-results').dataset.done;
    try {
      await prepare();
      const { before } = await evaluateBoth(false);
      const judged = await sampleAndJudge();
      const { rows, desirable_weight, undesirable_weight } = await app.engine.call('autoLabel', { samples: judged, rule: recipe.labeling });
      const nD = rows.filter((r) => r.label).length;
      if (!nD || nD === rows.length) throw new Error(`the judge labelled ${nD} of ${rows.length} samples desirable: need both classes`);
      const config = { ...recipe.train, desirable_weight, undesirable_weight };
      status(`training ${config.steps} steps on ${rows.length} auto-labelled samples (${nD} desirable, λD ${desirable_weight.toFixed(2)}, λU ${undesirable_weight.toFixed(2)})…`);
      await app.engine.call('train', { rows, config }, {
        onEvent: (e) => {
          if (e.type !== 'progress') return;
          $('#demo-progress').value = 1 / 3 + (e.step / e.total) / 3;
          status(`training: step ${e.step}/${e.total}, loss ${e.metrics.loss.toFixed(4)}`);
          app.onTrainStep?.(e.metrics, config);
        },
      });
      app.trained = true;
      status('evaluating the trained model on held-out prompts…');
      const after = await app.engine.call('heldout', { which: 'trained', sets, recipe });
      renderResults(before, after);
      $('#demo-progress').value = 1;
      status(`Done: ${recipe.labeling.mood} rate ${(100 * before.summary.target_rate).toFixed(1)} % → ${(100 * after.summary.target_rate).toFixed(1)} % on held-out prompts; NLL ${before.nll_per_token.toFixed(3)} → ${after.nll_per_token.toFixed(3)}.`);
      $('#demo-results').dataset.done = 'true';
    } catch (e) {
      showError($('#demo-error'), e);
      status('');
    } finally {
      $('#demo-run').disabled = false;
    }
  }

  $('#demo-run').addEventListener('click', run);
  $('#heldout-run').addEventListener('click', async () => {
    showError($('#demo-error'), null);
    try {
      await prepare();
      await evaluateBoth(app.trained);
      status(app.trained ? 'Held-out evaluation of base and trained models.' : 'Held-out evaluation of the base model (train first to compare).');
    } catch (e) {
      showError($('#demo-error'), e);
    }
  });
}
