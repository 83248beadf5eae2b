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
    badge.textContent = info.backend === 'wgpu'
      ? `WebGPU · ${a.description || a.architecture || a.vendor || 'adapter'}`
      : 'CPU (wasm)';
    badge.dataset.backend = info.backend;
    badge.dataset.adapter = JSON.stringify(a);
    notice(info.fallbackReason ? `Running on the CPU: ${info.fallbackReason}.` : '');
    return info;
  },

  /** `files`: [{ name, bytes: ArrayBuffer }] — any format the engine recognises. */
  async loadModel(name, files) {
    // Copies go to the worker; the originals stay here for a restart.
    const info = await this.engine.call('load', { name, files: files.map((f) => ({ name: f.name, bytes: f.bytes.slice(0) })) });
    this.model = { name, files };
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

function notice(text) {
  const n = $('#notice');
  n.textContent = text;
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
  app.engine.on((m) => { if (m.type === 'crash') restartEngine($('#backend-choice').value, m.message); });

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

async function restartEngine(choice, reason) {
  if (reason) app.engine.restart();
  try {
    await app.initBackend(choice);
    if (app.model) views.model.render(await app.loadModel(app.model.name, app.model.files));
    await app.loadJudge();
    if (reason) notice(`The engine hit an internal error (${reason}) and was restarted; your labels are safe.`);
  } catch (e) {
    views.model.showError(e);
  }
}

window.ktoStudio = { app, views }; // for tests and the curious
boot();
