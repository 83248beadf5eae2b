// Compare: base vs trained model on the same prompts, seeds and sampling settings.
import { $, el, num, showError } from '../util.js';
import { labels } from '../storage.js';

/** Background for a log-prob change: green when the trained model likes the token more. */
function diffColour(d) {
  const a = Math.min(1, Math.abs(d) / 2);
  return d >= 0 ? `rgba(43, 138, 62, ${a})` : `rgba(201, 42, 42, ${a})`;
}

/** Background for a base log-prob: the less likely, the darker (0 nats white, −8 and below grey). */
const baseColour = (lp) => `rgba(60, 70, 90, ${Math.min(0.6, -lp / 8 * 0.6)})`;

export function initCompareView(app) {
  $('#diff-run').addEventListener('click', async () => {
    const error = $('#diff-error');
    showError(error, null);
    try {
      const tokens = await app.engine.call('tokenDiff', { text: $('#diff-text').value });
      const span = (t, colour, title) => el('span', {
        class: 'tok', style: `background: ${colour}`, title,
        'data-base': String(t.base), 'data-trained': String(t.trained), 'data-diff': String(t.trained - t.base),
      }, t.text);
      const f = (x) => x.toFixed(3);
      $('#diff-base').replaceChildren(...tokens.map((t) => span(t, baseColour(t.base), `log p base ${f(t.base)}`)));
      $('#diff-trained').replaceChildren(...tokens.map((t) => span(t, diffColour(t.trained - t.base),
        `log p trained ${f(t.trained)} − base ${f(t.base)} = ${f(t.trained - t.base)} (×${Math.exp(t.trained - t.base).toFixed(2)} as likely)`)));
      $('#diff-trained').dataset.done = 'true';
    } catch (e) {
      showError(error, e);
    }
  });

  $('#compare').addEventListener('click', async () => {
    const error = $('#compare-error');
    showError(error, null);
    const tbody = $('#compare-rows');
    tbody.replaceChildren();
    const prompts = [...new Set((await labels.all()).map((r) => r.prompt))].slice(0, 4);
    if (!prompts.length) prompts.push(app.lastPrompt);
    const sampling = { temperature: num('compare-temperature'), seed: num('compare-seed'), max_tokens: num('compare-max-tokens'), top_p: 1, top_k: 0 };
    try {
      for (const prompt of prompts) {
        const [base, trained] = [el('td', { 'data-testid': 'compare-base' }), el('td', { 'data-testid': 'compare-trained' })];
        tbody.append(el('tr', { 'data-testid': 'compare-row' }, el('td', {}, prompt), base, trained));
        for (const [which, cell] of [['base', base], ['trained', trained]]) {
          const out = await app.engine.call('generate', { prompt, n: 1, sampling, which, chat: app.chat }, {
            onEvent: (m) => { if (m.type === 'token') cell.textContent += m.text; },
          });
          cell.textContent = out[0].text;
        }
      }
      tbody.dataset.done = 'true';
    } catch (e) {
      showError(error, e);
    }
  });
}
