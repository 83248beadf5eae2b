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
    };
  }

  function showMetrics(m) {
    $('#last-metrics').replaceChildren(...SHOWN.filter((k) => k in m).map((k) =>
      el('tr', {}, el('th', {}, k), el('td', { 'data-metric': k }, Number(m[k]).toPrecision(6)))));
  }

  async function train() {
    const rows = (await labels.all()).map(({ prompt, completion, label }) => ({ prompt, completion, label }));
    const cfg = config();
    Object.values(charts).forEach((c) => c.reset());
    history.length = 0;
    delete $('#train-message').dataset.status;
    say('');
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
    } catch (e) {
      say(`Training stopped: ${e.message}`);
      $('#train-message').dataset.status = 'error';
      app.trained = history.length > 0;
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
  }

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
    download(`${app.modelName}-kto.bin`, bytes, 'application/octet-stream');
  });
  return { history };
}
