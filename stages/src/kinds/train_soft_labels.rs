//! `train_soft_labels`: labels as learnable parameters, meta-learned together with the
//! model (Vyas, Saxena, Voice, "Learning Soft Labels via Meta Learning", arXiv
//! 2009.09496).
//!
//! The paper's method section could not be read; what is confirmed is the idea (labels are
//! parameters optimised "via meta learning" with the model; they regularise clean
//! training, correct noisy labels, capture class similarity and make better teachers).
//! The update below is the standard one-step look-ahead of the closest published methods
//! (L2RW / MW-Net's loop with labels in place of example weights, as MSLG does), and every
//! choice the paper leaves open is a parameter.
//!
//! Label logits `L` are kept per example (N×K, `granularity: per_example`) or per class
//! (K×K, `per_class`: an example uses row `L[ỹ]` of its given label). The soft label is
//!
//! ```text
//! ŷ_i = softmax(L_i / τ),        L_i initialised to c · onehot(ỹ_i)                    (1)
//! ```
//!
//! with `c` chosen so that the initial labels equal label smoothing with ε = `init_smoothing`
//! (c = τ · ln((1 − ε + ε/K) / (ε/K))), unless `init_scale` gives c. Each step:
//!
//! ```text
//! L_train(θ, L) = −1/B Σ_b Σ_k ŷ_bk log p_θ(k | x_b)          soft cross-entropy       (2)
//! θ' = θ − α ∇_θ L_train(θ, L)                                 virtual SGD step         (3)
//! L_meta(θ') = −1/M Σ_m log p_θ'(y_m | x_m)                    one-hot CE on a meta batch (4)
//! L ← L − β · optimiser(∇_L L_meta(θ'(L)))                     label step (batch rows)  (5)
//! θ ← optimiser step on L_train(θ, L)                          the real step            (6)
//! ```
//!
//! The meta batch is drawn from the trusted set (`meta_set: trusted`) or from the training
//! set with its given labels (`next_batch`, needing no held-out data; the default `auto`
//! picks `trusted` when the noise input has trusted examples). The look-ahead moves the
//! whole network (`look_ahead: full`) or only its last layer (`last_layer`). `∇_L L_meta`
//! is the shared finite-difference hypergradient ([`crate::nn::hypergrad::hypergradient`]),
//! with the closed form
//!
//! ```text
//! ∂L_train/∂L_bj = (1/τ) ŷ_bj (g_bj − Σ_k ŷ_bk g_bk),   g_bk = −log p_θ(k | x_b) / B
//! ```
//!
//! at `θ ± εv`. Trusted examples train on their clean one-hot labels (not learned).
//!
//! **Defaults, and why.** A row of label logits is stepped once per batch that holds one
//! of its examples: a per-example row about once per epoch, a per-class row in nearly
//! every batch. Adam moves each logit by about β per step whatever the hypergradient's
//! scale (which is tiny: it carries the factor α/B), so whether an arg-max can change is
//! decided by β times the number of steps against the initial gap c (4.51 for ε = 0.1 and
//! K = 10) between the given class's logit and the others'. Hence:
//!
//! * `per_example` labels with a `trusted` meta set: β = 0.5 after `warmup_epochs` = 10
//!   epochs of plain CE. The warm-up keeps labels that are already right from drifting
//!   while the network's early gradients are still large; Adam's sign-like steps are used
//!   because SGD would need β ≈ 1000 to offset the α/B factor.
//! * `per_example` labels with `next_batch` (no trusted data): β = 0.1, no warm-up. The
//!   meta batches carry the training labels themselves, so there is nothing to correct
//!   and larger steps only drift.
//! * `per_class` labels: β = 0.02, no warm-up (a row is stepped ~N/B times per epoch). A
//!   class row can only correct where most examples given that label belong to another
//!   class (flip noise ≥ 0.5); it can never correct uniform noise.
//!
//! The temperature is left at τ = 1: only L/τ enters (1), and Adam's steps ignore the
//! hypergradient's scale, so with the initial logits τ·c (the smoothing ε at any τ) a
//! temperature τ acts like dividing β by τ.
//!
//! A meta step that moves a label logit by more than [`META_STEP_LIMIT`] (1,000) fails the stage as diverged, naming
//! `label_lr`: such a step rewrites the label instead of adjusting it (`label_lr: 1e6`
//! used to finish far below CE with every loss finite).
//!
//! Metrics name the method `soft_labels` (per example) or `soft_labels_per_class`.
//!
//! Inputs: `data`, optionally `noise` (without it: clean labels, `meta_set` must be
//! `next_batch`). Outputs: `metrics.json` (per epoch and final `label_correction_rate`: share
//! of the corrupted untrusted examples whose learned label's arg-max is the true class;
//! `meta_loss` per epoch), `weights.safetensors`, `model.json`, `labels.safetensors` (`logits` and
//! `soft_labels`, N×K for `per_example`, K×K for `per_class`), `class_similarity.json` (K×K:
//! the mean learned label of the training examples of each true class,
//! `noise::MatrixFile`), `log/timings.json`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::context::StageContext;
use crate::data::dataset::Dataset;
use crate::declared::Inputs;
use crate::kind::Kind;
use crate::kinds::inject_noise::{trusted_share, TrustedShare};
use crate::math::{exp, ln};
use crate::method::Method;
use crate::metrics::Metrics;
use crate::nn::batch::Decoder;
use crate::nn::checkpoint::MethodState;
use crate::nn::device::{Mat, Tp};
use crate::nn::hypergrad::{self, LookAhead, MetaSampler, TrainBatch};
use crate::nn::loss;
use crate::nn::model::{Input, Mode, Network};
use crate::nn::objectives::{LossObjective, Target};
use crate::nn::optim::{MetaOptimizer, MetaOptimizerKind};
use crate::nn::params::{write_safetensors, Buffers, NamedTensor, ParamSet};
use crate::nn::trainer::{argmax_rows, Objective, StepCtx, StepInfo, StepOut};
use crate::noise::{Matrix, MatrixFile, NoisyLabels};
use crate::outputs::{CLASS_SIMILARITY_FILE, LABELS_FILE};
use crate::stage_kind::StageKind;
use crate::training::inputs::check_data_and_noise;
use crate::training::{
    defaults, labels_of, run_with_optional_noise, training_params, where_mask, Training,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    PerExample,
    PerClass,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetaSet {
    Auto,
    Trusted,
    NextBatch,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LookAheadScope {
    Full,
    LastLayer,
}

/// The optimizer of the label logits: `sgd` or `adam` ([`MetaOptimizerKind`]).
pub type LabelOptimizer = MetaOptimizerKind;

training_params! {
    /// Params of a `train_soft_labels` stage; the network, optimizer, epochs and batch
    /// fields are the training kinds' shared ones ([`crate::training`]), `epochs`
    /// counting the epochs with learned labels after the warm-up.
    pub struct Params {
        @network
        /// Epochs of plain CE before labels are learned, run before `epochs` (default: 10
        /// for `per_example` labels with a `trusted` meta set, 0 otherwise; see "Defaults").
        #[serde(default)]
        pub warmup_epochs: Option<usize>,
        @batches
        /// `per_example` (default) or `per_class` label logits.
        #[serde(default = "default_granularity")]
        pub granularity: Granularity,
        /// ε of the label smoothing the initial labels equal (default 0.1; at temperature τ
        /// the initial logits are τ·c so that softmax(τ·c·onehot / τ) is that smoothing).
        #[serde(default = "default_init_smoothing")]
        pub init_smoothing: f64,
        /// The initial logits' scale c (logits c·onehot), overriding `init_smoothing`
        /// (default none; used as given, not multiplied by τ).
        #[serde(default)]
        pub init_scale: Option<f64>,
        /// Temperature τ of (1) (default 1).
        #[serde(default = "default_temperature")]
        pub temperature: f64,
        /// Where meta batches come from: `auto` (default), `trusted` or `next_batch`.
        #[serde(default = "default_meta_set")]
        pub meta_set: MetaSet,
        /// Examples per meta batch (default 100, capped at the meta set's size).
        #[serde(default = "default_meta_batch_size")]
        pub meta_batch_size: usize,
        /// What the virtual step moves: `full` (default) or `last_layer`.
        #[serde(default = "default_look_ahead")]
        pub look_ahead: LookAheadScope,
        /// α of the virtual SGD step (3) (default 0.1).
        #[serde(
            default = "default_virtual_lr",
            deserialize_with = "crate::nn::optim::learning_rate"
        )]
        pub virtual_lr: f32,
        /// Optimizer of the label logits: `adam` (default, per-entry moments) or `sgd`.
        #[serde(default = "default_label_optimizer")]
        pub label_optimizer: LabelOptimizer,
        /// β, the label learning rate: the size of one label step (5) in logit units
        /// (default: `per_example` 0.5 with a `trusted` meta set and 0.1 with `next_batch`,
        /// `per_class` 0.02; see "Defaults").
        #[serde(default, deserialize_with = "crate::nn::optim::learning_rate_opt_f64")]
        pub label_lr: Option<f64>,
        /// eps0 of the finite difference (default 0.01).
        #[serde(default = "default_eps0")]
        pub eps0: f32,
    }
}

impl Params {
    /// The method its metrics report (the name tables list).
    pub fn method(&self) -> &'static str {
        match self.granularity {
            Granularity::PerExample => Method::SoftLabels.name(),
            Granularity::PerClass => Method::SoftLabelsPerClass.name(),
        }
    }

    /// Refuses values the method cannot use.
    fn check(&self) -> Result<()> {
        ensure!(self.epochs > 0, "params.epochs must be positive");
        ensure!(
            self.batch_size > 0 && self.meta_batch_size > 0,
            "params.batch_size and params.meta_batch_size must be positive"
        );
        ensure!(
            self.temperature > 0.0,
            "params.temperature must be positive"
        );
        ensure!(
            (0.0..1.0).contains(&self.init_smoothing) && self.init_smoothing > 0.0,
            "params.init_smoothing must be in (0, 1)"
        );
        Ok(())
    }

    /// The meta set `auto` stands for: `trusted` when there are trusted examples.
    fn resolve_meta_set(&self, has_trusted: bool) -> Result<MetaSet> {
        Ok(match self.meta_set {
            MetaSet::Auto if has_trusted => MetaSet::Trusted,
            MetaSet::Auto => MetaSet::NextBatch,
            MetaSet::Trusted if !has_trusted => {
                bail!("params.meta_set is `trusted` but there are no trusted examples (no `noise` input, or trusted_fraction 0)")
            }
            m => m,
        })
    }
}

impl StageKind for Params {
    const VERSION: u32 = 1;
    const METHODS: &'static [Method] = &[Method::SoftLabels, Method::SoftLabelsPerClass];

    /// Refuses sizes that cannot be meant ([`crate::bounds`]): epochs, batches, the network;
    /// and values the method cannot use (those [`Params::check`] refuses when it runs).
    fn check(&self) -> Result<(), String> {
        use crate::bounds::{at_least_one, training};
        training(
            self.epochs,
            self.warmup_epochs.unwrap_or(0),
            self.batch_size,
            self.eval_batch_size,
            self.meta_batch_size,
        )?;
        at_least_one("meta_batch_size", self.meta_batch_size, "examples")?;
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(format!(
                "field `temperature`: {} must be positive",
                self.temperature
            ));
        }
        if !(self.init_smoothing > 0.0 && self.init_smoothing < 1.0) {
            return Err(format!(
                "field `init_smoothing`: {} is outside (0, 1)",
                self.init_smoothing
            ));
        }
        self.model.check_bounds("model")
    }

    /// Refuses, when the pipeline loads, inputs the method cannot train on: no `data`,
    /// `meta_set: trusted` without a `noise` input or with one whose params draw no trusted
    /// example.
    fn check_inputs(&self, inputs: &Inputs) -> Result<(), String> {
        check_data_and_noise(inputs, &["data", "noise"])?;
        if self.meta_set != MetaSet::Trusted {
            return Ok(());
        }
        let noise = inputs.bound("noise");
        if noise.is_empty() {
            return Err(
                "field `meta_set`: `trusted` needs a `noise` input, whose trusted \
                 examples are the meta set; without one, use `next_batch` or `auto`"
                    .into(),
            );
        }
        for n in noise {
            if let (Kind::InjectNoise, TrustedShare::None(why)) = (n.kind, trusted_share(n.params))
            {
                return Err(format!(
                    "field `meta_set`: `trusted`, but the `noise` input `{}` draws no trusted \
                     example: {why}",
                    n.name
                ));
            }
        }
        Ok(())
    }

    fn declared_method(&self) -> Option<String> {
        Some(self.method().into())
    }

    fn run(&self, ctx: &StageContext) -> Result<()> {
        run(self, ctx)
    }
}

defaults! {
    default_granularity: Granularity = Granularity::PerExample,
    default_init_smoothing: f64 = 0.1,
    default_temperature: f64 = 1.0,
    default_meta_set: MetaSet = MetaSet::Auto,
    default_meta_batch_size: usize = 100,
    default_look_ahead: LookAheadScope = LookAheadScope::Full,
    default_virtual_lr: f32 = 0.1,
    default_label_optimizer: LabelOptimizer = MetaOptimizerKind::Adam,
    default_eps0: f32 = 0.01,
}

/// The label learning rate β and the CE warm-up epochs a run uses: the params' values, or
/// the defaults for its granularity and its resolved meta set (`trusted` or `next_batch`;
/// see "Defaults" in the module header).
pub fn label_schedule(p: &Params, meta_set: MetaSet) -> (f64, usize) {
    let trusted = meta_set == MetaSet::Trusted;
    let lr = p.label_lr.unwrap_or(match p.granularity {
        Granularity::PerExample if trusted => 0.5,
        Granularity::PerExample => 0.1,
        Granularity::PerClass => 0.02,
    });
    let warmup = p.warmup_epochs.unwrap_or(match p.granularity {
        Granularity::PerExample if trusted => 10,
        _ => 0,
    });
    (lr, warmup)
}

/// The c of the initial logits c·onehot over K classes: `init_scale`, or τ times
/// [`init_scale_for_smoothing`], so that softmax(c·onehot / τ) is label smoothing ε.
pub fn initial_scale(p: &Params, k: usize) -> f64 {
    p.init_scale
        .unwrap_or_else(|| p.temperature * init_scale_for_smoothing(p.init_smoothing, k))
}

/// The c of c·onehot whose softmax equals label smoothing ε over K classes.
pub fn init_scale_for_smoothing(eps: f64, k: usize) -> f64 {
    let k = k as f64;
    let top = 1.0 - eps + eps / k;
    let other = eps / k;
    ln(top / other)
}

pub fn run(p: &Params, ctx: &StageContext) -> Result<()> {
    run_with_optional_noise(ctx, |ds, noise| train(p, ctx, ds, noise))
}

/// Trains with learned labels; writes weights, labels, the class similarity and timings.
pub fn train(
    p: &Params,
    ctx: &StageContext,
    ds: &Dataset,
    noise: Option<&NoisyLabels>,
) -> Result<Metrics> {
    p.check()?;
    let (labels, trusted) = labels_of(ds, noise)?;
    let trusted_idx = where_mask(&trusted, true);
    let meta_set = p.resolve_meta_set(!trusted_idx.is_empty())?;
    let (label_lr, warmup_epochs) = label_schedule(p, meta_set);
    ensure!(
        label_lr.is_finite() && label_lr > 0.0,
        "params.label_lr must be positive, got {label_lr}"
    );
    let all: Vec<u32> = (0..labels.len() as u32).collect();

    let (mut run, mut params, mut buffers) = Training::new(ctx, ds, p.common())?;
    if warmup_epochs > 0 {
        let spec = run.phase("warmup", all.clone(), &labels, &trusted, warmup_epochs);
        let mut obj = LossObjective {
            target: Target::Hard,
        };
        run.run_phase(0, &spec, &mut params, &mut buffers, &mut obj)?;
    }
    let meta_pool = match meta_set {
        MetaSet::Trusted => trusted_idx,
        _ => all.clone(),
    };
    let mask = match p.look_ahead {
        LookAheadScope::Full => None,
        LookAheadScope::LastLayer => Some(hypergrad::last_layer_mask(&params)),
    };
    let spec = run.phase("soft_labels", all, &labels, &trusted, p.epochs);
    let mut obj = SoftLabels::new(
        p,
        ds,
        (&labels, &trusted),
        meta_set,
        meta_pool,
        label_lr,
        mask,
    );
    run.run_phase(1, &spec, &mut params, &mut buffers, &mut obj)?;
    run.write_outputs(&params, &buffers)?;
    obj.write_outputs(&ctx.out_dir)?;

    let mut extra = BTreeMap::new();
    if let Some(r) = obj.correction_rate() {
        extra.insert("label_correction_rate".to_string(), r);
    }
    run.metrics("train_soft_labels", p.method(), noise, extra)
}

/// Initial logits: c·onehot of each example's given label (per example), or c·I (per class).
fn init_logits(g: Granularity, labels: &[u32], k: usize, c: f64) -> Vec<f32> {
    match g {
        Granularity::PerExample => {
            let mut v = vec![0.0f32; labels.len() * k];
            for (i, &y) in labels.iter().enumerate() {
                v[i * k + y as usize] = c as f32;
            }
            v
        }
        Granularity::PerClass => {
            let mut v = vec![0.0f32; k * k];
            for i in 0..k {
                v[i * k + i] = c as f32;
            }
            v
        }
    }
}

/// softmax(row / τ) of each row.
fn soft_rows(logits: &[f32], k: usize, tau: f64) -> Vec<f32> {
    let mut out = Vec::with_capacity(logits.len());
    for row in logits.chunks_exact(k) {
        let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
        let e: Vec<f64> = row.iter().map(|&x| exp((x as f64 - m) / tau)).collect();
        let s: f64 = e.iter().sum();
        out.extend(e.iter().map(|x| (x / s) as f32));
    }
    out
}

/// `∂L_train/∂ℓ_bj` of the soft cross-entropy (2) with respect to the batch's label
/// logits, from the model's logits `z` and the batch's soft labels (both B×K); trusted
/// rows (fixed one-hot labels) get zero.
pub fn label_logit_grad(z: &[f32], soft: &[f32], trusted: &[bool], k: usize, tau: f64) -> Vec<f32> {
    let b = trusted.len();
    let mut out = vec![0.0f32; b * k];
    for bi in 0..b {
        if trusted[bi] {
            continue;
        }
        let zr = &z[bi * k..(bi + 1) * k];
        let m = zr.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
        let lse = m + ln(zr.iter().map(|&x| exp(x as f64 - m)).sum::<f64>());
        let g: Vec<f64> = zr.iter().map(|&x| -(x as f64 - lse) / b as f64).collect();
        let y = &soft[bi * k..(bi + 1) * k];
        let dot: f64 = (0..k).map(|j| y[j] as f64 * g[j]).sum();
        for j in 0..k {
            out[bi * k + j] = (y[j] as f64 * (g[j] - dot) / tau) as f32;
        }
    }
    out
}

/// Steps (2)-(5) for one batch: the meta loss at the looked-ahead weights and
/// `∇_ℓ L_meta(θ'(ℓ))` with respect to the batch's label logits (B×K, row-major), for a
/// training batch `(input, soft targets B×K, trusted)` and a meta batch `(input, labels)`.
#[allow(clippy::too_many_arguments)]
pub fn label_hypergradient(
    net: &Network,
    params: &ParamSet,
    buffers: &mut Buffers,
    batch: (Input, &[f32], &[bool]),
    tau: f64,
    meta: (Input, &[u32]),
    la: LookAhead,
    rng: &mut ChaCha8Rng,
) -> Result<(f32, Vec<f32>)> {
    let (input, targets, trusted) = batch;
    let k = net.classes;
    let loss = |z: Mat<Tp>| loss::soft_cross_entropy(z, targets.to_vec());
    hypergrad::hypergradient(
        net,
        params,
        buffers,
        TrainBatch { input, loss: &loss },
        meta,
        la,
        rng,
        |z| label_logit_grad(z, targets, trusted, k, tau),
    )
}

/// The method plugged into the training loop.
pub struct SoftLabels<'d> {
    k: usize,
    granularity: Granularity,
    tau: f64,
    /// Label logits, rows of K (N rows per example, K rows per class).
    logits: Vec<f32>,
    /// The rows' optimizer (f32 moments, one Adam step count per row).
    optimizer: MetaOptimizer<f32>,
    alpha: f32,
    eps0: f32,
    mask: Option<Vec<bool>>,
    sampler: MetaSampler<'d>,
    given: Vec<u32>,
    clean: Vec<u32>,
    trusted: Vec<bool>,
    meta_loss_sum: f64,
    meta_loss_count: u64,
}

impl<'d> SoftLabels<'d> {
    /// The method for `ds` trained on `(labels, trusted)`, drawing meta batches from
    /// `meta_pool` (labelled as `meta_set` says), label learning rate `label_lr`, the
    /// look-ahead moving the parameters of `mask` (`None`: all).
    pub fn new(
        p: &Params,
        ds: &'d Dataset,
        (labels, trusted): (&[u32], &[bool]),
        meta_set: MetaSet,
        meta_pool: Vec<u32>,
        label_lr: f64,
        mask: Option<Vec<bool>>,
    ) -> SoftLabels<'d> {
        let k = ds.meta.num_classes;
        let meta_labels = match meta_set {
            MetaSet::Trusted => ds.train.y.clone(),
            _ => labels.to_vec(),
        };
        let logits = init_logits(p.granularity, labels, k, initial_scale(p, k));
        let rows = logits.len() / k;
        SoftLabels {
            k,
            granularity: p.granularity,
            tau: p.temperature,
            logits,
            optimizer: MetaOptimizer::new(p.label_optimizer, label_lr, rows, k),
            alpha: p.virtual_lr,
            eps0: p.eps0,
            mask,
            sampler: MetaSampler::new(
                meta_pool,
                p.meta_batch_size,
                true,
                meta_labels,
                Decoder::new(ds, &ds.train),
            ),
            given: labels.to_vec(),
            clean: ds.train.y.clone(),
            trusted: trusted.to_vec(),
            meta_loss_sum: 0.0,
            meta_loss_count: 0,
        }
    }

    /// The label-logit row an example uses.
    fn row_of(&self, i: u32) -> usize {
        match self.granularity {
            Granularity::PerExample => i as usize,
            Granularity::PerClass => self.given[i as usize] as usize,
        }
    }

    /// Soft labels of the batch (trusted examples: their one-hot clean label).
    fn batch_targets(&self, idx: &[u32]) -> Vec<f32> {
        let k = self.k;
        let mut out = Vec::with_capacity(idx.len() * k);
        for &i in idx {
            if self.trusted[i as usize] {
                let mut row = vec![0.0f32; k];
                row[self.clean[i as usize] as usize] = 1.0;
                out.extend(row);
            } else {
                let r = self.row_of(i);
                out.extend(soft_rows(&self.logits[r * k..(r + 1) * k], k, self.tau));
            }
        }
        out
    }

    /// Writes `labels.safetensors` (the logits and their soft labels) and
    /// `class_similarity.json` into `out`.
    fn write_outputs(&self, out: &Path) -> Result<()> {
        let k = self.k;
        let rows = self.logits.len() / k;
        let tensor = |name: &str, data: Vec<f32>| NamedTensor {
            name: name.into(),
            shape: vec![rows, k],
            data,
        };
        let soft = soft_rows(&self.logits, k, self.tau);
        write_safetensors(
            &out.join(LABELS_FILE),
            &[
                tensor("logits", self.logits.clone()),
                tensor("soft_labels", soft),
            ],
            None,
        )?;
        MatrixFile::from_matrix(&self.class_similarity()).save(&out.join(CLASS_SIMILARITY_FILE))
    }

    /// Mean learned label (trusted: one-hot) of the training examples of each true class.
    fn class_similarity(&self) -> Matrix {
        let k = self.k;
        let all: Vec<u32> = (0..self.given.len() as u32).collect();
        let t = self.batch_targets(&all);
        let mut m = Matrix::zeros(k);
        let mut counts = vec![0usize; k];
        for (i, &y) in self.clean.iter().enumerate() {
            counts[y as usize] += 1;
            for j in 0..k {
                m.data[y as usize * k + j] += t[i * k + j] as f64;
            }
        }
        for (c, &cnt) in counts.iter().enumerate() {
            for j in 0..k {
                m.data[c * k + j] /= cnt.max(1) as f64;
            }
        }
        m
    }

    /// Share of corrupted untrusted examples whose learned label's arg-max is the true class.
    fn correction_rate(&self) -> Option<f64> {
        let k = self.k;
        let (mut hit, mut total) = (0usize, 0usize);
        for i in 0..self.given.len() {
            if self.trusted[i] || self.given[i] == self.clean[i] {
                continue;
            }
            total += 1;
            let r = self.row_of(i as u32);
            let row = &self.logits[r * k..(r + 1) * k];
            if argmax_rows(row, k)[0] == self.clean[i] as usize {
                hit += 1;
            }
        }
        (total > 0).then(|| hit as f64 / total as f64)
    }

    /// Applies the batch's label-logit hypergradient `h` (B×K) to the rows it touches;
    /// returns the largest change of a logit.
    fn update_rows(&mut self, idx: &[u32], h: &[f32]) -> f64 {
        let k = self.k;
        // Sum per row first (per-class rows collect many examples).
        let mut per_row: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
        for (bi, &i) in idx.iter().enumerate() {
            if self.trusted[i as usize] {
                continue;
            }
            let acc = per_row
                .entry(self.row_of(i))
                .or_insert_with(|| vec![0.0; k]);
            for j in 0..k {
                acc[j] += h[bi * k + j] as f64;
            }
        }
        let mut moved = 0.0f64;
        for (r, g) in per_row {
            let row = &mut self.logits[r * k..(r + 1) * k];
            let before = row.to_vec();
            self.optimizer.step_row(r, row, &g);
            for (a, b) in row.iter().zip(&before) {
                moved = moved.max((a - b).abs() as f64);
            }
        }
        moved
    }
}

/// The largest change one meta step may make to one soft label's logit before the run is
/// called diverged.
///
/// A logit that moves by more than a few tens takes a probability from 1 to nothing; a step
/// of 1,000 is no adjustment but a rewrite: the label learning rate is off by orders of
/// magnitude (`label_lr: 1e6`), and what follows trains on garbage targets while every
/// loss stays finite. The default Adam steps are at most about the label learning rate
/// (≤ 0.5). (MLC's T has its own rule, on the mean change per epoch, since its default SGD
/// step is heavy-tailed: `train_mlc::T_CHURN_LIMIT`.)
pub const META_STEP_LIMIT: f64 = 1000.0;

/// The divergence rule of the labels ([`META_STEP_LIMIT`]), for a step whose largest logit
/// change was `moved`.
fn check_label_step(moved: f64, info: &StepInfo) -> Result<()> {
    ensure!(
        moved.is_finite() && moved <= META_STEP_LIMIT,
        "training diverged: one meta step moved a soft label's logit by {moved:.3e} at epoch \
         {} batch {} (more than {META_STEP_LIMIT}, a rewrite rather than a step): `label_lr` \
         is too large",
        info.epoch + 1,
        info.batch + 1
    );
    Ok(())
}

#[derive(Serialize, Deserialize)]
struct State {
    steps: Vec<u32>,
    meta_loss_sum: f64,
    meta_loss_count: u64,
}

impl Objective for SoftLabels<'_> {
    fn step(&mut self, s: &mut StepCtx) -> Result<StepOut> {
        let idx = s.batch.indices.clone();
        let trusted = s.batch.trusted.clone();
        let targets = self.batch_targets(&idx);
        let (meta_input, meta_labels) = self.sampler.draw(s.rng)?;
        let batch = (
            s.batch.input.clone(),
            targets.as_slice(),
            trusted.as_slice(),
        );
        let la = LookAhead {
            alpha: self.alpha,
            eps0: self.eps0,
            mask: self.mask.as_deref(),
        };
        let (meta_loss, h) = label_hypergradient(
            s.net,
            s.params,
            s.buffers,
            batch,
            self.tau,
            (meta_input, &meta_labels),
            la,
            s.rng,
        )?;
        self.meta_loss_sum += meta_loss as f64;
        self.meta_loss_count += 1;
        ensure!(
            h.iter().all(|x| x.is_finite()),
            "training diverged: the label hypergradient is not finite at epoch {} batch {}",
            s.info.epoch + 1,
            s.info.batch + 1
        );
        let moved = self.update_rows(&idx, &h);
        check_label_step(moved, &s.info)?;
        // (6): the real step with the updated labels.
        let targets = self.batch_targets(&idx);
        let logits: Mat<Tp> = s.forward(Mode::Train);
        s.backward_and_update(loss::soft_cross_entropy(logits, targets))
    }

    fn state(&self) -> MethodState {
        let rows = self.logits.len() / self.k;
        let json = serde_json::to_value(State {
            steps: self.optimizer.steps.clone(),
            meta_loss_sum: self.meta_loss_sum,
            meta_loss_count: self.meta_loss_count,
        })
        .expect("serializable");
        let t = |name: &str, d: &[f32]| NamedTensor {
            name: name.into(),
            shape: vec![rows, self.k],
            data: d.to_vec(),
        };
        MethodState {
            json,
            tensors: vec![
                t("logits", &self.logits),
                t("adam_m", &self.optimizer.m),
                t("adam_v", &self.optimizer.v),
            ],
        }
    }

    fn load_state(
        &mut self,
        json: &serde_json::Value,
        tensors: &BTreeMap<String, NamedTensor>,
    ) -> Result<()> {
        let st: State =
            serde_json::from_value(json.clone()).context("soft-label checkpoint state")?;
        let read = |name: &str| -> Result<Vec<f32>> {
            let t = tensors
                .get(name)
                .with_context(|| format!("soft-label checkpoint lacks {name}"))?;
            ensure!(
                t.data.len() == self.logits.len(),
                "soft-label checkpoint: {name} has {} values, expected {}",
                t.data.len(),
                self.logits.len()
            );
            Ok(t.data.clone())
        };
        let (logits, m, v) = (read("logits")?, read("adam_m")?, read("adam_v")?);
        self.optimizer
            .restore(m, v, st.steps)
            .context("soft-label checkpoint")?;
        self.logits = logits;
        self.meta_loss_sum = st.meta_loss_sum;
        self.meta_loss_count = st.meta_loss_count;
        Ok(())
    }

    fn epoch_extra(&mut self, _net: &Network, _params: &ParamSet) -> BTreeMap<String, f64> {
        let mut e = BTreeMap::new();
        if self.meta_loss_count > 0 {
            e.insert(
                "meta_loss".to_string(),
                self.meta_loss_sum / self.meta_loss_count as f64,
            );
        }
        if let Some(r) = self.correction_rate() {
            e.insert("label_correction_rate".to_string(), r);
        }
        self.meta_loss_sum = 0.0;
        self.meta_loss_count = 0;
        e
    }
}
