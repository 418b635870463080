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
//! One implementation serves every method ([`hypergradient`]): the method supplies its
//! taped training loss and `grad_phi(z)`, the closed-form gradient of that loss with
//! respect to its own φ given the batch's logits `z` at other model parameters. Meta
//! batches are drawn by one [`MetaSampler`].

use anyhow::{ensure, Result};
use dfdx::prelude::*;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::batch::Decoder;
use super::device::{host, Dev, Mat, Tp};
use super::loss;
use super::model::{Input, Mode, Network};
use super::params::{Buffers, ParamSet};

/// One training batch of a meta step: its input and the method's taped loss on its logits.
pub struct TrainBatch<'b> {
    pub input: Input,
    pub loss: &'b dyn Fn(Mat<Tp>) -> Tensor<(), f32, Dev, Tp>,
}

/// The look-ahead settings: α of the virtual SGD step, eps0 of the finite difference and
/// which parameters the look-ahead moves (`None`: all).
#[derive(Clone, Copy, Debug)]
pub struct LookAhead<'m> {
    pub alpha: f32,
    pub eps0: f32,
    pub mask: Option<&'m [bool]>,
}

/// The meta loss at the looked-ahead weights and `∇_φ L_meta(θ'(φ))` for a training batch
/// and a meta batch `(input, clean labels)`:
///
/// 1. the training loss at θ (training-mode forward with frozen batch-norm statistics) and
///    its gradient;
/// 2. the virtual step θ' = θ − α ∇_θ L_train ([`look_ahead`]);
/// 3. the meta loss at θ' and v ([`meta_gradient`]);
/// 4. the finite difference of `grad_phi` at θ ± εv ([`finite_difference`]), `grad_phi`
///    receiving the batch's host logits (untaped forward, same mode).
///
/// Every forward draws its dropout from `rng`, in this order.
#[allow(clippy::too_many_arguments)]
pub fn hypergradient(
    net: &Network,
    params: &ParamSet,
    buffers: &mut Buffers,
    batch: TrainBatch,
    meta: (Input, &[u32]),
    la: LookAhead,
    rng: &mut ChaCha8Rng,
    mut grad_phi: impl FnMut(&[f32]) -> Vec<f32>,
) -> Result<(f32, Vec<f32>)> {
    let input = batch.input;
    let logits = net.forward::<Tp>(
        params,
        buffers,
        input.clone(),
        Mode::TrainFrozenBn,
        Some(rng),
    );
    let mut g = (batch.loss)(logits).backward();
    let g_theta = params.grads(&mut g);
    let looked = look_ahead(params, &g_theta, la.alpha, la.mask);
    let (meta_loss, v) = meta_gradient(net, &looked, buffers, meta.0, meta.1, la.mask, rng);
    let h = finite_difference(params, &v, la.alpha, la.eps0, |p| {
        let z: Mat =
            net.forward::<NoneTape>(p, buffers, input.clone(), Mode::TrainFrozenBn, Some(rng));
        Ok(grad_phi(&host(&z)))
    })?;
    Ok((meta_loss, h))
}

/// Draws meta batches: `size` examples of `pool` (train-split positions) without
/// replacement (a partial Fisher–Yates shuffle, then sorted), decoded unaugmented, with
/// their `labels` (indexed by train position).
pub struct MetaSampler<'d> {
    pool: Vec<u32>,
    size: usize,
    /// Whether a batch of the whole pool is still drawn (consuming the random stream) or
    /// taken as it is; each method keeps the random stream it was measured with.
    draw_whole: bool,
    labels: Vec<u32>,
    decoder: Decoder<'d>,
}

impl<'d> MetaSampler<'d> {
    /// `size` is capped at the pool's size.
    pub fn new(
        pool: Vec<u32>,
        size: usize,
        draw_whole: bool,
        labels: Vec<u32>,
        decoder: Decoder<'d>,
    ) -> Self {
        let size = size.min(pool.len());
        MetaSampler {
            pool,
            size,
            draw_whole,
            labels,
            decoder,
        }
    }

    /// The train positions of one meta batch.
    pub fn indices(&self, rng: &mut impl Rng) -> Vec<u32> {
        let m = self.size;
        if m >= self.pool.len() && !self.draw_whole {
            return self.pool.clone();
        }
        let mut pool = self.pool.clone();
        for i in 0..m {
            let j = rng.random_range(i..pool.len());
            pool.swap(i, j);
        }
        pool.truncate(m);
        pool.sort_unstable();
        pool
    }

    /// One meta batch: its input and labels.
    pub fn draw(&self, rng: &mut impl Rng) -> Result<(Input, Vec<u32>)> {
        let idx = self.indices(rng);
        let labels = idx.iter().map(|&i| self.labels[i as usize]).collect();
        Ok((self.decoder.input(&idx, None)?, labels))
    }
}

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
