// The page <-> worker message protocol, and the page-side client for it.
//
// Requests (page -> worker): { id, type, ...args }. `settings` below is the flat training settings
// object whose keys, defaults and ranges the `settings` request returns (src/kto/settings.rs).
//   init      { backend: 'auto' | 'webgpu' | 'cpu' }        -> { backend, adapter, device, threads, software, autoReason?, fallbackReason? }
//             ('auto': WebGPU on a hardware adapter, the CPU on a software one; autoReason says why;
//              threads: the CPU backend's thread count; the worker loads its wasm build here, once)
//   needsNewWorker { backend }                              -> true when that backend needs the other wasm build
//             (threaded CPU vs single-threaded with WebGPU): the page then restarts the worker first
//   load      { name, files: [{ name, bytes: ArrayBuffer }], folder } -> model info {name, family, format, files, config, parameters, chat}
//             (a .gguf; a Hugging Face folder's config.json + *.safetensors + tokenizer*.json; or llama2.c .bin + tok*.bin)
//   generate  { prompt, n, sampling, which: 'base'|'trained', chat } -> [{ ids, text, finished }]
//             streams { type: 'token', id, sample, text } as text arrives
//   settings  {}                                            -> [{ key, flag, label, help, trl_default, group, kind, default }]
//   memory    { rows, settings }                            -> { estimate, data, seqLen, error } (error: why it cannot fit)
//   train     { rows, settings }                            -> { rows, dropped, batches, steps, status: 'done'|'cancelled', memory }
//             (refused when it cannot fit; the rows are tokenized once, shared with a `memory` of the same rows)
//             streams { type: 'progress', id, step, total, metrics, elapsedMs } once per step
//             (metrics: TRL's names, plus rows: [{ log_ratio, label }] of the step's batch)
//   pause | resume | cancel  {}                             -> {} (control the running train or mood run)
//   evaluate  {}                                            -> metrics of the trained model on the run's data
//   export    {}                                            -> { name, bytes: ArrayBuffer } the trained model as one file
//   restore   { bytes: ArrayBuffer }                        -> {}
//   tokenDiff { text }                                      -> [{ text, base, trained }] each token's log-prob under both models
//   exportFiles { kind: 'adapter'|'merged' }                -> [{ name, bytes }] a PEFT adapter / Hugging Face folder
//   importAdapter { config: ArrayBuffer, tensors: ArrayBuffer } -> { rank, alpha, targets, adapters }
//   stats     {}                                            -> { wasmMemory } bytes of wasm linear memory
//   checkProducts { cases }                                 -> { compared } the CPU parallel loop (every task of `cases` × 8
//             loops runs once), then the matrix products against burn's matmul on `cases` random shapes in this build
//             and the attention against burn's composed ops on `cases` random masks (src/model/selfcheck.rs); an error
//             names the failure
//   parseJsonl { text }                                     -> [{ prompt, completion, label }]
//   toJsonl   { rows }                                      -> string
//   advice    { nD, nU, settings }                          -> TRL imbalance advice or null
//   judgeLoad { labels, emoji, negators }                   -> {} (AFINN lexicon texts from npm `sentiment`)
//   judgeLabel { text, rule }                               -> [score, label: true|false|null]
//   recipe    { mood: 'happier'|'sadder', size: 'full'|'quick' } -> the engine's mood recipe
//   mood      { recipe, sets }                              -> the recipe's report { before, after, ... }
//             streams { type: 'mood', id, event } with event.stage 'evaluated' | 'sampled' | 'labelled' | 'step'
//   heldout   { which, sets, recipe }                       -> { summary, nll_per_token, samples }
//   lossCurve { r: number[], z, loss: {beta, desirable_weight, undesirable_weight, loss_type} }
//                                                           -> { desirable: number[], undesirable: number[] }
//   hubListing { spec, endpoint }                           -> { id, revision, file, url } (what to GET to list a Hub model)
//   hubPlan   { spec, endpoint, listing: string }           -> { kind: 'plan', id, revision, sha, folder, files: [{ name, size, url }] }
//                                                              or { kind: 'choose', id, revision, files: [[name, size]] } (several GGUFs)
//   bench     { steps, batch, seqLen, genTokens, loraRank, chat } -> the engine's benchmark (src/bench.rs) on the loaded model
// Replies (worker -> page): { id, type: 'result', value } or { id, type: 'error', message, fatal }.
// `fatal` means the wasm instance trapped (a bug): the client restarts the worker.

export class EngineClient {
  constructor(workerUrl) {
    this.workerUrl = workerUrl;
    this.nextId = 1;
    this.pending = new Map();
    this.listeners = new Set();
    this.start();
  }

  start() {
    this.worker = new Worker(this.workerUrl, { type: 'module' });
    this.worker.onmessage = (e) => this.onMessage(e.data);
    // An uncaught error in the worker (out of memory, a lost GPU device, a script that failed to
    // load) leaves it unusable: every call in flight fails now rather than waiting forever.
    this.worker.onerror = (e) => {
      e.preventDefault?.();
      this.crashed(e.message || 'the engine worker failed to start');
    };
    this.dead = null;
  }

  /** The worker is gone: calls in flight fail, and so does every call until a restart — a worker
   *  can fail to load before anyone listens (the page still starting) and must not swallow calls. */
  crashed(message) {
    this.dead = message;
    this.failPending(`the engine stopped: ${message}`);
    this.emit({ type: 'crash', message });
  }

  onMessage(msg) {
    if (msg.type === 'result' || msg.type === 'error') {
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      if (msg.type === 'result') p.resolve(msg.value);
      else {
        const err = new Error(msg.message);
        err.fatal = !!msg.fatal;
        p.reject(err);
        if (msg.fatal) this.emit({ type: 'crash', message: msg.message });
      }
      return;
    }
    const p = this.pending.get(msg.id);
    if (p && p.onEvent) p.onEvent(msg);
    this.emit(msg);
  }

  emit(msg) {
    for (const l of this.listeners) l(msg);
  }

  on(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Send a request; `onEvent` receives its streamed events (tokens, progress). */
  call(type, args = {}, { onEvent, transfer = [] } = {}) {
    if (this.dead) {
      // Said again now that a listener may be there to restart it.
      this.emit({ type: 'crash', message: this.dead });
      return Promise.reject(Object.assign(new Error(`the engine stopped: ${this.dead}`), { fatal: true }));
    }
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, onEvent });
      this.worker.postMessage({ id, type, ...args }, transfer);
    });
  }

  failPending(message) {
    for (const p of this.pending.values()) {
      const err = new Error(message);
      err.fatal = true;
      p.reject(err);
    }
    this.pending.clear();
  }

  /** Replace a crashed worker; the caller re-runs init and load. */
  restart() {
    this.worker.terminate();
    this.failPending('the engine was restarted');
    this.start();
  }
}
