// Train: settings, progress with ETA, live charts, pause/cancel, NaN stop, save/restore/download.
import { $, download, el, num } from '../util.js';
import { LineChart } from '../chart.js';
import { labels, weights } from '../storage.js';

const SHOWN = ['loss', 'kl', 'rewards/chosen', 'rewards/rejected', 'rewards/margins', 'logps/chosen', 'logps/rejected', 'grad_norm'];

export function initTrainView(app) {
  const charts = {
    loss: new LineChart($('#chart-loss'), ['loss']),
    rewards: new LineChart($('#chart-rewards'), ['chosen', 'rejected', 'margins']),
    kl: new LineChart($('#chart-kl'), ['kl']),
  };
  const message = $('#train-message');
  const say = (text) => { message.textContent = text; message.hidden = !text; };
  let paused = false;
  const history = [];

  function config() {
    return {
      beta: num('beta'), desirable_weight: num('w-d'), undesirable_weight: num('w-u'),
      loss_type: $('#loss-type').value, optimizer: $('#optimizer').value,
      learning_rate: num('lr'), steps: num('steps'), batch_size: num('batch-size'), max_length: num('max-length'),
      shuffle: $('#shuffle').checked, seed: 42, grad_accum: 1, max_grad_norm: 1.0, weight_decay: 0,
      chat: app.chat,
      lora: $('#method').value === 'lora' ? {
        rank: num('lora-rank'), alpha: num('lora-alpha'), dropout: num('lora-dropout'),
        targets: $('#lora-targets').value.split(',').map((t) => t.trim()).filter(Boolean),
      } : null,
    };
  }

  const rowsForTraining = async () => (await labels.all()).map(({ prompt, completion, label }) => ({ prompt, completion, label }));

  /** The memory estimate for the current settings and labels, and whether the run fits. */
  async function estimate() {
    const out = $('#memory-estimate');
    try {
      const rows = await rowsForTraining();
      const { estimate: e, seqLen, error } = await app.engine.call('memory', { rows: rows.length ? rows : [{ prompt: 'a', completion: 'b', label: true }], config: config() });
      const mb = (b) => `${(b / 1048576).toFixed(b < 10 * 1048576 ? 1 : 0)} MiB`;
      out.textContent = `Estimated peak memory: ${mb(e.total)} — weights ${mb(e.weights + e.reference)}, gradients + optimizer ${mb(e.gradients + e.optimizer)}, activations ${mb(e.activations)} (rows up to ${seqLen} tokens; ${e.trainable_params.toLocaleString()} trainable parameters).${error ? ` Too large: ${error}` : ''}`;
      out.dataset.fits = error ? 'false' : 'true';
      out.dataset.batch = String(config().batch_size);
      out.dataset.total = e.total;
    } catch (err) {
      out.textContent = `No estimate: ${err.message}`;
    }
  }
  let pending = null;
  const soon = () => { clearTimeout(pending); pending = setTimeout(estimate, 200); };
  document.querySelectorAll('#view-train input, #view-train select').forEach((i) => { i.addEventListener('change', soon); i.addEventListener('input', soon); });
  // The labels decide the row lengths: estimate again whenever the view is opened.
  document.querySelector('nav button[data-view=train]').addEventListener('click', soon);
  document.addEventListener('model-loaded', (e) => {
    // Big models train with LoRA by default; only Llama-family models have it.
    const method = $('#method');
    method.querySelector('option[value=lora]').disabled = !e.detail.lora;
    method.value = e.detail.lora && e.detail.parameters > 20e6 ? 'lora' : 'full';
    estimate();
  });

  function showMetrics(m) {
    $('#last-metrics').replaceChildren(...SHOWN.filter((k) => k in m).map((k) =>
      el('tr', {}, el('th', {}, k), el('td', { 'data-metric': k }, Number(m[k]).toPrecision(6)))));
  }

  async function train() {
    // Clear the last run's outcome before the first await, so nobody reads a stale status.
    delete $('#train-message').dataset.status;
    say('');
    const cfg = config();
    const rows = await rowsForTraining();
    Object.values(charts).forEach((c) => c.reset());
    history.length = 0;
    setRunning(true);
    const progress = $('#progress');
    try {
      const result = await app.engine.call('train', { rows, config: cfg }, {
        onEvent: (e) => {
          if (e.type !== 'progress') return;
          const m = e.metrics;
          history.push({ ...m, elapsedMs: e.elapsedMs });
          progress.value = e.step / e.total;
          const eta = (e.elapsedMs / e.step) * (e.total - e.step) / 1000;
          $('#progress-text').textContent = `step ${e.step}/${e.total} · ${(e.elapsedMs / e.step).toFixed(0)} ms/step · ETA ${eta.toFixed(1)} s`;
          charts.loss.push(e.step, [m.loss]);
          charts.rewards.push(e.step, [m['rewards/chosen'], m['rewards/rejected'], m['rewards/margins']]);
          charts.kl.push(e.step, [m.kl]);
          showMetrics(m);
          app.onTrainStep?.(m, cfg);
        },
      });
      say(result.status === 'cancelled' ? `Cancelled after ${result.steps} steps.` :
        `Done: ${result.steps} steps on ${result.rows} rows${result.dropped ? ` (${result.dropped} dropped: prompt too long)` : ''}.`);
      $('#train-message').dataset.status = result.status;
      app.trained = result.steps > 0;
      app.hasAdapter = !!cfg.lora;
    } catch (e) {
      // A fatal error took the engine (and the model it was training) with it.
      say(e.fatal ? `Training stopped: ${e.message}. The trained weights were lost with it; your labels are kept.`
        : `Training stopped: ${e.message}`);
      $('#train-message').dataset.status = 'error';
      app.trained = !e.fatal && history.length > 0;
      app.hasAdapter = !!cfg.lora;
    } finally {
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
    const { bytes } = await app.engine.call('export');
    await weights.save('trained', bytes, { model: app.modelName });
    say('Trained weights saved in this browser.');
  });
  $('#restore-weights').addEventListener('click', async () => {
    const saved = await weights.get('trained');
    if (!saved) return say('No saved weights in this browser yet.');
    try {
      await app.engine.call('restore', { bytes: saved.bytes });
      app.trained = true;
      setRunning(false);
      say(`Restored the weights saved ${new Date(saved.saved).toLocaleString()}.`);
    } catch (e) {
      say(`Could not restore: ${e.message}`);
    }
  });
  $('#download-weights').addEventListener('click', async () => {
    const { bytes } = await app.engine.call('export');
    const ext = app.modelInfo?.format === 'llama2.c' && !app.hasAdapter ? 'bin' : 'safetensors';
    download(`${app.modelName}-kto.${ext}`, bytes, 'application/octet-stream');
  });
  return { history };
}
