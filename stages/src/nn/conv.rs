//! 2-D convolution (NCHW, PyTorch semantics: cross-correlation, zero padding, no
//! dilation, no groups) as one differentiable operator: per image an "im2col" gather
//! followed by a matrix product, images spread over the rayon threads in a fixed number
//! of chunks (see [`super::kernels::chunk_ranges`]) so the weight gradient is reduced in
//! the same order with any thread count.

use dfdx::prelude::*;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::device::host;
use super::kernels::{chunk_ranges, matmul, HostMat, HostVector, Operand, Par};

/// Geometry of one convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConvGeom {
    pub in_c: usize,
    pub out_c: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
}

impl ConvGeom {
    pub fn out_h(&self) -> usize {
        (self.h + 2 * self.pad - self.k) / self.stride + 1
    }
    pub fn out_w(&self) -> usize {
        (self.w + 2 * self.pad - self.k) / self.stride + 1
    }
    fn ckk(&self) -> usize {
        self.in_c * self.k * self.k
    }
    fn is_pointwise(&self) -> bool {
        self.k == 1 && self.stride == 1 && self.pad == 0
    }
}

/// Fills `col` (`C·k·k x Ho·Wo`, row-major) from one image `x` (`C x H x W`).
fn im2col(g: &ConvGeom, x: &[f32], col: &mut [f32]) {
    let (ho, wo) = (g.out_h(), g.out_w());
    let hw = ho * wo;
    for c in 0..g.in_c {
        let xc = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
        for ki in 0..g.k {
            for kj in 0..g.k {
                let row = (c * g.k + ki) * g.k + kj;
                let dst = &mut col[row * hw..(row + 1) * hw];
                for oy in 0..ho {
                    let iy = (oy * g.stride + ki) as isize - g.pad as isize;
                    let drow = &mut dst[oy * wo..(oy + 1) * wo];
                    if iy < 0 || iy >= g.h as isize {
                        drow.iter_mut().for_each(|v| *v = 0.0);
                        continue;
                    }
                    let src = &xc[iy as usize * g.w..(iy as usize + 1) * g.w];
                    if g.stride == 1 {
                        // one contiguous run, with zero edges where the padding falls
                        let (lo, hi) = valid_run(g, kj, wo);
                        drow[..lo].iter_mut().for_each(|v| *v = 0.0);
                        drow[lo..hi].copy_from_slice(&src[lo + kj - g.pad..hi + kj - g.pad]);
                        drow[hi..].iter_mut().for_each(|v| *v = 0.0);
                    } else {
                        for (ox, d) in drow.iter_mut().enumerate() {
                            let ix = (ox * g.stride + kj) as isize - g.pad as isize;
                            *d = if ix >= 0 && ix < g.w as isize {
                                src[ix as usize]
                            } else {
                                0.0
                            };
                        }
                    }
                }
            }
        }
    }
}

/// For a stride-1 convolution and kernel column `kj`: the output columns `lo..hi` whose
/// input column `ox + kj − pad` lies inside the image (the others read padding).
fn valid_run(g: &ConvGeom, kj: usize, wo: usize) -> (usize, usize) {
    let lo = g.pad.saturating_sub(kj).min(wo);
    let hi = (g.w + g.pad).saturating_sub(kj).clamp(lo, wo);
    (lo, hi)
}

/// Adds `col` (`C·k·k x Ho·Wo`) back into the image gradient `gx` (`C x H x W`).
fn col2im_add(g: &ConvGeom, col: &[f32], gx: &mut [f32]) {
    let (ho, wo) = (g.out_h(), g.out_w());
    let hw = ho * wo;
    for c in 0..g.in_c {
        let gc = &mut gx[c * g.h * g.w..(c + 1) * g.h * g.w];
        for ki in 0..g.k {
            for kj in 0..g.k {
                let row = (c * g.k + ki) * g.k + kj;
                let src = &col[row * hw..(row + 1) * hw];
                for oy in 0..ho {
                    let iy = (oy * g.stride + ki) as isize - g.pad as isize;
                    if iy < 0 || iy >= g.h as isize {
                        continue;
                    }
                    let drow = &mut gc[iy as usize * g.w..(iy as usize + 1) * g.w];
                    let srow = &src[oy * wo..(oy + 1) * wo];
                    if g.stride == 1 {
                        let (lo, hi) = valid_run(g, kj, wo);
                        drow[lo + kj - g.pad..hi + kj - g.pad]
                            .iter_mut()
                            .zip(&srow[lo..hi])
                            .for_each(|(d, s)| *d += s);
                        continue;
                    }
                    for (ox, s) in srow.iter().enumerate() {
                        let ix = (ox * g.stride + kj) as isize - g.pad as isize;
                        if ix >= 0 && ix < g.w as isize {
                            drow[ix as usize] += s;
                        }
                    }
                }
            }
        }
    }
}

/// Splits `buf` into consecutive pieces of `ranges[i].len() * stride` elements.
pub(crate) fn split_by<'a>(
    buf: &'a mut [f32],
    ranges: &[std::ops::Range<usize>],
    stride: usize,
) -> Vec<&'a mut [f32]> {
    let mut out = Vec::with_capacity(ranges.len());
    let mut rest = buf;
    for r in ranges {
        let (a, b) = rest.split_at_mut(r.len() * stride);
        out.push(a);
        rest = b;
    }
    out
}

/// One image's output `yi` (`O x Ho·Wo`) from its input `xi`: the bias, then `W · col`
/// with `col` the image's im2col (the image itself for a pointwise convolution).
fn forward_image(
    g: &ConvGeom,
    ws: &[f32],
    bs: Option<&[f32]>,
    xi: &[f32],
    yi: &mut [f32],
    col: &mut [f32],
) {
    let (o, ckk, hw) = (g.out_c, g.ckk(), g.out_h() * g.out_w());
    if let Some(bs) = bs {
        for (oc, yrow) in yi.chunks_exact_mut(hw).enumerate() {
            yrow.iter_mut().for_each(|v| *v = bs[oc]);
        }
    }
    let colref: &[f32] = if g.is_pointwise() {
        xi
    } else {
        im2col(g, xi, col);
        col
    };
    matmul(
        Operand::n(ws, o, ckk),
        Operand::n(colref, ckk, hw),
        yi,
        bs.is_some(),
        Par::Seq,
    );
}

/// The backward pass over the images `r` (one chunk): the chunk's partial weight and bias
/// gradients `(dW, db)`, summed over its images in order, and, into `gxchunk` when
/// given, each image's input gradient. `go` is the whole batch's output gradient.
fn backward_chunk(
    g: &ConvGeom,
    xs: &[f32],
    ws: &[f32],
    go: &[f32],
    r: std::ops::Range<usize>,
    mut gxchunk: Option<&mut [f32]>,
    input_grad: bool,
) -> (Vec<f32>, Vec<f32>) {
    let (o, ckk, hw) = (g.out_c, g.ckk(), g.out_h() * g.out_w());
    let d = g.in_c * g.h * g.w;
    let mut gw = vec![0.0f32; o * ckk];
    let mut gb = vec![0.0f32; o];
    let mut col = if g.is_pointwise() {
        Vec::new()
    } else {
        vec![0.0f32; ckk * hw]
    };
    let mut dcol = if g.is_pointwise() || !input_grad {
        Vec::new()
    } else {
        vec![0.0f32; ckk * hw]
    };
    for (i, img) in r.enumerate() {
        let xi = &xs[img * d..(img + 1) * d];
        let gi = &go[img * o * hw..(img + 1) * o * hw];
        for (oc, grow) in gi.chunks_exact(hw).enumerate() {
            gb[oc] += grow.iter().sum::<f32>();
        }
        let colref: &[f32] = if g.is_pointwise() {
            xi
        } else {
            im2col(g, xi, &mut col);
            &col
        };
        matmul(
            Operand::n(gi, o, hw),
            Operand::t(colref, ckk, hw),
            &mut gw,
            true,
            Par::Seq,
        );
        if let Some(gxc) = gxchunk.as_deref_mut() {
            let gxi = &mut gxc[i * d..(i + 1) * d];
            // Wᵀ·g: added straight into the image gradient for a pointwise convolution,
            // else written to `dcol` and scattered back with col2im.
            let wt_g = |dst: &mut [f32], accumulate: bool| {
                matmul(
                    Operand::t(ws, o, ckk),
                    Operand::n(gi, o, hw),
                    dst,
                    accumulate,
                    Par::Seq,
                )
            };
            if g.is_pointwise() {
                wt_g(gxi, true);
            } else {
                wt_g(&mut dcol, false);
                col2im_add(g, &dcol, gxi);
            }
        }
    }
    (gw, gb)
}

/// `x` is `batch x (C·H·W)`, `w` is `out_c x (C·k·k)` flat (PyTorch's `[O, C, k, k]`
/// layout), `b` has `out_c` values; returns `batch x (O·Ho·Wo)`.
pub fn conv2d<T: Tape<f32, Cpu>>(
    x: HostMat<T>,
    w: &HostVector,
    b: Option<&HostVector>,
    g: ConvGeom,
    input_grad: bool,
) -> HostMat<T> {
    let (x, mut tape) = x.split_tape();
    let (n, d) = *x.shape();
    assert_eq!(
        d,
        g.in_c * g.h * g.w,
        "conv2d: input has {d} features per example, geometry says {g:?}"
    );
    assert_eq!(
        w.shape().0,
        g.out_c * g.ckk(),
        "conv2d: weight length for {g:?}"
    );
    let (ho, wo) = (g.out_h(), g.out_w());
    let hw = ho * wo;
    let (o, ckk) = (g.out_c, g.ckk());
    let xs = host(&x);
    let ws = host(w);
    let bs = b.map(host);
    let mut y = vec![0.0f32; n * o * hw];
    let ranges = chunk_ranges(n);
    let pieces = split_by(&mut y, &ranges, o * hw);
    pieces
        .into_par_iter()
        .zip(ranges.par_iter())
        .for_each(|(ychunk, r)| {
            let mut col = if g.is_pointwise() {
                Vec::new()
            } else {
                vec![0.0f32; ckk * hw]
            };
            for (i, img) in r.clone().enumerate() {
                let xi = &xs[img * d..(img + 1) * d];
                let yi = &mut ychunk[i * o * hw..(i + 1) * o * hw];
                forward_image(&g, &ws, bs.as_deref(), xi, yi, &mut col);
            }
        });
    let out = x.device().tensor_from_vec(y, (n, o * hw));
    if T::OWNS_TAPE {
        let out_c = out.clone();
        let w_c = w.clone();
        let b_c = b.cloned();
        tape.add_backward_op(move |grads| {
            let go = grads.get_or_alloc_mut(&out_c)?.to_vec();
            let ranges = chunk_ranges(n);
            // per chunk: partial dW and db, and the chunk's slice of dx
            let mut gx_local = if input_grad {
                vec![0.0f32; n * d]
            } else {
                Vec::new()
            };
            let gx_pieces: Vec<Option<&mut [f32]>> = if input_grad {
                split_by(&mut gx_local, &ranges, d)
                    .into_iter()
                    .map(Some)
                    .collect()
            } else {
                ranges.iter().map(|_| None).collect()
            };
            let partials: Vec<(Vec<f32>, Vec<f32>)> = gx_pieces
                .into_par_iter()
                .zip(ranges.par_iter())
                .map(|(gxchunk, r)| {
                    backward_chunk(&g, &xs, &ws, &go, r.clone(), gxchunk, input_grad)
                })
                .collect();
            {
                let gw = grads.get_or_alloc_mut(&w_c)?;
                for (pw, _) in &partials {
                    gw.iter_mut().zip(pw).for_each(|(a, b)| *a += b);
                }
            }
            if let Some(b_c) = &b_c {
                let gb = grads.get_or_alloc_mut(b_c)?;
                for (_, pb) in &partials {
                    gb.iter_mut().zip(pb).for_each(|(a, b)| *a += b);
                }
            }
            if input_grad {
                let gx = grads.get_or_alloc_mut(&x)?;
                gx.iter_mut().zip(&gx_local).for_each(|(a, b)| *a += b);
            }
            Ok(())
        });
    }
    out.put_tape(tape)
}
