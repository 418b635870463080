//! The operators of [`super::ops`] composed from dfdx's own differentiable tensor ops, so
//! they run on any dfdx device (this is the path a `cuda` build takes). Each function has
//! the signature and the semantics of its host-kernel counterpart; `tests/nn_ops.rs`
//! checks both against the same PyTorch values, on the CPU.
//!
//! How each is built (`n` = batch, activations are `n x C·H·W` row-major as everywhere):
//!
//! * **linear**: `x · Wᵀ + b`, with `W` viewed as `out x in`.
//! * **conv2d** ("im2col" by gather): the input is transposed to `C·H·W x n` and one row of
//!   zeros is appended (the padding). A gather along axis 0 with a precomputed index list
//!   builds the column matrix `(C·k·k) x (Ho·Wo·n)`; the product `W · col` gives
//!   `O x (Ho·Wo·n)`, which is transposed back to `n x O·Ho·Wo`. A 1×1, stride-1 convolution
//!   skips the gather.
//! * **max_pool2d**: the same gather with a row of −∞ as padding, to `(C·Ho·Wo) x k² x n`,
//!   then a max over the window axis. Where a window holds several equal maxima, dfdx
//!   splits the gradient evenly among them (the host kernel gives it all to the first);
//!   after a ReLU such ties are zeros, whose gradient the ReLU discards either way.
//! * **global_avg_pool**: a mean over the spatial axis of `n x C x H·W`.
//! * **batch_norm2d**: the mean and biased variance over axes (0, 2) of `n x C x H·W`, kept
//!   on the tape (the gradient flows through the statistics, as in training-mode
//!   BatchNorm2d); evaluation uses the running statistics as constants. The running
//!   update reads the batch statistics back to the host.
//! * **mul_mask**, **embedding**: a product with a constant tensor; a gather of table rows.
//! * **leaky_relu**: `relu(x) − slope·relu(−x)`.
//!
//! Sums run in f32 in dfdx's kernels (the host batch norm accumulates in f64), so results
//! agree with the host kernels to rounding, not bit for bit.

use dfdx::prelude::*;

use super::batch_norm::{BnMode, BN_EPS};
use super::conv::ConvGeom;

type M<D, T> = Tensor<(usize, usize), f32, D, T>;
type V<D> = Tensor<(usize,), f32, D>;

/// `x` is `batch x in`, `w` holds `out x in` values; returns `batch x out`.
pub fn linear<D: Device<f32>, T: Tape<f32, D>>(
    x: M<D, T>,
    w: &V<D>,
    b: Option<&V<D>>,
    out_features: usize,
) -> M<D, T> {
    let (n, d) = *x.shape();
    let o = out_features;
    assert_eq!(w.shape().0, o * d, "linear: weight length");
    let wt = w
        .retaped::<T>()
        .reshape_like(&(o, d))
        .permute::<(usize, usize), Axes2<1, 0>>();
    let y = x.matmul(wt);
    match b {
        Some(b) => {
            assert_eq!(b.shape().0, o, "linear: bias length");
            y + b.retaped::<T>().broadcast_like::<_, Axis<0>>(&(n, o))
        }
        None => y,
    }
}

/// The row a window reads: offset `(ki, kj)` of the window at output `(oy, ox)` of channel
/// `ch` is input `(ch, iy, ix)`, its index in `C·H·W`, or the padding row `C·H·W` when it
/// falls outside the image.
fn window_source(
    g: &ConvGeom,
    ch: usize,
    (oy, ox): (usize, usize),
    (ki, kj): (usize, usize),
) -> usize {
    let iy = (oy * g.stride + ki) as isize - g.pad as isize;
    let ix = (ox * g.stride + kj) as isize - g.pad as isize;
    if iy >= 0 && ix >= 0 && (iy as usize) < g.h && (ix as usize) < g.w {
        (ch * g.h + iy as usize) * g.w + ix as usize
    } else {
        g.in_c * g.h * g.w
    }
}

/// Index list of an im2col gather from `C·H·W + 1` rows (the last one is the padding row):
/// entry `(q, l)` with `q = (c, ki, kj)` and `l = (oy, ox)` at position `q·L + l`.
fn im2col_index(g: &ConvGeom) -> Vec<usize> {
    let (ho, wo) = (g.out_h(), g.out_w());
    let mut idx = Vec::with_capacity(g.in_c * g.k * g.k * ho * wo);
    for c in 0..g.in_c {
        for ki in 0..g.k {
            for kj in 0..g.k {
                for oy in 0..ho {
                    for ox in 0..wo {
                        idx.push(window_source(g, c, (oy, ox), (ki, kj)));
                    }
                }
            }
        }
    }
    idx
}

/// `x` transposed to `features x n` (a contiguous copy) with one row of `fill` appended.
fn transposed_with_row<D: Device<f32>, T: Tape<f32, D>>(x: M<D, T>, fill: f32) -> M<D, T> {
    let (n, d) = *x.shape();
    let dev = x.device().clone();
    let xt = x
        .permute::<(usize, usize), Axes2<1, 0>>()
        .reshape_like(&(d, n));
    let row: M<D, NoneTape> = dev.tensor_from_vec(vec![fill; n], (1, n));
    (xt, row).concat_along(Axis::<0>)
}

/// `y` is `a x (b·n)` with columns ordered `(b, n)`; returns `n x (a·b)`.
fn batch_first<D: Device<f32>, T: Tape<f32, D>>(y: M<D, T>, b: usize, n: usize) -> M<D, T> {
    let a = y.shape().0;
    y.reshape_like(&(a, b, n))
        .permute::<(usize, usize, usize), Axes3<2, 0, 1>>()
        .reshape_like(&(n, a * b))
}

/// `x` is `batch x (C·H·W)`, `w` is `out_c x (C·k·k)` flat, `b` has `out_c` values;
/// returns `batch x (O·Ho·Wo)`.
pub fn conv2d<D: Device<f32>, T: Tape<f32, D>>(
    x: M<D, T>,
    w: &V<D>,
    b: Option<&V<D>>,
    g: ConvGeom,
) -> M<D, T> {
    let (n, d) = *x.shape();
    assert_eq!(d, g.in_c * g.h * g.w, "conv2d: input shape for {g:?}");
    let ckk = g.in_c * g.k * g.k;
    assert_eq!(
        w.shape().0,
        g.out_c * ckk,
        "conv2d: weight length for {g:?}"
    );
    let l = g.out_h() * g.out_w();
    let dev = x.device().clone();
    let col = if g.k == 1 && g.stride == 1 && g.pad == 0 {
        x.permute::<(usize, usize), Axes2<1, 0>>()
            .reshape_like(&(d, n))
            .reshape_like(&(ckk, l * n))
    } else {
        let idx = im2col_index(&g);
        let idx = dev.tensor_from_vec(idx, (ckk * l,));
        transposed_with_row(x, 0.0)
            .gather::<(usize, usize), (usize,)>(idx)
            .reshape_like(&(ckk, l * n))
    };
    let wm = w.retaped::<T>().reshape_like(&(g.out_c, ckk));
    let mut y = wm.matmul(col);
    if let Some(b) = b {
        assert_eq!(b.shape().0, g.out_c, "conv2d: bias length");
        y = y + b
            .retaped::<T>()
            .broadcast_like::<_, Axis<1>>(&(g.out_c, l * n));
    }
    batch_first(y, l, n)
}

/// Max pooling of `x` (`batch x C·H·W`) with window `k`, stride `s`, padding `pad`;
/// returns `batch x C·Ho·Wo` and (`Ho`, `Wo`).
pub fn max_pool2d<D: Device<f32>, T: Tape<f32, D>>(
    x: M<D, T>,
    c: usize,
    h: usize,
    w: usize,
    k: usize,
    s: usize,
    pad: usize,
) -> (M<D, T>, usize, usize) {
    let (n, d) = *x.shape();
    assert_eq!(d, c * h * w, "max_pool2d: input shape");
    // a pooling window has a convolution's geometry, one output channel per input channel
    let g = ConvGeom {
        in_c: c,
        out_c: c,
        h,
        w,
        k,
        stride: s,
        pad,
    };
    let (ho, wo) = (g.out_h(), g.out_w());
    let mut idx = Vec::with_capacity(c * ho * wo * k * k);
    for ch in 0..c {
        for oy in 0..ho {
            for ox in 0..wo {
                for ki in 0..k {
                    for kj in 0..k {
                        idx.push(window_source(&g, ch, (oy, ox), (ki, kj)));
                    }
                }
            }
        }
    }
    let dev = x.device().clone();
    let idx = dev.tensor_from_vec(idx, (c * ho * wo * k * k,));
    let od = c * ho * wo;
    let windows = transposed_with_row(x, f32::NEG_INFINITY)
        .gather::<(usize, usize), (usize,)>(idx)
        .reshape_like(&(od, k * k, n));
    let y = windows.max::<(usize, usize), Axis<1>>();
    (batch_first(y, 1, n), ho, wo)
}

/// Mean over the spatial positions: `batch x C·HW` -> `batch x C`.
pub fn global_avg_pool<D: Device<f32>, T: Tape<f32, D>>(
    x: M<D, T>,
    c: usize,
    hw: usize,
) -> M<D, T> {
    let (n, d) = *x.shape();
    assert_eq!(d, c * hw, "global_avg_pool: input shape");
    x.reshape_like(&(n, c, hw))
        .mean::<(usize, usize), Axis<2>>()
}

/// `x` is `batch x C·HW`; `gamma`, `beta` have `C` values; `running` is `(mean, var)`
/// with `C` values each, updated in place in [`BnMode::TrainUpdate`].
pub fn batch_norm2d<D: Device<f32>, T: Tape<f32, D>>(
    x: M<D, T>,
    gamma: &V<D>,
    beta: &V<D>,
    running: (&mut [f32], &mut [f32]),
    c: usize,
    hw: usize,
    mode: BnMode,
    momentum: f64,
) -> M<D, T> {
    let (n, d) = *x.shape();
    assert_eq!(d, c * hw, "batch_norm2d: input shape");
    let shape = (n, c, hw);
    let dev = x.device().clone();
    let x3 = x.reshape_like(&shape);
    let gamma_b = gamma
        .retaped::<T>()
        .broadcast_like::<_, Axes2<0, 2>>(&shape);
    let y = match mode {
        BnMode::Eval => {
            let inv: Vec<f32> = running
                .1
                .iter()
                .map(|&v| (1.0 / (v as f64 + BN_EPS).sqrt()) as f32)
                .collect();
            let mean = dev
                .tensor_from_vec(running.0.to_vec(), (c,))
                .broadcast_like::<_, Axes2<0, 2>>(&shape);
            let inv = dev
                .tensor_from_vec(inv, (c,))
                .broadcast_like::<_, Axes2<0, 2>>(&shape);
            (x3 - mean) * inv * gamma_b
        }
        BnMode::TrainUpdate | BnMode::TrainFrozen => {
            let (x3, tape) = x3.split_tape();
            let mean = x3.retaped::<T>().mean::<(usize,), Axes2<0, 2>>();
            let mean_host = mean.retaped::<NoneTape>().as_vec();
            let centered = x3.put_tape(tape) - mean.broadcast_like::<_, Axes2<0, 2>>(&shape);
            let var = centered
                .retaped::<T>()
                .square()
                .mean::<(usize,), Axes2<0, 2>>();
            if mode == BnMode::TrainUpdate {
                let var_host = var.retaped::<NoneTape>().as_vec();
                let count = n * hw;
                let unbias = if count > 1 {
                    count as f64 / (count - 1) as f64
                } else {
                    1.0
                };
                for ch in 0..c {
                    running.0[ch] = ((1.0 - momentum) * running.0[ch] as f64
                        + momentum * mean_host[ch] as f64)
                        as f32;
                    running.1[ch] = ((1.0 - momentum) * running.1[ch] as f64
                        + momentum * var_host[ch] as f64 * unbias)
                        as f32;
                }
            }
            let inv_std = (var + BN_EPS as f32).sqrt().recip();
            centered * inv_std.broadcast_like::<_, Axes2<0, 2>>(&shape) * gamma_b
        }
    };
    let y = y + beta.retaped::<T>().broadcast_like::<_, Axes2<0, 2>>(&shape);
    y.reshape_like(&(n, d))
}

/// LeakyReLU: `x` where positive, `slope·x` elsewhere, as `relu(x) − slope·relu(−x)`
/// (at 0 the gradient is 0 here, `slope` in the host kernel and PyTorch).
pub fn leaky_relu<D: Device<f32>, T: Tape<f32, D>>(x: M<D, T>, slope: f32) -> M<D, T> {
    let (x, tape) = x.split_tape();
    let pos = x.clone().put_tape(tape).relu();
    let neg = x.put_tape(T::default()).negate().relu() * slope;
    pos - neg
}

/// `y = x ⊙ mask` for a constant `mask` (no gradient with respect to the mask).
pub fn mul_mask<D: Device<f32>, T: Tape<f32, D>>(x: M<D, T>, mask: Vec<f32>) -> M<D, T> {
    let shape = *x.shape();
    assert_eq!(mask.len(), shape.0 * shape.1, "mul_mask: mask length");
    let m = x.device().tensor_from_vec(mask, shape);
    x * m
}

/// Looks up `ids` (`batch x len` token ids, row-major) in the `vocab x dim` table `w`;
/// returns `batch x (len·dim)`.
pub fn embedding<D: Device<f32>, T: Tape<f32, D>>(
    dev: &D,
    ids: &[u32],
    batch: usize,
    w: &V<D>,
    dim: usize,
    tape: T,
) -> M<D, T> {
    let len = ids.len() / batch.max(1);
    assert_eq!(
        len * batch,
        ids.len(),
        "embedding: {} ids for batch {batch}",
        ids.len()
    );
    let vocab = w.shape().0 / dim;
    let idx: Vec<usize> = ids
        .iter()
        .map(|&t| {
            assert!(
                (t as usize) < vocab,
                "embedding: token id {t} out of range 0..{vocab}"
            );
            t as usize
        })
        .collect();
    let idx = dev.tensor_from_vec(idx, (ids.len(),));
    w.clone()
        .put_tape(tape)
        .reshape_like(&(vocab, dim))
        .gather::<(usize, usize), (usize,)>(idx)
        .reshape_like(&(batch, len * dim))
}
