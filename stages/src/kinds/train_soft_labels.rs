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
//! is the shared finite-difference hypergradient (`nn::hypergrad`), with the closed form
//!
//! ```text
//! ∂L_train/∂L_bj = (1/τ) ŷ_bj (g_bj − Σ_k ŷ_bk g_bk),   g_bk = −log p_θ(k | x_b) / B
//! ```
//!
//! at `θ ± εv`. Trusted examples train on their clean one-hot labels (not learned).
//!
//! **Defaults, and why** (measured on the embedded digits, MLP 128-128, Adam 1e-3, batch 32,
//! 5 % trusted; noisy runs seeds 1-2, clean runs seeds 1-3). A row of label logits is stepped once per batch that holds one
//! of its examples: a per-example row about once per epoch, a per-class row in nearly
//! every batch. Adam moves each logit by about β per step whatever the hypergradient's
//! scale (which is tiny: it carries the factor α/B), so whether an arg-max can change is
//! decided by β times the number of steps against the initial gap c = 4.51 (ε = 0.1)
//! between the given class's logit and the others'. The first defaults (β = 0.1, no
//! warm-up, 20 epochs) move a per-example logit by about 2 at most: no label changed its arg-max
//! (correction rate 0 % at every noise level). The defaults now are:
//!
//! * `per_example` labels with a `trusted` meta set: β = 0.5 after `warmup_epochs` = 10
//!   epochs of plain CE. With `epochs: 10` (the 20-epoch budget of the other methods, as
//!   `pipeline.yaml` sets it) the labels correct 59-81 % of the corrupted labels (flip and
//!   uniform noise, strengths 0.2-0.8; 72-92 % with the default 20 epochs after the
//!   warm-up), and test error averaged over the strengths 0, 0.2, ..., 0.8 falls from
//!   21.6 to 11.1 % under flip noise and stays at 6.7 % under uniform noise (6.4 before),
//!   against 38.3 / 8.3 % for CE and 5.6 / 6.8 % for GLC: GLC stays better under flip
//!   noise. The cost is on nearly clean labels: every label-moving setting tried also
//!   changes the arg-max of some correct labels (the meta set is only the ~64 trusted
//!   examples), and at strength 0 test accuracy drops from 98.7 to 97.5 % (CE 98.1 %).
//!   The warm-up is what keeps that cost small: without it β = 0.5 loses 5.6 points at
//!   strength 0 (β = 0.3: 3.5) for the same correction. Adam's sign-like steps are kept
//!   over SGD, which needs β ≈ 1000 (the α/B factor), corrects less under strong uniform
//!   noise (43 % at 0.8) and costs as much at strength 0; β ≥ 1 corrects less and
//!   changes more correct labels.
//! * `per_example` labels with `next_batch` (no trusted data): β = 0.1, no warm-up. The
//!   meta batches carry the training labels themselves, so there is nothing to correct
//!   and larger steps only drift: on clean digits β = 0.2/0.3/0.5 change the arg-max of
//!   0.6/3/8 % of the labels and lose 0.8/1.7/2.7 points of test accuracy (β = 0.1: 99.0 %,
//!   one-hot CE 98.2 %, label smoothing 99.1 %); a 5-epoch warm-up costs 0.6 points here.
//! * `per_class` labels: β = 0.02, no warm-up (a row is stepped ~N/B times per epoch).
//!   A class row can only correct where most examples given that label belong to another
//!   class (flip noise ≥ 0.5): there it corrects 75-80 %, and it can never correct uniform
//!   noise. β = 0.1 (the first default) overshoots (flip 0.8: 52 % accuracy, against 80 %
//!   at 0.02); clean accuracy is 99.0 % at 0.02, 98.9 % at 0.1; warm-up does not help.
//!
//! The temperature is left at τ = 1: only L/τ enters (1), and Adam's steps ignore the
//! hypergradient's scale, so with the initial logits τ·c (the smoothing ε at any τ) a
//! temperature τ acts like dividing β by τ.
//!
//! Metrics name the method `soft_labels` (per example) or `soft_labels_per_class`.
//!
//! Inputs: `data`, optionally `noise` (without it: clean labels, `meta_set` must be
//! `next_batch`). Outputs: `metrics.json` (per epoch and final `label_correction_rate`: share
//! of the corrupted untrusted examples whose learned label's arg-max is the true class;
//! `meta_loss` per epoch), `weights.safetensors`, `labels.safetensors` (`logits` and
//! `soft_labels`, N×K for `per_example`, K×K for `per_class`), `class_similarity.json` (K×K:
//! the mean learned label of the training examples of each true class,
//! `noise::MatrixFile`), `log/timings.json`.

use std::collections::BTreeMap;

use anyhow::{bail, ensure, Context, Result};
use dfdx::prelude::*;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::data::dataset::Dataset;
use crate::kinds::inputs;
use crate::kinds::train::{
    default_batch_size, default_epochs, default_eval_batch_size, default_model, default_optimizer,
};
use crate::metrics::{DatasetId, Metrics, NoiseId};
use crate::nn::batch::{input_kind, Decoder};
use crate::nn::checkpoint::MethodState;
use crate::nn::device::{host, Mat, Tp};
use crate::nn::hypergrad;
use crate::nn::loss;
use crate::nn::model::{Input, Mode, ModelSpec, Network};
use crate::nn::objectives::{LossObjective, Target};
use crate::nn::optim::OptimizerSpec;
use crate::nn::params::{write_safetensors, Buffers, NamedTensor, ParamSet};
use crate::nn::schedule::Schedule;
use crate::nn::trainer::{Objective, PhaseSpec, Session, StepCtx, StepOut};
use crate::noise::{Matrix, MatrixFile, NoisyLabels};
use crate::StageContext;

pub const VERSION: u32 = 1;

pub const LABELS_FILE: &str = "labels.safetensors";
pub const CLASS_SIMILARITY_FILE: &str = "class_similarity.json";

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
pub enum LookAhead {
    Full,
    LastLayer,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelOptimizer {
    Sgd,
    Adam,
}

/// Params of a `train_soft_labels` stage. Model and optimisation fields mean what they
/// mean for `train` and have the same defaults.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// The network (default: MLP `[128, 128]`).
    #[serde(default = "default_model")]
    pub model: ModelSpec,
    /// Starting weights from a file ([`crate::nn::init`]): `{ path, sha256, skip }`.
    /// Default: none (random initialisation from the seed).
    #[serde(default)]
    pub init: Option<crate::nn::init::InitWeights>,
    /// Model optimizer (default Adam, lr 1e-3).
    #[serde(default = "default_optimizer")]
    pub optimizer: OptimizerSpec,
    /// Model learning-rate schedule (default constant).
    #[serde(default)]
    pub schedule: Schedule,
    /// Epochs with learned labels (default 20).
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    /// Epochs of plain CE before labels are learned, run before `epochs` (default: 10 for
    /// `per_example` labels with a `trusted` meta set, 0 otherwise; see "Defaults").
    #[serde(default)]
    pub warmup_epochs: Option<usize>,
    /// Training batch size (default 32).
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Evaluation batch size (default 500; does not change results).
    #[serde(default = "default_eval_batch_size")]
    pub eval_batch_size: usize,
    /// CIFAR augmentation (default false).
    #[serde(default)]
    pub augment: bool,
    /// `per_example` (default) or `per_class` label logits.
    #[serde(default = "default_granularity")]
    pub granularity: Granularity,
    /// ε of the label smoothing the initial labels equal (default 0.1; at temperature τ the
    /// initial logits are τ·c so that softmax(τ·c·onehot / τ) is that smoothing).
    #[serde(default = "default_init_smoothing")]
    pub init_smoothing: f64,
    /// The initial logits' scale c (logits c·onehot), overriding `init_smoothing` (default
    /// none; used as given, not multiplied by τ).
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
    pub look_ahead: LookAhead,
    /// α of the virtual SGD step (3) (default 0.1).
    #[serde(
        default = "default_virtual_lr",
        deserialize_with = "crate::nn::optim::learning_rate"
    )]
    pub virtual_lr: f32,
    /// Optimizer of the label logits: `adam` (default, per-entry moments) or `sgd`.
    #[serde(default = "default_label_optimizer")]
    pub label_optimizer: LabelOptimizer,
    /// β, the label learning rate: the size of one label step (5) in logit units (default:
    /// `per_example` 0.5 with a `trusted` meta set and 0.1 with `next_batch`, `per_class`
    /// 0.02; see "Defaults").
    #[serde(default, deserialize_with = "crate::nn::optim::learning_rate_opt_f64")]
    pub label_lr: Option<f64>,
    /// eps0 of the finite difference (default 0.01).
    #[serde(default = "default_eps0")]
    pub eps0: f32,
}

impl Params {
    /// Refuses sizes that cannot be meant ([`crate::bounds`]): epochs, batches, the network.
    pub fn check_bounds(&self) -> Result<(), String> {
        use crate::bounds::{model, training};
        training(
            self.epochs,
            self.warmup_epochs.unwrap_or(0),
            self.batch_size,
            self.eval_batch_size,
            self.meta_batch_size,
        )?;
        model("model", &self.model)
    }
}

fn default_granularity() -> Granularity {
    Granularity::PerExample
}
fn default_init_smoothing() -> f64 {
    0.1
}
fn default_temperature() -> f64 {
    1.0
}
fn default_meta_set() -> MetaSet {
    MetaSet::Auto
}
fn default_meta_batch_size() -> usize {
    100
}
fn default_look_ahead() -> LookAhead {
    LookAhead::Full
}
fn default_virtual_lr() -> f32 {
    0.1
}
fn default_label_optimizer() -> LabelOptimizer {
    LabelOptimizer::Adam
}
fn default_eps0() -> f32 {
    0.01
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
    (top / other).ln()
}

pub fn run(p: &Params, ctx: &StageContext) -> Result<()> {
    let ds = inputs::load_data(ctx)?;
    let noise = inputs::load_noise_opt(ctx)?;
    let metrics = train(p, ctx, &ds, noise.as_ref())?;
    metrics.save(&ctx.out_dir)
}

/// Trains with learned labels; writes weights, labels, the class similarity and timings.
pub fn train(
    p: &Params,
    ctx: &StageContext,
    ds: &Dataset,
    noise: Option<&NoisyLabels>,
) -> Result<Metrics> {
    let k = ds.meta.num_classes;
    let n = ds.train.len();
    ensure!(p.epochs > 0, "params.epochs must be positive");
    ensure!(
        p.batch_size > 0 && p.meta_batch_size > 0,
        "params.batch_size and params.meta_batch_size must be positive"
    );
    ensure!(p.temperature > 0.0, "params.temperature must be positive");
    ensure!(
        (0.0..1.0).contains(&p.init_smoothing) && p.init_smoothing > 0.0,
        "params.init_smoothing must be in (0, 1)"
    );
    let (labels, trusted): (Vec<u32>, Vec<bool>) = match noise {
        Some(nl) => {
            inputs::check_noise_fits(nl, ds)?;
            (nl.noisy.clone(), nl.trusted_mask())
        }
        None => (ds.train.y.clone(), vec![false; n]),
    };
    let trusted_idx: Vec<u32> = (0..n as u32).filter(|&i| trusted[i as usize]).collect();
    let meta_set = match p.meta_set {
        MetaSet::Auto if !trusted_idx.is_empty() => MetaSet::Trusted,
        MetaSet::Auto => MetaSet::NextBatch,
        MetaSet::Trusted if trusted_idx.is_empty() => {
            bail!("params.meta_set is `trusted` but there are no trusted examples (no `noise` input, or trusted_fraction 0)")
        }
        m => m,
    };
    let (label_lr, warmup_epochs) = label_schedule(p, meta_set);
    ensure!(
        label_lr.is_finite() && label_lr > 0.0,
        "params.label_lr must be positive, got {label_lr}"
    );
    let c = initial_scale(p, k);
    let all: Vec<u32> = (0..n as u32).collect();

    let (net, mut params0, mut buffers0) = Network::new(&p.model, &input_kind(ds), k, ctx.seed)?;
    crate::nn::init::start(p.init.as_ref(), ctx, &mut params0, &mut buffers0)?;
    let mut session = Session::new(ctx, ds, ctx.seed, p.eval_batch_size)?;
    let (mut params, mut buffers) = (params0, buffers0);
    let phase = |name: &str, epochs: usize| PhaseSpec {
        name: name.to_string(),
        examples: all.clone(),
        labels: &labels,
        trusted: &trusted,
        epochs,
        batch_size: p.batch_size,
        optimizer: p.optimizer.clone(),
        schedule: p.schedule.clone(),
        augment: p.augment,
    };
    if warmup_epochs > 0 {
        session.run_phase(
            0,
            &phase("warmup", warmup_epochs),
            &net,
            &mut params,
            &mut buffers,
            &mut LossObjective {
                target: Target::Hard,
            },
        )?;
    }
    let meta_pool = match meta_set {
        MetaSet::Trusted => trusted_idx,
        _ => all.clone(),
    };
    let meta_labels: Vec<u32> = match meta_set {
        MetaSet::Trusted => ds.train.y.clone(),
        _ => labels.clone(),
    };
    let mask = match p.look_ahead {
        LookAhead::Full => None,
        LookAhead::LastLayer => Some(hypergrad::last_layer_mask(&params)),
    };
    let mut obj = SoftLabels {
        k,
        granularity: p.granularity,
        tau: p.temperature,
        logits: init_logits(p.granularity, &labels, k, c),
        m: vec![],
        v: vec![],
        steps: vec![],
        optimizer: p.label_optimizer,
        lr: label_lr,
        alpha: p.virtual_lr,
        eps0: p.eps0,
        mask,
        meta_pool,
        meta_labels,
        meta_batch: p.meta_batch_size,
        decoder: Decoder::new(ds, &ds.train),
        given: labels.clone(),
        clean: ds.train.y.clone(),
        trusted: trusted.clone(),
        meta_loss_sum: 0.0,
        meta_loss_count: 0,
    };
    obj.m = vec![0.0; obj.logits.len()];
    obj.v = vec![0.0; obj.logits.len()];
    obj.steps = vec![0; obj.logits.len() / k];
    session.run_phase(
        1,
        &phase("soft_labels", p.epochs),
        &net,
        &mut params,
        &mut buffers,
        &mut obj,
    )?;
    session.write_outputs(&params, &buffers)?;

    // Outputs: the labels, the class similarity.
    let rows = obj.logits.len() / k;
    let soft = obj.soft_all();
    write_safetensors(
        &ctx.out_dir.join(LABELS_FILE),
        &[
            NamedTensor {
                name: "logits".into(),
                shape: vec![rows, k],
                data: obj.logits.clone(),
            },
            NamedTensor {
                name: "soft_labels".into(),
                shape: vec![rows, k],
                data: soft.clone(),
            },
        ],
        None,
    )?;
    let sim = obj.class_similarity();
    MatrixFile::from_matrix(&sim).save(&ctx.out_dir.join(CLASS_SIMILARITY_FILE))?;

    let history = session.history().to_vec();
    let last = history.last().context("no epoch was trained")?;
    let mut extra = BTreeMap::new();
    if let Some(r) = obj.correction_rate() {
        extra.insert("label_correction_rate".to_string(), r);
    }
    Ok(Metrics {
        kind: "train_soft_labels".into(),
        method: match p.granularity {
            Granularity::PerExample => "soft_labels",
            Granularity::PerClass => "soft_labels_per_class",
        }
        .into(),
        dataset: DatasetId {
            name: ds.meta.name.clone(),
            identity: ds.meta.identity.clone(),
        },
        noise: noise.map(|nl| NoiseId {
            corruption: nl.meta.corruption.clone(),
            strength: nl.meta.strength,
            trusted_fraction: nl.meta.trusted_fraction,
            actual_noise_rate: nl.meta.actual_noise_rate,
        }),
        model: crate::nn::init::model_label(&p.model, p.init.as_ref()),
        profile: ctx.profile.clone(),
        device: crate::BACKEND.into(),
        seed: ctx.seed,
        final_test_accuracy: last.test_accuracy,
        final_test_error: last.test_error,
        epochs: history,
        extra,
    })
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
        let e: Vec<f64> = row.iter().map(|&x| ((x as f64 - m) / tau).exp()).collect();
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
        let lse = m + zr.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln();
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
    meta: (Input, Vec<u32>),
    alpha: f32,
    eps0: f32,
    mask: Option<&[bool]>,
    rng: &mut ChaCha8Rng,
) -> Result<(f32, Vec<f32>)> {
    let (input, targets, trusted) = batch;
    let k = net.classes;
    // (2)-(3): the virtual step on the soft cross-entropy.
    let logits = net.forward::<Tp>(
        params,
        buffers,
        input.clone(),
        Mode::TrainFrozenBn,
        Some(rng),
    );
    let mut g = loss::soft_cross_entropy(logits, targets.to_vec()).backward();
    let g_theta = params.grads(&mut g);
    let looked = hypergrad::look_ahead(params, &g_theta, alpha, mask);
    // (4): the meta loss and v.
    let (meta_loss, v) =
        hypergrad::meta_gradient(net, &looked, buffers, meta.0, &meta.1, mask, rng);
    // (5): the hypergradient with respect to the batch's label logits.
    let h = hypergrad::finite_difference(params, &v, alpha, eps0, |p| {
        let z: Mat =
            net.forward::<NoneTape>(p, buffers, input.clone(), Mode::TrainFrozenBn, Some(rng));
        Ok(label_logit_grad(&host(&z), targets, trusted, k, tau))
    })?;
    Ok((meta_loss, h))
}

/// The method plugged into the training loop.
pub struct SoftLabels<'d> {
    k: usize,
    granularity: Granularity,
    tau: f64,
    /// Label logits, rows of K (N rows per example, K rows per class).
    logits: Vec<f32>,
    m: Vec<f32>,
    v: Vec<f32>,
    /// Adam step count per row.
    steps: Vec<u32>,
    optimizer: LabelOptimizer,
    lr: f64,
    alpha: f32,
    eps0: f32,
    mask: Option<Vec<bool>>,
    meta_pool: Vec<u32>,
    meta_labels: Vec<u32>,
    meta_batch: usize,
    decoder: Decoder<'d>,
    given: Vec<u32>,
    clean: Vec<u32>,
    trusted: Vec<bool>,
    meta_loss_sum: f64,
    meta_loss_count: u64,
}

impl SoftLabels<'_> {
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

    fn soft_all(&self) -> Vec<f32> {
        soft_rows(&self.logits, self.k, self.tau)
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
            let arg = row
                .iter()
                .enumerate()
                .fold(
                    (0, f32::NEG_INFINITY),
                    |b, (j, &x)| if x > b.1 { (j, x) } else { b },
                )
                .0;
            if arg == self.clean[i] as usize {
                hit += 1;
            }
        }
        (total > 0).then(|| hit as f64 / total as f64)
    }

    fn meta_indices(&self, rng: &mut impl Rng) -> Vec<u32> {
        let m = self.meta_batch.min(self.meta_pool.len());
        let mut pool = self.meta_pool.clone();
        for i in 0..m {
            let j = rng.random_range(i..pool.len());
            pool.swap(i, j);
        }
        pool.truncate(m);
        pool.sort_unstable();
        pool
    }

    /// Applies the batch's label-logit hypergradient `h` (B×K) to the rows it touches.
    fn update_rows(&mut self, idx: &[u32], h: &[f32]) {
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
        for (r, g) in per_row {
            match self.optimizer {
                LabelOptimizer::Sgd => {
                    for j in 0..k {
                        self.logits[r * k + j] -= (self.lr * g[j]) as f32;
                    }
                }
                LabelOptimizer::Adam => {
                    self.steps[r] += 1;
                    let t = self.steps[r] as i32;
                    let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8f64);
                    for j in 0..k {
                        let e = r * k + j;
                        let m = b1 * self.m[e] as f64 + (1.0 - b1) * g[j];
                        let v = b2 * self.v[e] as f64 + (1.0 - b2) * g[j] * g[j];
                        self.m[e] = m as f32;
                        self.v[e] = v as f32;
                        let mh = m / (1.0 - b1.powi(t));
                        let vh = v / (1.0 - b2.powi(t));
                        self.logits[e] -= (self.lr * mh / (vh.sqrt() + eps)) as f32;
                    }
                }
            }
        }
    }
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
        let midx = self.meta_indices(s.rng);
        let meta = (
            self.decoder.input(&midx, None)?,
            midx.iter()
                .map(|&i| self.meta_labels[i as usize])
                .collect::<Vec<u32>>(),
        );
        let batch = (
            s.batch.input.clone(),
            targets.as_slice(),
            trusted.as_slice(),
        );
        let (meta_loss, h) = label_hypergradient(
            s.net,
            s.params,
            s.buffers,
            batch,
            self.tau,
            meta,
            self.alpha,
            self.eps0,
            self.mask.as_deref(),
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
        self.update_rows(&idx, &h);
        // (6): the real step with the updated labels.
        let targets = self.batch_targets(&idx);
        let logits: Mat<Tp> = s.forward(Mode::Train);
        s.backward_and_update(loss::soft_cross_entropy(logits, targets))
    }

    fn state(&self) -> MethodState {
        let rows = self.logits.len() / self.k;
        let json = serde_json::to_value(State {
            steps: self.steps.clone(),
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
                t("adam_m", &self.m),
                t("adam_v", &self.v),
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
        self.steps = st.steps;
        self.meta_loss_sum = st.meta_loss_sum;
        self.meta_loss_count = st.meta_loss_count;
        for (name, dst) in [
            ("logits", &mut self.logits),
            ("adam_m", &mut self.m),
            ("adam_v", &mut self.v),
        ] {
            let t = tensors
                .get(name)
                .with_context(|| format!("soft-label checkpoint lacks {name}"))?;
            ensure!(
                t.data.len() == dst.len(),
                "soft-label checkpoint: {name} has {} values, expected {}",
                t.data.len(),
                dst.len()
            );
            dst.copy_from_slice(&t.data);
        }
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
