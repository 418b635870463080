//! Host-side building blocks of the CPU operators: a row-major matrix product whose
//! arithmetic is fixed by this file alone, and the pointer juggling needed to read one
//! gradient while writing another.
//!
//! # Same bits on every CPU
//!
//! Every element of a product is `c_ij ← fma(a_i0, b_0j, c_ij)`, then
//! `fma(a_i1, b_1j, ·)`, … up to `p = k − 1`: one fused multiply-add per term (the exact
//! product plus the running sum, rounded once, as IEEE 754 defines it), in the order of
//! `p`, starting from the output's value (zero, or what is there with `accumulate`), in the
//! stages' floating-point environment (subnormal operands read as zero, tiny results
//! flushed to zero; see [`super::float_env`]). Nothing else about the computation may
//! change that order:
//!
//! * **Vector width.** The micro-kernel keeps an `MR × NR` block of outputs in
//!   accumulators and walks `p` once; the vector lanes run across the `NR` columns, never
//!   along `p`. Rust never reassociates floating point, so the same source compiled for
//!   AVX-512, AVX2 + FMA or the SSE2 baseline ([`Isa`], picked at run time) computes the
//!   same bits; only the block shape and speed differ. An FMA is correctly rounded by
//!   definition, so the hardware instruction (AVX2 and AVX-512 CPUs, every x86-64 CPU
//!   since 2013, and ARM's NEON) and the software one of [`libm::fmaf`] (the baseline, on
//!   CPUs without it) agree to the bit. (A library that picks its micro-kernel by CPU, as
//!   `gemm` does, may use FMA on one CPU and a multiply then an add on another, or split
//!   `k` into cache-sized blocks whose partial sums are added: both change the last bits,
//!   and chaotic training turns a last bit into a point of test error.)
//! * **Threads.** Threads split the output's rows; each element is still summed by one
//!   thread in the order above, so a product has the same bits on any number of threads.
//! * **Operand layout.** Operands are copied ("packed") into contiguous blocks before the
//!   product; a transposed operand only changes how it is read, not what is summed.
//!
//! The operators built on it split batches into a fixed number of chunks that does not
//! depend on the thread count and reduce the partial results in chunk order
//! ([`chunk_ranges`]).

use std::cell::RefCell;

use dfdx::prelude::*;
use rayon::prelude::*;

/// A runtime-shaped matrix on the CPU (the host kernels' operand type).
pub type HostMat<T = NoneTape> = Tensor<(usize, usize), f32, Cpu, T>;
/// A runtime-shaped vector on the CPU.
pub type HostVector = Tensor<(usize,), f32, Cpu>;

/// Whether a product may run on the rayon threads or runs on the calling thread only.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Par {
    /// On all rayon threads when the product has at least [`PAR_MIN_MULADDS`]
    /// multiply-adds, on the calling thread below that.
    Rayon,
    /// On the calling thread.
    Seq,
}

/// Least multiply-adds (`m·n·k`) for which a product is spread over the rayon threads.
///
/// Below it, waking the pool and joining it costs more than the second core saves.
/// `cargo bench -p repro-stages --bench products` times products of each size on one and
/// on all threads, on the machine at hand. 32 M (about a millisecond of one core) keeps
/// every training product of the MLPs on one thread (batch 32, 784-128-128-10: at most
/// 32·784·128 ≈ 3.2 M) and leaves the evaluation products (batch 500: 50 M) and the
/// CNNs' large ones to the pool. Bits do not depend on this choice (see the module docs).
pub const PAR_MIN_MULADDS: usize = 32 << 20;

/// Threads an `m x k` by `k x n` product runs on under `par` (1: the calling thread).
pub fn threads_for(m: usize, n: usize, k: usize, par: Par) -> usize {
    let work = m.saturating_mul(n).saturating_mul(k);
    match par {
        Par::Rayon if work >= PAR_MIN_MULADDS => rayon::current_num_threads().max(1),
        _ => 1,
    }
}

/// One operand of [`matmul`]: a row-major `rows x cols` matrix, read transposed when `t`.
#[derive(Clone, Copy)]
pub struct Operand<'a> {
    pub data: &'a [f32],
    /// Stored row-major as `rows x cols` (before the optional transpose).
    pub rows: usize,
    pub cols: usize,
    pub t: bool,
}

impl<'a> Operand<'a> {
    pub fn n(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Operand {
            data,
            rows,
            cols,
            t: false,
        }
    }
    pub fn t(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Operand {
            data,
            rows,
            cols,
            t: true,
        }
    }
    /// Logical shape (after the transpose).
    fn shape(&self) -> (usize, usize) {
        if self.t {
            (self.cols, self.rows)
        } else {
            (self.rows, self.cols)
        }
    }
    /// Element `(i, j)` of the logical matrix.
    #[cfg(test)]
    fn at(&self, i: usize, j: usize) -> f32 {
        if self.t {
            self.data[j * self.cols + i]
        } else {
            self.data[i * self.cols + j]
        }
    }
}

/// The instruction sets the product is compiled for, widest first. Each computes the same
/// bits (see the module docs); [`Isa::detect`] picks the widest the CPU has.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Isa {
    /// AVX-512F: 16 lanes, blocks of 12 × 32 outputs.
    Avx512,
    /// AVX2 and FMA: 8 lanes, blocks of 6 × 16 outputs.
    Avx2,
    /// The x86-64 baseline (SSE2) or any other target: blocks of 4 × 8 outputs, each
    /// fused multiply-add through [`libm::fmaf`] (the instruction when the CPU has it, the
    /// same bits in software when not).
    Base,
}

impl Isa {
    /// The widest instruction set this CPU runs.
    pub fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Isa::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Isa::Avx2;
            }
        }
        Isa::Base
    }

    /// Every instruction set this CPU runs (for tests that compare them).
    pub fn available() -> Vec<Isa> {
        let widest = Isa::detect();
        [Isa::Avx512, Isa::Avx2, Isa::Base]
            .into_iter()
            .skip_while(|&i| i != widest)
            .collect()
    }
}

/// `c = a·b` (or `c += a·b` with `accumulate`), `c` row-major `m x n`, on the threads
/// [`threads_for`] says, with the widest instruction set the CPU has.
pub fn matmul(a: Operand, b: Operand, c: &mut [f32], accumulate: bool, par: Par) {
    let (m, k) = a.shape();
    let n = b.shape().1;
    matmul_with(
        a,
        b,
        c,
        accumulate,
        threads_for(m, n, k, par),
        Isa::detect(),
    )
}

thread_local! {
    /// Scratch kept between products: packed panels of B, and a transposed output.
    static SCRATCH: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
    /// A transposed A's row block, packed (one buffer per thread).
    static PACKED_A: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// The first `len` values of a scratch buffer. It grows (zero-filled) only past the longest
/// length it has had: every user writes what it later reads.
fn scratch(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    &mut buf[..len]
}

/// [`matmul`] on an explicit number of threads and instruction set (tests and
/// benchmarks compare them; every choice gives the same bits).
pub fn matmul_with(
    a: Operand,
    b: Operand,
    c: &mut [f32],
    accumulate: bool,
    threads: usize,
    isa: Isa,
) {
    let (m, k) = a.shape();
    let (k2, n) = b.shape();
    assert_eq!(k, k2, "matmul: inner dimensions {k} and {k2} differ");
    assert_eq!(a.data.len(), a.rows * a.cols, "matmul: lhs length");
    assert_eq!(b.data.len(), b.rows * b.cols, "matmul: rhs length");
    assert_eq!(c.len(), m * n, "matmul: output length");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c.fill(0.0);
        }
        return;
    }
    if b.t && !a.t && m < n {
        // `A·Bᵀ` with both stored along `k` (a linear layer's forward pass): B's panels
        // would be gathered from `n` rows. `(A·Bᵀ)ᵀ = B·Aᵀ` reads B's rows in place and
        // gathers the smaller A instead; `fma(x, y, s) = fma(y, x, s)`, so every output
        // gets the same terms in the same order.
        let mut ct = SCRATCH.with(|s| std::mem::take(&mut s.borrow_mut().1));
        let cts = scratch(&mut ct, m * n);
        if accumulate {
            transpose(c, m, n, cts);
        }
        let bt = Operand::n(b.data, b.rows, b.cols);
        let at = Operand::t(a.data, a.rows, a.cols);
        product(bt, at, cts, !accumulate, threads, isa);
        transpose(cts, n, m, c);
        SCRATCH.with(|s| s.borrow_mut().1 = ct);
    } else {
        product(a, b, c, !accumulate, threads, isa);
    }
}

/// `dst (cols x rows) = srcᵀ` for a row-major `rows x cols` `src`, in square tiles that
/// keep the lines written in the L1 cache.
fn transpose(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    const T: usize = 16;
    for i0 in (0..rows).step_by(T) {
        let i1 = (i0 + T).min(rows);
        for j0 in (0..cols).step_by(T) {
            let j1 = (j0 + T).min(cols);
            for i in i0..i1 {
                let row = &src[i * cols + j0..i * cols + j1];
                for (j, &v) in (j0..j1).zip(row) {
                    dst[j * rows + i] = v;
                }
            }
        }
    }
}

/// `c += a·b` (from the running sums in `c`, or from zero with `zero`), on the
/// instruction set's block shape and micro-kernel.
fn product(a: Operand, b: Operand, c: &mut [f32], zero: bool, threads: usize, isa: Isa) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY (of the kernel passed): `Isa::Avx512` is only chosen or offered when the
        // CPU has AVX-512F.
        Isa::Avx512 => product_in::<12, 32>(a, b, c, zero, threads, kernel_avx512),
        #[cfg(target_arch = "x86_64")]
        // SAFETY (of the kernel passed): `Isa::Avx2` is only chosen or offered when the
        // CPU has AVX2 and FMA.
        Isa::Avx2 => product_in::<6, 16>(a, b, c, zero, threads, kernel_avx2),
        _ => product_in::<4, 8>(a, b, c, zero, threads, kernel_base),
    }
}

/// A micro-kernel compiled for one instruction set; calling it is sound only on a CPU
/// that has that set.
type Kernel = unsafe fn(Block, Tile);

/// [`product`] with `MR x NR` output blocks, rows split into bands over `threads`.
fn product_in<const MR: usize, const NR: usize>(
    a: Operand,
    b: Operand,
    c: &mut [f32],
    zero: bool,
    threads: usize,
    kern: Kernel,
) {
    let (m, k) = a.shape();
    let n = b.shape().1;
    let mut buf = SCRATCH.with(|s| std::mem::take(&mut s.borrow_mut().0));
    let bp = pack_panels::<NR>(b, k, n, &mut buf);
    // Rows in bands of whole blocks, one band per thread (contiguous rows of `c`).
    let blocks = m.div_ceil(MR);
    let threads = threads.clamp(1, blocks);
    let band_rows = blocks.div_ceil(threads) * MR;
    let band = |(bi, cb): (usize, &mut [f32])| {
        PACKED_A.with(|ap| {
            let ap = &mut ap.borrow_mut();
            band_product::<MR, NR>(a, bi * band_rows, bp, cb, n, k, zero, kern, ap)
        })
    };
    if threads > 1 {
        c.par_chunks_mut(band_rows * n).enumerate().for_each(band);
    } else {
        c.chunks_mut(band_rows * n).enumerate().for_each(band);
    }
    SCRATCH.with(|s| s.borrow_mut().0 = buf);
}

/// B (`k x n`) packed as panels of `NR` columns, each `k` rows of `NR` values (zero-padded
/// past column `n`), so that the micro-kernel reads a panel contiguously (read in place,
/// B's rows `n` apart would meet in a few sets of the L1 cache when `n` is a power of two).
fn pack_panels<'b, const NR: usize>(
    b: Operand,
    k: usize,
    n: usize,
    buf: &'b mut Vec<f32>,
) -> &'b [f32] {
    let packed = scratch(buf, n.div_ceil(NR) * k * NR);
    for (jp, panel) in packed.chunks_exact_mut(k * NR).enumerate() {
        let j0 = jp * NR;
        let cols = (n - j0).min(NR);
        if b.t {
            // Column `jj` of the panel is stored row `j0 + jj`: copied `T` terms at a
            // time, so that each stored row is read along its length and the `T` rows of
            // the panel written stay in the L1 cache.
            const T: usize = 8;
            for (rows, p0) in panel.chunks_mut(T * NR).zip((0..k).step_by(T)) {
                for jj in 0..cols {
                    let src = &b.data[(j0 + jj) * k + p0..][..rows.len() / NR];
                    for (row, &v) in rows.chunks_exact_mut(NR).zip(src) {
                        row[jj] = v;
                    }
                }
                if cols < NR {
                    rows.chunks_exact_mut(NR)
                        .for_each(|row| row[cols..].fill(0.0));
                }
            }
        } else if cols == NR {
            for (p, row) in panel.chunks_exact_mut(NR).enumerate() {
                row.copy_from_slice(&b.data[p * n + j0..][..NR]);
            }
        } else {
            for (p, row) in panel.chunks_exact_mut(NR).enumerate() {
                row[..cols].copy_from_slice(&b.data[p * n + j0..p * n + n]);
                row[cols..].fill(0.0);
            }
        }
    }
    packed
}

/// Terms of the sum taken per pass over the output (`p` in blocks of `KC`): a block of
/// B's panel (`KC x NR`, 32 KB for AVX-512) stays in the L1 cache while every row block
/// of A meets it. The running sums are stored in `c` between blocks and read back
/// exactly, so the blocks do not change the order of the terms.
const KC: usize = 256;

/// Rows `row0 ..` of `a` times packed B (`bp`) into `c` (those rows of the output).
#[allow(clippy::too_many_arguments)]
fn band_product<const MR: usize, const NR: usize>(
    a: Operand,
    row0: usize,
    bp: &[f32],
    c: &mut [f32],
    n: usize,
    k: usize,
    zero: bool,
    kern: Kernel,
    ap: &mut Vec<f32>,
) {
    let rows = c.len() / n;
    for i0 in (0..rows).step_by(MR) {
        let h = (rows - i0).min(MR);
        let r0 = row0 + i0;
        // A transposed is stored along its rows' index: its block is packed as `k`
        // columns of `MR` values. A as stored is read in place, row by row (rows past the
        // end repeat the last; their sums are never stored).
        let apk: &[f32] = if a.t {
            let m = a.cols;
            let buf = scratch(ap, k * MR);
            for (p, col) in buf.chunks_exact_mut(MR).enumerate() {
                let src = &a.data[p * m + r0..];
                if h == MR {
                    col.copy_from_slice(&src[..MR]);
                } else {
                    col[..h].copy_from_slice(&src[..h]);
                    col[h..].fill(0.0);
                }
            }
            buf
        } else {
            &[]
        };
        for k0 in (0..k).step_by(KC) {
            let k1 = (k0 + KC).min(k);
            for (jp, panel) in bp.chunks_exact(k * NR).enumerate() {
                let j0 = jp * NR;
                let tile = Tile {
                    c: &mut c[i0 * n..],
                    ldc: n,
                    j0,
                    rows: h,
                    cols: (n - j0).min(NR),
                    zero: zero && k0 == 0,
                };
                let blk = Block {
                    a: if a.t {
                        ABlock::Packed(&apk[k0 * MR..k1 * MR])
                    } else {
                        ABlock::Rows {
                            data: a.data,
                            offset: r0 * k + k0,
                            stride: k,
                        }
                    },
                    b: &panel[k0 * NR..k1 * NR],
                    terms: k1 - k0,
                };
                // SAFETY: `kern` was picked by `product` for an instruction set this CPU
                // has.
                unsafe { kern(blk, tile) }
            }
        }
    }
}

/// One micro-kernel call's share of A: packed (`MR` values per term), or read in place
/// from row-major `data`, its first row's first term at `offset`, rows `stride` apart.
#[derive(Clone, Copy)]
enum ABlock<'a> {
    Packed(&'a [f32]),
    Rows {
        data: &'a [f32],
        offset: usize,
        stride: usize,
    },
}

/// The operands of one micro-kernel call: A's block and B's panel for the same `terms`.
#[derive(Clone, Copy)]
struct Block<'a> {
    a: ABlock<'a>,
    /// `terms` rows of `NR` values.
    b: &'a [f32],
    terms: usize,
}

/// The part of the output one micro-kernel call owns: `rows x cols` at column `j0` of
/// `c`, its running sums read from `c`, or zero when `zero`.
struct Tile<'c> {
    c: &'c mut [f32],
    ldc: usize,
    j0: usize,
    rows: usize,
    cols: usize,
    zero: bool,
}

/// Dispatches a block to [`kernel`] with A's values read the way the block holds them.
#[inline(always)]
fn block_kernel<const MR: usize, const NR: usize>(
    blk: Block,
    t: Tile,
    fma: impl Fn(f32, f32, f32) -> f32 + Copy,
) {
    let terms = blk.terms;
    let bp = blk.b;
    assert_eq!(bp.len(), terms * NR, "matmul: packed B block");
    // SAFETY: `p < terms` and `bp` holds `terms` rows of `NR`.
    let b = |p: usize| unsafe { &*(bp.as_ptr().add(p * NR) as *const [f32; NR]) };
    match blk.a {
        ABlock::Packed(ap) => {
            assert_eq!(ap.len(), terms * MR, "matmul: packed A block");
            // SAFETY: `p < terms` and `ap` holds `terms` columns of `MR`.
            let a = |p: usize| unsafe { *(ap.as_ptr().add(p * MR) as *const [f32; MR]) };
            kernel::<MR, NR>(a, b, terms, t, fma)
        }
        ABlock::Rows {
            data,
            offset,
            stride,
        } => {
            let rows: [&[f32]; MR] = std::array::from_fn(|ii| {
                let s = offset + ii.min(t.rows - 1) * stride;
                &data[s..s + terms]
            });
            // SAFETY: every row slice has `terms` values (checked by the slicing above)
            // and `p < terms`.
            let a = |p: usize| std::array::from_fn(|ii| unsafe { *rows[ii].get_unchecked(p) });
            kernel::<MR, NR>(a, b, terms, t, fma)
        }
    }
}

/// The micro-kernel: an `MR x NR` block of outputs, loaded (or zero), then for each term
/// `p < terms` (`a(p)`: the `MR` values of A; `b(p)`: the `NR` values of B) each becomes
/// `fma(a_ip, b_pj, ·)`, then stored.
#[inline(always)]
fn kernel<'b, const MR: usize, const NR: usize>(
    a: impl Fn(usize) -> [f32; MR],
    b: impl Fn(usize) -> &'b [f32; NR],
    terms: usize,
    t: Tile,
    fma: impl Fn(f32, f32, f32) -> f32 + Copy,
) {
    // A partial block goes through a copy (of run-time length) so that `acc` itself is
    // only ever copied whole and can live in registers.
    let full = t.rows == MR && t.cols == NR;
    let j0 = t.j0;
    let mut acc: [[f32; NR]; MR] = if t.zero {
        [[0.0; NR]; MR]
    } else if full {
        std::array::from_fn(|ii| t.c[ii * t.ldc + j0..][..NR].try_into().unwrap())
    } else {
        let mut edge = [[0.0f32; NR]; MR];
        for (ii, row) in edge.iter_mut().enumerate().take(t.rows) {
            row[..t.cols].copy_from_slice(&t.c[ii * t.ldc + j0..ii * t.ldc + j0 + t.cols]);
        }
        edge
    };
    for p in 0..terms {
        let bp = b(p);
        let ap = a(p);
        // Two halves of the rows: each half's loops are small enough for the compiler to
        // unroll and keep in registers (a whole 12 x 32 block is not, and then runs from
        // memory at a fiftieth of the speed). The order of the terms is the same.
        let (top, bottom) = acc.split_at_mut(MR / 2);
        rows_update(top, &ap[..MR / 2], bp, fma);
        rows_update(bottom, &ap[MR / 2..], bp, fma);
    }
    if full {
        for (ii, row) in acc.iter().enumerate() {
            let dst: &mut [f32; NR] = (&mut t.c[ii * t.ldc + j0..][..NR]).try_into().unwrap();
            *dst = *row;
        }
    } else {
        let edge = acc;
        for (ii, row) in edge.iter().enumerate().take(t.rows) {
            t.c[ii * t.ldc + j0..ii * t.ldc + j0 + t.cols].copy_from_slice(&row[..t.cols]);
        }
    }
}

/// `acc_i ← fma(a_i, b, acc_i)` for each row `i` of `acc`.
#[inline(always)]
fn rows_update<const NR: usize>(
    acc: &mut [[f32; NR]],
    a: &[f32],
    b: &[f32; NR],
    fma: impl Fn(f32, f32, f32) -> f32,
) {
    for (row, &ai) in acc.iter_mut().zip(a) {
        for jj in 0..NR {
            row[jj] = fma(ai, b[jj], row[jj]);
        }
    }
}

/// [`kernel`] compiled for AVX-512 (12 x 32 outputs: 24 registers of 16 lanes, enough
/// independent sums to keep both FMA units busy).
///
/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn kernel_avx512(blk: Block, t: Tile) {
    block_kernel::<12, 32>(blk, t, f32::mul_add)
}

/// [`kernel`] compiled for AVX2 and FMA (6 x 16 outputs: 12 registers of 8 lanes).
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel_avx2(blk: Block, t: Tile) {
    block_kernel::<6, 16>(blk, t, f32::mul_add)
}

/// [`kernel`] for the baseline (4 x 8 outputs), each fused multiply-add through
/// [`libm::fmaf`].
///
/// # Safety
/// None needed: it runs on every CPU (unsafe only to share [`Kernel`]'s type).
unsafe fn kernel_base(blk: Block, t: Tile) {
    block_kernel::<4, 8>(blk, t, libm::fmaf)
}

/// Runs `f(out_grad, in_grad)` on the gradient buffers of two distinct tensors.
///
/// dfdx hands out one `&mut` gradient at a time; the buffers are separate heap
/// allocations, so holding a pointer to one while borrowing another is sound as long as
/// the two are different tensors (every caller passes an operator's output and one of
/// its inputs).
pub fn with_grads2<S1: Shape, S2: Shape>(
    grads: &mut Gradients<f32, Cpu>,
    out: &Tensor<S1, f32, Cpu>,
    inp: &Tensor<S2, f32, Cpu>,
    f: impl FnOnce(&[f32], &mut [f32]),
) -> Result<(), CpuError> {
    let g_out = grads.get_or_alloc_mut(out)?;
    let (ptr, len) = (g_out.as_ptr(), g_out.len());
    let g_in = grads.get_or_alloc_mut(inp)?;
    // SAFETY: `ptr` points into the gradient buffer of `out`, a heap allocation that is
    // neither moved nor freed by allocating the (different) buffer of `inp`.
    let g_out = unsafe { std::slice::from_raw_parts(ptr, len) };
    f(g_out, &mut g_in[..]);
    Ok(())
}

/// Keeps large activation buffers on the heap between steps (glibc only).
///
/// Every step allocates and frees activation and gradient buffers of up to tens of MB.
/// With glibc's defaults, blocks above the (adaptive) mmap threshold are mapped and
/// unmapped each time, and the kernel zeroes every page again on every step. Raising the
/// mmap and trim thresholds to 1 GiB makes freed blocks reusable.
/// Process-wide and idempotent; numerics are unaffected.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            extern "C" {
                fn mallopt(param: i32, value: i32) -> i32;
            }
            const M_TRIM_THRESHOLD: i32 = -1;
            const M_MMAP_THRESHOLD: i32 = -3;
            // SAFETY: mallopt only changes allocator tuning parameters.
            unsafe {
                mallopt(M_MMAP_THRESHOLD, 1 << 30);
                mallopt(M_TRIM_THRESHOLD, 1 << 30);
            }
        });
    }
}

/// Number of chunks a batch of `n` examples is split into for per-chunk partial sums:
/// fixed by `n` alone, so the reduction order never depends on the thread count.
pub fn chunks_for(n: usize) -> usize {
    n.clamp(1, 16)
}

/// Splits `0..n` into `chunks_for(n)` contiguous ranges.
pub fn chunk_ranges(n: usize) -> Vec<std::ops::Range<usize>> {
    let c = chunks_for(n);
    let base = n / c;
    let extra = n % c;
    let mut out = Vec::with_capacity(c);
    let mut start = 0;
    for i in 0..c {
        let len = base + usize::from(i < extra);
        out.push(start..start + len);
        start += len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matmul_transposes() {
        // a = [[1,2,3],[4,5,6]] (2x3), b = [[1,0],[0,1],[1,1]] (3x2): a·b = [[4,5],[10,11]].
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let b = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0];
        let mut c = [0.0; 4];
        matmul(
            Operand::n(&a, 2, 3),
            Operand::n(&b, 3, 2),
            &mut c,
            false,
            Par::Seq,
        );
        assert_eq!(c, [4.0, 5.0, 10.0, 11.0]);
        // aᵀ·a (3x3), first row = [1*1+4*4, 1*2+4*5, 1*3+4*6] = [17, 22, 27].
        let mut d = [0.0; 9];
        matmul(
            Operand::t(&a, 2, 3),
            Operand::n(&a, 2, 3),
            &mut d,
            false,
            Par::Rayon,
        );
        assert_eq!(&d[..3], &[17.0, 22.0, 27.0]);
        // accumulate: c += a·b
        matmul(
            Operand::n(&a, 2, 3),
            Operand::n(&b, 3, 2),
            &mut c,
            true,
            Par::Seq,
        );
        assert_eq!(c, [8.0, 10.0, 20.0, 22.0]);
        // a·bᵀ with b stored 2x3
        let mut e = [0.0; 4];
        matmul(
            Operand::n(&a, 2, 3),
            Operand::t(&a, 2, 3),
            &mut e,
            false,
            Par::Seq,
        );
        assert_eq!(e, [14.0, 32.0, 32.0, 77.0]);
    }

    /// `c + Σ_p a_ip·b_pj`, one fused multiply-add at a time in the order of `p`: the
    /// definition the kernel must meet bit for bit.
    fn reference(a: Operand, b: Operand, c: &[f32]) -> Vec<f32> {
        let (m, k) = a.shape();
        let n = b.shape().1;
        let mut out = c.to_vec();
        for i in 0..m {
            for j in 0..n {
                let mut acc = c[i * n + j];
                for p in 0..k {
                    acc = libm::fmaf(a.at(i, p), b.at(p, j), acc);
                }
                out[i * n + j] = acc;
            }
        }
        out
    }

    #[test]
    fn matmul_has_the_reference_bits_on_every_isa_and_thread_count() {
        matmul_meets_reference(7, -8..8);
    }

    /// The same in the stages' floating-point environment, on values whose products and
    /// sums fall below the smallest normal number (flushed alike on every path).
    #[test]
    fn matmul_flushes_subnormals_alike_on_every_isa_and_thread_count() {
        let digest = std::thread::spawn(|| {
            super::super::float_env::enter();
            matmul_meets_reference(8, -70..-56)
        })
        .join()
        .unwrap();
        // Every CPU computes these bits: with the FMA instruction (AVX2, AVX-512) or the
        // software one (`qemu-x86_64 -cpu Nehalem` runs this test on the latter).
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            digest, FLUSHED_PRODUCTS,
            "the flushed products' bits differ from every other CPU's"
        );
        let _ = digest;
    }

    /// SHA-256 of the reference products of the test above, as every x86-64 CPU computes them.
    #[cfg(target_arch = "x86_64")]
    const FLUSHED_PRODUCTS: &str =
        "f0d87456b3bfd24a6d825770d73bb2eff3389b18d34183d521ae5fc176256ba3";

    /// Compares every instruction set and thread count with [`reference`] on random
    /// operands whose magnitudes are `2^e` for `e` in `exponents`; returns the SHA-256 of
    /// the reference products' bits.
    fn matmul_meets_reference(seed: u64, exponents: std::ops::Range<i32>) -> String {
        use rand::{Rng, SeedableRng};
        use sha2::Digest;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut hash = sha2::Sha256::new();
        let isas = Isa::available();
        assert_eq!(isas.last(), Some(&Isa::Base));
        // Edges of every block shape, a long reduction, and the MLP's training shapes.
        let shapes = [
            (1, 1, 1),
            (3, 5, 2),
            (9, 33, 17),
            (17, 65, 300),
            (32, 128, 784),
            (128, 784, 32),
        ];
        for &(m, n, k) in &shapes {
            for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
                // Values of mixed sign and scale, so that the order of the sum shows.
                let mut draw = |len: usize| -> Vec<f32> {
                    (0..len)
                        .map(|_| {
                            (rng.random::<f32>() - 0.5)
                                * 2f32.powi(rng.random_range(exponents.clone()))
                        })
                        .collect()
                };
                let (ad, bd, c0) = (draw(m * k), draw(k * n), draw(m * n));
                let a = if ta {
                    Operand::t(&ad, k, m)
                } else {
                    Operand::n(&ad, m, k)
                };
                let b = if tb {
                    Operand::t(&bd, n, k)
                } else {
                    Operand::n(&bd, k, n)
                };
                let want = reference(a, b, &c0);
                let zero = reference(a, b, &vec![0.0; m * n]);
                for v in want.iter().chain(&zero) {
                    hash.update(v.to_bits().to_le_bytes());
                }
                for &isa in &isas {
                    for threads in [1, 2, 3, 5] {
                        let mut c = c0.clone();
                        matmul_with(a, b, &mut c, true, threads, isa);
                        let same = c.iter().zip(&want).all(|(x, y)| x.to_bits() == y.to_bits());
                        assert!(
                            same,
                            "{m}x{k}·{k}x{n} ({ta},{tb}) += on {isa:?}, {threads} threads"
                        );
                        let mut c = c0.clone();
                        matmul_with(a, b, &mut c, false, threads, isa);
                        let same = c.iter().zip(&zero).all(|(x, y)| x.to_bits() == y.to_bits());
                        assert!(
                            same,
                            "{m}x{k}·{k}x{n} ({ta},{tb}) = on {isa:?}, {threads} threads"
                        );
                    }
                }
            }
        }
        hex::encode(hash.finalize())
    }

    #[test]
    fn chunk_ranges_cover() {
        let r = chunk_ranges(37);
        assert_eq!(r.len(), 16);
        assert_eq!(r.first().unwrap().start, 0);
        assert_eq!(r.last().unwrap().end, 37);
        assert!(r.windows(2).all(|w| w[0].end == w[1].start));
    }
}
