// Page bootstrap: starts the engine worker, loads the built-in model, wires the views.
import { EngineClient } from './protocol.js';
import { labels, settings } from './storage.js';
import { $ } from './util.js';
import { initModelView } from './views/model.js';
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
  trained: false,
  /** { train: [...], heldout: [...], heldout_stories: [...] } from TinyStories validation stories. */
  prompts: fetch('data/prompts.json').then((r) => r.json()).catch(() => ({ train: [], heldout: [], heldout_stories: [] })),

  async initBackend(choice) {
    const badge = $('#backend');
    badge.textContent = 'starting engine…';
    const info = await this.engine.call('init', { backend: choice });
    this.backend = info;
    const a = info.adapter || {};
    const name = a.description || a.architecture || a.vendor || 'adapter';
    badge.textContent = info.backend === 'wgpu'
      ? `WebGPU · ${name}${info.software ? ' (software adapter: slow)' : ''}`
      : `CPU (wasm)${info.autoReason ? ' · auto' : ''}`;
    badge.title = info.autoReason ? `Chosen automatically: ${info.autoReason}. The backend menu switches it.` : '';
    badge.dataset.backend = info.backend;
    badge.dataset.adapter = JSON.stringify(a);
    badge.dataset.software = String(!!info.software);
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

  async addLabel(row) {
    await labels.add(row);
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

function showView(name) {
  document.querySelectorAll('nav button').forEach((b) => b.classList.toggle('active', b.dataset.view === name));
  document.querySelectorAll('main > section').forEach((s) => (s.hidden = s.id !== `view-${name}`));
  if (name === 'dataset') views.dataset.refresh();
  if (name === 'explainer') views.explainer.redraw();
}

async function boot() {
  views.model = initModelView(app);
  initGenerateView(app);
  views.dataset = initDatasetView(app);
  views.train = initTrainView(app);
  initCompareView(app);
  initDemoView(app);
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
    views.model.render(await app.loadBuiltin());
    await app.loadJudge();
  } catch (e) {
    views.model.showError(e);
  }
  await views.dataset.refresh();
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
  if (reason) app.engine.restart();
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
