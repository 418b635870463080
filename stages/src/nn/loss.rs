//! Losses on logits (`batch x K`), all as batch means built from dfdx ops on the tape.
//!
//! * [`cross_entropy`]: −(1/B) Σ_b log softmax(z_b)[y_b].
//! * [`soft_cross_entropy`]: −(1/B) Σ_b Σ_k t_bk log softmax(z_b)_k for fixed targets
//!   (label smoothing). For *learnable* targets build the loss from dfdx ops directly, with
//!   the taped logits on the left of every binary op.
//! * [`forward_corrected`]: forward loss correction (Patrini et al. 2017, GLC eq. in §3):
//!   −(1/B) Σ_b log Σ_i softmax(z_b)_i C[i, ỹ_b], computed as
//!   −logsumexp_i(log softmax(z_b)_i + log C[i, ỹ_b]) so that zeros in C (true
//!   corruption matrices of flip noise) and tiny probabilities stay finite. An example
//!   flagged trusted uses the identity instead of C (plain CE), as in GLC's phase 2.

use dfdx::prelude::*;

use super::device::{Dev, Mat};
use super::ops::{self, Ops};
use crate::math::{expf, ln};
use crate::noise::Matrix;

/// log 0 stand-in: exp(−1e30) is exactly 0 in f32 and the logsumexp stays finite.
const LOG_ZERO: f32 = -1e30;

fn one_hot(labels: &[u32], k: usize) -> Vec<f32> {
    let mut v = vec![0.0f32; labels.len() * k];
    for (b, &y) in labels.iter().enumerate() {
        assert!((y as usize) < k, "label {y} out of range 0..{k}");
        v[b * k + y as usize] = 1.0;
    }
    v
}

/// Mean cross-entropy with hard labels.
pub fn cross_entropy<T: Tape<f32, Dev>>(logits: Mat<T>, labels: &[u32]) -> Tensor<(), f32, Dev, T> {
    let (b, k) = *logits.shape();
    assert_eq!(
        labels.len(),
        b,
        "cross_entropy: {} labels for batch {b}",
        labels.len()
    );
    let target = logits.device().tensor_from_vec(one_hot(labels, k), (b, k));
    (ops::log_softmax(Ops::default(), logits) * target).sum::<(), _>() * (-1.0 / b as f32)
}

/// Mean cross-entropy with fixed soft targets (`batch x K`, row-major).
pub fn soft_cross_entropy<T: Tape<f32, Dev>>(
    logits: Mat<T>,
    targets: Vec<f32>,
) -> Tensor<(), f32, Dev, T> {
    let (b, k) = *logits.shape();
    assert_eq!(targets.len(), b * k, "soft_cross_entropy: target length");
    let target = logits.device().tensor_from_vec(targets, (b, k));
    (ops::log_softmax(Ops::default(), logits) * target).sum::<(), _>() * (-1.0 / b as f32)
}

/// Label-smoothed targets: (1 − ε)·onehot(y) + ε/K.
pub fn smoothed_targets(labels: &[u32], k: usize, eps: f32) -> Vec<f32> {
    one_hot(labels, k)
        .into_iter()
        .map(|v| v * (1.0 - eps) + eps / k as f32)
        .collect()
}

/// Forward-corrected mean loss with a fixed corruption matrix `c` (row = true class,
/// column = observed class); examples with `trusted[b]` get plain CE.
pub fn forward_corrected<T: Tape<f32, Dev>>(
    logits: Mat<T>,
    labels: &[u32],
    c: &Matrix,
    trusted: Option<&[bool]>,
) -> Tensor<(), f32, Dev, T> {
    let (b, k) = *logits.shape();
    assert_eq!(
        c.k, k,
        "forward_corrected: C is {0}x{0} but the model has {k} classes",
        c.k
    );
    assert_eq!(labels.len(), b, "forward_corrected: label count");
    let log_c: Vec<f32> = c
        .data
        .iter()
        .map(|&v| if v > 0.0 { ln(v) as f32 } else { LOG_ZERO })
        .collect();
    let mut cols = vec![0.0f32; b * k];
    for (bi, &y) in labels.iter().enumerate() {
        let y = y as usize;
        let row = &mut cols[bi * k..(bi + 1) * k];
        if trusted.is_some_and(|t| t[bi]) {
            row.iter_mut()
                .enumerate()
                .for_each(|(i, v)| *v = if i == y { 0.0 } else { LOG_ZERO });
        } else {
            row.iter_mut()
                .enumerate()
                .for_each(|(i, v)| *v = log_c[i * k + y]);
        }
    }
    let cols = logits.device().tensor_from_vec(cols, (b, k));
    let lse = ops::logsumexp(
        Ops::default(),
        ops::log_softmax(Ops::default(), logits) + cols,
    );
    lse.sum::<(), _>() * (-1.0 / b as f32)
}

/// Softmax probabilities of untaped logits, row-major (for estimating C).
pub fn softmax_host(logits: &Mat) -> Vec<f32> {
    let (_, k) = *logits.shape();
    let mut v = super::device::host(logits);
    for row in v.chunks_exact_mut(k) {
        let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let mut s = 0.0f32;
        row.iter_mut().for_each(|x| {
            *x = expf(*x - m);
            s += *x;
        });
        row.iter_mut().for_each(|x| *x /= s);
    }
    v
}
