// Generate & label: prompt, demo prompts, sampling controls, N streamed samples, 👍/👎/skip.
import { $, el, num, showError } from '../util.js';

export function initGenerateView(app) {
  const samples = $('#samples');
  const select = $('#demo-prompts');

  app.prompts.then((sets) => {
    for (const p of sets.train) select.append(el('option', { value: p }, p.length > 70 ? p.slice(0, 70) + '…' : p));
  }).catch(() => {});
  select.addEventListener('change', () => { if (select.value) $('#prompt').value = select.value; });

  function sampling() {
    return { temperature: num('temperature'), top_k: num('top-k'), top_p: num('top-p'), max_tokens: num('max-tokens'), seed: num('seed') };
  }

  function card(prompt, i) {
    const text = el('textarea', { class: 'text', 'data-testid': 'sample-text', rows: 3 });
    const node = el('div', { class: 'sample', tabindex: 0, 'data-testid': 'sample', 'data-index': i });
    const label = async (value, auto = null) => {
      if (node.classList.contains('labelled')) return;
      node.classList.add('labelled');
      if (value !== null) await app.addLabel({ prompt, completion: text.value, label: value, source: auto ? 'auto' : 'human', score: auto?.score });
      const what = value === null ? (auto ? 'neutral: left unlabelled' : 'skipped') : value ? '👍 desirable' : '👎 undesirable';
      node.querySelector('.state').textContent = auto ? `🤖 ${what} (judge score ${auto.score})` : what;
      const next = node.nextElementSibling;
      if (next) next.focus();
    };
    node.append(
      el('div', { class: 'hint' }, `sample ${i + 1}`),
      text,
      el('div', { class: 'actions' },
        el('button', { 'data-testid': 'label-up', onclick: () => label(true) }, '👍 desirable'),
        el('button', { 'data-testid': 'label-down', onclick: () => label(false) }, '👎 undesirable'),
        el('button', { 'data-testid': 'label-skip', onclick: () => label(null) }, 'skip'),
        el('span', { class: 'state', 'data-testid': 'sample-state' })),
    );
    node.addEventListener('keydown', (e) => {
      if (e.target === text) return; // typing in the editor
      const key = { u: true, d: false, s: null }[e.key];
      if (key !== undefined) { e.preventDefault(); label(key); }
    });
    node.autoLabel = (rule) => autoLabel(node, prompt, text, rule, label);
    return { node, text };
  }

  /** Label one sample by the judge: its score and the rule decide 👍, 👎 or no label. */
  async function autoLabel(node, prompt, text, rule, label) {
    if (node.classList.contains('labelled')) return;
    const [score] = await app.engine.call('judge', { texts: [text.value] });
    const { rows } = await app.engine.call('autoLabel', { samples: [{ prompt, text: text.value, tokens: 0, score }], rule });
    await label(rows.length ? rows[0].label : null, { score });
  }

  async function generate() {
    const prompt = $('#prompt').value;
    const n = Math.max(1, Math.min(16, num('n-samples')));
    const cards = Array.from({ length: n }, (_, i) => card(prompt, i));
    const group = el('div', { class: 'group', 'data-testid': 'sample-group' }, el('div', { class: 'hint' }, `prompt: ${prompt}`), cards.map((c) => c.node));
    samples.prepend(group);
    const button = $('#generate');
    button.disabled = true;
    try {
      const out = await app.engine.call('generate', { prompt, n, sampling: sampling(), which: 'base', chat: app.chat }, {
        onEvent: (m) => { if (m.type === 'token') cards[m.sample].text.value += m.text; },
      });
      out.forEach((s, i) => (cards[i].text.value = s.text));
      group.dataset.done = 'true';
      cards[0].node.focus();
    } catch (e) {
      group.append(el('div', { class: 'error' }, `Generation failed: ${e.message}`));
    } finally {
      button.disabled = false;
    }
  }

  $('#generate').addEventListener('click', generate);
  $('#auto-label').addEventListener('click', async () => {
    const rule = { mood: $('#auto-mood').value, threshold: num('auto-threshold'), band: num('auto-band') };
    for (const node of samples.querySelectorAll('[data-testid=sample]:not(.labelled)')) await node.autoLabel(rule);
  });
}
