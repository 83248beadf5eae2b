// How KTO works: the value function drawn from the engine's own loss function, with the
// current training batch as dots on its curves.
import { $, num } from '../util.js';

/** The rewards to draw: ±20 around 0 by default; with a batch, a range that holds every row and z
 *  with a margin (a real run's rewards reach −170…+55). */
function rewardRange(points, z) {
  const xs = [...points.map((p) => p.r), z];
  let [lo, hi] = points.length ? [Math.min(...xs), Math.max(...xs)] : [-20, 20];
  const pad = Math.max(2, 0.1 * (hi - lo));
  [lo, hi] = [lo - pad, hi + pad];
  return Array.from({ length: 241 }, (_, i) => lo + ((hi - lo) * i) / 240);
}

export function initExplainerView(app) {
  const canvas = $('#ex-canvas');
  const state = { last: null, points: [], drawn: [] };

  const params = () => ({
    z: num('ex-z'),
    loss: { beta: num('ex-beta'), desirable_weight: num('ex-wd'), undesirable_weight: num('ex-wu'), loss_type: $('#ex-loss').value },
  });

  async function redraw() {
    const p = params();
    try {
      const R = rewardRange(state.points, p.loss.loss_type === 'kto' ? p.z : 0);
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
    c.fillText(r[0].toFixed(0), 40, h - 10);
    c.fillText(r[r.length - 1].toFixed(0), w - 30, h - 10);
    state.drawn = [];
    for (const p of state.points) {
      c.fillStyle = p.label ? '#2b8a3e' : '#c92a2a';
      c.beginPath(); c.arc(X(p.r), Y(p.loss), 5, 0, 2 * Math.PI); c.fill();
      state.drawn.push({ ...p, x: X(p.r), y: Y(p.loss) });
    }
    canvas.dataset.points = String(state.drawn.length);
    $('#ex-values').textContent = `β ${loss.beta}, z ${zEff}${loss.loss_type === 'kto' ? '' : ' (APO-zero: always 0)'}`;
  }

  /** Called once per training step: move z to the batch's and place its examples on the curves. */
  /** Start from the training settings' loss (the engine's defaults until a run says otherwise). */
  function useSettings(cfg) {
    $('#ex-beta').value = cfg.beta;
    $('#ex-wd').value = cfg.desirable_weight;
    $('#ex-wu').value = cfg.undesirable_weight;
    $('#ex-loss').value = cfg.loss_type;
  }

  async function onTrainStep(m, cfg) {
    useSettings(cfg);
    $('#ex-z').value = m.kl;
    state.points = (m.rows || []).map((row) => ({ r: row.log_ratio, label: row.label, loss: 0, prompt: row.prompt, completion: row.completion, beta: cfg.beta }));
    await redraw();
  }

  for (const id of ['ex-beta', 'ex-z', 'ex-wd', 'ex-wu', 'ex-loss']) $(`#${id}`).addEventListener('input', redraw);

  // Hover a point: which row of the batch it is, its reward and its loss.
  canvas.addEventListener('mousemove', (e) => {
    const box = canvas.getBoundingClientRect();
    const [mx, my] = [(e.clientX - box.left) * (canvas.width / box.width), (e.clientY - box.top) * (canvas.height / box.height)];
    const near = state.drawn.map((p) => ({ p, d: Math.hypot(p.x - mx, p.y - my) })).sort((a, b) => a.d - b.d)[0];
    const tip = $('#ex-tip');
    if (!near || near.d > 8) { tip.hidden = true; return; }
    const p = near.p;
    tip.textContent = `${p.label ? '👍' : '👎'} ${p.prompt}${p.completion}\nreward r = ${p.r.toFixed(3)} (β·r = ${(p.beta * p.r).toFixed(3)}), loss ${p.loss.toFixed(4)}`;
    tip.style.left = `${e.clientX - box.left + 12}px`;
    tip.style.top = `${e.clientY - box.top + 12}px`;
    tip.hidden = false;
  });
  canvas.addEventListener('mouseleave', () => ($('#ex-tip').hidden = true));
  return { state, redraw, onTrainStep, useSettings };
}
