// How KTO works: the value function drawn from the engine's own loss function, with the
// current training batch as dots on its curves.
import { $, num } from '../util.js';

const R = Array.from({ length: 161 }, (_, i) => -20 + i * 0.25);

export function initExplainerView(app) {
  const canvas = $('#ex-canvas');
  const state = { last: null, points: [] };

  const params = () => ({
    z: num('ex-z'),
    loss: { beta: num('ex-beta'), desirable_weight: num('ex-wd'), undesirable_weight: num('ex-wu'), loss_type: $('#ex-loss').value },
  });

  async function redraw() {
    const p = params();
    try {
      const curve = await app.engine.call('lossCurve', { r: R, z: p.z, loss: p.loss });
      // The batch's examples stay put (same data, same r); their losses follow the settings, so
      // switching KTO <-> APO-zero or moving z shows what changes for the very same examples.
      if (state.points.length) {
        const at = await app.engine.call('lossCurve', { r: state.points.map((q) => q.r), z: p.z, loss: p.loss });
        state.points.forEach((q, i) => (q.loss = q.label ? at.desirable[i] : at.undesirable[i]));
      }
      state.last = { r: R, ...curve, ...p };
      draw();
    } catch { /* engine restarting */ }
  }

  function draw() {
    const { r, desirable, undesirable, z, loss } = state.last;
    const c = canvas.getContext('2d');
    const { width: w, height: h } = canvas;
    c.clearRect(0, 0, w, h);
    const ymax = Math.max(...desirable, ...undesirable, 1) * 1.05;
    const X = (x) => 40 + ((x - r[0]) / (r[r.length - 1] - r[0])) * (w - 50);
    const Y = (y) => h - 24 - (y / ymax) * (h - 40);
    c.strokeStyle = '#ccd';
    c.beginPath(); c.moveTo(40, Y(0)); c.lineTo(w - 10, Y(0)); c.stroke();
    c.fillStyle = '#667';
    c.font = '11px sans-serif';
    c.fillText('implied reward r = log πθ/πref', w / 2 - 70, h - 6);
    c.fillText(ymax.toFixed(2), 4, Y(ymax) + 10);
    c.fillText('0', 24, Y(0));
    const zEff = loss.loss_type === 'kto' ? z : 0;
    c.setLineDash([4, 4]);
    c.strokeStyle = '#999';
    c.beginPath(); c.moveTo(X(zEff), 10); c.lineTo(X(zEff), h - 24); c.stroke();
    c.setLineDash([]);
    for (const [ys, color] of [[desirable, '#2b8a3e'], [undesirable, '#c92a2a']]) {
      c.strokeStyle = color;
      c.lineWidth = 2;
      c.beginPath();
      ys.forEach((y, i) => (i ? c.lineTo(X(r[i]), Y(y)) : c.moveTo(X(r[i]), Y(y))));
      c.stroke();
    }
    c.lineWidth = 1;
    for (const p of state.points) {
      if (p.r < r[0] || p.r > r[r.length - 1]) continue;
      c.fillStyle = p.label ? '#2b8a3e' : '#c92a2a';
      c.beginPath(); c.arc(X(p.r), Y(p.loss), 4, 0, 2 * Math.PI); c.fill();
    }
    $('#ex-values').textContent = `β ${loss.beta}, z ${zEff}${loss.loss_type === 'kto' ? '' : ' (APO-zero: always 0)'}`;
  }

  /** Called once per training step: move z to the batch's and place its examples on the curves. */
  async function onTrainStep(m, cfg) {
    $('#ex-beta').value = cfg.beta;
    $('#ex-wd').value = cfg.desirable_weight;
    $('#ex-wu').value = cfg.undesirable_weight;
    $('#ex-loss').value = cfg.loss_type;
    $('#ex-z').value = m.kl;
    state.points = (m.rewards || []).map((x, i) => ({ r: x / cfg.beta, label: m.labels[i], loss: 0 }));
    await redraw();
  }

  for (const id of ['ex-beta', 'ex-z', 'ex-wd', 'ex-wu', 'ex-loss']) $(`#${id}`).addEventListener('input', redraw);
  return { state, redraw, onTrainStep };
}
