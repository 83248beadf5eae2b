// Model panel: the built-in model; opening a GGUF file, a Hugging Face folder's files or a llama2.c
// pair (picker or drag & drop); architecture; chat mode for instruct models.
import { $, escapeHtml, showError } from '../util.js';

export function initModelView(app) {
  const info = $('#model-info');
  const error = $('#model-error');

  async function fromFiles(list) {
    const files = [...list];
    showError(error, null);
    if (!files.length) return;
    const folder = (files[0].webkitRelativePath || '').split('/')[0];
    const name = folder || files.find((f) => /\.(gguf|bin)$/i.test(f.name))?.name.replace(/\.(gguf|bin)$/i, '') || 'model';
    info.textContent = `opening ${files.map((f) => f.name).join(', ')}…`;
    try {
      const read = await Promise.all(files.map(async (f) => ({ name: f.name, bytes: await f.arrayBuffer() })));
      render(await app.loadModel(name, read, !!folder));
      document.dispatchEvent(new CustomEvent('model-opened-elsewhere'));
    } catch (e) {
      showError(error, `Could not open ${name}: ${e.message}`);
      if (app.modelInfo) render(app.modelInfo);
    }
  }

  function render(m) {
    const c = m.config;
    info.replaceChildren();
    info.innerHTML = `<b data-testid="model-name">${escapeHtml(m.name)}</b> (<span data-testid="model-family">${m.family}</span>, ${m.format}) —
      <span data-testid="model-params">${m.parameters.toLocaleString()}</span> parameters;
      dim ${c.dim}, ${c.n_layers} layers, ${c.n_heads} heads (${c.n_kv_heads} KV), FFN ${c.hidden_dim},
      vocabulary ${c.vocab_size}, context ${c.max_seq_len}, RoPE ${c.rope_layout},
      ${c.tied_embeddings ? 'tied' : 'separate'} classifier.
      ${m.files?.length ? `<br><small>read: <span data-testid="model-read">${escapeHtml(m.files.join(', '))}</span></small>` : ''}`;
    const chat = $('#chat-mode');
    chat.disabled = !m.chat;
    chat.checked = app.chat;
    $('#chat-note').textContent = m.chat ? 'instruct model: prompts are wrapped in its chat template' : 'no chat template (base model)';
    document.dispatchEvent(new CustomEvent('model-loaded', { detail: m }));
  }
  $('#chat-mode').addEventListener('change', (e) => { app.chat = e.target.checked; });

  $('#model-files').addEventListener('change', (e) => fromFiles(e.target.files));
  $('#model-folder').addEventListener('change', (e) => fromFiles(e.target.files));
  $('#load-builtin').addEventListener('click', () => app.loadBuiltin().then((m) => {
    render(m);
    document.dispatchEvent(new CustomEvent('model-opened-elsewhere'));
  }, (e) => showError(error, e)));
  const drop = $('#model-drop');
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => { e.preventDefault(); drop.classList.remove('over'); fromFiles(e.dataTransfer.files); });
  return { render, showError: (e) => showError(error, e) };
}
