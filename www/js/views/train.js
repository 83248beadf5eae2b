// Train: settings, progress with ETA, live charts, pause/cancel, NaN stop, save/restore/download.
import { $, download, el, humanDuration } from '../util.js';
import { LineChart } from '../chart.js';
import { labels, settings as stored, weights } from '../storage.js';
import { renderSettingsForm } from './settings-form.js';
import { memorising, suggestedHoldout } from '../heldout.js';

const SHOWN = ['loss', 'kl', 'rewards/chosen', 'rewards/rejected', 'rewards/margins', 'logps/chosen', 'logps/rejected', 'grad_norm'];

/** What each metric (TRL's names) means, in one line. */
export const METRIC_HELP = {
  loss: 'The KTO loss of the step\'s batch: 0.5 × the class weight at the start, falling toward 0 as 👍 rows gain and 👎 rows lose likelihood against the reference point.',
  kl: 'The reference point z: how much more likely the trained model makes unrelated completions than the base does (mean log-ratio on mismatched pairs), clamped at 0. It stays at 0 until training raises likelihood across the board — a flat 0 early on is normal.',
  'rewards/chosen': 'Implied reward of the 👍 rows: β × (log p_trained − log p_base) of each completion, averaged. It rises as training favours them.',
  'rewards/rejected': 'Implied reward of the 👎 rows (same measure): it falls as training disfavours them.',
  'rewards/margins': 'rewards/chosen − rewards/rejected: how far apart training has pushed the two classes.',
  'logps/chosen': 'Summed log-probability of the 👍 completions under the trained model (closer to 0 = more likely).',
  'logps/rejected': 'Summed log-probability of the 👎 completions under the trained model.',
  'held-out loss': 'The loss on the held-out rows (never trained on) after this step: it should fall with the training loss; rising while training falls means memorising.',
  'held-out rewards/margins': 'rewards/margins on the held-out rows: how well the learned preference carries over to rows it has not seen.',
  grad_norm: 'Size of the step\'s gradient before clipping (clipped to "max grad norm"): large values mean big, possibly unstable steps.',
};

export function initTrainView(app) {
  const charts = {
    loss: new LineChart($('#chart-loss'), ['loss', 'held-out']),
    rewards: new LineChart($('#chart-rewards'), ['chosen', 'rejected', 'margins']),
    kl: new LineChart($('#chart-kl'), ['kl']),
  };
  const message = $('#train-message');
  const say = (text) => { message.textContent = text; message.hidden = !text; };
  let paused = false;
  const history = [];
  /** The progress states the last run went through, in order (read by tests). */
  const phases = [];
  function phase(name, text) {
    if (phases[phases.length - 1] !== name) phases.push(name);
    $('#progress-text').textContent = text;
    $('#progress-text').dataset.phase = name;
  }

  let form = null;

  /** Render the form from the engine's settings list; its values live in `app.settings.values`. */
  function renderSettings(schema) {
    app.settings.schema = schema;
    app.settings.values = Object.fromEntries(schema.map((s) => [s.key, s.default]));
    form = renderSettingsForm($('#train-settings'), schema, app.settings.values, (values) => {
      app.settings.values = values;
      syncMethod();
      soon();
      document.dispatchEvent(new CustomEvent('settings-changed', { detail: values }));
    });
    syncMethod();
    // A held-out count the user typed is theirs; until then it follows the number of labels.
    $('#holdout').addEventListener('input', () => (holdoutChosen = true));
  }
  let holdoutChosen = false;
  // LoRA's own fields mean nothing under full fine-tuning.
  const syncMethod = () => form.enableWhere((s) => s.key.startsWith('lora_'), app.settings.values.method === 'lora');

  const rowsForTraining = async () => (await labels.all()).map(({ prompt, completion, label, messages }) => ({ prompt, completion, label, messages }));

  /** The memory estimate for the current settings and labels, and whether the run fits. */
  async function estimate() {
    const out = $('#memory-estimate');
    try {
      const rows = await rowsForTraining();
      const suggested = suggestedHoldout(rows.length);
      if (!holdoutChosen && form && app.settings.values.holdout !== suggested) form.set('holdout', suggested);
      const settings = app.settings.values;
      const { estimate: e, seqLen, error } = await app.engine.call('memory', { rows, settings });
      const mb = (b) => `${(b / 1048576).toFixed(b < 10 * 1048576 ? 1 : 0)} MiB`;
      const lengths = rows.length ? `rows up to ${seqLen} tokens` : 'no labels yet: activations grow with the rows you label';
      out.textContent = `Estimated peak memory: ${mb(e.total)} — weights ${mb(e.weights + e.reference)}, gradients + optimizer ${mb(e.gradients + e.optimizer)}, activations ${mb(e.activations)} (${lengths}; ${e.trainable_params.toLocaleString()} trainable parameters).${error ? ` Too large: ${error}` : ''}`;
      out.dataset.fits = error ? 'false' : 'true';
      out.dataset.batch = String(settings.batch_size);
      out.dataset.total = e.total;
    } catch (err) {
      out.textContent = `No estimate: ${err.message}`;
    }
  }
  let pending = null;
  const soon = () => { clearTimeout(pending); pending = setTimeout(estimate, 200); };
  // The labels decide the row lengths: estimate again whenever the view is opened.
  document.querySelector('nav button[data-view=train]').addEventListener('click', soon);
  document.addEventListener('model-loaded', (e) => {
    // Big models train with LoRA by default (every architecture has it).
    if (!form) return;
    form.set('method', e.detail.parameters > 20e6 ? 'lora' : 'full');
    form.set('chat', !!e.detail.chat);
  });

  function showMetrics(step) {
    const m = { ...step };
    if (step.heldout) Object.assign(m, { 'held-out loss': step.heldout.loss, 'held-out rewards/margins': step.heldout['rewards/margins'] });
    const shown = [...SHOWN, 'held-out loss', 'held-out rewards/margins'].filter((k) => Number.isFinite(m[k]));
    $('#last-metrics').replaceChildren(...shown.map((k) =>
      el('tr', { title: METRIC_HELP[k] }, el('th', {}, k), el('td', { 'data-metric': k }, Number(m[k]).toPrecision(6)),
        el('td', { class: 'hint', 'data-help': k }, METRIC_HELP[k]))));
    warnMemorised(step);
  }

  /** Warn when the model learns its training rows by heart: held-out loss rising while the
   *  training loss falls; without held-out rows, a near-zero loss on a handful of rows. */
  function warnMemorised(m) {
    const out = $('#memorised');
    const held = memorising(history);
    const tiny = !m.heldout && m.loss < 0.01 && lastRows > 0 && lastRows <= 4 * (app.settings.values.batch_size || 8);
    out.hidden = !held && !tiny;
    out.dataset.kind = held ? 'heldout' : tiny ? 'tiny' : '';
    const advice = 'More (and more varied) labels, fewer steps or a larger β generalise better; Compare on new prompts to check.';
    if (held) {
      out.textContent = `Memorising: the held-out rows' loss has risen since step ${held.bestStep} (${held.best.toPrecision(3)} → ${held.now.toPrecision(3)}) while the training loss kept falling (${held.trainThen.toPrecision(3)} → ${held.trainNow.toPrecision(3)}). ${advice}`;
    } else if (tiny) {
      out.textContent = `The loss is ${m.loss.toPrecision(2)} on only ${lastRows} rows: the model has most likely memorised them rather than learned the preference. ${advice}`;
    }
  }
  let lastRows = 0;

  async function train() {
    // Clear the last run's outcome before the first await, so nobody reads a stale status.
    delete $('#train-message').dataset.status;
    say('');
    const cfg = { ...app.settings.values };
    const rows = await rowsForTraining();
    lastRows = rows.length;
    Object.values(charts).forEach((c) => c.reset());
    history.length = 0;
    phases.length = 0;
    setRunning(true);
    const progress = $('#progress');
    progress.removeAttribute('value'); // indeterminate until the first step
    phase('warmup', 'warming up: the first step compiles the kernels and computes the reference model’s log-probabilities…');
    // Remember the run until it ends, so that a closed or crashed tab can say so when reopened.
    const run = { status: 'running', step: 0, total: cfg.steps, model: app.modelName, started: Date.now() };
    await stored.set('run', run);
    try {
      const result = await app.engine.call('train', { rows, settings: cfg }, {
        onEvent: (e) => {
          if (e.type !== 'progress') return;
          const m = e.metrics;
          history.push({ ...m, elapsedMs: e.elapsedMs });
          progress.value = e.step / e.total;
          // The first step includes the warm-up: the pace is measured from the steps after it.
          const first = history[0].elapsedMs;
          const pace = e.step > 1 ? (e.elapsedMs - first) / (e.step - 1) : first;
          const left = humanDuration((pace * (e.total - e.step)) / 1000);
          phase('training', e.step === 1
            ? `step 1/${e.total} · first step ${humanDuration(first / 1000)} (with warm-up) · ${left} left`
            : `step ${e.step}/${e.total} · ${pace.toFixed(0)} ms/step · ${left} left`);
          stored.set('run', { ...run, step: e.step });
          charts.loss.push(e.step, [m.loss, m.heldout?.loss]);
          charts.rewards.push(e.step, [m['rewards/chosen'], m['rewards/rejected'], m['rewards/margins']]);
          charts.kl.push(e.step, [m.kl]);
          showMetrics(m);
          app.onTrainStep?.(m, cfg);
        },
      });
      phase(result.status, result.status === 'done' ? `done: ${result.steps} steps` : `cancelled after ${result.steps} steps`);
      lastRows = result.rows;
      say(result.status === 'cancelled' ? `Cancelled after ${result.steps} steps.` :
        `Done: ${result.steps} steps on ${result.rows} rows${result.heldout ? `, ${result.heldout} held out` : ''}${result.dropped ? ` (${result.dropped} dropped: prompt too long)` : ''}.`);
      $('#train-message').dataset.status = result.status;
      app.trained = result.steps > 0;
      app.hasAdapter = cfg.method === 'lora';
    } catch (e) {
      // A fatal error took the engine (and the model it was training) with it.
      say(e.fatal ? `Training stopped: ${e.message}. The trained weights were lost with it; your labels are kept.`
        : `Training stopped: ${e.message}`);
      $('#train-message').dataset.status = 'error';
      app.trained = !e.fatal && history.length > 0;
      app.hasAdapter = cfg.method === 'lora';
    } finally {
      await stored.set('run', { ...run, status: 'ended', step: history.length });
      if (!Number.isFinite(progress.value) || !history.length) progress.value = 0;
      setRunning(false);
    }
  }

  function setRunning(on) {
    $('#train').disabled = on;
    $('#pause').disabled = !on;
    $('#cancel').disabled = !on;
    $('#pause').textContent = 'Pause';
    paused = false;
    $('#save-weights').disabled = on || !app.trained;
    $('#download-weights').disabled = on || !app.trained;
    $('#download-merged').disabled = on || !app.trained;
    $('#download-adapter').disabled = on || !app.trained || !app.hasAdapter;
  }

  async function downloadFiles(kind) {
    try {
      const files = await app.engine.call('exportFiles', { kind });
      const prefix = `${app.modelName}-kto-${kind}`;
      for (const f of files) download(`${prefix}-${f.name}`, f.bytes, 'application/octet-stream');
      say(`Downloaded ${files.map((f) => f.name).join(', ')} (prefixed ${prefix}-; put them in one folder under their own names).`);
    } catch (e) {
      say(`Could not export: ${e.message}`);
    }
  }
  $('#download-adapter').addEventListener('click', () => downloadFiles('adapter'));
  $('#download-merged').addEventListener('click', () => downloadFiles('merged'));
  $('#adapter-files').addEventListener('change', async (e) => {
    const files = [...e.target.files];
    const config = files.find((f) => f.name.endsWith('.json'));
    const tensors = files.find((f) => f.name.endsWith('.safetensors'));
    if (!config || !tensors) return say('Pick both adapter_config.json and adapter_model.safetensors.');
    try {
      const info = await app.engine.call('importAdapter', { config: await config.arrayBuffer(), tensors: await tensors.arrayBuffer() });
      app.trained = true;
      app.hasAdapter = true;
      setRunning(false);
      say(`Loaded a rank-${info.rank} adapter (${info.adapters} projections): it is now the trained model.`);
    } catch (err) {
      say(`Could not load the adapter: ${err.message}`);
    }
  });

  $('#train').addEventListener('click', train);
  $('#pause').addEventListener('click', async () => {
    paused = !paused;
    $('#pause').textContent = paused ? 'Resume' : 'Pause';
    await app.engine.call(paused ? 'pause' : 'resume');
  });
  $('#cancel').addEventListener('click', () => app.engine.call('cancel'));
  $('#save-weights').addEventListener('click', async () => {
    try {
      const { name, bytes } = await app.engine.call('export');
      const saved = Date.now();
      await weights.save(`trained-${saved}`, bytes, { model: app.modelName, file: name, label: `${app.modelName}, trained ${new Date(saved).toLocaleString()}` });
      say('Trained weights saved in this browser (listed in the Model view\'s library).');
      document.dispatchEvent(new CustomEvent('library-changed'));
    } catch (e) {
      say(`Could not save: ${e.message}`);
    }
  });
  $('#restore-weights').addEventListener('click', async () => {
    const saved = await weights.latest(app.modelName);
    if (!saved) return say('No saved weights for this model in this browser yet.');
    try {
      await app.engine.call('restore', { bytes: saved.bytes });
      app.trained = true;
      setRunning(false);
      say(`Restored the weights saved ${new Date(saved.saved).toLocaleString()}.`);
    } catch (e) {
      say(`Could not restore: ${e.message}`);
    }
  });
  document.addEventListener('weights-restored', () => setRunning(false));
  $('#download-weights').addEventListener('click', async () => {
    const { name, bytes } = await app.engine.call('export');
    download(`${app.modelName}-kto-${name}`, bytes, 'application/octet-stream');
  });
  return { history, phases, renderSettings };
}
