// The guided demo "teach the stories a mood", and held-out evaluation of base vs trained:
// the documented recipe (the engine's MoodRecipe), run step by step in the worker.
import { $, el, humanDuration, showError } from '../util.js';

export function initDemoView(app) {
  const status = (t) => ($('#demo-status').textContent = t);
  let recipe = null;
  let sets = null;

  /** The engine's recipe at the chosen size, and the build's prompt sets. */
  async function prepare() {
    recipe = await app.engine.call('recipe', { mood: $('#demo-mood').value, size: $('#demo-size').value });
    sets = await app.prompts;
    if (!sets.heldout.length) throw new Error('this build has no held-out TinyStories prompts (data/prompts.json)');
    return { recipe, sets };
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

  /** How long a recipe takes here, from this backend's measured step time and generation speed. */
  function duration(r, s, speed) {
    const prompts = Math.min(s.train.length, r.max_train_prompts ?? Infinity);
    const heldout = Math.min(s.heldout.length, r.max_heldout_prompts ?? Infinity);
    // Generation runs a prompt's samples together: its time is about max_tokens steps of decoding.
    const generation = ((prompts + 2 * heldout) * r.sampling.max_tokens) / speed.generate_tokens_per_s;
    return generation + (speed.first_step_ms + r.train.steps * speed.kto_step_ms) / 1000;
  }

  let speed = null;
  let sizeChosen = false;
  $('#demo-size').addEventListener('change', () => { sizeChosen = true; showEstimate(); });
  $('#demo-mood').addEventListener('change', showEstimate);

  /** Measure once (a short engine benchmark), then say how long each size takes; on a slow backend
   *  the quick size is chosen unless the user picked one. */
  async function showEstimate() {
    const out = $('#demo-estimate');
    try {
      if (!speed) {
        out.textContent = 'Measuring this backend to estimate the demo\'s time…';
        speed = await app.engine.call('bench', { steps: 1, batch: 8, seqLen: 64, genTokens: 32 });
      }
      const all = await app.prompts;
      const mood = $('#demo-mood').value;
      const [full, quick] = await Promise.all(['full', 'quick'].map((size) => app.engine.call('recipe', { mood, size })));
      const [tFull, tQuick] = [duration(full, all, speed), duration(quick, all, speed)];
      if (!sizeChosen && tFull > 300) $('#demo-size').value = 'quick';
      const chosen = $('#demo-size').value === 'quick' ? tQuick : tFull;
      out.textContent = `Estimated time on this backend: ${humanDuration(chosen)} (full recipe ${humanDuration(tFull)}, quick ${humanDuration(tQuick)}; measured ${speed.kto_step_ms.toFixed(0)} ms per training step, ${speed.generate_tokens_per_s.toFixed(0)} tokens/s).${!sizeChosen && tFull > 300 ? ' The quick size is selected: the full recipe is slow here.' : ''}`;
      out.dataset.seconds = String(chosen);
    } catch (e) {
      out.textContent = `No time estimate: ${e.message}`;
    }
  }
  document.querySelector('nav button[data-view=demo]').addEventListener('click', () => { if (!speed) showEstimate(); });
  document.addEventListener('model-loaded', () => { speed = null; $('#demo-estimate').textContent = ''; });

  /** The recipe runs in the engine (the same code as `kto mood`); each stage reports here. */
  async function run() {
    showError($('#demo-error'), null);
    $('#demo-run').disabled = true;
    delete $('#demo-results').dataset.done;
    const steps = [];
    let before = null;
    let settings = null;
    try {
      await prepare();
      status('evaluating the base model on held-out prompts…');
      const report = await app.engine.call('mood', { recipe, sets }, {
        onEvent: ({ type, event: e }) => {
          if (type !== 'mood') return;
          if (e.stage === 'evaluated' && e.side === 'base') {
            before = e.report;
            renderResults(before, null);
            status('sampling the training prompts…');
          } else if (e.stage === 'sampled') {
            $('#demo-progress').value = e.done / e.total / 3;
            status(`sampling prompt ${e.done}/${e.total}…`);
          } else if (e.stage === 'labelled') {
            settings = e.settings;
            demo.labelled = { rows: e.rows, settings };
            const nD = e.desirable;
            status(`training ${settings.steps} steps on ${e.rows.length} auto-labelled samples (${nD} desirable, λD ${settings.desirable_weight.toFixed(2)}, λU ${settings.undesirable_weight.toFixed(2)})…`);
          } else if (e.stage === 'step') {
            steps.push(e);
            $('#demo-progress').value = 1 / 3 + (e.step / e.total) / 3;
            status(`training: step ${e.step}/${e.total}, loss ${e.loss.toFixed(4)}`);
            app.onTrainStep?.(e, settings);
          } else if (e.stage === 'evaluated') {
            status('evaluating the trained model on held-out prompts…');
          }
        },
      });
      app.trained = true;
      app.hasAdapter = false;
      const after = report.after;
      renderResults(report.before, after);
      $('#demo-progress').value = 1;
      status(`Done: ${recipe.labeling.mood} rate ${(100 * report.before.summary.target_rate).toFixed(1)} % → ${(100 * after.summary.target_rate).toFixed(1)} % on held-out prompts; NLL ${report.before.nll_per_token.toFixed(3)} → ${after.nll_per_token.toFixed(3)}.`);
      $('#demo-results').dataset.done = 'true';
    } catch (e) {
      showError($('#demo-error'), e);
      status('');
    } finally {
      $('#demo-run').disabled = false;
      demo.steps = steps;
    }
  }

  /** The last run's step reports and labelled rows (read by tests). */
  const demo = { steps: [], labelled: null };
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
  return demo;
}
