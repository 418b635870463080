//! `distill`: knowledge distillation (Hinton, Vinyals, Dean, "Distilling the Knowledge in
//! a Neural Network", 2015) from a teacher trained by any training stage into a student.
//!
//! The soft-label paper claims its learned labels "improve teacher models for the
//! downstream task of distillation"; its protocol could not be read, so this follows
//! Hinton's loss with the common defaults τ = 4, α = 0.9:
//!
//! ```text
//! L = (1 − α) · CE(z_s, y) + α · τ² · KL( softmax(z_t / τ) ‖ softmax(z_s / τ) )
//! KL(p ‖ q) = 1/B Σ_b Σ_k p_bk (log p_bk − log q_bk)
//! ```
//!
//! with `z_t` the teacher's logits (evaluation mode, computed once for every training
//! example) and `y` the training labels (clean labels, or the noise input's labels when a
//! `noise` input is given).
//!
//! Inputs: `data`, `teacher` (the output of a `train`, `train_mlc`, `train_soft_labels` or
//! `distill` stage: its network spec `model.json`, `weights.safetensors` and
//! `metrics.json`), optionally `noise`.
//! Outputs: `metrics.json` (extra `teacher_test_accuracy`), `teacher.json` (the teacher's
//! method and model, `report::TeacherInfo`), `weights.safetensors`, `model.json`,
//! `log/timings.json`.

use std::collections::BTreeMap;

use anyhow::{ensure, Context, Result};
use dfdx::prelude::*;

use crate::context::StageContext;
use crate::declared::Inputs;
use crate::kind::Kind;
use crate::math::{exp, ln};
use crate::method::Method;
use crate::metrics::Metrics;
use crate::nn::device::{Dev, Mat, Tp};
use crate::nn::model::Mode;
use crate::nn::ops::{self, Ops};
use crate::nn::trainer::{logits_of, Objective, StepCtx, StepOut};
use crate::report::TeacherInfo;
use crate::stage_kind::StageKind;
use crate::training::inputs::{self, check_data_and_noise};
use crate::training::{defaults, labels_of, load_trained, training_params, Training};

training_params! {
    /// Params of a `distill` stage: the student's network, optimizer, epochs and batches
    /// are the training kinds' shared fields ([`crate::training`]); the teacher's
    /// network is read from its output (`model.json`). With `augment`, the teacher's
    /// logits are still those of the unaugmented examples.
    pub struct Params {
        @network
        @batches
        /// Temperature τ (default 4).
        #[serde(default = "default_temperature")]
        pub temperature: f32,
        /// Weight α of the distillation term (default 0.9).
        #[serde(default = "default_alpha")]
        pub alpha: f32,
    }
}

impl StageKind for Params {
    const VERSION: u32 = 1;
    const METHODS: &'static [Method] = &[Method::Distill];

    /// Refuses sizes that cannot be meant ([`crate::bounds`]): epochs, batches, the network;
    /// and values the loss cannot use (`temperature` not positive, `alpha` outside [0, 1]).
    fn check(&self) -> Result<(), String> {
        use crate::bounds::training;
        training(self.epochs, 0, self.batch_size, self.eval_batch_size, 0)?;
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(format!(
                "field `temperature`: {} must be positive",
                self.temperature
            ));
        }
        if !(0.0..=1.0).contains(&self.alpha) {
            return Err(format!("field `alpha`: {} is outside [0, 1]", self.alpha));
        }
        self.model.check_bounds("model")
    }

    /// Refuses, when the pipeline loads, inputs it cannot distill from: no `data`, no
    /// `teacher`, a teacher that is no trained network.
    fn check_inputs(&self, inputs: &Inputs) -> Result<(), String> {
        check_data_and_noise(inputs, &["data", "teacher", "noise"])?;
        inputs.require("teacher", "the trained network whose outputs it learns")?;
        inputs.of_kinds(
            "teacher",
            &[
                Kind::Train,
                Kind::TrainMlc,
                Kind::TrainSoftLabels,
                Kind::Distill,
                Kind::Command,
            ],
        )
    }

    fn declared_method(&self) -> Option<String> {
        Some(Method::Distill.name().into())
    }

    fn run(&self, ctx: &StageContext) -> Result<()> {
        run(self, ctx)
    }
}

defaults! {
    default_temperature: f32 = 4.0,
    default_alpha: f32 = 0.9,
}

pub fn run(p: &Params, ctx: &StageContext) -> Result<()> {
    ensure!(p.temperature > 0.0, "params.temperature must be positive");
    ensure!(
        (0.0..=1.0).contains(&p.alpha),
        "params.alpha must be in [0, 1]"
    );
    let (ds, noise) = inputs::load_data_and_noise(ctx)?;
    let k = ds.meta.num_classes;
    let n = ds.train.len();
    let (labels, _) = labels_of(&ds, noise.as_ref())?;

    // The teacher: its network, weights and logits on every training example.
    let teacher_dir = &ctx.input("teacher")?.dir;
    let teacher_metrics = Metrics::load(teacher_dir).context("reading the teacher's metrics")?;
    let (tnet, tparams, mut tbuffers) = load_trained(teacher_dir, &ds, "input `teacher`")?;
    let all: Vec<u32> = (0..n as u32).collect();
    let teacher_logits = logits_of(&tnet, &tparams, &mut tbuffers, &ds, &all, p.eval_batch_size)?;
    let teacher_probs = tempered_softmax(&teacher_logits, k, p.temperature);

    let (mut run, mut params, mut buffers) = Training::new(ctx, &ds, p.common())?;
    let trusted = vec![false; n];
    let spec = run.phase("main", all, &labels, &trusted, p.epochs);
    let mut obj = DistillLoss {
        k,
        tau: p.temperature,
        alpha: p.alpha,
        teacher_probs,
    };
    run.run_phase(0, &spec, &mut params, &mut buffers, &mut obj)?;
    run.write_outputs(&params, &buffers)?;
    TeacherInfo {
        method: teacher_metrics.method.clone(),
        model: teacher_metrics.model.clone(),
    }
    .save(&ctx.out_dir)?;
    let mut extra = BTreeMap::new();
    extra.insert(
        "teacher_test_accuracy".to_string(),
        teacher_metrics.final_test_accuracy,
    );
    run.metrics("distill", "distill", noise.as_ref(), extra)?
        .save(&ctx.out_dir)
}

/// softmax(z / τ) per row.
pub fn tempered_softmax(z: &[f32], k: usize, tau: f32) -> Vec<f32> {
    let mut out = Vec::with_capacity(z.len());
    for row in z.chunks_exact(k) {
        let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
        let e: Vec<f64> = row
            .iter()
            .map(|&x| exp((x as f64 - m) / tau as f64))
            .collect();
        let s: f64 = e.iter().sum();
        out.extend(e.iter().map(|v| (v / s) as f32));
    }
    out
}

/// Hinton's loss on taped student logits (B×K), tempered teacher probabilities (B×K,
/// row-major) and hard labels.
pub fn hinton_loss(
    z: Mat<Tp>,
    teacher_probs: &[f32],
    labels: &[u32],
    tau: f32,
    alpha: f32,
) -> Tensor<(), f32, Dev, Tp> {
    let (b, k) = *z.shape();
    assert_eq!(
        teacher_probs.len(),
        b * k,
        "hinton_loss: teacher probabilities"
    );
    // Σ p log p of the teacher: a constant that makes the second term a true KL.
    let neg_entropy: f64 = teacher_probs
        .iter()
        .filter(|&&p| p > 0.0)
        .map(|&p| p as f64 * ln(p as f64))
        .sum::<f64>()
        / b as f64;
    let p = z.device().tensor_from_vec(teacher_probs.to_vec(), (b, k));
    // One tape through both terms: the distillation term first, then CE on the same logits.
    let (z0, tape) = z.split_tape();
    let soft = (ops::log_softmax(Ops::default(), z0.clone().put_tape(tape) * (1.0 / tau)) * p)
        .sum::<(), _>()
        * (-alpha * tau * tau / b as f32);
    let (soft, tape) = soft.split_tape();
    let ce = crate::nn::loss::cross_entropy(z0.put_tape(tape), labels) * (1.0 - alpha);
    ce + soft + (alpha * tau * tau * neg_entropy as f32)
}

struct DistillLoss {
    k: usize,
    tau: f32,
    alpha: f32,
    /// softmax(z_t / τ) of every training example, row-major.
    teacher_probs: Vec<f32>,
}

impl Objective for DistillLoss {
    fn step(&mut self, s: &mut StepCtx) -> Result<StepOut> {
        let k = self.k;
        let probs: Vec<f32> = s
            .batch
            .indices
            .iter()
            .flat_map(|&i| {
                self.teacher_probs[i as usize * k..(i as usize + 1) * k]
                    .iter()
                    .copied()
            })
            .collect();
        let z = s.forward(Mode::Train);
        s.backward_and_update(hinton_loss(
            z,
            &probs,
            &s.batch.labels,
            self.tau,
            self.alpha,
        ))
    }
}
