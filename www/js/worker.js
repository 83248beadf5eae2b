// The Web Worker that hosts the wasm engine, so the page never blocks on compute.
// Protocol: see protocol.js.
import { relaxedSimd } from './features.js';

/** Two builds of the engine. pkg-threads/ computes on a rayon pool of Web Workers that share the
 *  module's memory, which a browser allows only on a cross-origin isolated page (the app's server
 *  sends COOP/COEP); it has no WebGPU (wgpu's browser objects cannot cross threads). pkg/ runs on
 *  one thread and has both backends. A worker loads one build, at its first `init`; a backend
 *  that needs the other build gets a fresh worker (`needsNewWorker`). The threaded build also
 *  needs relaxed SIMD (features.js). */
const isolated = self.crossOriginIsolated === true;
/** Threads of the CPU pool: more than cores only contend; past 16, gemm's blocks are too small to share. */
const poolSize = Math.max(1, Math.min(self.navigator.hardwareConcurrency || 1, 16));
let engine = null;
let build = null; // 'threads' | 'single', once loaded
let loading = null;
let markReady, markFailed;
const ready = new Promise((ok, fail) => { markReady = ok; markFailed = fail; });
ready.catch(() => {}); // a failed load is reported by `init`; later calls see it through `ready`

/** Loads a build once. A build that cannot load (a deployment missing its files) makes this
 *  worker useless: the error is fatal, so the page restarts it, and gives up after a few tries. */
function load(which) {
  const dir = which === 'threads' ? '../pkg-threads/' : '../pkg/';
  loading ||= (async () => {
    engine = await import(`${dir}kto_studio.js`);
    await engine.default({ module_or_path: new URL(`${dir}kto_studio_bg.wasm`, import.meta.url) });
    if (which === 'threads') await startPool(poolSize);
    build = which;
  })().then(markReady, (e) => {
    const err = Object.assign(new Error(`the engine (${dir.slice(3)}) failed to load: ${e?.message || e}`), { fatal: true });
    markFailed(err);
    throw err;
  });
  return loading;
}

/** The threaded build's CPU pool: this worker is thread 0 and `threads - 1` helper workers (each
 *  the same module over the same memory) are the rest (src/wasm_pool.rs). */
async function startPool(threads) {
  const [module, memory] = engine.pool_shared();
  const engineUrl = new URL('../pkg-threads/kto_studio.js', import.meta.url).href;
  await Promise.all(Array.from({ length: threads - 1 }, () => new Promise((ok, fail) => {
    const helper = new Worker(new URL('./pool-worker.js', import.meta.url), { type: 'module' });
    helper.onmessage = () => ok();
    helper.onerror = (e) => fail(new Error(`a CPU pool worker failed to start: ${e.message}`));
    helper.postMessage({ engineUrl, module, memory });
    poolHelpers.push(helper);
  })));
  engine.pool_start(threads);
}
const poolHelpers = []; // kept referenced for the page's life

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

/** Where a backend choice runs: 'auto' takes WebGPU on a hardware adapter and the CPU otherwise,
 *  and says why (`autoReason`); a missing adapter falls back to the CPU (`fallbackReason`). */
async function plan(backend) {
  if (backend === 'cpu') return { gpu: false };
  const { adapter, reason } = await adapterInfo();
  if (!adapter) {
    if (backend === 'webgpu') throw new Error(reason);
    return { gpu: false, fallbackReason: reason };
  }
  const software = softwareAdapter(adapter);
  if (backend === 'auto' && software) {
    return { gpu: false, webgpuAdapter: adapter, software: true, autoReason: `WebGPU is available but ${software}: the CPU backend is faster here` };
  }
  return { gpu: true, adapter, software: !!software, autoReason: backend === 'auto' ? 'a hardware GPU adapter' : undefined };
}

const buildFor = (p) => (!p.gpu && isolated && relaxedSimd ? 'threads' : 'single');

function cpuAdapter(threads) {
  const why = build === 'threads' ? ''
    : !isolated ? ': the page is not cross-origin isolated'
    : !relaxedSimd ? ': this browser has no WebAssembly relaxed SIMD' : ' (the WebGPU build)';
  return { description: `CPU (wasm, ${threads} thread${threads > 1 ? 's' : ''}${why})` };
}

async function initBackend({ backend }) {
  const { gpu, ...where } = await plan(backend);
  const wanted = buildFor({ gpu });
  if (build && build !== wanted) throw new Error(`this engine worker runs the ${build} build; the ${backend} backend needs a new worker`);
  await load(wanted);
  const cpu = async (extra) => {
    const info = await engine.init('cpu');
    return { ...info, ...extra, adapter: cpuAdapter(info.threads) };
  };
  if (!gpu) return cpu(where);
  try {
    return { ...(await engine.init('wgpu')), ...where };
  } catch (e) {
    if (backend === 'webgpu') throw e;
    return cpu({ fallbackReason: `WebGPU failed: ${e.message}` });
  }
}

/** Whether `backend` needs the other build than this worker's (the page then starts a new one). */
async function needsNewWorker({ backend }) {
  if (control.running) throw new Error('a training run is in progress: cancel it before switching the backend');
  if (!build) return false;
  try {
    const { gpu } = await plan(backend);
    return buildFor({ gpu }) !== build;
  } catch {
    return false; // `init` reports why this backend cannot start
  }
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

/** The engine's view of a run (its rows, its memory estimate) and, when it cannot fit on this
 *  device, why and what to change (`error`). */
async function assessMemory(rows, settings) {
  const { data, memory: est } = engine.estimate(rows, settings);
  const budget = await memoryBudget();
  const mb = (b) => `${Math.round(b / MiB).toLocaleString()} MiB`;
  let error = null;
  if (est.total > budget.total) {
    error = `this run needs about ${mb(est.total)} (weights ${mb(est.weights + est.reference)}, optimizer ${mb(est.optimizer + est.gradients)}, activations ${mb(est.activations)}), more than ${mb(budget.total)} available to ${budget.where}. Use LoRA, a smaller batch size or a shorter max length.`;
  } else if (est.largest_tensor > budget.buffer) {
    error = `the largest tensor of this run (the logits, ${mb(est.largest_tensor)}) exceeds this GPU's buffer limit of ${mb(budget.buffer)}. Use a smaller batch size or a shorter max length.`;
  }
  return { estimate: est, data, seqLen: data.max_row_len, error };
}

/** Pause, resume and cancel of the run in progress: the engine's run driver awaits `between()`
 *  after every step, so a pause holds it there and a cancel ends it. */
const control = { paused: false, cancelled: false, resume: null, running: false };

async function between() {
  // Yield to the event loop so pause/cancel messages are seen: on the CPU backend a step's
  // promises resolve as microtasks, which would otherwise starve incoming messages.
  await new Promise((r) => setTimeout(r, 0));
  if (control.paused) await new Promise((r) => (control.resume = r));
  return !control.cancelled;
}

/** Run `body` as the one long job (a training run or the mood recipe) the controls apply to. */
async function exclusive(body) {
  if (control.running) throw new Error('a training run is already in progress');
  Object.assign(control, { paused: false, cancelled: false, running: true });
  try {
    return await body();
  } finally {
    control.running = false;
  }
}

async function runTraining(id, { rows, settings }) {
  // Refuse a run that cannot fit before anything is allocated.
  const memory = await assessMemory(rows, settings);
  if (memory.error) throw new Error(memory.error);
  return exclusive(async () => {
    const data = engine.train_start(rows, settings);
    const start = performance.now();
    const end = await engine.train((report) => {
      self.postMessage({ type: 'progress', id, step: report.step, total: report.total, metrics: report, elapsedMs: performance.now() - start });
      return between();
    });
    return { ...data, memory, steps: end.steps, status: end.stopped ? 'cancelled' : 'done' };
  });
}

const handlers = {
  init: initDevice,
  needsNewWorker,
  load: ({ name, files, folder }) =>
    engine.load_files(name, files.map((f) => f.name), files.map((f) => new Uint8Array(f.bytes)), !!folder),
  generate: ({ prompt, n, sampling, which, chat }, id) =>
    engine.generate(prompt, n, sampling, which, !!chat, (sample, text) => self.postMessage({ type: 'token', id, sample, text })),
  settings: () => engine.settings(),
  memory: ({ rows, settings }) => assessMemory(rows, settings),
  /** Bytes of wasm linear memory: the engine's host-side peak (it never shrinks). */
  stats: () => ({ wasmMemory: engine.memory_bytes() }),
  checkProducts: async ({ cases }) => ({ compared: await engine.check_products(cases) }),
  exportFiles: async ({ kind }) => (await engine.export_files(kind)).map(([name, bytes]) => ({ name, bytes: bytes.buffer })),
  importAdapter: ({ config, tensors }) => engine.import_adapter(new Uint8Array(config), new Uint8Array(tensors)),
  train: (args, id) => runTraining(id, args),
  pause: () => { control.paused = true; return {}; },
  resume: () => { control.paused = false; control.resume?.(); control.resume = null; return {}; },
  cancel: () => { control.cancelled = true; control.paused = false; control.resume?.(); control.resume = null; return {}; },
  evaluate: () => engine.train_evaluate(),
  export: async () => { const [[name, bytes]] = await engine.export_files('one'); return { name, bytes: bytes.buffer }; },
  tokenDiff: ({ text }) => engine.token_diff(text),
  restore: ({ bytes }) => { engine.restore_trained(new Uint8Array(bytes)); return {}; },
  parseJsonl: ({ text }) => engine.parse_jsonl_rows(text),
  toJsonl: ({ rows }) => engine.rows_to_jsonl(rows),
  advice: ({ nD, nU, settings }) => engine.imbalance_advice(nD, nU, settings),
  judgeLoad: ({ labels, emoji, negators }) => { engine.judge_load(labels, emoji, negators); return {}; },
  judgeLabel: ({ text, rule }) => engine.judge_label(text, rule),
  recipe: ({ mood, size }) => engine.mood_recipe(mood, size || 'full'),
  /** The engine's mood recipe; streams { type: 'mood', id, event } for each stage. */
  mood: ({ recipe, sets }, id) => exclusive(() => engine.mood_run(recipe, sets, (event) => {
    self.postMessage({ type: 'mood', id, event });
    return between();
  })),
  heldout: ({ which, sets, recipe }) => engine.heldout_eval(which, sets, recipe),
  lossCurve: ({ r, z, loss }) => engine.loss_curve(Float64Array.from(r), z, loss),
  hubListing: ({ spec, endpoint }) => engine.hub_listing(spec, endpoint),
  hubPlan: ({ spec, endpoint, listing }) => engine.hub_plan(spec, endpoint, listing),
  bench: ({ steps = 10, batch = 8, seqLen = 64, genTokens = 128, loraRank = 0, chat = false }) =>
    engine.bench({ steps, batch, seq_len: seqLen, gen_tokens: genTokens, lora_rank: loraRank, chat }),
};

self.onmessage = async ({ data }) => {
  const { id, type } = data;
  try {
    if (type !== 'init' && type !== 'needsNewWorker') await ready;
    const handler = handlers[type];
    if (!handler) throw new Error(`unknown request '${type}'`);
    const value = await handler(data, id);
    const transfer = value && value.bytes instanceof ArrayBuffer ? [value.bytes] : [];
    self.postMessage({ id, type: 'result', value }, transfer);
  } catch (e) {
    // A wasm trap (RuntimeError) means a bug inside the engine: the instance cannot be trusted;
    // an engine that failed to load cannot serve anything either.
    const fatal = e instanceof WebAssembly.RuntimeError || e?.fatal === true;
    self.postMessage({ id, type: 'error', message: e?.message || String(e), fatal });
  }
};
