//! Exports for `tests/browser/kernel-bench.mjs`: the engine's product kernel on one thread, and a
//! loop of nothing but fused multiply-adds (the ceiling the kernel is measured against).

use core::arch::wasm32::*;

#[path = "../../src/model/madd.rs"]
#[allow(dead_code)]
mod madd;

static mut BUF: Vec<f32> = Vec::new();

/// `reps` products `C = A·B` of `m × k` by `k × n` (B read transposed when `bt`: column stride `k`),
/// as the engine runs one task of a product; returns a value of C so the work is not optimised away.
/// `causal`: as attention's, row `r` needs only keys `0..=r mod 64` — the columns of C (1, the
/// scores) or the depths (2, the probabilities times V); 3: B packed once and reused, as a
/// thread does for the row blocks of one product it takes.
#[unsafe(no_mangle)]
pub extern "C" fn product(m: usize, n: usize, k: usize, reps: usize, bt: bool, causal: u32) -> f32 {
    // SAFETY: one thread; A, B and C lie inside BUF, sized for them here.
    unsafe {
        let buf = &mut *core::ptr::addr_of_mut!(BUF);
        let need = m * k + k * n + m * n;
        if buf.len() < need {
            buf.resize(need, 0.0);
            for (i, x) in buf.iter_mut().enumerate() {
                *x = (i % 7) as f32 * 0.1;
            }
        }
        let a = buf.as_ptr();
        let b = a.add(m * k);
        let c = buf.as_mut_ptr().add(m * k + k * n);
        let (b_rs, b_cs) = if bt { (1, k as isize) } else { (n as isize, 1) };
        // Rows `i0..i1` see keys up to the last one's position (the first's when a head starts inside).
        let seen = |i0: usize, i1: usize| if (i1 - 1) % 64 >= i0 % 64 { (i1 - 1) % 64 + 1 } else { 64 };
        let need = |i0: usize, i1: usize| match causal {
            1 => (0..seen(i0, i1).min(n), 0..k),
            2 => (0..n, 0..seen(i0, i1).min(k)),
            _ => (0..n, 0..k),
        };
        static CALLS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
        let shared = (causal == 3).then(|| CALLS.fetch_add(1, core::sync::atomic::Ordering::Relaxed));
        for _ in 0..reps {
            madd::product(m, n, k, c, n, a, k as isize, 1, b, b_rs, b_cs, &need, shared);
        }
        *c
    }
}

/// `iters` rounds of 10 independent `f32x4.relaxed_madd` chains (enough in flight to hide the FMA
/// latency): 80 FLOPs a round, at the CPU's peak where V8 emits one FMA per madd.
#[unsafe(no_mangle)]
#[target_feature(enable = "relaxed-simd")]
pub extern "C" fn peak(iters: u32, seed: f32) -> f32 {
    let (x, y) = (f32x4_splat(seed), f32x4_splat(1.0 - seed * 1e-3));
    let mut acc = [f32x4_splat(seed); 10];
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = f32x4_relaxed_madd(*a, y, x);
        }
    }
    acc.iter().fold(0.0, |s, a| s + f32x4_extract_lane::<0>(*a))
}
