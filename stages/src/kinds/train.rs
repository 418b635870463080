//! `train`: a classifier trained with one of the baseline methods of the GLC benchmark
//! (Hendrycks et al., "Using Trusted Data to Train Deep Networks on Labels Corrupted by
//! Severe Noise", NeurIPS 2018, §3–4) and of the papers that compare against it.
//!
//! Methods (`method`):
//! * `ce`: cross-entropy on all training labels as given (GLC's "No Correction").
//! * `label_smoothing`: CE against (1 − ε)·onehot + ε/K (`smoothing` = ε).
//! * `trusted_only`: CE on the trusted examples only, for at least `min_updates`
//!   optimizer steps (GLC's `*_gold_only.py`: 2,000 updates).
//! * `forward` (Patrini et al., CVPR 2017): phase 1 CE on all examples; Ĉ by anchor
//!   points: for each class i, among the softmax outputs p(x) over all training
//!   examples, zero the values of column i at or above their 97th percentile
//!   (`anchor_percentile`, numpy's "higher" interpolation; `null` drops nothing) and take
//!   Ĉ[i, :] = p(x*) of the arg-max x* of what remains; phase 2 restarts from the same
//!   initial weights (or continues from phase 1's, `phase2_init`) with the corrected loss
//!   −log Σ_i p_i(x) Ĉ[i, ỹ] on every example.
//! * `forward_gold`: as GLC's code names it (its Table 1 column "Forward Gold"): phase 1
//!   CE on the untrusted examples, the same anchor estimate over them, phase 2 with CE on
//!   trusted examples and the corrected loss on the untrusted ones.
//! * `ideal`: the oracle: the true C of the noise input, one phase, CE on trusted and the
//!   corrected loss on untrusted examples (GLC's `--method ideal`).
//! * `glc`: phase 1 CE on the untrusted examples; Ĉ[i, :] = mean softmax over the
//!   trusted examples of true class i (a class with no trusted example gets a uniform
//!   row); phase 2 from the same initial weights: Σ_trusted CE + Σ_untrusted
//!   −log Σ_i p_i Ĉ[i, ỹ], divided by the batch size (GLC eq. in §3, `train_ours.py`).
//! * `confusion`: as `glc` but Ĉ = row-normalised confusion matrix of the phase-1
//!   network's arg-max predictions against the true labels of the trusted examples,
//!   smoothed 0.99·Ĉ + 0.01/K (an empty row becomes uniform).
//!
//! Every phase uses the same optimizer, schedule, `epochs`, batch size and augmentation;
//! training examples of trusted and untrusted sets are shuffled together in phase 2.
//! Each phase starts a fresh optimizer unless `carry_optimizer` continues phase 1's state
//! into phase 2 (GLC's CIFAR scripts keep one SGD object for both phases, so its momentum
//! carries over while the schedule restarts).
//! The final model is the last epoch's (no selection on the test split).
//!
//! Inputs: `data` (a dataset directory, `data::dataset`), `noise` (a `NoisyLabels`
//! directory, `noise/file.rs`; optional for `ce` and `label_smoothing`, which then train on
//! the clean labels). Outputs: `metrics.json` (`metrics::Metrics`; final `extra` holds
//! `c_hat_frobenius_to_true_c` and `c_hat_mean_row_l1_to_true_c` for methods that estimate
//! C), `weights.safetensors` (parameters then batch-norm buffers, PyTorch names and
//! layouts), `model.json` (the network's spec), `c_hat.json` (methods that estimate C: `{"k": K, "rows": [[..], ..]}`,
//! row = true class), `log/timings.json` (seconds per epoch; outside the output digest).

use std::collections::BTreeMap;

use anyhow::{bail, ensure, Result};
use serde::{Deserialize, Serialize};

use crate::context::StageContext;
use crate::data::dataset::Dataset;
use crate::declared::Inputs;
use crate::kinds::inject_noise::{trusted_share, TrustedShare};
use crate::math::exp;
use crate::method::Method;
use crate::metrics::Metrics;
use crate::nn::model::Network;
use crate::nn::objectives::{LossObjective, Target};
use crate::nn::params::{Buffers, ParamSet};
use crate::nn::trainer::{argmax_rows, batches_per_epoch, logits_of};
use crate::noise::{Matrix, MatrixFile, NoisyLabels};
use crate::outputs::C_HAT_FILE;
use crate::stage_kind::StageKind;
use crate::training::inputs::check_data_and_noise;
use crate::training::{
    defaults, insert_distances, labels_of, run_with_optional_noise, training_params, where_mask,
    Training,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrainMethod {
    Ce,
    TrustedOnly,
    Forward,
    ForwardGold,
    Ideal,
    Glc,
    Confusion,
    LabelSmoothing,
}

impl TrainMethod {
    /// The method as tables know it.
    pub fn method(self) -> Method {
        match self {
            TrainMethod::Ce => Method::Ce,
            TrainMethod::TrustedOnly => Method::TrustedOnly,
            TrainMethod::Forward => Method::Forward,
            TrainMethod::ForwardGold => Method::ForwardGold,
            TrainMethod::Ideal => Method::Ideal,
            TrainMethod::Glc => Method::Glc,
            TrainMethod::Confusion => Method::Confusion,
            TrainMethod::LabelSmoothing => Method::LabelSmoothing,
        }
    }

    pub fn name(self) -> &'static str {
        self.method().name()
    }

    /// Whether the method trains on (or estimates from) trusted examples.
    fn needs_trusted(self) -> bool {
        matches!(
            self,
            TrainMethod::TrustedOnly | TrainMethod::Glc | TrainMethod::Confusion
        )
    }

    /// Whether it trains twice: phase 1 to estimate Ĉ, phase 2 with the corrected loss.
    fn two_phases(self) -> bool {
        matches!(
            self,
            TrainMethod::Forward
                | TrainMethod::ForwardGold
                | TrainMethod::Glc
                | TrainMethod::Confusion
        )
    }

    /// Whether its first phase trains on the untrusted examples.
    fn needs_untrusted(self) -> bool {
        matches!(
            self,
            TrainMethod::ForwardGold | TrainMethod::Glc | TrainMethod::Confusion
        )
    }

    /// Whether it can train on clean labels, without a `noise` input.
    fn runs_without_noise(self) -> bool {
        matches!(self, TrainMethod::Ce | TrainMethod::LabelSmoothing)
    }
}

defaults! {
    default_smoothing: f32 = 0.1,
    default_min_updates: usize = 2000,
    default_anchor_percentile: Option<f64> = Some(97.0),
}

/// Where phase 2 of a two-phase method starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase2Init {
    /// The same initial weights and batch-norm buffers phase 1 started from, as GLC's
    /// CIFAR scripts for GLC, Forward Gold and Confusion reload them
    /// (`CIFAR/train_ours.py:184-186,327-330`).
    #[default]
    Initial,
    /// Phase 1's trained weights and buffers: GLC's CIFAR Forward, whose save and reload
    /// of the initial weights are commented out (`CIFAR/train_forward.py:186-188,339-341`).
    Phase1,
    /// New weights, drawn from a seed derived from the stage's ([`Training::fresh_weights`]):
    /// GLC's MNIST and Twitter scripts call their initialiser again before phase 2
    /// (`MNIST_experiments_pytorch.py:197-199`, `Twitter_experiments_pytorch.py:227-229`).
    /// Refused with an `init` file, which sets the weights phase 1 starts from.
    Fresh,
}

training_params! {
    /// Params of a `train` stage; the network, optimizer, epochs and batch fields are the
    /// training kinds' shared ones ([`crate::training`]).
    pub struct Params {
        /// The method (see the module docs). Required.
        pub method: TrainMethod,
        @network
        @batches
        /// ε of `label_smoothing` (default 0.1).
        #[serde(default = "default_smoothing")]
        pub smoothing: f32,
        /// `trusted_only`: least number of optimizer updates; epochs are raised to reach it
        /// (default 2000, GLC's gold-only scripts).
        #[serde(default = "default_min_updates")]
        pub min_updates: usize,
        /// `forward`, `forward_gold`: percentile above which anchor candidates are dropped
        /// (default 97, GLC's CIFAR-10, MNIST and Twitter scripts); `null` drops none and
        /// takes the plain arg-max (GLC's CIFAR-100 scripts). 100 is not the same: it
        /// drops the maximum.
        #[serde(default = "default_anchor_percentile")]
        pub anchor_percentile: Option<f64>,
        /// Two-phase methods: where phase 2 starts, `initial` (default), `phase1` or
        /// `fresh` ([`Phase2Init`]); no effect on one-phase methods, so that one setting
        /// can serve a stage whose matrix lists both, as a source's flags do.
        #[serde(default)]
        pub phase2_init: Phase2Init,
        /// Two-phase methods: phase 2 continues phase 1's optimizer state (default false,
        /// a fresh optimizer); no effect on one-phase methods.
        #[serde(default)]
        pub carry_optimizer: bool,
    }
}

impl Params {
    /// Refuses values the methods cannot use and inputs they cannot train on.
    fn check(&self, trusted: &[u32], untrusted: &[u32]) -> Result<()> {
        let name = self.method.name();
        if self.method.needs_trusted() && trusted.is_empty() {
            bail!("method {name} needs trusted examples, but the noise input has none");
        }
        if self.method.needs_untrusted() && untrusted.is_empty() {
            bail!("method {name} trains phase 1 on untrusted examples, but there are none");
        }
        Ok(())
    }
}

impl StageKind for Params {
    const VERSION: u32 = 1;
    const METHODS: &'static [Method] = &[
        Method::Ce,
        Method::TrustedOnly,
        Method::Forward,
        Method::ForwardGold,
        Method::Ideal,
        Method::Glc,
        Method::Confusion,
        Method::LabelSmoothing,
    ];

    /// Refuses sizes that cannot be meant ([`crate::bounds`]): epochs, batches, the network;
    /// and values the methods cannot use (`smoothing`, `anchor_percentile`).
    fn check(&self) -> Result<(), String> {
        use crate::bounds::{at_most, training, MAX_UPDATES};
        training(self.epochs, 0, self.batch_size, self.eval_batch_size, 0)?;
        at_most("min_updates", self.min_updates, MAX_UPDATES, "updates")?;
        if !(0.0..1.0).contains(&self.smoothing) {
            return Err(format!(
                "field `smoothing`: {} is outside [0, 1)",
                self.smoothing
            ));
        }
        if let Some(a) = self
            .anchor_percentile
            .filter(|a| !(0.0..=100.0).contains(a))
        {
            return Err(format!(
                "field `anchor_percentile`: {a} is outside [0, 100] (null takes the plain \
                 arg-max)"
            ));
        }
        if self.phase2_init == Phase2Init::Fresh && self.init.is_some() {
            return Err(
                "field `phase2_init`: fresh draws new weights for phase 2, but `init` \
                 sets them from a file; use initial or phase1 with an init file"
                    .to_string(),
            );
        }
        self.model.check_bounds("model")
    }

    /// Refuses, when the pipeline loads, inputs the method cannot train on: no `data`, no
    /// `noise` for a method that needs one, a noise stage whose params draw no trusted (or
    /// no untrusted) example for a method that needs them.
    fn check_inputs(&self, inputs: &Inputs) -> Result<(), String> {
        check_data_and_noise(inputs, &["data", "noise"])?;
        let name = self.method.name();
        let noise = inputs.bound("noise");
        if noise.is_empty() && !self.method.runs_without_noise() {
            return Err(format!(
                "field `method`: method {name} needs a `noise` input (the trusted set and the \
                 noisy labels); only ce and label_smoothing train on the clean labels alone"
            ));
        }
        for n in noise
            .iter()
            .filter(|n| n.kind == crate::kind::Kind::InjectNoise)
        {
            match trusted_share(n.params) {
                TrustedShare::None(why) if self.method.needs_trusted() => {
                    return Err(format!(
                        "field `method`: method {name} needs trusted examples, but its `noise` \
                         input `{}` draws none: {why}",
                        n.name
                    ))
                }
                TrustedShare::All(why) if self.method.needs_untrusted() => {
                    return Err(format!(
                        "field `method`: method {name} trains its first phase on untrusted \
                         examples, but its `noise` input `{}` trusts every example: {why}",
                        n.name
                    ))
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn declared_method(&self) -> Option<String> {
        Some(self.method.method().name().into())
    }

    fn run(&self, ctx: &StageContext) -> Result<()> {
        run(self, ctx)
    }
}

pub fn run(p: &Params, ctx: &StageContext) -> Result<()> {
    run_with_optional_noise(ctx, |ds, noise| train(p, ctx, ds, noise))
}

/// Runs the method on `ds` (with `noise`, or the clean labels); writes the weights,
/// `c_hat.json` and timings into `ctx.out_dir` and returns the metrics (not yet saved).
pub fn train(
    p: &Params,
    ctx: &StageContext,
    ds: &Dataset,
    noise: Option<&NoisyLabels>,
) -> Result<Metrics> {
    p.common().check()?;
    ensure!(
        (0.0..1.0).contains(&p.smoothing),
        "params.smoothing {} outside [0, 1)",
        p.smoothing
    );
    ensure!(
        p.anchor_percentile
            .is_none_or(|a| (0.0..=100.0).contains(&a)),
        "params.anchor_percentile outside [0, 100]"
    );
    if noise.is_none() && !matches!(p.method, TrainMethod::Ce | TrainMethod::LabelSmoothing) {
        bail!(
            "method {} needs a `noise` input (trusted set and noisy labels)",
            p.method.name()
        );
    }
    let (labels, trusted) = labels_of(ds, noise)?;
    let l = Labels {
        trusted_idx: where_mask(&trusted, true),
        untrusted_idx: where_mask(&trusted, false),
        all_idx: (0..labels.len() as u32).collect(),
        labels,
        trusted,
    };
    p.check(&l.trusted_idx, &l.untrusted_idx)?;

    let (mut run, params0, buffers0) = Training::new(ctx, ds, p.common())?;
    let (params, buffers, c_hat) = match p.method {
        m if m.two_phases() => {
            let (c, phase1) = estimate_c(p, &mut run, &l, &params0, &buffers0)?;
            // Phase 1's weights when asked for and trained in this process; a phase 2
            // resumed from a checkpoint restores its own weights over either.
            let (mut params, mut buffers) = match (p.phase2_init, phase1) {
                (Phase2Init::Phase1, Some(w)) => w,
                (Phase2Init::Fresh, _) => run.fresh_weights()?,
                _ => (params0, buffers0),
            };
            let target = Target::Forward {
                c: c.clone(),
                trusted_ce: p.method != TrainMethod::Forward,
            };
            let mut spec = run.phase("phase2", l.all_idx.clone(), &l.labels, &l.trusted, p.epochs);
            spec.carry_optimizer = p.carry_optimizer;
            let mut obj = LossObjective { target };
            run.run_phase(1, &spec, &mut params, &mut buffers, &mut obj)?;
            (params, buffers, Some(c))
        }
        _ => {
            let (mut params, mut buffers) = (params0, buffers0);
            let (examples, epochs, target) = one_phase(p, &l, noise);
            let spec = run.phase("main", examples, &l.labels, &l.trusted, epochs);
            let mut obj = LossObjective { target };
            run.run_phase(0, &spec, &mut params, &mut buffers, &mut obj)?;
            (params, buffers, None)
        }
    };
    run.write_outputs(&params, &buffers)?;
    let mut extra = BTreeMap::new();
    if let Some(c) = &c_hat {
        MatrixFile::from_matrix(c).save(&ctx.out_dir.join(C_HAT_FILE))?;
        if let Some(nl) = noise {
            insert_distances(&mut extra, "c_hat", c, &nl.true_c);
        }
    }
    run.metrics("train", p.method.name(), noise, extra)
}

/// The labels a run trains on, its trusted mask and the example subsets the methods use.
struct Labels {
    labels: Vec<u32>,
    trusted: Vec<bool>,
    trusted_idx: Vec<u32>,
    untrusted_idx: Vec<u32>,
    all_idx: Vec<u32>,
}

/// The examples, epochs and loss of the one-phase methods (`ce`, `label_smoothing`,
/// `trusted_only`, `ideal`).
fn one_phase(p: &Params, l: &Labels, noise: Option<&NoisyLabels>) -> (Vec<u32>, usize, Target) {
    match p.method {
        TrainMethod::Ce => (l.all_idx.clone(), p.epochs, Target::Hard),
        TrainMethod::LabelSmoothing => (l.all_idx.clone(), p.epochs, Target::Smoothed(p.smoothing)),
        TrainMethod::TrustedOnly => {
            // (no batch at all is refused by the trainer, naming the sizes)
            let per_epoch = batches_per_epoch(l.trusted_idx.len(), p.batch_size, p.drop_last);
            let epochs = p.epochs.max(p.min_updates.div_ceil(per_epoch.max(1)));
            (l.trusted_idx.clone(), epochs, Target::Hard)
        }
        TrainMethod::Ideal => {
            let c = noise.expect("checked in train").true_c.clone();
            let target = Target::Forward {
                c,
                trusted_ce: true,
            };
            (l.all_idx.clone(), p.epochs, target)
        }
        _ => unreachable!("two-phase methods are run by estimate_c"),
    }
}

/// Phase 1 of the two-phase methods: their estimate Ĉ and phase 1's trained weights and
/// buffers; or the Ĉ the checkpoint carries, without weights, when phase 1 is already done
/// (phase 2 then resumes from the checkpoint's own weights).
fn estimate_c(
    p: &Params,
    run: &mut Training,
    l: &Labels,
    params0: &ParamSet,
    buffers0: &Buffers,
) -> Result<(Matrix, Option<(ParamSet, Buffers)>)> {
    let k = run.ds.meta.num_classes;
    if let Some(data) = run.session.carry::<Vec<f64>>("c_hat")? {
        return Ok((Matrix { k, data }, None));
    }
    let phase1_examples = if p.method == TrainMethod::Forward {
        l.all_idx.clone()
    } else {
        l.untrusted_idx.clone()
    };
    let (mut params, mut buffers) = (params0.deep_clone(), buffers0.clone());
    let spec = run.phase(
        "phase1",
        phase1_examples.clone(),
        &l.labels,
        &l.trusted,
        p.epochs,
    );
    let mut obj = LossObjective {
        target: Target::Hard,
    };
    run.run_phase(0, &spec, &mut params, &mut buffers, &mut obj)?;
    let eval = p.eval_batch_size;
    let c = match p.method {
        TrainMethod::Forward | TrainMethod::ForwardGold => {
            let probs = probabilities(
                &run.net,
                &params,
                &mut buffers,
                run.ds,
                &phase1_examples,
                eval,
            )?;
            anchor_estimate(&probs, k, p.anchor_percentile)
        }
        _ => {
            let probs = probabilities(
                &run.net,
                &params,
                &mut buffers,
                run.ds,
                &l.trusted_idx,
                eval,
            )?;
            let y: Vec<u32> = l
                .trusted_idx
                .iter()
                .map(|&i| l.labels[i as usize])
                .collect();
            if p.method == TrainMethod::Glc {
                glc_estimate(&probs, &y, k)
            } else {
                confusion_estimate(&probs, &y, k)
            }
        }
    };
    run.session.set_carry("c_hat", &c.data)?;
    Ok((c, Some((params, buffers))))
}

/// Softmax outputs (evaluation mode) of the given train examples, row-major, in f64.
fn probabilities(
    net: &Network,
    params: &ParamSet,
    buffers: &mut Buffers,
    ds: &Dataset,
    examples: &[u32],
    batch: usize,
) -> Result<Vec<f64>> {
    let k = net.classes;
    let logits = logits_of(net, params, buffers, ds, examples, batch)?;
    let mut out = Vec::with_capacity(logits.len());
    for row in logits.chunks_exact(k) {
        let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
        let e: Vec<f64> = row.iter().map(|&z| exp(z as f64 - m)).collect();
        let s: f64 = e.iter().sum();
        out.extend(e.iter().map(|v| v / s));
    }
    Ok(out)
}

/// Patrini et al.'s anchor-point estimate, with GLC's robust percentile filter when
/// `percentile` is given (values of column i at or above it are zeroed first); without
/// it, the plain arg-max of each column.
pub fn anchor_estimate(probs: &[f64], k: usize, percentile: Option<f64>) -> Matrix {
    let n = probs.len() / k;
    let mut c = Matrix::zeros(k);
    for i in 0..k {
        let mut col: Vec<f64> = (0..n).map(|r| probs[r * k + i]).collect();
        if let Some(percentile) = percentile {
            let mut sorted = col.clone();
            sorted.sort_by(|a, b| a.total_cmp(b));
            // numpy.percentile(..., interpolation='higher')
            let pos = (percentile / 100.0 * (n - 1) as f64).ceil() as usize;
            let thresh = sorted[pos.min(n - 1)];
            col.iter_mut().for_each(|v| {
                if *v >= thresh {
                    *v = 0.0
                }
            });
        }
        let best = col
            .iter()
            .enumerate()
            .fold(
                (0, f64::NEG_INFINITY),
                |b, (r, &v)| if v > b.1 { (r, v) } else { b },
            )
            .0;
        for j in 0..k {
            c.set(i, j, probs[best * k + j]);
        }
    }
    c
}

/// GLC: Ĉ[i, :] = mean softmax of the trusted examples of class i (uniform if none).
pub fn glc_estimate(probs: &[f64], y: &[u32], k: usize) -> Matrix {
    let mut c = Matrix::zeros(k);
    let mut count = vec![0usize; k];
    for (r, &yi) in y.iter().enumerate() {
        count[yi as usize] += 1;
        for j in 0..k {
            c.data[yi as usize * k + j] += probs[r * k + j];
        }
    }
    for i in 0..k {
        for j in 0..k {
            let v = if count[i] == 0 {
                1.0 / k as f64
            } else {
                c.at(i, j) / count[i] as f64
            };
            c.set(i, j, v);
        }
    }
    c
}

/// Row-normalised confusion matrix of arg-max predictions, smoothed 0.99·Ĉ + 0.01/K.
pub fn confusion_estimate(probs: &[f64], y: &[u32], k: usize) -> Matrix {
    let f: Vec<f32> = probs.iter().map(|&v| v as f32).collect();
    let pred = argmax_rows(&f, k);
    let mut c = Matrix::zeros(k);
    for (&yi, &pi) in y.iter().zip(&pred) {
        c.data[yi as usize * k + pi] += 1.0;
    }
    for i in 0..k {
        let s: f64 = c.row(i).iter().sum();
        for j in 0..k {
            let v = if s == 0.0 {
                1.0 / k as f64
            } else {
                c.at(i, j) / s
            };
            c.set(i, j, 0.99 * v + 0.01 / k as f64);
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glc_estimate_means_and_uniform_rows() {
        // 3 classes; class 0 seen twice, class 1 once, class 2 never.
        let probs = [0.5, 0.5, 0.0, 0.7, 0.1, 0.2, 0.0, 1.0, 0.0];
        let c = glc_estimate(&probs, &[0, 0, 1], 3);
        let want = [
            0.6,
            0.3,
            0.1,
            0.0,
            1.0,
            0.0,
            1.0 / 3.0,
            1.0 / 3.0,
            1.0 / 3.0,
        ];
        for (a, b) in c.data.iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "{:?}", c.data);
        }
    }

    #[test]
    fn confusion_estimate_smooths() {
        let probs = [0.9, 0.1, 0.2, 0.8, 0.6, 0.4];
        let c = confusion_estimate(&probs, &[0, 0, 1], 2);
        // row 0: predictions 0 and 1 -> [0.5, 0.5]; row 1: prediction 0 -> [1, 0]
        let want = [0.5, 0.5, 0.99 + 0.005, 0.005];
        for (a, b) in c.data.iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "{:?}", c.data);
        }
    }

    #[test]
    fn anchor_estimate_skips_the_top_percentile() {
        // 5 examples, 2 classes. Column 0 values: 0.99, 0.9, 0.8, 0.3, 0.1. With the
        // 50th percentile ('higher': sorted[ceil(0.5*4)] = sorted[2] = 0.8) the values
        // >= 0.8 are dropped and the anchor of class 0 is the example with 0.3.
        let probs = [0.99, 0.01, 0.9, 0.1, 0.8, 0.2, 0.3, 0.7, 0.1, 0.9];
        let c = anchor_estimate(&probs, 2, Some(50.0));
        assert_eq!(c.row(0), &[0.3, 0.7]);
        // column 1: 0.01, 0.1, 0.2, 0.7, 0.9 -> threshold 0.2, anchor = example with 0.1
        assert_eq!(c.row(1), &[0.9, 0.1]);
    }

    #[test]
    fn anchor_estimate_without_a_filter_is_the_plain_argmax() {
        // The same outputs: the anchors are the column maxima, 0.99 and 0.9, which any
        // percentile filter (100 included) would drop.
        let probs = [0.99, 0.01, 0.9, 0.1, 0.8, 0.2, 0.3, 0.7, 0.1, 0.9];
        let c = anchor_estimate(&probs, 2, None);
        assert_eq!(c.row(0), &[0.99, 0.01]);
        assert_eq!(c.row(1), &[0.1, 0.9]);
        assert_ne!(anchor_estimate(&probs, 2, Some(100.0)).row(0), c.row(0));
    }
}
