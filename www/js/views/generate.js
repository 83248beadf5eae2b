// Generate & label: prompt, demo prompts, sampling controls, N streamed samples, 👍/👎/skip.
import { $, el, num, showError } from '../util.js';

export function initGenerateView(app) {
  const samples = $('#samples');
  const select = $('#demo-prompts');

  app.prompts.then((sets) => {
    for (const p of sets.train) select.append(el('option', { value: p }, p.length > 70 ? p.slice(0, 70) + '…' : p));
  }).catch(() => {});
  select.addEventListener('change', () => { if (select.value) $('#prompt').value = select.value; });
  app.lastPrompt = $('#prompt').value;

  function sampling() {
    return { temperature: num('temperature'), top_k: num('top-k'), top_p: num('top-p'), max_tokens: num('max-tokens'), seed: num('seed') };
  }

  function card(prompt, i) {
    const text = el('textarea', { class: 'text', 'data-testid': 'sample-text', rows: 3 });
    const node = el('div', { class: 'sample', tabindex: 0, 'data-testid': 'sample', 'data-index': i });
    // A labelled card keeps its buttons: the chosen one is marked, another click relabels the
    // stored row in place (skip removes it).
    let stored = null; // { id, row } once a label is stored
    const label = async (value, auto = null) => {
      const first = !node.classList.contains('labelled');
      if (auto && !first) return; // the judge never overrides a person
      node.classList.add('labelled');
      if (stored) {
        await app.relabel(stored.id, stored.row, value);
        stored = value === null ? null : { ...stored, row: { ...stored.row, label: value } };
      } else if (value !== null) {
        // A chat-mode label is a conversation (exported in TRL's conversational format).
        const messages = app.chat ? { prompt: [{ role: 'user', content: prompt }], completion: [{ role: 'assistant', content: text.value }] } : undefined;
        const row = { prompt, completion: text.value, label: value, source: auto ? 'auto' : 'human', score: auto?.score, messages };
        stored = { id: await app.addLabel(row), row };
      }
      node.dataset.label = String(value);
      node.querySelectorAll('.actions button').forEach((b) => b.classList.toggle('chosen', b.dataset.value === String(value)));
      const what = value === null ? (auto ? 'neutral: left unlabelled' : 'skipped') : value ? '👍 desirable' : '👎 undesirable';
      node.querySelector('.state').textContent = auto ? `🤖 ${what} (judge score ${auto.score})` : first ? what : `${what} (changed)`;
      const next = node.nextElementSibling;
      if (first && next) next.focus();
    };
    node.append(
      el('div', { class: 'hint' }, `sample ${i + 1}`),
      text,
      el('div', { class: 'actions' },
        el('button', { 'data-testid': 'label-up', 'data-value': 'true', onclick: () => label(true) }, '👍 desirable'),
        el('button', { 'data-testid': 'label-down', 'data-value': 'false', onclick: () => label(false) }, '👎 undesirable'),
        el('button', { 'data-testid': 'label-skip', 'data-value': 'null', onclick: () => label(null) }, 'skip'),
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
    const [score, verdict] = await app.engine.call('judgeLabel', { text: text.value, rule });
    await label(verdict, { score });
  }

  async function generate() {
    const prompt = $('#prompt').value;
    app.lastPrompt = prompt;
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
