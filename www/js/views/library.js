// Model view, second half: open a model from the Hugging Face Hub (progress bar, resume), and the
// library of what this browser keeps — Hub models in OPFS, trained weights in IndexedDB — to
// reopen, rename, download or delete, with sizes and the storage quota.
import { $, download, el, fileSize as mb, showError } from '../util.js';
import { DEFAULT_HUB, deleteKept, fetchModel, listModels, openKept, renameKept, storageEstimate } from '../hub.js';
import { settings, weights } from '../storage.js';


export function initLibraryView(app, modelView) {
  const status = $('#hub-status');
  const bar = $('#hub-progress');
  const error = $('#hub-error');
  const endpointInput = $('#hub-endpoint');

  (async () => {
    endpointInput.value = new URLSearchParams(location.search).get('hub') || (await settings.get('hubEndpoint', DEFAULT_HUB));
  })();

  async function openHub(e) {
    e.preventDefault();
    const spec = $('#hub-id').value.trim();
    if (!spec) return;
    const endpoint = endpointInput.value.trim() || DEFAULT_HUB;
    showError(error, null);
    const button = $('#hub-open');
    button.disabled = true;
    bar.hidden = false;
    bar.value = 0;
    status.textContent = `asking ${endpoint} for ${spec}…`;
    try {
      await settings.set('hubEndpoint', endpoint);
      const got = await fetchModel(app.engine, spec, endpoint, (p) => {
        bar.max = p.overallTotal || 1;
        bar.value = Math.min(p.overall, bar.max);
        const pct = p.total ? ` ${Math.floor((100 * p.done) / p.total)}%` : '';
        status.textContent = `${p.file}${pct} (${mb(p.done)} of ${mb(p.total)})${p.note ? ` — ${p.note}` : ''}`;
      });
      if (got.choose) {
        offerChoice(got.choose);
        bar.hidden = true;
        return;
      }
      status.textContent = `downloaded ${got.entry.files.length} files (${mb(bar.max)}); opening…`;
      modelView.render(await app.loadModel(got.name, got.files, true));
      await settings.set('lastHubModel', { folder: got.entry.folder, sha: got.entry.sha });
      status.textContent = `${got.entry.label}: kept in this browser, opens again without a connection.`;
    } catch (err) {
      showError(error, `Could not open ${spec} from the Hub: ${err.message}`);
      status.textContent = '';
    } finally {
      button.disabled = false;
      refresh();
    }
  }
  $('#hub-form').addEventListener('submit', openHub);

  /** A GGUF repo holds one file per quantization: list them (Q4_K_M preselected: the usual
   *  size/quality trade-off) and open the one picked. */
  function offerChoice({ id, revision, files }) {
    const select = $('#hub-file');
    const rank = (n) => (/q4_k_m/i.test(n) ? 0 : /q5_k_m/i.test(n) ? 1 : /q8_0/i.test(n) ? 2 : 3);
    const sorted = [...files].sort((a, b) => rank(a[0]) - rank(b[0]) || a[0].localeCompare(b[0]));
    select.replaceChildren(...sorted.map(([name, size]) => el('option', { value: name }, `${name} (${mb(size)})`)));
    $('#hub-choice').hidden = false;
    status.textContent = `${id} holds ${files.length} GGUF files (one per quantization): pick one.`;
    $('#hub-choice-open').onclick = () => {
      $('#hub-choice').hidden = true;
      $('#hub-id').value = `${id}${revision !== 'main' ? `@${revision}` : ''}:${select.value}`;
      $('#hub-form').requestSubmit();
    };
  }

  async function openEntry(m) {
    showError(error, null);
    status.textContent = `opening ${m.label} from this browser…`;
    try {
      const got = await openKept(m);
      modelView.render(await app.loadModel(got.name, got.files, true));
      await settings.set('lastHubModel', { folder: m.folder, sha: m.sha });
      status.textContent = `${m.label}: opened from this browser's storage (no download).`;
      return true;
    } catch (err) {
      showError(error, `Could not open ${m.label}: ${err.message}`);
      status.textContent = '';
      return false;
    }
  }

  /** At start-up: reopen the Hub model the last visit had open, if it is still kept. */
  async function reopenLast() {
    const last = await settings.get('lastHubModel', null);
    if (!last) return false;
    const m = (await listModels().catch(() => [])).find((e) => e.folder === last.folder && e.sha === last.sha && e.complete);
    if (!m) {
      await settings.set('lastHubModel', null);
      return false;
    }
    return openEntry(m);
  }
  // Any other model (built-in, files) replaces it for the next visit too.
  document.addEventListener('model-opened-elsewhere', () => settings.set('lastHubModel', null));

  async function restoreWeights(w) {
    try {
      await app.engine.call('restore', { bytes: w.bytes });
      app.trained = true;
      document.dispatchEvent(new CustomEvent('weights-restored'));
      status.textContent = `${w.label || w.name}: restored as the trained model.`;
    } catch (err) {
      showError(error, `Could not restore ${w.label || w.name}: ${err.message}`);
    }
  }

  /** An inline rename: the label becomes an input; Enter saves, Escape cancels. */
  function renamer(cell, current, save) {
    const input = el('input', { value: current, 'data-testid': 'library-rename-input', size: 30 });
    input.addEventListener('keydown', async (e) => {
      if (e.key === 'Enter') {
        await save(input.value.trim() || current);
        refresh();
      } else if (e.key === 'Escape') refresh();
    });
    cell.replaceChildren(input);
    input.focus();
    input.select();
  }

  function row(kind, label, size, when, actions) {
    const name = el('td', { 'data-testid': 'library-label' }, label);
    const tr = el('tr', { 'data-testid': 'library-row', dataset: { kind } },
      name, el('td', {}, kind === 'model' ? 'model (Hub)' : 'trained weights'),
      el('td', { 'data-testid': 'library-size' }, mb(size)), el('td', {}, new Date(when).toLocaleString()),
      el('td', {}, ...actions(name)));
    return tr;
  }

  async function refresh() {
    const table = $('#library-table');
    const rows = [];
    for (const m of await listModels().catch(() => [])) {
      rows.push(row('model', m.complete ? m.label : `${m.label} (partly downloaded)`, m.size, m.added, (cell) => [
        el('button', { 'data-testid': 'library-open', onclick: () => (m.complete ? openEntry(m) : ($('#hub-id').value = m.spec || `${m.id}@${m.revision}`)) }, m.complete ? 'Open' : 'Resume…'),
        el('button', { 'data-testid': 'library-rename', onclick: () => renamer(cell, m.label, (l) => renameKept(m, l)) }, 'Rename'),
        el('button', { 'data-testid': 'library-download', disabled: !m.complete, onclick: async () => {
          const got = await openKept(m);
          for (const f of got.files) download(f.name, f.bytes, 'application/octet-stream');
        } }, 'Download'),
        el('button', { 'data-testid': 'library-delete', onclick: async () => {
          if (!confirm(`Delete ${m.label} (${mb(m.size)}) from this browser?`)) return;
          await deleteKept(m);
          const last = await settings.get('lastHubModel', null);
          if (last?.folder === m.folder && last?.sha === m.sha) await settings.set('lastHubModel', null);
          refresh();
        } }, 'Delete'),
      ]));
    }
    for (const w of await weights.list().catch(() => [])) {
      const label = w.label || `${w.model || 'model'}, trained ${new Date(w.saved).toLocaleString()}`;
      rows.push(row('weights', label, w.bytes?.byteLength, w.saved, (cell) => [
        el('button', { 'data-testid': 'library-open', title: `restore onto ${w.model || 'the model it was trained from'}`, onclick: () => restoreWeights(w) }, 'Restore'),
        el('button', { 'data-testid': 'library-rename', onclick: () => renamer(cell, label, (l) => weights.rename(w.name, l)) }, 'Rename'),
        el('button', { 'data-testid': 'library-download', onclick: () => download(`${(w.model || 'model').replace(/[^\w.-]+/g, '_')}-kto-${w.file || 'trained.safetensors'}`, w.bytes, 'application/octet-stream') }, 'Download'),
        el('button', { 'data-testid': 'library-delete', onclick: async () => {
          if (!confirm(`Delete ${label}?`)) return;
          await weights.remove(w.name);
          refresh();
        } }, 'Delete'),
      ]));
    }
    table.replaceChildren(
      el('tr', {}, ...['name', 'kind', 'size', 'kept since', ''].map((h) => el('th', {}, h))),
      ...rows,
    );
    $('#library-empty').hidden = rows.length > 0;
    const est = await storageEstimate();
    $('#storage-quota').textContent = est.quota != null
      ? `This browser's storage for KTO Studio: ${mb(est.usage)} used of ${mb(est.quota)} it allows (${((100 * est.usage) / est.quota).toFixed(1)} %).`
      : 'This browser does not report its storage quota.';
  }
  document.addEventListener('library-changed', refresh);
  refresh();
  return { refresh, reopenLast };
}
