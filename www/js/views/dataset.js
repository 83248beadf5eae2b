// Dataset: the labelled rows in IndexedDB — list, edit, delete, import/export TRL JSONL, class
// counts and TRL's imbalance advice.
import { $, el, download, showError } from '../util.js';
import { labels } from '../storage.js';

export function initDatasetView(app) {
  const tbody = $('#rows');
  const error = $('#dataset-error');
  const info = (text) => { $('#dataset-info').textContent = text; $('#dataset-info').hidden = !text; };

  async function refresh() {
    const rows = await labels.all();
    const nD = rows.filter((r) => r.label).length;
    const nU = rows.length - nD;
    $('#count-badge').textContent = `(${rows.length})`;
    $('#class-counts').textContent = `${rows.length} rows: ${nD} 👍 desirable, ${nU} 👎 undesirable`;
    $('#class-counts').dataset.desirable = nD;
    $('#class-counts').dataset.undesirable = nU;
    const advice = $('#advice');
    advice.textContent = '';
    if (nD && nU) {
      try {
        const a = await app.engine.call('advice', { nD, nU, settings: app.settings.values });
        advice.textContent = a.warn
          ? `The classes are imbalanced for the current weights: set λ_D in [${a.desirable_weight.join(', ')}] ` +
            `or λ_U in [${a.undesirable_weight.join(', ')}] so that λ_D·n_D / (λ_U·n_U) lies in [1, 4/3] (KTO paper, TRL).`
          : 'Class balance is within the recommended range (λ_D·n_D / λ_U·n_U in [1, 4/3]).';
      } catch { /* the engine may be restarting; counts still show */ }
    } else if (rows.length) {
      advice.textContent = 'Only one class so far: KTO works with either, but label both for a clear signal.';
    }
    tbody.replaceChildren(...rows.map(row));
    return rows;
  }

  function row(r) {
    const completion = el('textarea', { 'data-testid': 'row-completion' }, r.completion);
    completion.addEventListener('change', () => {
      // A conversational row's reply is its completion message too.
      const messages = r.messages && { ...r.messages, completion: [{ role: 'assistant', content: completion.value }] };
      labels.put({ ...r, completion: completion.value, messages });
    });
    const toggle = el('button', {
      'data-testid': 'row-label',
      'data-label': String(r.label),
      onclick: async () => { await labels.put({ ...r, label: !r.label, source: 'human' }); refresh(); },
    }, r.label ? '👍' : '👎');
    return el('tr', { 'data-testid': 'row' },
      el('td', {}, toggle, r.source === 'auto'
        ? el('span', { class: 'machine', 'data-testid': 'row-auto', title: `labelled by the sentiment judge (score ${r.score}); click the label to change it` }, '🤖 auto')
        : null),
      el('td', {}, r.prompt),
      el('td', {}, completion),
      el('td', {}, el('button', { 'data-testid': 'row-delete', onclick: async () => { await labels.remove(r.id); refresh(); } }, 'delete')));
  }

  $('#export-jsonl').addEventListener('click', async () => {
    const rows = await labels.all();
    const text = await app.engine.call('toJsonl', { rows: rows.map(({ prompt, completion, label, messages }) => ({ prompt, completion, label, messages })) });
    download('kto-dataset.jsonl', text, 'application/jsonl');
  });

  $('#import-jsonl').addEventListener('change', async (e) => {
    const file = e.target.files[0];
    e.target.value = '';
    if (!file) return;
    showError(error, null);
    info('');
    try {
      // The engine's own parser: the same errors (with line numbers) as the CLI, every one of them.
      const { rows, errors, paired, lines } = await app.engine.call('parseJsonl', { text: await file.text() });
      if (errors.length) {
        const n = errors.length;
        return showError(error, `Import of ${file.name}: nothing was added. Fix ${n === 1 ? 'this line' : `these ${n} lines`} and import again:\n${errors.join('\n')}`);
      }
      if (!rows.length) {
        return showError(error, `${file.name} has no rows${lines ? '' : ' (it is empty or only blank lines)'}: each line should be {"prompt": "…", "completion": "…", "label": true}.`);
      }
      await labels.addMany(rows.map((r) => ({ ...r, source: 'import' })));
      await refresh();
      const split = paired ? ` (${paired} paired row${paired > 1 ? 's' : ''} split into ${2 * paired})` : '';
      info(`Added ${rows.length} row${rows.length > 1 ? 's' : ''} from ${file.name}${split}.`);
    } catch (err) {
      showError(error, `Import of ${file.name} failed, nothing was added: ${err.message}`);
    }
  });

  $('#clear-dataset').addEventListener('click', async () => {
    if (confirm('Delete every labelled row?')) { await labels.clear(); refresh(); }
  });
  // The advice depends on the class weights, which the Train form owns.
  document.addEventListener('settings-changed', refresh);
  return { refresh };
}
