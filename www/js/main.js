// Page bootstrap: starts the engine worker, loads the built-in model, wires the views.
import { EngineClient } from './protocol.js';
import { labels, settings } from './storage.js';
import { $ } from './util.js';
import { initModelView } from './views/model.js';
import { initLibraryView } from './views/library.js';
import { initGenerateView } from './views/generate.js';
import { initDatasetView } from './views/dataset.js';
import { initTrainView } from './views/train.js';
import { initCompareView } from './views/compare.js';
import { initDemoView } from './views/demo.js';
import { initExplainerView } from './views/explainer.js';

const app = {
  engine: new EngineClient(new URL('./worker.js', import.meta.url)),
  model: null, // { name, files: [{ name, bytes: ArrayBuffer }] } kept to reload after a restart
  modelName: null,
  modelInfo: null,
  /** Wrap prompts in the model's chat template (instruct models). */
  chat: false,
  backend: null,
  /** A trained model exists in the engine (a run, a restore or an imported adapter). */
  trained: false,
  /** The trained model has LoRA adapters (so it can be downloaded as a PEFT adapter). */
  hasAdapter: false,
  /** The training settings: the engine's list (schema) and the Train form's current values. */
  settings: { schema: [], values: {} },
  /** The Generate screen's last prompt (Compare falls back to it when nothing is labelled). */
  lastPrompt: '',
  /** { train: [...], heldout: [...], heldout_stories: [...] } from TinyStories validation stories. */
  prompts: fetch('data/prompts.json').then((r) => r.json()).catch(() => ({ train: [], heldout: [], heldout_stories: [] })),

  async initBackend(choice) {
    const badge = $('#backend');
    badge.textContent = 'starting engine…';
    const info = await this.engine.call('init', { backend: choice });
    this.backend = info;
    const a = info.adapter || {};
    const name = a.description || a.architecture || a.vendor || 'adapter';
    const kind = info.software ? 'software adapter' : 'hardware GPU';
    badge.textContent = info.backend === 'wgpu'
      ? `WebGPU · ${name} (${kind})`
      : `CPU (wasm, ${info.threads} thread${info.threads > 1 ? 's' : ''})${info.autoReason ? ' · auto' : ''}`;
    badge.title = [
      info.autoReason ? `Chosen automatically: ${info.autoReason}. The backend menu switches it.` : '',
      info.backend !== 'wgpu' ? name : '',
    ].filter(Boolean).join(' ');
    // Say what was chosen and why, and when the other backend would be faster.
    $('#backend-why').textContent = info.autoReason
      ? `auto chose ${info.backend === 'wgpu' ? 'WebGPU' : 'the CPU'}: ${info.autoReason}.`
      : info.backend === 'wgpu' && info.software
        ? 'This WebGPU adapter is a software renderer: training here is 10–30× slower than on the CPU backend. Switch the backend to "CPU (wasm)" or "auto".'
        : '';
    badge.dataset.backend = info.backend;
    badge.dataset.adapter = JSON.stringify(a);
    badge.dataset.software = String(!!info.software);
    badge.dataset.threads = String(info.threads);
    notice(info.fallbackReason ? `Running on the CPU: ${info.fallbackReason}.` : '');
    return info;
  },

  /** `files`: [{ name, bytes: ArrayBuffer }] — any format the engine recognises; `folder`: they
   *  are a whole folder's files (its extra weight files are then ignored, as transformers does). */
  async loadModel(name, files, folder = false) {
    // Copies go to the worker; the originals stay here for a restart.
    const info = await this.engine.call('load', { name, folder, files: files.map((f) => ({ name: f.name, bytes: f.bytes.slice(0) })) });
    this.model = { name, files, folder };
    this.modelName = info.name;
    this.modelInfo = info;
    this.chat = info.chat;
    this.trained = false;
    this.hasAdapter = false;
    return info;
  },

  async loadBuiltin() {
    const get = async (f) => {
      const r = await fetch(`models/stories260K/${f}`);
      if (!r.ok) throw new Error(`the built-in model file ${f} is missing from this build (HTTP ${r.status})`);
      return r.arrayBuffer();
    };
    const [model, tok] = await Promise.all([get('stories260K.bin'), get('tok512.bin')]);
    return this.loadModel('stories260K', [{ name: 'stories260K.bin', bytes: model }, { name: 'tok512.bin', bytes: tok }]);
  },

  /** The sentiment judge's lexicon (from the npm package `sentiment`, copied by the build). */
  async loadJudge() {
    const get = async (f) => {
      const r = await fetch(`data/sentiment/${f}`);
      if (!r.ok) throw new Error(`the sentiment lexicon ${f} is missing from this build`);
      return r.text();
    };
    const [labels, emoji, negators] = await Promise.all(['labels.json', 'emoji.json', 'negators.json'].map(get));
    await this.engine.call('judgeLoad', { labels, emoji, negators });
  },

  onTrainStep(metrics, config) {
    views.explainer.onTrainStep(metrics, config);
  },

  /** Store a labelled row; returns its id. */
  async addLabel(row) {
    const id = await labels.add(row);
    await views.dataset.refresh();
    return id;
  },
  /** Change or (label null) remove a row stored by addLabel. */
  async relabel(id, row, label) {
    if (label === null) await labels.remove(id); else await labels.put({ ...row, id, label, source: 'human' });
    await views.dataset.refresh();
  },
};

/** The one-line notice under the header; `offerCpu` shows a "use the CPU backend" button. */
function notice(text, offerCpu = false) {
  const n = $('#notice');
  $('#notice-text').textContent = text;
  $('#notice-cpu').hidden = !offerCpu;
  n.hidden = !text;
}

const views = {};

/** A run still marked running when the page opens was cut off (tab closed, reloaded, crashed):
 *  say so once, and what survived. */
async function noticeInterruptedRun() {
  const run = await settings.get('run', null);
  // The closed page's last progress write can land after this one: a run is noticed once, by its start time.
  if (run?.status !== 'running' || (await settings.get('run-noticed', null)) === run.started) return;
  await settings.set('run-noticed', run.started);
  notice(`A training run was interrupted at step ${run.step} of ${run.total} (${run.model}, started ${new Date(run.started).toLocaleString()}): the page was closed or reloaded while it ran. Your labels are kept; the weights it trained were not, unless you saved them (Train → Restore saved weights).`);
  $('#notice').dataset.kind = 'interrupted';
}

function showView(name) {
  document.querySelectorAll('nav button').forEach((b) => b.classList.toggle('active', b.dataset.view === name));
  document.querySelectorAll('main > section').forEach((s) => (s.hidden = s.id !== `view-${name}`));
  if (name === 'dataset') views.dataset.refresh();
  if (name === 'explainer') views.explainer.redraw();
}

async function boot() {
  views.model = initModelView(app);
  views.library = initLibraryView(app, views.model);
  initGenerateView(app);
  views.dataset = initDatasetView(app);
  views.train = initTrainView(app);
  initCompareView(app);
  views.demo = initDemoView(app);
  views.explainer = initExplainerView(app);
  document.querySelectorAll('nav button').forEach((b) => b.addEventListener('click', () => showView(b.dataset.view)));

  const choice = new URLSearchParams(location.search).get('backend') || (await settings.get('backend', 'auto'));
  $('#backend-choice').value = choice;
  $('#backend-choice').addEventListener('change', async (e) => {
    await settings.set('backend', e.target.value);
    await restartEngine(e.target.value);
  });
  app.engine.on((m) => { if (m.type === 'crash') recover(m.message); });
  $('#notice-cpu').addEventListener('click', async () => {
    $('#backend-choice').value = 'cpu';
    await settings.set('backend', 'cpu');
    await restartEngine('cpu');
  });

  try {
    await app.initBackend(choice);
    views.train.renderSettings(await app.engine.call('settings'));
    views.explainer.useSettings(app.settings.values);
    // The model of the last visit when it came from the Hub (kept in OPFS: no request), else the built-in.
    if (!(await views.library.reopenLast())) views.model.render(await app.loadBuiltin());
    await app.loadJudge();
  } catch (e) {
    views.model.showError(e);
  }
  await views.dataset.refresh();
  await noticeInterruptedRun();
  document.body.dataset.ready = 'true';
}

/** Crashes since the engine last came up: a worker that cannot even start (a broken
 *  deployment) is retried with a growing pause, then given up on with a message, never in a loop. */
let crashes = 0;
let recovering = false;

async function recover(reason) {
  if (recovering) return;
  recovering = true;
  crashes += 1;
  const offerCpu = $('#backend-choice').value !== 'cpu';
  if (crashes > 3) {
    $('#backend').textContent = 'engine failed to start';
    $('#backend').dataset.backend = 'none';
    notice(`The engine could not start (${reason}). Reload the page; if this keeps happening, this build of the app is incomplete.`, false);
    recovering = false;
    return;
  }
  notice(`The engine stopped (${reason}) and is being restarted; your labels are kept.`, offerCpu);
  await new Promise((r) => setTimeout(r, 500 * 2 ** (crashes - 1)));
  recovering = false;
  await restartEngine($('#backend-choice').value, reason);
}

async function restartEngine(choice, reason) {
  try {
    // The threaded CPU build and the WebGPU build are different wasm modules: one per worker.
    if (reason || (await app.engine.call('needsNewWorker', { backend: choice }))) app.engine.restart();
  } catch (e) {
    views.model.showError(e);
    return;
  }
  try {
    await app.initBackend(choice);
    if (app.model) views.model.render(await app.loadModel(app.model.name, app.model.files, app.model.folder));
    await app.loadJudge();
    crashes = 0;
    if (reason) {
      const offerCpu = choice !== 'cpu';
      const hint = offerCpu ? ' If it happens again, switch to the CPU backend.' : '';
      notice(`The engine stopped (${reason}) and was restarted; your labels are kept, the run in progress was lost.${hint}`, offerCpu);
    }
  } catch (e) {
    views.model.showError(e);
  }
}

window.ktoStudio = { app, views }; // for tests and the curious
boot();
