//! Row-wise log-softmax and log-sum-exp of a `batch x K` matrix as differentiable host
//! operators, with the exponential and logarithm of [`crate::math`] (dfdx's own ops call
//! the platform's math library, whose last bits vary between machines).
//!
//! For a row `x` with maximum `m`, `s = Σ_j exp(x_j − m)` (summed in the order of `j`):
//!
//! * log-softmax: `y_k = x_k − m − ln s`; backward `∂x_k += g_k − exp(y_k)·Σ_j g_j`;
//! * log-sum-exp: `l = m + ln s`; backward `∂x_k += g·exp(x_k − l)`.

use dfdx::prelude::*;

use super::device::host;
use super::kernels::{with_grads2, HostMat};
use crate::math::{expf, lnf};

/// `(m, ln s)` of one row (see the module docs).
fn row_shift(row: &[f32]) -> (f32, f32) {
    let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let s: f32 = row.iter().map(|&v| expf(v - m)).sum();
    (m, lnf(s))
}

/// Log-softmax over each row of `x` (`batch x K`).
pub fn log_softmax<T: Tape<f32, Cpu>>(x: HostMat<T>) -> HostMat<T> {
    let (x, mut tape) = x.split_tape();
    let (b, k) = *x.shape();
    let mut y = host(&x);
    if k > 0 {
        for row in y.chunks_exact_mut(k) {
            let (m, ls) = row_shift(row);
            row.iter_mut().for_each(|v| *v = *v - m - ls);
        }
    }
    // The probabilities only serve the backward pass.
    let probs: Vec<f32> = if T::OWNS_TAPE {
        y.iter().map(|&v| expf(v)).collect()
    } else {
        Vec::new()
    };
    let out = x.device().tensor_from_vec(y, (b, k));
    if T::OWNS_TAPE {
        let out_c = out.clone();
        tape.add_backward_op(move |grads| {
            with_grads2(grads, &out_c, &x, |go, gx| {
                for ((g, p), dx) in go
                    .chunks_exact(k)
                    .zip(probs.chunks_exact(k))
                    .zip(gx.chunks_exact_mut(k))
                {
                    let total: f32 = g.iter().sum();
                    for j in 0..k {
                        dx[j] += g[j] - p[j] * total;
                    }
                }
            })
        });
    }
    out.put_tape(tape)
}

/// Log-sum-exp of each row of `x` (`batch x K`): a vector of `batch` values.
pub fn logsumexp<T: Tape<f32, Cpu>>(x: HostMat<T>) -> Tensor<(usize,), f32, Cpu, T> {
    let (x, mut tape) = x.split_tape();
    let (b, k) = *x.shape();
    let xs = host(&x);
    let l: Vec<f32> = if k == 0 {
        vec![f32::NEG_INFINITY; b]
    } else {
        xs.chunks_exact(k)
            .map(|row| {
                let (m, ls) = row_shift(row);
                m + ls
            })
            .collect()
    };
    let out = x.device().tensor_from_vec(l.clone(), (b,));
    if T::OWNS_TAPE {
        let out_c = out.clone();
        tape.add_backward_op(move |grads| {
            with_grads2(grads, &out_c, &x, |go, gx| {
                for (((&g, &lb), row), dx) in go
                    .iter()
                    .zip(&l)
                    .zip(xs.chunks_exact(k))
                    .zip(gx.chunks_exact_mut(k))
                {
                    for j in 0..k {
                        dx[j] += g * expf(row[j] - lb);
                    }
                }
            })
        });
    }
    out.put_tape(tape)
}
