// Compare: base vs trained model on the same prompts, seeds and sampling settings.
import { $, el, num, showError } from '../util.js';
import { labels } from '../storage.js';

export function initCompareView(app) {
  $('#compare').addEventListener('click', async () => {
    const error = $('#compare-error');
    showError(error, null);
    const tbody = $('#compare-rows');
    tbody.replaceChildren();
    const prompts = [...new Set((await labels.all()).map((r) => r.prompt))].slice(0, 4);
    if (!prompts.length) prompts.push($('#prompt').value);
    const sampling = { temperature: num('compare-temperature'), seed: num('compare-seed'), max_tokens: num('max-tokens'), top_p: 1, top_k: 0 };
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
