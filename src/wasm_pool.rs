//! The CPU backend's threads in the browser (the `threads` build; part of the wasm boundary):
//! rayon's global pool over Web Workers that share the module's memory. www/js/pool-worker.js
//! instantiates the module in each helper worker and calls `pool_worker`; the engine's own worker
//! joins the pool as thread 0 (`use_current_thread`), so the sequential work between parallel ops
//! runs on a pool thread rather than on one more thread competing with the pool's spinning
//! workers for the cores — the reason the native CLI runs its job on the pool
//! (`device::on_cpu_threads`). wasm-bindgen-rayon starts every thread as a helper, which leaves
//! the caller outside: on 2 cores its pool made the tab's step no faster than one thread.

use std::sync::{Condvar, Mutex};

use rayon::ThreadBuilder;
use wasm_bindgen::prelude::*;

/// rayon threads handed out by `pool_start`, each taken by one helper worker.
static HANDED: Mutex<Vec<ThreadBuilder>> = Mutex::new(Vec::new());
static HANDED_CHANGED: Condvar = Condvar::new();

/// What a helper worker needs to instantiate this module over the same memory.
#[wasm_bindgen]
pub fn pool_shared() -> js_sys::Array {
    js_sys::Array::of2(&wasm_bindgen::module(), &wasm_bindgen::memory())
}

/// Runs in each helper worker once its module is instantiated: waits for its rayon thread, then
/// runs rayon's work loop for the life of the page (it never returns).
#[wasm_bindgen]
pub fn pool_worker() {
    let handed = HANDED.lock().unwrap_or_else(|e| e.into_inner());
    let mut handed = HANDED_CHANGED.wait_while(handed, |h| h.is_empty()).unwrap_or_else(|e| e.into_inner());
    let thread = handed.pop().expect("a thread was handed out");
    drop(handed);
    thread.run();
}

/// Makes rayon's global pool of `threads` threads: the calling thread and `threads - 1` helper
/// workers already waiting in `pool_worker`.
#[wasm_bindgen]
pub fn pool_start(threads: usize) -> Result<(), JsError> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .use_current_thread()
        .spawn_handler(|thread| {
            HANDED.lock().unwrap_or_else(|e| e.into_inner()).push(thread);
            HANDED_CHANGED.notify_all();
            Ok(())
        })
        .build_global()
        .map_err(|e| JsError::new(&format!("could not start the CPU thread pool: {e}")))
}
