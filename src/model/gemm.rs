//! Matrix products for the CPU kernels (`fused`), written once, straight into their output.
//!
//! burn-flex's matmul allocates each output zero-filled as a byte vector, which `Bytes` then
//! copies into a 16-byte-aligned buffer (a byte vector's alignment is 1): a calloc, a memcpy and
//! fresh pages for every product — 15 % of the CPU step in the profile (BENCHMARKS.md). It also
//! runs `[B, T, in]·[in, out]` as B separate products and sums a weight's gradient over a
//! `[B, in, out]` intermediate. Here gemm writes every output element once into an uninitialised
//! `Vec<f32>`, operands are read through their strides (a transpose is free), and the work is
//! split into blocks of output rows or columns over the CPU threads. Attention's products skip
//! what its key ranges hide (`Band`): the causal limit alone leaves half of each head's scores zero.

use std::mem::MaybeUninit;
use std::ops::Range;

use burn::backend::flex::FlexTensor;
use burn::tensor::DType;

/// Matrices read in place: matrix `i` of a batch starts at `offsets[i]` (one offset: the same
/// matrix for every batch index), element (r, c) at `r·rs + c·cs` from there.
#[derive(Clone, Debug)]
pub struct Mat<'a> {
    data: &'a [f32],
    offsets: Vec<usize>,
    rs: isize,
    cs: isize,
    pub rows: usize,
    pub cols: usize,
}

impl<'a> Mat<'a> {
    /// The last two axes of `t`, one matrix per index of its leading axes.
    pub fn of(t: &'a FlexTensor) -> Self {
        assert_eq!(t.dtype(), DType::F32, "the CPU kernels run in f32");
        let layout = t.layout();
        let (shape, strides) = (layout.shape(), layout.strides());
        let d = shape.num_dims();
        assert!(d >= 2 && strides.iter().all(|&s| s >= 0), "a matrix operand with non-negative strides");
        let mut offsets = vec![layout.start_offset()];
        for axis in 0..d - 2 {
            let step = strides[axis] as usize;
            offsets = offsets.iter().flat_map(|&o| (0..shape[axis]).map(move |i| o + i * step)).collect();
        }
        Self {
            data: t.storage::<f32>(),
            offsets,
            rs: strides[d - 2],
            cs: strides[d - 1],
            rows: shape[d - 2],
            cols: shape[d - 1],
        }
    }

    /// All of `t`'s rows (every axis but the last) as one matrix; `t` must be row-major dense.
    pub fn rows_of(t: &'a FlexTensor) -> Self {
        assert!(t.is_contiguous(), "rows_of needs a contiguous tensor");
        let s = t.layout().shape();
        let (cols, rows) = (last(t), (0..s.num_dims() - 1).map(|i| s[i]).product());
        Self {
            data: t.storage::<f32>(),
            offsets: vec![t.layout().start_offset()],
            rs: cols as isize,
            cs: 1,
            rows,
            cols,
        }
    }

    /// Each matrix of the batch `g` times in a row: batch index `i·g + j` reads matrix `i` (GQA:
    /// query head `i·g + j` reads KV head `i`, with no copy of K or V).
    pub fn repeat(mut self, g: usize) -> Self {
        if self.offsets.len() > 1 {
            self.offsets = self.offsets.iter().flat_map(|&o| std::iter::repeat_n(o, g)).collect();
        }
        self
    }

    /// The transpose, as a view.
    pub fn t(self) -> Self {
        Self { rs: self.cs, cs: self.rs, rows: self.cols, cols: self.rows, ..self }
    }

    fn at(&self, batch: usize, row: usize, col: usize) -> *const f32 {
        let o = self.offsets[if self.offsets.len() == 1 { 0 } else { batch }] as isize;
        // A `wrapping_offset`: gemm reads only inside the operand, but an empty one may point past it.
        self.data.as_ptr().wrapping_offset(o + row as isize * self.rs + col as isize * self.cs)
    }
}

/// Time spent in `product`, for the bench's split of a step (`bench::run`).
pub static PRODUCTS: crate::clock::Tally = crate::clock::Tally::new();

/// `a·b` for every batch index, as a contiguous `[batch, a.rows, b.cols]` buffer.
pub fn product(a: &Mat, b: &Mat) -> Vec<f32> {
    product_into(a, b, &Out::dense(a.offsets.len().max(b.offsets.len()), a.rows, b.cols))
}

/// Where `product_into` writes a batch of `m × n` matrices: one buffer, matrix `i` starting at
/// `offsets[i]`, rows `rs` apart. Made only by the constructors below, whose matrices tile the
/// buffer exactly (what lets the threads write it uninitialised and unsynchronised).
pub struct Out {
    m: usize,
    n: usize,
    offsets: Vec<usize>,
    rs: usize,
}

impl Out {
    /// `[batch, m, n]`.
    pub fn dense(batch: usize, m: usize, n: usize) -> Self {
        Self { m, n, offsets: (0..batch).map(|i| i * m * n).collect(), rs: n }
    }

    /// A `[B, H]` batch of `[T, n]` matrices written as `[B, T, H, n]`: attention heads straight
    /// into the token-major layout the output projection reads, with no transposing copy.
    pub fn interleaved(b: usize, h: usize, t: usize, n: usize) -> Self {
        Self { m: t, n, offsets: (0..b * h).map(|i| (i / h) * t * h * n + (i % h) * n).collect(), rs: h * n }
    }
}

/// `a·b` for every batch index, written where `out` says.
pub fn product_into(a: &Mat, b: &Mat, out: &Out) -> Vec<f32> {
    product_in_band(a, b, out, Band::Full)
}

/// Where a product is known to be zero, row by row: attention's key ranges (causal, padding,
/// sliding window), which leave about half of each head's scores and probabilities zero. The
/// function maps (batch index, rows) to an interval `lo..hi` covering what those rows need
/// (`(0, 0)`: nothing).
#[derive(Clone, Copy)]
pub enum Band<'a> {
    Full,
    /// Only the output columns `lo..hi` of the rows are needed; the others are written as zeros.
    Cols(&'a Span<'a>),
    /// The rows of `a` are zero outside their columns `lo..hi`: their sums run over those only.
    Depth(&'a Span<'a>),
}

/// (batch index, rows) → the interval a [`Band`] keeps.
pub type Span<'a> = dyn Fn(usize, Range<usize>) -> (usize, usize) + Sync + 'a;

impl Band<'_> {
    /// What rows `r0..r1` of batch matrix `bi` need, within a block of `cols` columns starting at
    /// column `c0` and `k` deep: (columns, depths), as block-relative intervals.
    fn need(&self, bi: usize, r0: usize, r1: usize, c0: usize, cols: usize, k: usize) -> (Range<usize>, Range<usize>) {
        match self {
            Band::Full => (0..cols, 0..k),
            Band::Cols(f) => {
                let (lo, hi) = f(bi, r0..r1);
                let lo = lo.saturating_sub(c0).min(cols);
                (lo..hi.saturating_sub(c0).clamp(lo, cols), 0..k)
            }
            Band::Depth(f) => {
                let (lo, hi) = f(bi, r0..r1);
                let lo = lo.min(k);
                (0..cols, lo..hi.clamp(lo, k))
            }
        }
    }
}

/// `a·b` for every batch index, written where `out` says, computing only what `band` leaves.
pub fn product_in_band(a: &Mat, b: &Mat, out: &Out, band: Band) -> Vec<f32> {
    PRODUCTS.time(|| untimed(a, b, out, band))
}

fn untimed(a: &Mat, b: &Mat, out: &Out, band: Band) -> Vec<f32> {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(k, b.rows, "matmul: inner dimensions differ");
    let batch = a.offsets.len().max(b.offsets.len());
    assert!(
        [a.offsets.len(), b.offsets.len()].iter().all(|&l| l == 1 || l == batch),
        "matmul: batch dimensions differ"
    );
    assert!((out.m, out.n, out.offsets.len()) == (m, n, batch), "matmul: output layout of another shape");
    let (len, rs) = (batch * m * n, out.rs);
    if k == 0 || len == 0 {
        return vec![0.0; len];
    }
    let mut buffer: Vec<f32> = Vec::with_capacity(len);
    let dst = Dst(buffer.spare_capacity_mut().as_mut_ptr());
    let (row_blocks, col_blocks) = blocks(batch, m, n, k);
    let (rb, cb) = (m.div_ceil(row_blocks), n.div_ceil(col_blocks));
    let per_batch = row_blocks * col_blocks;
    // Row blocks of one product read all of one B: the tab's kernel packs it once per thread.
    #[cfg(all(target_arch = "wasm32", feature = "relaxed-simd"))]
    let shared = (row_blocks > 1 && col_blocks == 1 && b.offsets.len() == 1).then(|| {
        static PRODUCT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        PRODUCT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    });
    let task = |i: usize| {
        let (bi, r0, c0) = (i / per_batch, (i % per_batch) / col_blocks * rb, i % col_blocks * cb);
        let (rows, cols) = (rb.min(m.saturating_sub(r0)), cb.min(n.saturating_sub(c0)));
        if rows == 0 || cols == 0 {
            return;
        }
        let (c, a0, b0) = (dst.at(out.offsets[bi] + r0 * rs + c0), a.at(bi, r0, 0), b.at(bi, 0, c0));
        let need = |i0: usize, i1: usize| band.need(bi, r0 + i0, r0 + i1, c0, cols, k);
        // SAFETY: blocks are disjoint and inside the buffer's capacity (`out`'s matrices tile its
        // `len` values); each kernel writes every element of its block and reads none (gemm:
        // `read_dst = false`); `a`, `b` are read inside their storage.
        #[cfg(all(target_arch = "wasm32", feature = "relaxed-simd"))]
        unsafe {
            super::madd::product(rows, cols, k, c, rs, a0, a.rs, a.cs, b0, b.rs, b.cs, &need, shared)
        };
        #[cfg(not(all(target_arch = "wasm32", feature = "relaxed-simd")))]
        unsafe {
            native(rows, cols, c, rs, (a0, a.rs, a.cs), (b0, b.rs, b.cs), matches!(band, Band::Full), &need)
        };
    };
    super::par::for_each(batch * per_batch, batch * m * n * k, task);
    // SAFETY: the tasks above wrote all `len` elements.
    unsafe { buffer.set_len(len) };
    buffer
}

/// A block on gemm's kernel: whole, or (a band) in chunks of rows, each over the columns and
/// depths its rows need, the rest of its columns written as zeros.
///
/// # Safety
/// As `madd::product`: the operands address valid `rows × k`, `k × cols` matrices (`need` keeps
/// the depths below k), `c` a block no other thread touches.
#[cfg(not(all(target_arch = "wasm32", feature = "relaxed-simd")))]
#[allow(clippy::too_many_arguments)]
unsafe fn native(
    rows: usize,
    cols: usize,
    c: *mut f32,
    rs: usize,
    (a, a_rs, a_cs): (*const f32, isize, isize),
    (b, b_rs, b_cs): (*const f32, isize, isize),
    full: bool,
    need: &dyn Fn(usize, usize) -> (Range<usize>, Range<usize>),
) {
    // gemm packs its operands per call: chunks of fewer rows would pay that for little skipped work.
    const CHUNK: usize = 16;
    let chunk = if full { rows } else { CHUNK };
    for i0 in (0..rows).step_by(chunk) {
        let m = chunk.min(rows - i0);
        let (nc, kd) = need(i0, i0 + m);
        // SAFETY: the chunk's rows, columns and depths lie inside the block (`need` clamps them).
        unsafe {
            let c = c.add(i0 * rs);
            for r in 0..m {
                let row = c.add(r * rs);
                std::ptr::write_bytes(row, 0, nc.start);
                std::ptr::write_bytes(row.add(nc.end), 0, cols - nc.end);
            }
            let (n, depth) = (nc.len(), kd.len());
            let c = c.add(nc.start);
            if n == 0 {
                continue;
            }
            if depth == 0 {
                (0..m).for_each(|r| std::ptr::write_bytes(c.add(r * rs), 0, n));
                continue;
            }
            let a = a.wrapping_offset(i0 as isize * a_rs + kd.start as isize * a_cs);
            let b = b.wrapping_offset(kd.start as isize * b_rs + nc.start as isize * b_cs);
            #[rustfmt::skip]
            gemm::gemm(m, n, depth, c, 1, rs as isize, false, a, a_cs, a_rs, b, b_cs, b_rs,
                0.0, 1.0, false, false, false, gemm::Parallelism::None);
        }
    }
}

/// How to split each product of a batch: (row blocks, column blocks). A batch of at least four
/// tasks per thread is split no further; otherwise the longer side of the output is cut into
/// blocks of at least `MIN_BLOCK`, each block's gemm packing the shared operand for itself (the
/// tab's kernel: each thread once, for all the row blocks it takes). Several
/// blocks per thread because threads claim them as they finish: a thread on a slower core (this
/// VM's two differ by up to 2×) takes fewer.
fn blocks(batch: usize, m: usize, n: usize, k: usize) -> (usize, usize) {
    const MIN_BLOCK: usize = 32;
    let threads = super::par::threads();
    if !super::par::worth_splitting(batch * m * n * k) || batch >= 4 * threads {
        return (1, 1);
    }
    let want = (4 * threads).div_ceil(batch);
    if m >= n { (want.min(m.div_ceil(MIN_BLOCK)).max(1), 1) } else { (1, want.min(n.div_ceil(MIN_BLOCK)).max(1)) }
}

/// The output's base pointer, shared by the tasks that write its disjoint blocks.
#[derive(Clone, Copy)]
struct Dst(*mut MaybeUninit<f32>);
// SAFETY: each task writes only its own block of the buffer.
unsafe impl Send for Dst {}
unsafe impl Sync for Dst {}

impl Dst {
    fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset) as *mut f32
    }
}

/// The length of `t`'s last axis.
pub(super) fn last(t: &FlexTensor) -> usize {
    let s = t.layout().shape();
    s[s.num_dims() - 1]
}
