//! Optimizers with PyTorch's update rules (`torch.optim.SGD`, `torch.optim.Adam`; weight
//! decay is L2 added to the gradient, as both do), over a [`ParamSet`].
//!
//! SGD: g ← g + λθ; b ← μb + g; θ ← θ − lr·(g + μb if Nesterov else b).
//! Adam: g ← g + λθ; m ← β₁m + (1−β₁)g; v ← β₂v + (1−β₂)g²;
//! θ ← θ − (lr/(1−β₁ᵗ))·m / (√v/√(1−β₂ᵗ) + ε).
//! The learning rate is given per step (the schedule's value), not stored.
//!
//! Every learning rate a stage's params name (this optimizer's `lr`, MLC's `t_lr` and
//! `virtual_lr`, the soft labels' `label_lr` and `virtual_lr`) is read through
//! [`learning_rate`]: a number in [0, [`MAX_LEARNING_RATE`]] = [0, 10⁶], refused when the
//! pipeline is loaded otherwise. Non-finite values are already refused by the YAML
//! reader; the bound also catches values that are finite in the file but not in f32
//! (1e40 would silently become ∞) and values no run means (the papers use at most 1 for
//! the network and label steps). A learning rate below the bound can still make a run
//! explode; the training loop's divergence rule stops that one.

use anyhow::{ensure, Result};
use dfdx::prelude::*;
use serde::{Deserialize, Serialize};

#[cfg(feature = "cuda")]
use super::device::grad_host;
use super::device::Dev;
use super::params::{NamedTensor, ParamSet};

fn default_momentum() -> f32 {
    0.9
}
fn default_beta1() -> f32 {
    0.9
}
fn default_beta2() -> f32 {
    0.999
}
fn default_eps() -> f32 {
    1e-8
}

/// The largest learning rate params may give (see the module docs).
pub const MAX_LEARNING_RATE: f64 = 1e6;

fn check_learning_rate<E: serde::de::Error>(v: f64) -> Result<f64, E> {
    if !(v.is_finite() && (0.0..=MAX_LEARNING_RATE).contains(&v)) {
        return Err(E::custom(format!(
            "learning rate {v:e} is outside [0, {MAX_LEARNING_RATE:e}]"
        )));
    }
    // Rates are applied in f32: a positive rate below f32's smallest normal number would
    // silently round to zero or lose its precision.
    if v > 0.0 && v < f32::MIN_POSITIVE as f64 {
        return Err(E::custom(format!(
            "learning rate {v:e} is below {:e}, the smallest normal f32 (use 0 for none)",
            f32::MIN_POSITIVE
        )));
    }
    Ok(v)
}

/// Reads a learning rate (f32), refusing values outside [0, [`MAX_LEARNING_RATE`]].
pub fn learning_rate<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f32, D::Error> {
    check_learning_rate(f64::deserialize(d)?).map(|v| v as f32)
}

/// [`learning_rate`] for an optional f32 field.
pub fn learning_rate_opt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f32>, D::Error> {
    Option::<f64>::deserialize(d)?
        .map(check_learning_rate)
        .transpose()
        .map(|o| o.map(|v| v as f32))
}

/// [`learning_rate`] for an optional f64 field.
pub fn learning_rate_opt_f64<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<f64>, D::Error> {
    Option::<f64>::deserialize(d)?
        .map(check_learning_rate)
        .transpose()
}

/// Optimizer choice (`kind` tag in params).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum OptimizerSpec {
    Sgd {
        /// Base learning rate (required; at most [`MAX_LEARNING_RATE`]).
        #[serde(deserialize_with = "learning_rate")]
        lr: f32,
        /// Momentum μ (default 0.9).
        #[serde(default = "default_momentum")]
        momentum: f32,
        /// Nesterov momentum (default false).
        #[serde(default)]
        nesterov: bool,
        /// L2 weight decay λ (default 0).
        #[serde(default)]
        weight_decay: f32,
    },
    Adam {
        /// Base learning rate (required; at most [`MAX_LEARNING_RATE`]).
        #[serde(deserialize_with = "learning_rate")]
        lr: f32,
        /// β₁ (default 0.9).
        #[serde(default = "default_beta1")]
        beta1: f32,
        /// β₂ (default 0.999).
        #[serde(default = "default_beta2")]
        beta2: f32,
        /// ε (default 1e-8).
        #[serde(default = "default_eps")]
        eps: f32,
        /// L2 weight decay λ (default 0).
        #[serde(default)]
        weight_decay: f32,
    },
}

impl OptimizerSpec {
    pub fn lr(&self) -> f32 {
        match self {
            OptimizerSpec::Sgd { lr, .. } | OptimizerSpec::Adam { lr, .. } => *lr,
        }
    }
}

/// The constants of one Adam step.
struct AdamStep {
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    /// √(1 − β₂ᵗ).
    bc2_sqrt: f32,
    /// lr / (1 − β₁ᵗ).
    step_size: f32,
}

/// Adam's element-wise rule on one parameter (θ in `p`, updated in place).
#[inline(always)]
fn adam_body(c: &AdamStep, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    let n = p.len();
    let (g, m, v) = (&g[..n], &mut m[..n], &mut v[..n]);
    for j in 0..n {
        let g = g[j] + c.weight_decay * p[j];
        m[j] = c.beta1 * m[j] + (1.0 - c.beta1) * g;
        v[j] = c.beta2 * v[j] + (1.0 - c.beta2) * g * g;
        let denom = v[j].sqrt() / c.bc2_sqrt + c.eps;
        p[j] -= c.step_size * m[j] / denom;
    }
}

/// [`adam_body`] compiled for AVX-512 (16 lanes).
///
/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn adam_avx512(c: &AdamStep, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    adam_body(c, p, g, m, v)
}

/// [`adam_body`] compiled for AVX2 (8 lanes).
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn adam_avx2(c: &AdamStep, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    adam_body(c, p, g, m, v)
}

/// Adam's rule with the widest vectors the CPU has (the build's baseline is SSE2). Every
/// width computes the same bits: each lane does the same IEEE operations (multiply, add,
/// correctly rounded square root and division) in the same order, and Rust never fuses a
/// multiply and an add into an FMA on its own.
fn adam(c: &AdamStep, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the feature was detected at run time.
            return unsafe { adam_avx512(c, p, g, m, v) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the feature was detected at run time.
            return unsafe { adam_avx2(c, p, g, m, v) };
        }
    }
    adam_body(c, p, g, m, v)
}

/// Optimizer state: one (SGD) or two (Adam) buffers per parameter and the step count.
#[derive(Clone, Debug)]
pub struct Optimizer {
    pub spec: OptimizerSpec,
    pub step: u64,
    /// SGD: momentum buffers; Adam: first moments.
    pub m: Vec<Vec<f32>>,
    /// Adam: second moments (empty for SGD).
    pub v: Vec<Vec<f32>>,
    /// Working copy of the parameter being updated (reused across parameters and steps).
    scratch: Vec<f32>,
}

impl Optimizer {
    pub fn new(spec: &OptimizerSpec, params: &ParamSet) -> Optimizer {
        let zeros = || {
            params
                .tensors
                .iter()
                .map(|t| vec![0.0f32; t.shape().0])
                .collect::<Vec<_>>()
        };
        let v = if matches!(spec, OptimizerSpec::Adam { .. }) {
            zeros()
        } else {
            vec![]
        };
        Optimizer {
            spec: spec.clone(),
            step: 0,
            m: zeros(),
            v,
            scratch: Vec::new(),
        }
    }

    /// One update with the gradients found in `grads` (by parameter id) and step size
    /// `lr`.
    pub fn update(&mut self, params: &mut ParamSet, grads: &mut Gradients<f32, Dev>, lr: f32) {
        self.step += 1;
        for i in 0..params.len() {
            // On the CPU the gradient is read where the backward pass left it.
            #[cfg(not(feature = "cuda"))]
            {
                let g = grads
                    .get_or_alloc_mut(&params.tensors[i])
                    .expect("gradient allocation");
                self.update_one(params, i, g, lr);
            }
            #[cfg(feature = "cuda")]
            {
                let g = grad_host(grads, &params.tensors[i]);
                self.update_one(params, i, &g, lr);
            }
        }
    }

    /// One update with explicit per-parameter gradients (e.g. a combination computed by a
    /// meta-learning method).
    pub fn update_with(&mut self, params: &mut ParamSet, grads: &[Vec<f32>], lr: f32) {
        assert_eq!(grads.len(), params.len(), "update_with: gradient count");
        self.step += 1;
        for (i, g) in grads.iter().enumerate() {
            self.update_one(params, i, g, lr);
        }
    }

    /// Updates parameter `i`: one pass that reads θ, g and the moments and writes the new
    /// θ into a buffer kept between steps, then one copy of it into the tensor (dfdx 0.13
    /// gives no way to write a tensor's storage in place). The arithmetic is the rule of
    /// the module docs, operation for operation, whatever the memory traffic.
    fn update_one(&mut self, params: &mut ParamSet, i: usize, g: &[f32], lr: f32) {
        let n = params.tensors[i].shape().0;
        assert_eq!(
            n,
            g.len(),
            "optimizer: gradient length of {}",
            params.names[i]
        );
        let p = &mut self.scratch;
        p.resize(n, 0.0);
        params.tensors[i].copy_into(p);
        match self.spec {
            OptimizerSpec::Sgd {
                momentum,
                nesterov,
                weight_decay,
                ..
            } => {
                let buf = &mut self.m[i];
                for ((p, &g), b) in p.iter_mut().zip(g).zip(buf.iter_mut()) {
                    let g = g + weight_decay * *p;
                    if momentum != 0.0 {
                        *b = momentum * *b + g;
                        let d = if nesterov { g + momentum * *b } else { *b };
                        *p -= lr * d;
                    } else {
                        *p -= lr * g;
                    }
                }
            }
            OptimizerSpec::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
                ..
            } => {
                let t = self.step as i32;
                let bc1 = 1.0 - beta1.powi(t);
                let bc2_sqrt = (1.0 - beta2.powi(t)).sqrt();
                let step_size = lr / bc1;
                let c = AdamStep {
                    beta1,
                    beta2,
                    eps,
                    weight_decay,
                    bc2_sqrt,
                    step_size,
                };
                adam(&c, p, g, &mut self.m[i], &mut self.v[i]);
            }
        }
        params.set(i, p);
    }

    /// State as named tensors for a checkpoint (`opt.m.<param>`, `opt.v.<param>`).
    pub fn named(&self, params: &ParamSet) -> Vec<NamedTensor> {
        let mut out = Vec::new();
        for (prefix, bufs) in [("opt.m.", &self.m), ("opt.v.", &self.v)] {
            for (name, b) in params.names.iter().zip(bufs) {
                out.push(NamedTensor {
                    name: format!("{prefix}{name}"),
                    shape: vec![b.len()],
                    data: b.clone(),
                });
            }
        }
        out
    }

    /// Restores state written by [`Optimizer::named`].
    pub fn load_named(
        &mut self,
        params: &ParamSet,
        src: &std::collections::BTreeMap<String, NamedTensor>,
        step: u64,
    ) -> Result<()> {
        self.step = step;
        for (prefix, bufs) in [("opt.m.", &mut self.m), ("opt.v.", &mut self.v)] {
            for (name, b) in params.names.iter().zip(bufs.iter_mut()) {
                let key = format!("{prefix}{name}");
                let t = src
                    .get(&key)
                    .ok_or_else(|| anyhow::anyhow!("checkpoint: optimizer state {key} missing"))?;
                ensure!(
                    t.data.len() == b.len(),
                    "checkpoint: optimizer state {key} has the wrong length"
                );
                b.copy_from_slice(&t.data);
            }
        }
        Ok(())
    }
}

/// The optimizer of a method's own parameters (MLC's T, learned label logits): plain SGD,
/// or Adam with β₁ 0.9, β₂ 0.999, ε 1e-8 and no weight decay, computed in f64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetaOptimizerKind {
    Sgd,
    Adam,
}

/// A value a [`MetaOptimizer`] stores: the parameters and Adam moments are kept as `S`
/// (f64, or f32 where a method keeps f32 tables), every update is computed in f64.
pub trait MetaReal: Copy + std::ops::Sub<Output = Self> + Default {
    fn to_f64(self) -> f64;
    fn from_f64(v: f64) -> Self;
}
impl MetaReal for f64 {
    fn to_f64(self) -> f64 {
        self
    }
    fn from_f64(v: f64) -> Self {
        v
    }
}
impl MetaReal for f32 {
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn from_f64(v: f64) -> Self {
        v as f32
    }
}

/// [`MetaOptimizerKind`] over a table of rows of equal length, each row with its own Adam
/// step count (a row is updated only when its gradient is given):
///
/// ```text
/// SGD:  x ← x − S(lr·g)
/// Adam: m ← S(β₁m + (1−β₁)g); v ← S(β₂v + (1−β₂)g²) (bias corrections from the f64 values)
///       x ← x − S(lr · (m/(1−β₁ᵗ)) / (√(v/(1−β₂ᵗ)) + ε))
/// ```
///
/// where `S` rounds to the stored type and t is the row's step count.
#[derive(Clone, Debug)]
pub struct MetaOptimizer<S> {
    pub kind: MetaOptimizerKind,
    pub lr: f64,
    pub row_len: usize,
    /// Adam's first and second moments, one per value (zeros for SGD).
    pub m: Vec<S>,
    pub v: Vec<S>,
    /// Adam steps taken per row.
    pub steps: Vec<u32>,
}

impl<S: MetaReal> MetaOptimizer<S> {
    /// State for `rows` rows of `row_len` values.
    pub fn new(kind: MetaOptimizerKind, lr: f64, rows: usize, row_len: usize) -> Self {
        MetaOptimizer {
            kind,
            lr,
            row_len,
            m: vec![S::default(); rows * row_len],
            v: vec![S::default(); rows * row_len],
            steps: vec![0; rows],
        }
    }

    /// One step of row `r`, whose values are `x`, along the gradient `g`.
    pub fn step_row(&mut self, r: usize, x: &mut [S], g: &[f64]) {
        let lr = self.lr;
        match self.kind {
            MetaOptimizerKind::Sgd => {
                for (xj, gj) in x.iter_mut().zip(g) {
                    *xj = *xj - S::from_f64(lr * gj);
                }
            }
            MetaOptimizerKind::Adam => {
                self.steps[r] += 1;
                let t = self.steps[r] as i32;
                let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8f64);
                for (j, (xj, gj)) in x.iter_mut().zip(g).enumerate() {
                    let e = r * self.row_len + j;
                    let m = b1 * self.m[e].to_f64() + (1.0 - b1) * gj;
                    let v = b2 * self.v[e].to_f64() + (1.0 - b2) * gj * gj;
                    self.m[e] = S::from_f64(m);
                    self.v[e] = S::from_f64(v);
                    let mh = m / (1.0 - b1.powi(t));
                    let vh = v / (1.0 - b2.powi(t));
                    *xj = *xj - S::from_f64(lr * mh / (vh.sqrt() + eps));
                }
            }
        }
    }

    /// Restores the moments and step counts of a checkpoint, checking their sizes.
    pub fn restore(&mut self, m: Vec<S>, v: Vec<S>, steps: Vec<u32>) -> Result<()> {
        ensure!(
            m.len() == self.m.len() && v.len() == self.v.len() && steps.len() == self.steps.len(),
            "optimizer state: {} / {} moments and {} step counts, expected {} and {}",
            m.len(),
            v.len(),
            steps.len(),
            self.m.len(),
            self.steps.len()
        );
        (self.m, self.v, self.steps) = (m, v, steps);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::device::{dev, host};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// The module docs' rules written out plainly, one scalar at a time.
    fn reference(spec: &OptimizerSpec, p: &mut [f32], grads: &[Vec<f32>], lr: f32) {
        let (mut m, mut v) = (vec![0.0f32; p.len()], vec![0.0f32; p.len()]);
        for (t, g) in grads.iter().enumerate() {
            for j in 0..p.len() {
                match *spec {
                    OptimizerSpec::Adam {
                        beta1,
                        beta2,
                        eps,
                        weight_decay,
                        ..
                    } => {
                        let t = t as i32 + 1;
                        let g = g[j] + weight_decay * p[j];
                        m[j] = beta1 * m[j] + (1.0 - beta1) * g;
                        v[j] = beta2 * v[j] + (1.0 - beta2) * g * g;
                        let denom = v[j].sqrt() / (1.0 - beta2.powi(t)).sqrt() + eps;
                        p[j] -= lr / (1.0 - beta1.powi(t)) * m[j] / denom;
                    }
                    OptimizerSpec::Sgd {
                        momentum,
                        nesterov,
                        weight_decay,
                        ..
                    } => {
                        let g = g[j] + weight_decay * p[j];
                        m[j] = momentum * m[j] + g;
                        p[j] -= lr * if nesterov { g + momentum * m[j] } else { m[j] };
                    }
                }
            }
        }
    }

    #[test]
    fn updates_equal_the_scalar_rules_bit_for_bit() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        // Lengths around every vector width, and one of a real layer.
        let lens = [1usize, 7, 16, 33, 100_480];
        let specs = [
            OptimizerSpec::Adam {
                lr: 1e-3,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 1e-6,
            },
            OptimizerSpec::Sgd {
                lr: 0.1,
                momentum: 0.9,
                nesterov: true,
                weight_decay: 5e-4,
            },
        ];
        for spec in &specs {
            let mut params = ParamSet::new();
            let init: Vec<Vec<f32>> = lens
                .iter()
                .map(|&n| (0..n).map(|_| rng.random_range(-1.0..1.0)).collect())
                .collect();
            for (i, v) in init.iter().enumerate() {
                params.push(&dev(), format!("p{i}"), vec![v.len()], v.clone());
            }
            let steps: Vec<Vec<Vec<f32>>> = (0..5)
                .map(|_| {
                    lens.iter()
                        .map(|&n| (0..n).map(|_| rng.random_range(-2.0..2.0)).collect())
                        .collect()
                })
                .collect();
            let mut opt = Optimizer::new(spec, &params);
            for g in &steps {
                opt.update_with(&mut params, g, spec.lr());
            }
            for (i, v) in init.iter().enumerate() {
                let mut want = v.clone();
                let grads: Vec<Vec<f32>> = steps.iter().map(|s| s[i].clone()).collect();
                reference(spec, &mut want, &grads, spec.lr());
                let got = host(&params.tensors[i]);
                let same = got
                    .iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{spec:?}: parameter {i} differs from the scalar rule");
            }
        }
    }
}
