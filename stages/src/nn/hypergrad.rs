//! The meta-gradient through a one-step look-ahead, without second derivatives.
//!
//! Meta-learning methods (MLC's transition matrix T, learned soft labels) have extra
//! parameters φ that enter only the training loss `L_train(θ, φ)`. Their update follows
//! the loss on a clean meta batch after one virtual SGD step of the model:
//!
//! ```text
//! θ'(φ) = θ − α ∇_θ L_train(θ, φ)                                   (look-ahead)
//! ∇_φ L_meta(θ'(φ)) = −α ∇²_{φθ} L_train(θ, φ) · v,   v = ∇_θ' L_meta(θ')     (chain rule)
//! ```
//!
//! dfdx has no second derivatives, so the mixed product is replaced by the central
//! difference of first-order gradients used by DARTS (Liu et al., ICLR 2019, eq. 8):
//!
//! ```text
//! ∇²_{φθ} L_train(θ, φ) · v ≈ ( ∇_φ L_train(θ + εv, φ) − ∇_φ L_train(θ − εv, φ) ) / (2ε),
//! ε = eps0 / ‖v‖
//! ```
//!
//! The error is O(ε²‖v‖²) from the difference and O(1/ε) from f32 rounding; eps0 = 0.01
//! balances the two on the networks measured here (`stages/tests/hypergrad_exact.rs`
//! compares against an independent float64 computation of the full look-ahead objective).
//!
//! A look-ahead may move only some parameters (`mask`, e.g. the last layer only): then
//! θ' changes only there, v is zero elsewhere, and the same formula holds.
//!
//! One implementation serves every method: the method supplies `grad_phi(θ)`, the
//! gradient of its training loss with respect to its own φ at given model parameters.

use anyhow::{ensure, Result};
use dfdx::prelude::*;

use super::loss;
use super::model::{Input, Mode, Network};
use super::params::{Buffers, ParamSet};

/// The virtual step `θ' = θ − α g` (only where `mask` is true, when given).
pub fn look_ahead(
    params: &ParamSet,
    g: &[Vec<f32>],
    alpha: f32,
    mask: Option<&[bool]>,
) -> ParamSet {
    let dir: Vec<Vec<f32>> = masked(g, mask);
    params.axpy(-alpha, &dir)
}

/// `∇_θ' L_meta(θ')`: plain cross-entropy of the meta batch at the looked-ahead
/// parameters (training-mode forward that leaves batch-norm running statistics alone, no
/// dropout randomness beyond what `rng` gives). Returns the meta loss and `v` (masked).
pub fn meta_gradient(
    net: &Network,
    looked_ahead: &ParamSet,
    buffers: &mut Buffers,
    meta_input: Input,
    meta_labels: &[u32],
    mask: Option<&[bool]>,
    rng: &mut rand_chacha::ChaCha8Rng,
) -> (f32, Vec<Vec<f32>>) {
    let logits = net.forward::<super::device::Tp>(
        looked_ahead,
        buffers,
        meta_input,
        Mode::TrainFrozenBn,
        Some(rng),
    );
    let l = loss::cross_entropy(logits, meta_labels);
    let value = l.array();
    let mut g = l.backward();
    (value, masked(&looked_ahead.grads(&mut g), mask))
}

/// Euclidean norm over all parameters.
pub fn norm(v: &[Vec<f32>]) -> f64 {
    v.iter()
        .flat_map(|x| x.iter())
        .map(|&x| (x as f64) * (x as f64))
        .sum::<f64>()
        .sqrt()
}

/// `∇_φ L_meta(θ'(φ)) ≈ −α (∇_φ L_train(θ + εv) − ∇_φ L_train(θ − εv)) / (2ε)`, with
/// `ε = eps0 / ‖v‖`. Returns zeros when `v` vanishes (the meta loss is flat in θ').
pub fn finite_difference(
    params: &ParamSet,
    v: &[Vec<f32>],
    alpha: f32,
    eps0: f32,
    mut grad_phi: impl FnMut(&ParamSet) -> Result<Vec<f32>>,
) -> Result<Vec<f32>> {
    let nv = norm(v);
    if nv == 0.0 || !nv.is_finite() {
        let g = grad_phi(&params.deep_clone())?;
        return Ok(vec![0.0; g.len()]);
    }
    let eps = (eps0 as f64 / nv) as f32;
    let gp = grad_phi(&params.axpy(eps, v))?;
    let gm = grad_phi(&params.axpy(-eps, v))?;
    ensure!(
        gp.len() == gm.len(),
        "hypergradient: grad_phi changed length"
    );
    let scale = -(alpha as f64) / (2.0 * eps as f64);
    Ok(gp
        .iter()
        .zip(&gm)
        .map(|(a, b)| ((*a as f64 - *b as f64) * scale) as f32)
        .collect())
}

fn masked(g: &[Vec<f32>], mask: Option<&[bool]>) -> Vec<Vec<f32>> {
    match mask {
        None => g.to_vec(),
        Some(m) => g
            .iter()
            .zip(m)
            .map(|(gi, &on)| if on { gi.clone() } else { vec![0.0; gi.len()] })
            .collect(),
    }
}

/// A mask selecting the parameters of the network's last layer (its final classifier):
/// the parameters created last that share the final layer's name prefix.
pub fn last_layer_mask(params: &ParamSet) -> Vec<bool> {
    let last = params.names.last().cloned().unwrap_or_default();
    let prefix = last
        .rsplit_once('.')
        .map(|(p, _)| p.to_string())
        .unwrap_or(last);
    params
        .names
        .iter()
        .map(|n| {
            n.rsplit_once('.')
                .map(|(p, _)| p == prefix)
                .unwrap_or(*n == prefix)
        })
        .collect()
}
