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

let backendKind = null;

async function initDevice(args) {
  const info = await initBackend(args);
  backendKind = info.backend;
  return info;
}

/** A software adapter emulates the GPU on the CPU (SwiftShader, llvmpipe/lavapipe, WARP): burn's
 *  WGSL kernels run there 10-30x slower than the wasm CPU backend (BENCHMARKS.md). `null` when
 *  the adapter looks like hardware. */
function softwareAdapter(a) {
  if (a.isFallbackAdapter) return 'the browser marks it as a fallback adapter';
  const text = [a.vendor, a.architecture, a.description].filter(Boolean).join(' ');
  const m = /swiftshader|llvmpipe|lavapipe|softpipe|software|basic render|warp/i.exec(text);
  return m ? `it is ${m[0].toLowerCase() === 'swiftshader' ? 'SwiftShader' : m[0]}, a software renderer` : null;
}

const cpuAdapter = { description: 'CPU (wasm)' };

/** 'auto' takes WebGPU on a hardware adapter and the CPU otherwise, and says why (`autoReason`). */
async function initBackend({ backend }) {
  if (backend === 'cpu') return { ...(await engine.init('cpu')), adapter: cpuAdapter };
  const { adapter, reason } = await adapterInfo();
  if (adapter) {
    const software = backend === 'auto' ? softwareAdapter(adapter) : null;
    if (software) {
      return {
        ...(await engine.init('cpu')), adapter: cpuAdapter, webgpuAdapter: adapter, software: true,
        autoReason: `WebGPU is available but ${software}: the CPU backend is faster here`,
      };
    }
    try {
      const info = await engine.init('wgpu');
      return { ...info, adapter, software: !!softwareAdapter(adapter), autoReason: backend === 'auto' ? 'a hardware GPU adapter' : undefined };
    } catch (e) {
      if (backend === 'webgpu') throw e;
      return { ...(await engine.init('cpu')), adapter: cpuAdapter, fallbackReason: `WebGPU failed: ${e.message}` };
    }
  }
  if (backend === 'webgpu') throw new Error(reason);
  return { ...(await engine.init('cpu')), adapter: cpuAdapter, fallbackReason: reason };
}

const MiB = 1024 * 1024;

/** What this device can hold: wasm32 memory is 4 GiB at most; a WebGPU device is asked for its
 *  buffer limits, and for the total we take half the memory the browser reports (a guess it
 *  caps at 8 GiB, so a cautious one). */
async function memoryBudget() {
  const reported = (self.navigator.deviceMemory || 8) * 1024 * MiB;
  const budget = { total: Math.min(4096 * MiB, reported / 2), buffer: Infinity, where: 'this browser tab (wasm, 4 GiB at most)' };
  if (backendKind === 'wgpu' && self.navigator.gpu) {
    const adapter = await self.navigator.gpu.requestAdapter();
    if (adapter) {
      budget.buffer = Math.min(adapter.limits.maxStorageBufferBindingSize, adapter.limits.maxBufferSize);
      budget.where = 'this GPU (half the device memory the browser reports)';
    }
  }
  return budget;
}

/** The estimate of a run and, when it cannot fit, why and what to change (`error`). */
async function assessMemory(rows, config) {
  const seqLen = engine.max_row_tokens(rows, config);
  const est = engine.memory_estimate(config, seqLen);
  const budget = await memoryBudget();
  const mb = (b) => `${Math.round(b / MiB).toLocaleString()} MiB`;
  let error = null;
  if (est.total > budget.total) {
    error = `this run needs about ${mb(est.total)} (weights ${mb(est.weights + est.reference)}, optimizer ${mb(est.optimizer + est.gradients)}, activations ${mb(est.activations)}), more than ${mb(budget.total)} available to ${budget.where}. Use LoRA, a smaller batch size or a shorter max length.`;
  } else if (est.largest_tensor > budget.buffer) {
    error = `the largest tensor of this run (the logits, ${mb(est.largest_tensor)}) exceeds this GPU's buffer limit of ${mb(budget.buffer)}. Use a smaller batch size or a shorter max length.`;
  }
  return { estimate: est, seqLen, error };
}

async function runTraining(id, { rows, config }) {
  if (train.running) throw new Error('a training run is already in progress');
  // Refuse a run that cannot fit before anything is allocated.
  const memory = await assessMemory(rows, config);
  if (memory.error) throw new Error(memory.error);
  const info = { ...engine.train_start(rows, config), memory };
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
  load: ({ name, files, folder }) =>
    engine.load_files(name, files.map((f) => f.name), files.map((f) => new Uint8Array(f.bytes)), !!folder),
  generate: ({ prompt, n, sampling, which, chat }, id) =>
    engine.generate(prompt, n, sampling, which, !!chat, (sample, text) => self.postMessage({ type: 'token', id, sample, text })),
  memory: ({ rows, config }) => assessMemory(rows, config),
  /** Bytes of wasm linear memory: the engine's host-side peak (it never shrinks). */
  stats: async () => ({ wasmMemory: (await ready).memory.buffer.byteLength }),
  exportFiles: async ({ kind }) => (await engine.export_files(kind)).map(([name, bytes]) => ({ name, bytes: bytes.buffer })),
  importAdapter: ({ config, tensors }) => engine.import_adapter(new Uint8Array(config), new Uint8Array(tensors)),
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
  bench: ({ steps = 10, batch = 8, seqLen = 64, genTokens = 128, loraRank = 0, chat = false }) =>
    engine.bench(steps, batch, seqLen, genTokens, loraRank, chat),
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
