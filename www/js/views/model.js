// Model panel: the built-in model, opening llama2.c files (picker or drag & drop), architecture.
import { $, showError } from '../util.js';

export function initModelView(app) {
  const info = $('#model-info');
  const error = $('#model-error');

  async function load(name, model, tokenizer) {
    showError(error, null);
    try {
      render(await app.loadModel(name, model, tokenizer));
    } catch (e) {
      showError(error, `Could not open ${name}: ${e.message}`);
    }
  }

  async function fromFiles(files) {
    files = [...files];
    if (files.length !== 2) {
      showError(error, `Pick two files — the model .bin and its tokenizer (tok*.bin) — got ${files.length}.`);
      return;
    }
    // The tokenizer is the file named tok*, else the smaller one.
    files.sort((a, b) => (/^tok/i.test(b.name) - /^tok/i.test(a.name)) || a.size - b.size);
    const [tok, model] = files;
    await load(model.name.replace(/\.bin$/i, ''), await model.arrayBuffer(), await tok.arrayBuffer());
  }

  function render(m) {
    const c = m.config;
    info.replaceChildren();
    info.innerHTML = `<b data-testid="model-name">${m.name}</b> (${m.format}) —
      <span data-testid="model-params">${m.parameters.toLocaleString()}</span> parameters;
      dim ${c.dim}, ${c.n_layers} layers, ${c.n_heads} heads (${c.n_kv_heads} KV), FFN ${c.hidden_dim},
      vocabulary ${c.vocab_size}, context ${c.max_seq_len}, RoPE ${c.rope_layout},
      ${c.tied_embeddings ? 'tied' : 'separate'} classifier.`;
  }

  $('#model-files').addEventListener('change', (e) => fromFiles(e.target.files));
  $('#load-builtin').addEventListener('click', () => app.loadBuiltin().then(render, (e) => showError(error, e)));
  const drop = $('#model-drop');
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => { e.preventDefault(); drop.classList.remove('over'); fromFiles(e.dataTransfer.files); });
  return { render, showError: (e) => showError(error, e) };
}
