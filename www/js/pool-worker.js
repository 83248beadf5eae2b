// One helper thread of the engine's CPU pool (the threaded build, see src/wasm_pool.rs): the same
// wasm module over the same shared memory, running rayon's work loop until the page closes.
self.onmessage = async ({ data: { engineUrl, module, memory } }) => {
  const engine = await import(engineUrl);
  await engine.default({ module_or_path: module, memory });
  self.postMessage('ready');
  engine.pool_worker();
};
