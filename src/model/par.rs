//! The CPU kernels' parallel loop, in one place: `for_each(tasks, work, f)` runs `f(0..tasks)`
//! over the CPU threads when `work` (the loop's multiply-adds or values touched) is worth it.
//!
//! Natively it is rayon. In the threaded wasm build it is rayon's pool with one difference: a
//! helper woken for a loop stays awake until none has come for a while. A Web Worker woken from
//! its futex (rayon's sleep) takes tens of microseconds to run again, as long as one of the small
//! model's products, and rayon's join waits for two such wake-ups (the helper's, then the caller's
//! when the helper finishes): stories260K's step ran no faster on 2 threads than on 1 (BENCHMARKS.md).
//! Here the caller never waits for a helper to arrive — it claims tasks itself, so a late helper
//! costs speed, never progress — and the helpers poll for the next loop (running rayon's other
//! queued work meanwhile) through the sequential gaps of a training step.

use std::marker::PhantomData;

/// Runs `f(i)` for every `i < tasks`, on several threads when `work` reaches [`PARALLEL_MIN`]
/// and more than one thread exists, else in turn on the calling thread.
pub fn for_each(tasks: usize, work: usize, f: impl Fn(usize) + Sync + Send) {
    if tasks > 1 && worth_splitting(work) {
        #[cfg(not(target_arch = "wasm32"))]
        {
            use rayon::prelude::*;
            (0..tasks).into_par_iter().for_each(f);
            return;
        }
        #[cfg(all(target_arch = "wasm32", feature = "threads"))]
        if awake::run(tasks, &f) {
            return;
        }
    }
    (0..tasks).for_each(f);
}

/// Whether a loop of `work` multiply-adds or values touched is worth more than one thread.
pub fn worth_splitting(work: usize) -> bool {
    work >= PARALLEL_MIN && threads() > 1
}

/// Work below which a loop stays on the calling thread: handing tasks to another thread costs
/// about as much as such a loop.
const PARALLEL_MIN: usize = 1 << 15;

/// The CPU threads the kernels may use.
pub fn threads() -> usize {
    #[cfg(any(not(target_arch = "wasm32"), feature = "threads"))]
    return rayon::current_num_threads();
    #[cfg(all(target_arch = "wasm32", not(feature = "threads")))]
    1
}

/// A mutable slice handed out to the tasks of a loop as disjoint chunks of `chunk` elements.
pub struct Chunks<'a, T> {
    ptr: *mut T,
    len: usize,
    chunk: usize,
    _slice: PhantomData<&'a mut [T]>,
}

// SAFETY: the chunks are disjoint; `get`'s contract keeps each with one task.
unsafe impl<T: Send> Send for Chunks<'_, T> {}
unsafe impl<T: Send> Sync for Chunks<'_, T> {}

impl<'a, T> Chunks<'a, T> {
    pub fn new(data: &'a mut [T], chunk: usize) -> Self {
        assert!(chunk > 0, "a chunk holds at least one element");
        Self { ptr: data.as_mut_ptr(), len: data.len(), chunk, _slice: PhantomData }
    }

    pub fn count(&self) -> usize {
        self.len.div_ceil(self.chunk)
    }

    /// Chunk `g` (the last may be shorter).
    ///
    /// # Safety
    /// No other live reference to chunk `g` exists: each task index of a loop takes its own.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn get(&self, g: usize) -> &mut [T] {
        let start = g * self.chunk;
        assert!(start < self.len, "chunk {g} is past the slice");
        // SAFETY: inside the slice; exclusive by the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), self.chunk.min(self.len - start)) }
    }
}

/// The threaded wasm build's loop: one loop published at a time by the engine's thread (pool
/// thread 0), tasks claimed by a shared counter, helpers kept awake by [`awake::spin`].
#[cfg(all(target_arch = "wasm32", feature = "threads"))]
mod awake {
    use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering::SeqCst};

    /// The task counter on a cache line of its own: every claim writes it, and a line shared with
    /// the loop's read-only fields or with `done` would bounce between the cores on each task.
    #[repr(align(64))]
    struct Line(AtomicUsize);

    struct Loop<'a> {
        f: &'a (dyn Fn(usize) + Sync),
        tasks: usize,
        next: Line,
        done: Line,
    }

    impl Loop<'_> {
        /// Claims and runs tasks until none is left; counts them done once, at the end.
        fn work(&self) -> bool {
            let mut ran = 0;
            loop {
                let i = self.next.0.fetch_add(1, SeqCst);
                if i >= self.tasks {
                    break;
                }
                (self.f)(i);
                ran += 1;
            }
            if ran > 0 {
                self.done.0.fetch_add(ran, SeqCst);
            }
            ran > 0
        }
    }

    /// The published loop (null: none); its lifetime is `run`'s frame, which outlives every
    /// helper that entered it (`INSIDE`).
    static LOOP: AtomicPtr<Loop<'static>> = AtomicPtr::new(std::ptr::null_mut());
    /// Helpers between checking `LOOP` and leaving it.
    static INSIDE: AtomicUsize = AtomicUsize::new(0);
    /// Helpers polling (or about to): `run` wakes only the missing ones.
    static AWAKE: AtomicUsize = AtomicUsize::new(0);
    /// A loop is running: a nested one runs in turn on its thread.
    static BUSY: AtomicBool = AtomicBool::new(false);
    /// Polls without a loop or rayon job before a helper goes back to rayon's sleep: some hundreds
    /// of microseconds, longer than a step's sequential gaps, short enough to give the cores back
    /// to the page soon after the step.
    const IDLE_POLLS: u32 = 4096;

    /// Runs the loop with whichever helpers are awake or wake in time; false if this thread cannot
    /// publish a loop (not the engine's thread, or inside another loop): run it in turn.
    pub fn run(tasks: usize, f: &(dyn Fn(usize) + Sync)) -> bool {
        if rayon::current_thread_index() != Some(0) || BUSY.swap(true, SeqCst) {
            return false;
        }
        let job = Loop { f, tasks, next: Line(AtomicUsize::new(0)), done: Line(AtomicUsize::new(0)) };
        // SAFETY (of the lifetime change): `LOOP` is cleared and every helper has left it below,
        // before `job` goes out of scope.
        LOOP.store(&job as *const Loop as *mut Loop<'static>, SeqCst);
        let helpers = rayon::current_num_threads() - 1;
        for _ in AWAKE.load(SeqCst)..helpers {
            AWAKE.fetch_add(1, SeqCst);
            rayon::spawn(spin);
        }
        job.work();
        while job.done.0.load(SeqCst) < tasks {
            std::hint::spin_loop();
        }
        LOOP.store(std::ptr::null_mut(), SeqCst);
        while INSIDE.load(SeqCst) > 0 {
            std::hint::spin_loop();
        }
        BUSY.store(false, SeqCst);
        true
    }

    /// A helper's poll: the published loop's tasks, else one of rayon's queued jobs, until
    /// `IDLE_POLLS` pass with neither.
    fn spin() {
        // Thread 0 popped its own wake-up (it waited inside rayon): it publishes, it does not poll.
        if rayon::current_thread_index() == Some(0) {
            AWAKE.fetch_sub(1, SeqCst);
            return;
        }
        let mut idle = 0;
        while idle < IDLE_POLLS {
            let seen = LOOP.load(SeqCst);
            let mut ran = false;
            if !seen.is_null() {
                INSIDE.fetch_add(1, SeqCst);
                if LOOP.load(SeqCst) == seen {
                    // SAFETY: published and not yet retired: `run` waits for `INSIDE` to drop to 0.
                    ran = unsafe { &*seen }.work();
                }
                INSIDE.fetch_sub(1, SeqCst);
            }
            if ran || rayon::yield_now() == Some(rayon::Yield::Executed) {
                idle = 0;
            } else {
                idle += 1;
                std::hint::spin_loop();
            }
        }
        AWAKE.fetch_sub(1, SeqCst);
    }
}
