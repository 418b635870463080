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

use super::device::{grad_host, host, Dev};
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
    if v.is_finite() && (0.0..=MAX_LEARNING_RATE).contains(&v) {
        Ok(v)
    } else {
        Err(E::custom(format!(
            "learning rate {v:e} is outside [0, {MAX_LEARNING_RATE:e}]"
        )))
    }
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

/// Optimizer state: one (SGD) or two (Adam) buffers per parameter and the step count.
#[derive(Clone, Debug)]
pub struct Optimizer {
    pub spec: OptimizerSpec,
    pub step: u64,
    /// SGD: momentum buffers; Adam: first moments.
    pub m: Vec<Vec<f32>>,
    /// Adam: second moments (empty for SGD).
    pub v: Vec<Vec<f32>>,
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
        }
    }

    /// One update with the gradients found in `grads` (by parameter id) and step size
    /// `lr`.
    pub fn update(&mut self, params: &mut ParamSet, grads: &mut Gradients<f32, Dev>, lr: f32) {
        self.step += 1;
        for i in 0..params.len() {
            let g = grad_host(grads, &params.tensors[i]);
            self.update_one(params, i, &g, lr);
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

    fn update_one(&mut self, params: &mut ParamSet, i: usize, g: &[f32], lr: f32) {
        let mut p = host(&params.tensors[i]);
        assert_eq!(
            p.len(),
            g.len(),
            "optimizer: gradient length of {}",
            params.names[i]
        );
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
                let (m, v) = (&mut self.m[i], &mut self.v[i]);
                for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                    let g = g + weight_decay * *p;
                    *m = beta1 * *m + (1.0 - beta1) * g;
                    *v = beta2 * *v + (1.0 - beta2) * g * g;
                    let denom = v.sqrt() / bc2_sqrt + eps;
                    *p -= step_size * *m / denom;
                }
            }
        }
        params.set(i, &p);
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
