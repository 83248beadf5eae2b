//! A millisecond clock natively and in the browser (wasm32 has no `Instant`), and a tally of the
//! time spent in one region of code: the bench splits a step into its matrix products and the rest,
//! which says whether a backend's gap is its matmul rate (the hardware's lanes) or the step around it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::ThreadId;

/// Milliseconds since an arbitrary origin, sub-millisecond where the platform allows (a page that
/// is not cross-origin isolated rounds `performance.now()` to 0.1 ms).
#[cfg(not(target_arch = "wasm32"))]
pub fn now_ms() -> f64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START.get_or_init(std::time::Instant::now).elapsed().as_secs_f64() * 1e3
}

#[cfg(target_arch = "wasm32")]
pub fn now_ms() -> f64 {
    #[wasm_bindgen::prelude::wasm_bindgen]
    extern "C" {
        // `performance` exists in the page and in every worker (the engine's and the pool's).
        #[wasm_bindgen(js_namespace = performance, js_name = now)]
        fn performance_now() -> f64;
    }
    performance_now()
}

/// Time summed over calls of one region, counted only while switched on (the bench's timed steps),
/// so the region pays one relaxed load otherwise, and only on the thread that switched it on (the
/// one running the step): a region entered meanwhile by another thread (another test, another
/// session) is not counted. Nested calls on that thread are counted twice.
pub struct Tally {
    on: AtomicBool,
    owner: Mutex<Option<ThreadId>>,
    /// Nanoseconds.
    total: AtomicU64,
}

impl Tally {
    pub const fn new() -> Self {
        Self { on: AtomicBool::new(false), owner: Mutex::new(None), total: AtomicU64::new(0) }
    }

    /// Runs `f`, adding its wall time to the tally when counting on this thread.
    pub fn time<R>(&self, f: impl FnOnce() -> R) -> R {
        let mine = || self.owner.lock().is_ok_and(|o| *o == Some(std::thread::current().id()));
        if !self.on.load(Ordering::Relaxed) || !mine() {
            return f();
        }
        let t0 = now_ms();
        let r = f();
        self.total.fetch_add(((now_ms() - t0) * 1e6) as u64, Ordering::Relaxed);
        r
    }

    /// Starts counting from zero, calls from this thread only.
    pub fn start(&self) {
        if let Ok(mut owner) = self.owner.lock() {
            *owner = Some(std::thread::current().id());
        }
        self.total.store(0, Ordering::Relaxed);
        self.on.store(true, Ordering::Relaxed);
    }

    /// Stops counting; returns the milliseconds counted since `start`.
    pub fn stop(&self) -> f64 {
        self.on.store(false, Ordering::Relaxed);
        self.total.load(Ordering::Relaxed) as f64 / 1e6
    }
}

impl Default for Tally {
    fn default() -> Self {
        Self::new()
    }
}
