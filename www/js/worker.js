// The Web Worker that hosts the wasm engine, so the page never blocks on compute.
// Protocol: see protocol.js.
import init, * as engine from '../pkg/kto_studio.js';

const ready = init({ module_or_path: new URL('../pkg/kto_studio_bg.wasm', import.meta.url) });
const train = { paused: false, cancelled: false, resume: null, running: false };

async function adapterInfo() {
  if (!self.navigator.gpu) return { adapter: null, reason: 'this browser has no WebGPU (navigator.gpu is missing)' };
  const adapter = await self.navigator.gpu.requestAdapter();
  if (!adapter) return { adapter: null, reason: 'WebGPU is present but no adapter is available' };
  const i = adapter.info || {};
  return { adapter: { vendor: i.vendor, architecture: i.architecture, description: i.description, isFallbackAdapter: !!adapter.isFallbackAdapter } };
}

async function initDevice({ backend }) {
  if (backend === 'cpu') return { ...(await engine.init('cpu')), adapter: { description: 'CPU (wasm)' } };
  const { adapter, reason } = await adapterInfo();
  if (adapter) {
    try {
      return { ...(await engine.init('wgpu')), adapter };
    } catch (e) {
      if (backend === 'webgpu') throw e;
      return { ...(await engine.init('cpu')), adapter: { description: 'CPU (wasm)' }, fallbackReason: `WebGPU failed: ${e.message}` };
    }
  }
  if (backend === 'webgpu') throw new Error(reason);
  return { ...(await engine.init('cpu')), adapter: { description: 'CPU (wasm)' }, fallbackReason: reason };
}

async function runTraining(id, { rows, config }) {
  if (train.running) throw new Error('a training run is already in progress');
  const info = engine.train_start(rows, config);
  Object.assign(train, { paused: false, cancelled: false, running: true });
  const start = performance.now();
  try {
    let step = 0;
    for (; step < config.steps; step++) {
      // Yield to the event loop so pause/cancel messages are seen: on the CPU backend a step's
      // promises resolve as microtasks, which would otherwise starve incoming messages.
      await new Promise((r) => setTimeout(r, 0));
      if (train.paused) await new Promise((r) => (train.resume = r));
      if (train.cancelled) return { ...info, steps: step, status: 'cancelled' };
      const metrics = await engine.train_step();
      self.postMessage({ type: 'progress', id, step: step + 1, total: config.steps, metrics, elapsedMs: performance.now() - start });
    }
    return { ...info, steps: step, status: 'done' };
  } finally {
    train.running = false;
  }
}

const handlers = {
  init: initDevice,
  load: ({ name, model, tokenizer }) => engine.load_llama2c(name, new Uint8Array(model), new Uint8Array(tokenizer)),
  generate: ({ prompt, n, sampling, which }, id) =>
    engine.generate(prompt, n, sampling, which, (sample, text) => self.postMessage({ type: 'token', id, sample, text })),
  train: (args, id) => runTraining(id, args),
  pause: () => { train.paused = true; return {}; },
  resume: () => { train.paused = false; train.resume?.(); train.resume = null; return {}; },
  cancel: () => { train.cancelled = true; train.paused = false; train.resume?.(); train.resume = null; return {}; },
  evaluate: () => engine.train_evaluate(),
  export: async () => { const b = await engine.export_trained(); return { bytes: b.buffer }; },
  restore: ({ bytes }) => { engine.restore_trained(new Uint8Array(bytes)); return {}; },
  parseJsonl: ({ text }) => engine.parse_jsonl_rows(text),
  toJsonl: ({ rows }) => engine.rows_to_jsonl(rows),
  advice: ({ nD, nU, wD, wU }) => engine.imbalance_advice(nD, nU, wD, wU),
  judgeLoad: ({ labels, emoji, negators }) => { engine.judge_load(labels, emoji, negators); return {}; },
  judge: ({ texts }) => engine.judge_scores(texts),
  recipe: ({ mood }) => engine.mood_recipe(mood),
  autoLabel: ({ samples, rule }) => engine.auto_label_rows(samples, rule),
  heldout: ({ which, sets, recipe }) => engine.heldout_eval(which, sets, recipe),
  lossCurve: ({ r, z, loss }) => engine.loss_curve(Float64Array.from(r), z, loss),
};

self.onmessage = async ({ data }) => {
  const { id, type } = data;
  try {
    await ready;
    const handler = handlers[type];
    if (!handler) throw new Error(`unknown request '${type}'`);
    const value = await handler(data, id);
    const transfer = value && value.bytes instanceof ArrayBuffer ? [value.bytes] : [];
    self.postMessage({ id, type: 'result', value }, transfer);
  } catch (e) {
    // A wasm trap (RuntimeError) means a bug inside the engine: the instance cannot be trusted.
    const fatal = e instanceof WebAssembly.RuntimeError;
    self.postMessage({ id, type: 'error', message: e?.message || String(e), fatal });
  }
};
