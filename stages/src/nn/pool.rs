//! Pooling (NCHW): max pooling with a square window (padding counts as −∞, as in
//! PyTorch), and global average pooling. Each is one differentiable operator; images are
//! independent, so the work is spread over images with no cross-image reduction.

use dfdx::prelude::*;
use rayon::prelude::*;

use super::device::host;
use super::kernels::{with_grads2, HostMat};

/// Max pooling of `x` (`batch x C·H·W`) with window `k`, stride `s`, padding `pad`;
/// returns `batch x C·Ho·Wo` and (`Ho`, `Wo`). Ties go to the first maximum in
/// row-major window order (PyTorch's CPU kernel does the same).
pub fn max_pool2d<T: Tape<f32, Cpu>>(
    x: HostMat<T>,
    c: usize,
    h: usize,
    w: usize,
    k: usize,
    s: usize,
    pad: usize,
) -> (HostMat<T>, usize, usize) {
    let (x, mut tape) = x.split_tape();
    let (n, d) = *x.shape();
    assert_eq!(d, c * h * w, "max_pool2d: input shape");
    let ho = (h + 2 * pad - k) / s + 1;
    let wo = (w + 2 * pad - k) / s + 1;
    let xs = host(&x);
    let od = c * ho * wo;
    let mut y = vec![0.0f32; n * od];
    let mut arg = vec![0u32; n * od];
    y.par_chunks_mut(od)
        .zip(arg.par_chunks_mut(od))
        .enumerate()
        .for_each(|(img, (yi, ai))| {
            let xi = &xs[img * d..(img + 1) * d];
            for ch in 0..c {
                for oy in 0..ho {
                    for ox in 0..wo {
                        // the window's rows and columns inside the image (padding is −∞)
                        let (y0, x0) = (oy * s, ox * s);
                        let (ki_lo, ki_hi) = (pad.saturating_sub(y0), (h + pad - y0).min(k));
                        let (kj_lo, kj_hi) = (pad.saturating_sub(x0), (w + pad - x0).min(k));
                        // the first element, then any larger one or a NaN (branch-free)
                        let first = ch * h * w + (y0 + ki_lo - pad) * w + x0 + kj_lo - pad;
                        let (mut best, mut bi) = (xi[first], first as u32);
                        for ki in ki_lo..ki_hi {
                            let row = ch * h * w + (y0 + ki - pad) * w + x0;
                            for kj in kj_lo..kj_hi {
                                let idx = row + kj - pad;
                                let v = xi[idx];
                                let take = v > best || v.is_nan();
                                best = if take { v } else { best };
                                bi = if take { idx as u32 } else { bi };
                            }
                        }
                        let o = (ch * ho + oy) * wo + ox;
                        yi[o] = best;
                        ai[o] = bi;
                    }
                }
            }
        });
    let out = x.device().tensor_from_vec(y, (n, od));
    if T::OWNS_TAPE {
        let out_c = out.clone();
        tape.add_backward_op(move |grads| {
            with_grads2(grads, &out_c, &x, |go, gx| {
                gx.par_chunks_mut(d).enumerate().for_each(|(img, gxi)| {
                    let gi = &go[img * od..(img + 1) * od];
                    let ai = &arg[img * od..(img + 1) * od];
                    for (g, &a) in gi.iter().zip(ai) {
                        gxi[a as usize] += g;
                    }
                });
            })
        });
    }
    (out.put_tape(tape), ho, wo)
}

/// Mean over the spatial positions: `batch x C·HW` -> `batch x C`.
pub fn global_avg_pool<T: Tape<f32, Cpu>>(x: HostMat<T>, c: usize, hw: usize) -> HostMat<T> {
    let (x, mut tape) = x.split_tape();
    let (n, d) = *x.shape();
    assert_eq!(d, c * hw, "global_avg_pool: input shape");
    let xs = host(&x);
    let inv = 1.0 / hw as f32;
    let y: Vec<f32> = xs
        .chunks_exact(hw)
        .map(|plane| plane.iter().sum::<f32>() * inv)
        .collect();
    let out = x.device().tensor_from_vec(y, (n, c));
    if T::OWNS_TAPE {
        let out_c = out.clone();
        tape.add_backward_op(move |grads| {
            with_grads2(grads, &out_c, &x, |go, gx| {
                for (plane, g) in gx.chunks_exact_mut(hw).zip(go) {
                    let v = g * inv;
                    plane.iter_mut().for_each(|p| *p += v);
                }
            })
        });
    }
    out.put_tape(tape)
}
