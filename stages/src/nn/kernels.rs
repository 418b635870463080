//! Host-side building blocks of the CPU operators: a row-major matrix product on
//! top of the `gemm` crate (the kernel dfdx itself uses) and the pointer juggling needed
//! to read one gradient while writing another.
//!
//! Determinism: `gemm` parallelises over blocks of the output (rows/columns), never over
//! the reduction dimension, so a product has the same bits with any number of threads;
//! the operators built on it split batches into a fixed number of chunks that does not
//! depend on the thread count and reduce the partial results in chunk order.

use dfdx::prelude::*;

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

/// The `gemm` parallelism for an `m x k` by `k x n` product under `par`.
pub fn parallelism(m: usize, n: usize, k: usize, par: Par) -> gemm::Parallelism {
    let work = m.saturating_mul(n).saturating_mul(k);
    match par {
        Par::Rayon if work >= PAR_MIN_MULADDS && rayon::current_num_threads() > 1 => {
            gemm::Parallelism::Rayon(rayon::current_num_threads())
        }
        _ => gemm::Parallelism::None,
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
    /// (row stride, column stride) of the logical matrix.
    fn strides(&self) -> (isize, isize) {
        if self.t {
            (1, self.cols as isize)
        } else {
            (self.cols as isize, 1)
        }
    }
}

/// `c = a·b` (or `c += a·b` with `accumulate`), `c` row-major `m x n`, parallel or not
/// as [`parallelism`] says.
pub fn matmul(a: Operand, b: Operand, c: &mut [f32], accumulate: bool, par: Par) {
    let (m, k) = a.shape();
    let n = b.shape().1;
    matmul_with(a, b, c, accumulate, parallelism(m, n, k, par))
}

/// [`matmul`] with an explicit `gemm` parallelism (benchmarks compare the two).
pub fn matmul_with(
    a: Operand,
    b: Operand,
    c: &mut [f32],
    accumulate: bool,
    parallelism: gemm::Parallelism,
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
            c.iter_mut().for_each(|v| *v = 0.0);
        }
        return;
    }
    let (ars, acs) = a.strides();
    let (brs, bcs) = b.strides();
    // SAFETY: the lengths were checked above against the logical shapes and strides; the
    // output does not alias the inputs (it is a distinct `&mut`).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.data.as_ptr(),
            acs,
            ars,
            b.data.as_ptr(),
            bcs,
            brs,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            parallelism,
        )
    }
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

    #[test]
    fn chunk_ranges_cover() {
        let r = chunk_ranges(37);
        assert_eq!(r.len(), 16);
        assert_eq!(r.first().unwrap().start, 0);
        assert_eq!(r.last().unwrap().end, 37);
        assert!(r.windows(2).all(|w| w[0].end == w[1].start));
    }
}
