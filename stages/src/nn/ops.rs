//! The network operators on [`Dev`], whichever device that is, in one of two
//! implementations ([`Ops`]): the host kernels of [`super::linear`], [`super::conv`],
//! [`super::pool`], [`super::batch_norm`], [`super::elementwise`] and [`super::softmax`]
//! (CPU only; the same bits on every CPU), or the
//! compositions of dfdx ops of [`super::portable`] (any device). A `cuda` build always
//! takes the portable path; a CPU build takes the host kernels unless a network is told
//! otherwise ([`super::model::Network::ops`]), which is how the tests compare whole
//! networks on both paths, or the crate is built with the `portable-ops` feature (the
//! whole pipeline on the portable path, on the CPU).
//!
//! Signatures are the host kernels'; `input_grad == false` (skip the input gradient of a
//! first layer) is an optimisation the host kernels take and the portable versions ignore.

use dfdx::prelude::*;

pub use super::batch_norm::BnMode;
pub use super::conv::ConvGeom;
use super::device::{Dev, Mat, Vector};
use super::portable;

/// Which implementation of the operators a network runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ops {
    /// Host kernels (CPU builds only; the fastest on a CPU, and the same bits on every CPU).
    Host,
    /// Compositions of dfdx's differentiable ops (any device).
    Portable,
}

impl Default for Ops {
    /// [`Ops::Host`] in a CPU build, [`Ops::Portable`] with the `cuda` or the
    /// `portable-ops` feature.
    fn default() -> Self {
        if cfg!(any(feature = "cuda", feature = "portable-ops")) {
            Ops::Portable
        } else {
            Ops::Host
        }
    }
}

#[cfg(not(feature = "cuda"))]
mod host {
    pub use super::super::batch_norm::batch_norm2d;
    pub use super::super::conv::conv2d;
    pub use super::super::elementwise::{embedding, leaky_relu, mul_mask};
    pub use super::super::linear::linear;
    pub use super::super::pool::{global_avg_pool, max_pool2d};
    pub use super::super::softmax::{log_softmax, logsumexp};
}

/// Dispatches to the host kernel when `$ops` is [`Ops::Host`] (and the build has host
/// kernels), to the portable version otherwise.
macro_rules! dispatch {
    ($ops:expr, $host:expr, $portable:expr) => {{
        #[cfg(not(feature = "cuda"))]
        if $ops == Ops::Host {
            return $host;
        }
        #[cfg(feature = "cuda")]
        assert_eq!($ops, Ops::Portable, "a cuda build has no host kernels");
        $portable
    }};
}

/// `y = x·Wᵀ + b` (`W` is `out x in`, flat).
pub fn linear<T: Tape<f32, Dev>>(
    ops: Ops,
    x: Mat<T>,
    w: &Vector,
    b: Option<&Vector>,
    out_features: usize,
    input_grad: bool,
) -> Mat<T> {
    #[cfg(feature = "cuda")]
    let _ = input_grad;
    dispatch!(
        ops,
        host::linear(x, w, b, out_features, input_grad),
        portable::linear(x, w, b, out_features)
    )
}

/// 2-D convolution, NCHW, PyTorch semantics.
pub fn conv2d<T: Tape<f32, Dev>>(
    ops: Ops,
    x: Mat<T>,
    w: &Vector,
    b: Option<&Vector>,
    g: ConvGeom,
    input_grad: bool,
) -> Mat<T> {
    #[cfg(feature = "cuda")]
    let _ = input_grad;
    dispatch!(
        ops,
        host::conv2d(x, w, b, g, input_grad),
        portable::conv2d(x, w, b, g)
    )
}

/// Max pooling with a square window; returns the output and (`Ho`, `Wo`).
#[allow(clippy::too_many_arguments)]
pub fn max_pool2d<T: Tape<f32, Dev>>(
    ops: Ops,
    x: Mat<T>,
    c: usize,
    h: usize,
    w: usize,
    k: usize,
    s: usize,
    pad: usize,
) -> (Mat<T>, usize, usize) {
    dispatch!(
        ops,
        host::max_pool2d(x, c, h, w, k, s, pad),
        portable::max_pool2d(x, c, h, w, k, s, pad)
    )
}

/// Mean over the spatial positions: `batch x C·HW` -> `batch x C`.
pub fn global_avg_pool<T: Tape<f32, Dev>>(ops: Ops, x: Mat<T>, c: usize, hw: usize) -> Mat<T> {
    dispatch!(
        ops,
        host::global_avg_pool(x, c, hw),
        portable::global_avg_pool(x, c, hw)
    )
}

/// BatchNorm2d over channels in one of three [`BnMode`]s; `momentum` weighs the batch in
/// the running statistics' update.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm2d<T: Tape<f32, Dev>>(
    ops: Ops,
    x: Mat<T>,
    gamma: &Vector,
    beta: &Vector,
    running: (&mut [f32], &mut [f32]),
    c: usize,
    hw: usize,
    mode: BnMode,
    momentum: f64,
) -> Mat<T> {
    dispatch!(
        ops,
        host::batch_norm2d(x, gamma, beta, running, c, hw, mode, momentum),
        portable::batch_norm2d(x, gamma, beta, running, c, hw, mode, momentum)
    )
}

/// LeakyReLU with negative-side `slope`.
pub fn leaky_relu<T: Tape<f32, Dev>>(ops: Ops, x: Mat<T>, slope: f32) -> Mat<T> {
    dispatch!(
        ops,
        host::leaky_relu(x, slope),
        portable::leaky_relu(x, slope)
    )
}

/// `y = x ⊙ mask` for a constant mask.
pub fn mul_mask<T: Tape<f32, Dev>>(ops: Ops, x: Mat<T>, mask: Vec<f32>) -> Mat<T> {
    dispatch!(ops, host::mul_mask(x, mask), portable::mul_mask(x, mask))
}

/// Embedding lookup of `batch x len` token ids in the `vocab x dim` table `w`.
pub fn embedding<T: Tape<f32, Dev>>(
    ops: Ops,
    dev: &Dev,
    ids: &[u32],
    batch: usize,
    w: &Vector,
    dim: usize,
    tape: T,
) -> Mat<T> {
    dispatch!(
        ops,
        host::embedding(dev, ids, batch, w, dim, tape),
        portable::embedding(dev, ids, batch, w, dim, tape)
    )
}

/// Log-softmax over each row of `batch x K` logits.
pub fn log_softmax<T: Tape<f32, Dev>>(ops: Ops, x: Mat<T>) -> Mat<T> {
    dispatch!(ops, host::log_softmax(x), x.log_softmax::<Axis<1>>())
}

/// Log-sum-exp of each row of a `batch x K` matrix.
pub fn logsumexp<T: Tape<f32, Dev>>(ops: Ops, x: Mat<T>) -> Tensor<(usize,), f32, Dev, T> {
    dispatch!(ops, host::logsumexp(x), x.logsumexp::<(usize,), Axis<1>>())
}
