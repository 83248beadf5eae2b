//! The tab's matrix product on fused multiply-adds (wasm relaxed SIMD, `f32x4.relaxed_madd`).
//!
//! gemm's wasm kernel multiplies and adds in two instructions (SIMD128 has no FMA), so the tab ran
//! its products at half the rate the CPU's vector units allow; `relaxed_madd` is one FMA where the
//! CPU has one (V8 on x86-64 with FMA3, ARM always). Only the threaded build is compiled with
//! relaxed SIMD (`scripts/build.sh`); a browser without it gets the single-threaded build.
//!
//! One block of `C = A·B` at a time (gemm.rs splits a product into blocks over the threads): B is
//! packed into panels of 8 columns, `KC` rows deep, so the kernel reads it contiguously (unless the
//! block is a single tile of rows, which reads B once: then in place); A is read in place, one
//! scalar per row and step (a broadcast), so a transposed A costs nothing.

use core::arch::wasm32::*;
use core::ops::Range;

/// Panel depth and width of a packed block of B: ≤ 256 KiB, kept in the L2 cache while every
/// row of A passes over it.
const KC: usize = 256;
const NC: usize = 256;
/// Columns of a panel: two vectors per row of the tile.
const NR: usize = 8;
/// Rows of a tile: 4 rows × 2 vectors are 8 accumulators — enough FMAs in flight to hide their
/// latency, few enough registers (with the 2 panel vectors and a broadcast) for V8 not to spill.
const MR: usize = 4;

/// `dst[i·dst_rs + j] = Σ_p A(i, p)·B(p, j)` for the `m × n` block, A(i, p) at `a + i·a_rs + p·a_cs`,
/// B(p, j) at `b + p·b_rs + j·b_cs`. Writes every element of the block and reads none first.
/// `need(i0, i1)` says which columns and depths rows `i0..i1` need (attention's key ranges): a
/// tile outside the columns is written as zeros, a tile's sum runs over the depths only.
///
/// # Safety
/// `a`, `b` address valid `m × k`, `k × n` operands through their strides, `dst` an `m × n` block
/// with row stride `dst_rs` that no other thread touches; `k > 0`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "relaxed-simd")]
pub unsafe fn product(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_rs: usize,
    a: *const f32,
    a_rs: isize,
    a_cs: isize,
    b: *const f32,
    b_rs: isize,
    b_cs: isize,
    need: &dyn Fn(usize, usize) -> (Range<usize>, Range<usize>),
    shared: Option<u64>,
) {
    // One tile of rows (a generation step's product: a row of A per sequence) reads each panel of
    // B once: packing it would copy all of B to read it once more. Such tiles read B in place
    // where its rows are contiguous.
    let in_place = shared.is_none() && m <= MR && b_cs == 1;
    // `shared`: the id of a product whose blocks all read this same B (its row blocks): a thread
    // packs all of B at its first such block and reuses it for the others it takes, rather than
    // packing it again for each (a block of a projection's dx packed its transposed weight for a
    // quarter of its time).
    if let Some(id) = shared {
        WHOLE.with_borrow_mut(|(packed_for, whole)| {
            if *packed_for != Some(id) {
                // SAFETY: B is `k × n` through its strides (the caller's contract).
                unsafe { pack_all(whole, k, n, b, b_rs, b_cs) };
                *packed_for = Some(id);
            }
        });
    }
    // SAFETY: the caller's contract; every tile and packed panel below stays inside the block and its operands.
    PACKED.with_borrow_mut(|packed| unsafe {
        let size = KC.min(k) * NC.min(n).next_multiple_of(NR);
        if packed.len() < size {
            packed.resize(size, 0.0);
        }
        let mut offset = 0;
        for jc in (0..n).step_by(NC) {
            let nc = NC.min(n - jc);
            for pc in (0..k).step_by(KC) {
                let kc = KC.min(k - pc);
                let b = b.offset(pc as isize * b_rs + jc as isize * b_cs);
                let panels = match shared {
                    // The thread's whole packing outlives this call (only `product` replaces it).
                    Some(_) => {
                        WHOLE.with_borrow(|(_, all)| all[offset..offset + kc * nc.next_multiple_of(NR)].as_ptr())
                    }
                    None => {
                        if !in_place {
                            pack(packed, kc, nc, b, b_rs, b_cs);
                        }
                        packed.as_ptr()
                    }
                };
                offset += kc * nc.next_multiple_of(NR);
                let accumulate = pc > 0;
                for i in (0..m).step_by(MR) {
                    let (cols, depth) = need(i, (i + MR).min(m));
                    // The tile's depths within this pass, from `skip` on.
                    let (skip, depth) = match (depth.start.max(pc), depth.end.min(pc + kc)) {
                        (lo, hi) if lo < hi => (lo - pc, hi - lo),
                        _ => (0, 0),
                    };
                    let a = a.offset(i as isize * a_rs + (pc + skip) as isize * a_cs);
                    for (panel, j) in (0..nc).step_by(NR).enumerate() {
                        let (panel, panel_rs) = if !in_place {
                            (panels.add(panel * kc * NR), NR as isize)
                        } else if j + NR <= nc {
                            (b.add(j), b_rs)
                        } else {
                            // The last, partial panel: packed (zero-padded), as the kernel reads whole rows of 8.
                            pack(packed, kc, nc - j, b.add(j), b_rs, 1);
                            (packed.as_ptr(), NR as isize)
                        };
                        let (c0, c1) = (jc + j, jc + j + NR.min(nc - j));
                        let tile = Tile {
                            a,
                            a_rs,
                            a_cs,
                            kc: if cols.start < c1 && c0 < cols.end { depth } else { 0 },
                            panel: panel.offset(skip as isize * panel_rs),
                            panel_rs,
                            c: dst.add(i * dst_rs + jc + j),
                            c_rs: dst_rs,
                            cols: NR.min(nc - j),
                            accumulate,
                        };
                        match MR.min(m - i) {
                            4 => tile.run::<4>(),
                            3 => tile.run::<3>(),
                            2 => tile.run::<2>(),
                            _ => tile.run::<1>(),
                        }
                    }
                }
            }
        }
    })
}

/// All of B (`k × n`) packed into `all` as `product` reads it: its `KC × NC` blocks in turn, each
/// as panels.
///
/// # Safety
/// `b` addresses a valid `k × n` operand through its strides.
unsafe fn pack_all(all: &mut Vec<f32>, k: usize, n: usize, b: *const f32, b_rs: isize, b_cs: isize) {
    all.clear();
    for jc in (0..n).step_by(NC) {
        let nc = NC.min(n - jc);
        for pc in (0..k).step_by(KC) {
            let kc = KC.min(k - pc);
            let start = all.len();
            all.resize(start + kc * nc.next_multiple_of(NR), 0.0);
            // SAFETY: the block lies inside B (the caller's contract).
            unsafe { pack(&mut all[start..], kc, nc, b.offset(pc as isize * b_rs + jc as isize * b_cs), b_rs, b_cs) };
        }
    }
}

thread_local! {
    /// Each thread's packed panels of B, reused by every product it runs.
    static PACKED: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    /// Each thread's packing of a whole B, and the product it belongs to.
    static WHOLE: std::cell::RefCell<(Option<u64>, Vec<f32>)> = const { std::cell::RefCell::new((None, Vec::new())) };
}

/// B's `kc × nc` block as panels of `NR` columns, each `kc` rows of `NR` contiguous values; the last
/// panel's missing columns are zeros (the kernel computes them and never stores them).
unsafe fn pack(out: &mut [f32], kc: usize, nc: usize, b: *const f32, rs: isize, cs: isize) {
    // SAFETY: `b` addresses the `kc × nc` block through its strides (the caller's contract).
    unsafe {
        for (panel, j0) in (0..nc).step_by(NR).enumerate() {
            let cols = NR.min(nc - j0);
            let dst = &mut out[panel * kc * NR..(panel + 1) * kc * NR];
            for p in 0..kc {
                let row = &mut dst[p * NR..(p + 1) * NR];
                let src = b.offset(p as isize * rs + j0 as isize * cs);
                if cs == 1 && cols == NR {
                    row.copy_from_slice(std::slice::from_raw_parts(src, NR));
                } else if rs == 1 && cols == NR && p / 4 * 4 + 4 <= kc {
                    // Whole groups of 4 rows at once, at the group's first.
                    if p % 4 == 0 {
                        transposed(dst.as_mut_ptr().add(p * NR), src, cs);
                    }
                } else {
                    for (j, v) in row.iter_mut().enumerate() {
                        *v = if j < cols { *src.offset(j as isize * cs) } else { 0.0 };
                    }
                }
            }
        }
    }
}

/// Rows `p..p + 4` of a panel from a transposed B (each column contiguous): the 8 columns' 4
/// values each as vectors, turned into the panel's rows by two 4 × 4 transposes — a transposed
/// weight (a projection's dx, attention's keys) packed at a vector per row instead of a scalar per value.
#[inline(always)]
unsafe fn transposed(dst: *mut f32, src: *const f32, cs: isize) {
    // SAFETY: the caller's: 4 values of each of 8 columns `cs` apart at `src`, 4 rows of 8 at `dst`
    // (the group's rows lie in the same panel: `pack` calls this only for a whole group).
    unsafe {
        for half in 0..2 {
            let col = |j: isize| v128_load(src.offset((half * 4 + j) * cs) as *const v128);
            let (c0, c1, c2, c3) = (col(0), col(1), col(2), col(3));
            let (t0, t1) = (i32x4_shuffle::<0, 4, 1, 5>(c0, c1), i32x4_shuffle::<0, 4, 1, 5>(c2, c3));
            let (t2, t3) = (i32x4_shuffle::<2, 6, 3, 7>(c0, c1), i32x4_shuffle::<2, 6, 3, 7>(c2, c3));
            let rows = [
                i64x2_shuffle::<0, 2>(t0, t1),
                i64x2_shuffle::<1, 3>(t0, t1),
                i64x2_shuffle::<0, 2>(t2, t3),
                i64x2_shuffle::<1, 3>(t2, t3),
            ];
            for (r, v) in rows.into_iter().enumerate() {
                v128_store(dst.add(r * NR + half as usize * 4) as *mut v128, v);
            }
        }
    }
}

/// One tile of C: up to `MR` rows × one panel (`kc` rows of `NR` values, `panel_rs` apart).
struct Tile {
    a: *const f32,
    a_rs: isize,
    a_cs: isize,
    kc: usize,
    panel: *const f32,
    panel_rs: isize,
    c: *mut f32,
    c_rs: usize,
    cols: usize,
    accumulate: bool,
}

impl Tile {
    #[inline]
    #[target_feature(enable = "relaxed-simd")]
    unsafe fn run<const R: usize>(&self) {
        // SAFETY: the tile's rows of A, its panel and its block of C lie inside the operands `product` was given.
        unsafe {
            let mut acc = [[f32x4_splat(0.0); 2]; R];
            let rows: [*const f32; R] = std::array::from_fn(|r| self.a.offset(r as isize * self.a_rs));
            let mut b = self.panel;
            for p in 0..self.kc as isize {
                let (b0, b1) = (v128_load(b as *const v128), v128_load(b.add(4) as *const v128));
                for r in 0..R {
                    let x = f32x4_splat(*rows[r].offset(p * self.a_cs));
                    acc[r][0] = f32x4_relaxed_madd(x, b0, acc[r][0]);
                    acc[r][1] = f32x4_relaxed_madd(x, b1, acc[r][1]);
                }
                b = b.offset(self.panel_rs);
            }
            for (r, acc) in acc.iter().enumerate() {
                let c = self.c.add(r * self.c_rs);
                if self.cols == NR {
                    let (c0, c1) = (c as *mut v128, c.add(4) as *mut v128);
                    if self.accumulate {
                        v128_store(c0, f32x4_add(v128_load(c0), acc[0]));
                        v128_store(c1, f32x4_add(v128_load(c1), acc[1]));
                    } else {
                        v128_store(c0, acc[0]);
                        v128_store(c1, acc[1]);
                    }
                } else {
                    let mut tile = [0.0f32; NR];
                    v128_store(tile.as_mut_ptr() as *mut v128, acc[0]);
                    v128_store(tile.as_mut_ptr().add(4) as *mut v128, acc[1]);
                    for (j, v) in tile[..self.cols].iter().enumerate() {
                        *c.add(j) = if self.accumulate { *c.add(j) + v } else { *v };
                    }
                }
            }
        }
    }
}
