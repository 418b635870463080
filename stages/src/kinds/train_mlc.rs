//! `train_mlc`: Meta Loss Correction (Wang, Hu, Hu, "Training Noise-Robust Deep Neural
//! Networks via Meta-Learning", CVPR 2020).
//!
//! A noise transition matrix `T` (`T[i][j] = P(observed j | true i)`) is learned by
//! meta-learning on the small trusted set, instead of being estimated once by a heuristic
//! as GLC and Forward do. Two variants:
//!
//! ## `variant: textbook` (default)
//!
//! A persistent `T`, initialised to the identity (or to GLC's estimate `Ĉ` from an upstream
//! `train` stage with `method: glc`). Forward correction on probabilities:
//!
//! ```text
//! L_train(θ, T) = 1/B Σ_i −log( Σ_j softmax(f_θ(x_i))_j · T[j, ỹ_i] )        (1)
//! ```
//!
//! Every `t_update_interval` steps, on a noisy batch and a trusted (meta) batch:
//!
//! ```text
//! θ'  = θ − α ∇_θ L_train(θ, T)                        virtual SGD step        (2)
//! L_meta(θ') = 1/M Σ_m CE(f_θ'(x_m), y_m)              plain CE, trusted batch (3)
//! h   = ∇_T L_meta(θ'(T))                              hypergradient           (4)
//! T   ← Π(T − β h)                                     meta step + projection  (5)
//! θ   ← optimiser step on ∇_θ L_train(θ, T)            the real step, new T    (6)
//! ```
//!
//! `Π` makes `T` row-stochastic: `clamp_normalize` (clamp at 0, divide each row by its
//! sum) or `softmax` (T is kept as logits `S`, `T = softmax_rows(S)`, and the step (5) is
//! taken on `S` through the softmax's Jacobian).
//!
//! The step (5) is plain SGD with β = 1 by default: SGD moves an entry of T in proportion
//! to its hypergradient (≈ α times the alignment of that entry's training gradient with the
//! meta gradient). Adam (`t_optimizer: adam`, β = 0.01) moves every entry by about β per
//! step whatever the size of its hypergradient, so off-diagonal entries whose hypergradient
//! is mostly sampling noise move as fast as entries carrying signal, and the clamp at 0
//! turns their zero-mean walk into an upward ratchet that the row normalisation pays for
//! with the diagonal.
//!
//! ## What T does at low noise, and bounding the meta step
//!
//! T leaves the identity even when there is no noise, and MLC then loses 2-3 points to
//! plain cross-entropy. The method does this, not the finite difference below: an
//! independent PyTorch loop with the exact second-order hypergradient
//! (`bench/mlc_reference.sh`) loses the same points, and on its own trajectory the finite
//! difference agrees with the exact hypergradient to a median relative error of 2·10⁻³
//! (cosine ≥ 0.9998 at 40 steps). Two things drive it:
//!
//! * The hypergradient is heavy-tailed. Its `∂L/∂T[j, c]` terms carry `p_bj / q_b`, large
//!   for a training example whose label the network finds unlikely, so one batch can give
//!   |h| of 1 to 10 where a typical entry is 10⁻². At β = 1, T leaves the identity within
//!   the first few dozen steps, while the network is still near its initialisation.
//! * The one-step meta objective rewards explaining hard clean examples as noise, and the
//!   clamp at 0 keeps every off-diagonal entry that sampling noise ever pushed up. At zero
//!   noise T's mass moves among the classes the network confuses (on Fashion-MNIST within
//!   the tops, T-shirt / pullover / dress / coat / shirt, and within the shoes): mean
//!   diagonal ≈ 0.46 after 10 epochs, bounded step or not.
//!
//! `t_max_step` clips each entry's change per step (0.02 below). It removes the early
//! jumps, which is what costs accuracy on a large training set, but it also slows T where
//! the noise is extreme and T must travel far. Test accuracy %, flip noise, 5 % trusted:
//!
//! ```text
//! Fashion-MNIST (GLC's MNIST protocol, seed 1)   strength 0.0   0.2     0.4
//! CE                                                    88.33   87.87   84.08
//! MLC, unbounded (default)                              85.54   85.63   85.57
//! MLC, t_max_step 0.02                                  87.47   86.78   87.09
//! exact second-order reference, unbounded               85.75   85.44   85.00
//! exact second-order reference, ≤ 0.02 per step         87.35   86.71   86.32
//!
//! Digits (default profile, mean of 3 seeds)      strength 0.0   0.8     0.9     1.0
//! MLC, unbounded (default)                              95.4    92.7    92.1    93.2
//! MLC, t_max_step 0.02                                  95.2    94.2    84.7    79.1
//! ```
//!
//! On the digits (1,700 images, about 1,000 meta steps) the bound leaves the low-noise cost
//! as it is and loses 7-14 points at flip 0.9-1.0, so the area under the error curve rises
//! from 5.7 to 7.6 (flip) and 10.2 to 11.5 (uniform). The default stays the unbounded
//! textbook step.
//!
//! A run whose meta steps change the rows of T by a mean L1 of more than
//! [`T_CHURN_LIMIT`] (0.5, of at most 2) over an epoch fails as diverged, naming `t_lr`: T
//! is then rewritten at every step instead of learned (`t_lr: 1e6` used to finish near
//! chance with every loss finite). A rule on a single step would not do: the default's
//! heavy-tailed hypergradient moves an entry of T by more than 1,000 now and then (1,337
//! at epoch 7 of a digits run), and the projection turns that into a rewritten row.
//!
//! T is not an estimate of the true C: the meta objective (3) only asks that one step with
//! T lowers the trusted loss, the hypergradient vanishes once the corrected gradients stop
//! hurting the trusted set, and many T do that equally well. The metrics report T's
//! distance to the true C beside the identity's and GLC's Ĉ's for that reason.
//!
//! ## `variant: official_code`
//!
//! The loop of the released code (CIFAR-10 only, see the notes of the reproduction):
//! warm-up with plain CE, then per iteration `T` reset to `I`, applied to the LOGITS,
//!
//! ```text
//! L_train(θ, T) = Σ_i CE( softmax(f_θ(x_i) · T), ỹ_i )     summed over the batch   (1')
//! θ' = θ − 1e-3 · ∇_θ L_train(θ, I)
//! G  = ∇_T [ 1/M Σ_m CE(f_θ'(x_m), y_m) ]  at T = I
//! T  = colnorm( max(I − 0.11 · G, 0) )      each non-zero column divided by its sum
//! θ  ← SGD step on L_train(θ, T)
//! ```
//!
//! with the whole trusted set as the meta set. One objective ([`Mlc`]) runs either loop
//! ([`TLoop`]: [`Textbook`] or [`Official`], each with its own T and checkpointed state);
//! both share the meta batches, the hypergradient ([`t_hypergradient`]) and the record of
//! T ([`MetaCore`]).
//!
//! ## The hypergradient without second derivatives
//!
//! dfdx has no second derivatives, so (4) is the finite-difference form of DARTS
//! (Liu et al., 2019): with `v = ∇_θ' L_meta(θ')` and `ε = eps0 / ‖v‖`,
//!
//! ```text
//! ∇_T L_meta(θ'(T)) ≈ −α · ( ∇_T L_train(θ + εv, T) − ∇_T L_train(θ − εv, T) ) / (2ε)
//! ```
//!
//! implemented once in [`crate::nn::hypergrad::hypergradient`] and shared with
//! `train_soft_labels`.
//!
//! Both `∇_T L_train` at `θ ± εv` are closed forms of the softmax outputs (no backward
//! pass through the network is needed):
//!
//! ```text
//! textbook:  ∂L/∂T[j, c] = −1/B Σ_{b untrusted, ỹ_b = c} p_bj / q_b,   q_b = Σ_j p_bj T[j, ỹ_b]
//! official:  ∂L/∂T[i, j] = Σ_b z_bi (softmax(z_b T)_j − [j = ỹ_b])       (sum over the batch)
//! ```
//!
//! so one MLC update costs three forward/backward passes and two forwards.
//!
//! Inputs: `data` (dataset), `noise` (noisy labels with the trusted set and the true C),
//! optionally `glc` (a `train` stage with `method: glc` on the same noise: its `c_hat.json`
//! initialises T with `t_init: glc`, and its distance to the true C is reported beside
//! MLC's). Outputs: `metrics.json` (per epoch: `meta_loss`, `t_frobenius_to_true_c`,
//! `t_mean_row_l1_to_true_c`; final: the same for the final T, for the identity and for
//! GLC's Ĉ when given, and `best_test_accuracy`; with `continue_from: best`, the
//! warm-up's best evaluation as `warmup_best_test_accuracy` and `warmup_best_iteration`),
//! `weights.safetensors`, `model.json`,
//! `t_final.json`
//! (`noise::MatrixFile`), `t_epochs.json` (T after every epoch), `log/timings.json`.

use std::collections::BTreeMap;

use anyhow::{bail, ensure, Context, Result};
use dfdx::prelude::*;
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
use crate::nn::checkpoint::{Evaluation, MethodState};
use crate::nn::device::{Dev, Mat, Tp};
use crate::nn::hypergrad::{self, LookAhead, MetaSampler, TrainBatch};
use crate::nn::loss;
use crate::nn::model::{Input, Mode, Network};
use crate::nn::objectives::{LossObjective, Target};
use crate::nn::ops::{self, Ops};
use crate::nn::optim::{MetaOptimizer, MetaOptimizerKind};
use crate::nn::params::{NamedTensor, ParamSet};
use crate::nn::trainer::{Objective, StepCtx, StepInfo, StepOut};
use crate::noise::{Matrix, MatrixFile, NoisyLabels};
use crate::outputs::{C_HAT_FILE, T_EPOCHS_FILE, T_FINAL_FILE};
use crate::stage_kind::StageKind;
use crate::training::inputs::{self, check_data_and_noise};
use crate::training::{defaults, insert_distances, training_params, where_mask, Training};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Variant {
    Textbook,
    OfficialCode,
}

/// Which warm-up weights the MLC phase starts from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContinueFrom {
    /// The warm-up's last weights.
    #[default]
    Last,
    /// The weights at the warm-up's best test evaluation (every `eval_interval`
    /// iterations when set, else every epoch's end; the first of equal ones), as the
    /// released code does: its warm-up saves the weights whenever the test accuracy
    /// improves and the MLC phase loads that file (`main.py:111-113,139-141`).
    Best,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Projection {
    /// Clamp at `T_FLOOR`, then divide each row by its sum.
    ClampNormalize,
    /// Keep logits `S`, `T = softmax_rows(S)`.
    Softmax,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TInit {
    Identity,
    /// GLC's estimate from the `glc` input.
    Glc,
}

/// The optimizer of T: `sgd` or `adam` ([`MetaOptimizerKind`]).
pub type TOptimizer = MetaOptimizerKind;

training_params! {
    /// Params of a `train_mlc` stage; the network, optimizer, epochs and batch fields are
    /// the training kinds' shared ones ([`crate::training`]), `epochs` counting the
    /// MLC epochs after the warm-up.
    pub struct Params {
        /// `textbook` (default) or `official_code`.
        #[serde(default = "default_variant")]
        pub variant: Variant,
        @network
        /// Epochs of plain CE before MLC starts (default 0; the released code warms up for
        /// 30,000 of its 80,000 iterations).
        #[serde(default)]
        pub warmup_epochs: usize,
        /// Optimizer of the warm-up phase (default: `optimizer`, one recipe for both
        /// phases). The released code warms up with SGD at lr 0.1 and starts a new SGD at
        /// 1e-4 for the MLC phase (`main.py:24-25,54,120`); the MLC phase always starts a
        /// fresh optimizer.
        #[serde(default)]
        pub warmup_optimizer: Option<crate::nn::optim::OptimizerSpec>,
        /// The warm-up weights the MLC phase starts from: `last` (default) or `best`
        /// ([`ContinueFrom`]; needs a warm-up).
        #[serde(default)]
        pub continue_from: ContinueFrom,
        @batches
        /// Trusted examples drawn for each meta batch (default: all trusted examples when
        /// `official_code`, as the released code does; the training batch size otherwise, so
        /// a step costs about 3.7× a CE step (`cargo bench --bench meta_step`); capped at the
        /// trusted set's size).
        #[serde(default)]
        pub meta_batch_size: Option<usize>,
        /// α of the virtual SGD step (2) (default 0.1 textbook, 1e-3 official on a summed
        /// loss).
        #[serde(default, deserialize_with = "crate::nn::optim::learning_rate_opt")]
        pub virtual_lr: Option<f32>,
        /// β, the learning rate of T (textbook: default 1.0 with `t_optimizer: sgd`, 0.01
        /// with `adam`; official: 0.11, a plain step).
        #[serde(default, deserialize_with = "crate::nn::optim::learning_rate_opt")]
        pub t_lr: Option<f32>,
        /// Optimizer of T (textbook only; default sgd: its step follows the hypergradient's
        /// size, where Adam's moves every entry by ~β per step, noise included).
        #[serde(default = "default_t_optimizer")]
        pub t_optimizer: TOptimizer,
        /// Projection Π onto row-stochastic matrices (textbook only; default
        /// clamp_normalize).
        #[serde(default = "default_projection")]
        pub projection: Projection,
        /// Initial T (textbook only; default identity).
        #[serde(default = "default_t_init")]
        pub t_init: TInit,
        /// Update T every this many steps (textbook only; default 1).
        #[serde(default = "one")]
        pub t_update_interval: usize,
        /// Largest change of one entry of T (or of its logits S with `projection: softmax`)
        /// in one meta step, before the projection (textbook only; default none: the step
        /// is β h, unbounded). The hypergradient is heavy-tailed; a bound such as 0.02
        /// stops one batch from rewriting T, which helps at low noise on a large training
        /// set and hurts at extreme noise on a small one: see "What T does at low noise,
        /// and bounding the meta step" above.
        #[serde(default)]
        pub t_max_step: Option<f64>,
        /// eps0 of the finite difference, ε = eps0 / ‖v‖ (default 0.01).
        #[serde(default = "default_eps0")]
        pub eps0: f32,
        /// Train on trusted examples too, with plain CE, as GLC does (default true). When
        /// false the trusted set only serves as the meta set.
        #[serde(default = "yes")]
        pub train_on_trusted: bool,
    }
}

impl Params {
    /// The method its metrics report (the name tables list).
    pub fn method(&self) -> &'static str {
        match self.variant {
            Variant::Textbook => Method::Mlc.name(),
            Variant::OfficialCode => Method::MlcOfficial.name(),
        }
    }
}

impl StageKind for Params {
    const VERSION: u32 = 1;
    const METHODS: &'static [Method] = &[Method::Mlc, Method::MlcOfficial];

    /// Refuses sizes that cannot be meant ([`crate::bounds`]): epochs, batches, the network;
    /// and values the method cannot use (`t_update_interval` 0, `eps0` not positive).
    fn check(&self) -> Result<(), String> {
        use crate::bounds::{at_least_one, at_most, training, MAX_UPDATES};
        training(
            self.epochs,
            self.warmup_epochs,
            self.batch_size,
            self.eval_batch_size,
            self.meta_batch_size.unwrap_or(0),
        )?;
        at_least_one("t_update_interval", self.t_update_interval, "steps")?;
        at_most(
            "t_update_interval",
            self.t_update_interval,
            MAX_UPDATES,
            "steps",
        )?;
        if let Some(m) = self.t_max_step {
            if !(m > 0.0 && m.is_finite()) {
                return Err(format!(
                    "field `t_max_step`: must be a positive number, got {m}"
                ));
            }
        }
        if !(self.eps0 > 0.0 && self.eps0.is_finite()) {
            return Err(format!("field `eps0`: {} must be positive", self.eps0));
        }
        if self.warmup_epochs == 0 {
            for (field, set) in [
                ("warmup_optimizer", self.warmup_optimizer.is_some()),
                ("continue_from", self.continue_from != ContinueFrom::Last),
            ] {
                if set {
                    return Err(format!(
                        "field `{field}`: there is no warm-up to use it (warmup_epochs is 0)"
                    ));
                }
            }
        }
        self.model.check_bounds("model")
    }

    /// Refuses, when the pipeline loads, inputs MLC cannot train on: no `data` or `noise`,
    /// a noise stage whose params draw no trusted (meta) example, `t_init: glc` without a
    /// `glc` input.
    fn check_inputs(&self, inputs: &Inputs) -> Result<(), String> {
        check_data_and_noise(inputs, &["data", "noise", "glc"])?;
        inputs.require("noise", "the noisy labels and the trusted (meta) set")?;
        inputs.of_kinds("glc", &[Kind::Train, Kind::Command])?;
        if self.variant == Variant::Textbook && self.t_init == TInit::Glc {
            inputs.require(
                "glc",
                "the estimate `t_init: glc` starts from (a `train` stage with method glc)",
            )?;
        }
        for n in inputs.bound("noise") {
            if let (Kind::InjectNoise, TrustedShare::None(why)) = (n.kind, trusted_share(n.params))
            {
                return Err(format!(
                    "input `noise`: MLC needs a trusted (meta) set, but `{}` draws no trusted \
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
    default_variant: Variant = Variant::Textbook,
    default_t_optimizer: TOptimizer = MetaOptimizerKind::Sgd,
    default_projection: Projection = Projection::ClampNormalize,
    default_t_init: TInit = TInit::Identity,
    one: usize = 1,
    yes: bool = true,
    default_eps0: f32 = 0.01,
}

/// The carry key of the warm-up's best evaluation (`continue_from: best`).
const WARMUP_BEST: &str = "warmup_best";

/// Smallest entry `clamp_normalize` leaves in T, so that every observed class keeps a
/// non-zero probability and the corrected loss stays finite.
pub const T_FLOOR: f64 = 1e-6;

impl Params {
    fn virtual_lr(&self) -> f32 {
        self.virtual_lr.unwrap_or(match self.variant {
            Variant::Textbook => 0.1,
            Variant::OfficialCode => 1e-3,
        })
    }
    fn t_lr(&self) -> f32 {
        self.t_lr.unwrap_or(match (self.variant, self.t_optimizer) {
            (Variant::Textbook, MetaOptimizerKind::Sgd) => 1.0,
            (Variant::Textbook, MetaOptimizerKind::Adam) => 0.01,
            (Variant::OfficialCode, _) => 0.11,
        })
    }
    fn meta_batch_size(&self, trusted: usize) -> usize {
        let m = self.meta_batch_size.unwrap_or(match self.variant {
            Variant::Textbook => self.batch_size,
            Variant::OfficialCode => trusted,
        });
        m.min(trusted).max(1)
    }
}

pub fn run(p: &Params, ctx: &StageContext) -> Result<()> {
    let (ds, nl) = inputs::load_data_and_noise(ctx)?;
    let nl = nl.context("train_mlc needs a `noise` input")?;
    let glc = match ctx.input_opt("glc")? {
        Some(r) => {
            let path = r.dir.join(C_HAT_FILE);
            Some(
                MatrixFile::load(&path)?
                    .to_matrix()
                    .with_context(|| format!("reading {}", path.display()))?,
            )
        }
        None => None,
    };
    let metrics = train(p, ctx, &ds, &nl, glc.as_ref())?;
    metrics.save(&ctx.out_dir)
}

/// Trains with MLC; writes weights, T files and timings; returns the metrics.
pub fn train(
    p: &Params,
    ctx: &StageContext,
    ds: &Dataset,
    nl: &NoisyLabels,
    glc: Option<&Matrix>,
) -> Result<Metrics> {
    let k = ds.meta.num_classes;
    p.common().check()?;
    ensure!(
        p.t_update_interval > 0,
        "params.t_update_interval must be positive"
    );
    ensure!(p.eps0 > 0.0, "params.eps0 must be positive");
    inputs::check_noise_fits(nl, ds)?;
    if let Some(g) = glc {
        ensure!(
            g.k == k,
            "input `glc`: Ĉ is {0}x{0}, the dataset has {k} classes",
            g.k
        );
    }
    let trusted = nl.trusted_mask();
    let trusted_idx = where_mask(&trusted, true);
    if trusted_idx.is_empty() {
        bail!("MLC needs a trusted (meta) set, but the noise input has no trusted examples");
    }
    let train_idx: Vec<u32> = (0..trusted.len() as u32)
        .filter(|&i| p.train_on_trusted || !trusted[i as usize])
        .collect();
    let t0 = match (p.variant, p.t_init) {
        (Variant::OfficialCode, _) | (_, TInit::Identity) => Matrix::identity(k),
        (Variant::Textbook, TInit::Glc) => project_rows(
            glc.context("t_init: glc needs an input named `glc` (a train stage with method glc)")?,
        ),
    };

    let (mut run, mut params, mut buffers) = Training::new(ctx, ds, p.common())?;
    if p.warmup_epochs > 0 {
        let mut spec = run.phase(
            "warmup",
            train_idx.clone(),
            &nl.noisy,
            &trusted,
            p.warmup_epochs,
        );
        if let Some(o) = &p.warmup_optimizer {
            spec.optimizer = o.clone();
        }
        spec.keep_best = p.continue_from == ContinueFrom::Best;
        let mut obj = LossObjective {
            target: Target::Hard,
        };
        run.run_phase(0, &spec, &mut params, &mut buffers, &mut obj)?;
        // None when the checkpoint is the MLC phase's own, which restores its weights.
        if let Some((weights, at)) = run.session.take_best() {
            params.load_named(&mut buffers, &weights, "the best warm-up evaluation")?;
            run.session.set_carry(WARMUP_BEST, &at)?;
        }
    }
    let spec = run.phase("mlc", train_idx, &nl.noisy, &trusted, p.epochs);
    let core = MetaCore::new(p, ds, nl, trusted_idx);
    let (t, history) = match p.variant {
        Variant::Textbook => {
            let mut obj = Mlc::textbook(p, core, t0);
            run.run_phase(1, &spec, &mut params, &mut buffers, &mut obj)?;
            (obj.t_matrix(), obj.core.progress.history)
        }
        Variant::OfficialCode => {
            let mut obj = Mlc::official(p, core);
            run.run_phase(1, &spec, &mut params, &mut buffers, &mut obj)?;
            (obj.t_matrix(), obj.core.progress.history)
        }
    };
    run.write_outputs(&params, &buffers)?;
    MatrixFile::from_matrix(&t).save(&ctx.out_dir.join(T_FINAL_FILE))?;
    let epochs_file = serde_json::to_string_pretty(&history)? + "\n";
    std::fs::write(ctx.out_dir.join(T_EPOCHS_FILE), epochs_file)?;
    let mut extra = final_extra(&run, &t, &nl.true_c, glc);
    if let Some(at) = run.session.carry::<Evaluation>(WARMUP_BEST)? {
        extra.insert("warmup_best_test_accuracy".into(), at.test_accuracy);
        extra.insert("warmup_best_iteration".into(), at.iteration as f64);
    }
    run.metrics("train_mlc", p.method(), Some(nl), extra)
}

/// The final metrics: distances to the true C of T, of the identity and of GLC's Ĉ (when
/// given), and the best test accuracy of the MLC phase.
fn final_extra(
    run: &Training,
    t: &Matrix,
    true_c: &Matrix,
    glc: Option<&Matrix>,
) -> BTreeMap<String, f64> {
    let mut extra = BTreeMap::new();
    insert_distances(&mut extra, "t", t, true_c);
    insert_distances(&mut extra, "identity", &Matrix::identity(t.k), true_c);
    if let Some(g) = glc {
        insert_distances(&mut extra, "glc_c_hat", g, true_c);
    }
    let best = run.session.best_test_accuracy("mlc");
    extra.insert("best_test_accuracy".to_string(), best);
    extra
}

/// Clamp at [`T_FLOOR`] and normalise each row to sum 1.
pub fn project_rows(t: &Matrix) -> Matrix {
    let k = t.k;
    let mut out = t.clone();
    for i in 0..k {
        let row = &mut out.data[i * k..(i + 1) * k];
        row.iter_mut().for_each(|v| *v = v.max(T_FLOOR));
        let s: f64 = row.iter().sum();
        row.iter_mut().for_each(|v| *v /= s);
    }
    out
}

/// The released code's update: `colnorm(max(I − step · G, 0))`; a column summing to 0 is
/// left as it is.
pub fn official_t(g: &[f64], k: usize, step: f64) -> Matrix {
    let mut t = Matrix::identity(k);
    for (v, gi) in t.data.iter_mut().zip(g) {
        *v = (*v - step * gi).max(0.0);
    }
    for j in 0..k {
        let s: f64 = (0..k).map(|i| t.at(i, j)).sum();
        if s != 0.0 {
            for i in 0..k {
                t.set(i, j, t.at(i, j) / s);
            }
        }
    }
    t
}

/// Row-wise softmax of K×K logits.
fn softmax_rows(s: &[f64], k: usize) -> Matrix {
    let mut data = s.to_vec();
    for row in data.chunks_exact_mut(k) {
        let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        row.iter_mut().for_each(|v| *v = exp(*v - m));
        let z: f64 = row.iter().sum();
        row.iter_mut().for_each(|v| *v /= z);
    }
    Matrix { k, data }
}

fn softmax_host(z: &[f32], k: usize) -> Vec<f64> {
    let mut p: Vec<f64> = z.iter().map(|&v| v as f64).collect();
    for row in p.chunks_exact_mut(k) {
        let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        row.iter_mut().for_each(|v| *v = exp(*v - m));
        let s: f64 = row.iter().sum();
        row.iter_mut().for_each(|v| *v /= s);
    }
    p
}

/// `∂/∂T` of the textbook loss (1) (batch mean; trusted rows use the identity and do not
/// depend on T), from the logits of the batch.
pub fn textbook_t_grad(logits: &[f32], labels: &[u32], trusted: &[bool], t: &Matrix) -> Vec<f64> {
    let k = t.k;
    let b = labels.len();
    let p = softmax_host(logits, k);
    let mut g = vec![0.0; k * k];
    for (bi, (&y, &tr)) in labels.iter().zip(trusted).enumerate() {
        if tr {
            continue;
        }
        let y = y as usize;
        let pb = &p[bi * k..(bi + 1) * k];
        let q: f64 = (0..k).map(|j| pb[j] * t.at(j, y)).sum();
        for j in 0..k {
            g[j * k + y] -= pb[j] / q / b as f64;
        }
    }
    g
}

/// `∂/∂T` of the released code's loss (1') at `T` (summed over the batch).
pub fn official_t_grad(logits: &[f32], labels: &[u32], t: &Matrix) -> Vec<f64> {
    let k = t.k;
    let mut g = vec![0.0; k * k];
    for (bi, &y) in labels.iter().enumerate() {
        let z = &logits[bi * k..(bi + 1) * k];
        let zt: Vec<f32> = (0..k)
            .map(|j| (0..k).map(|i| z[i] as f64 * t.at(i, j)).sum::<f64>() as f32)
            .collect();
        let p = softmax_host(&zt, k);
        for i in 0..k {
            for j in 0..k {
                let d = p[j] - if j == y as usize { 1.0 } else { 0.0 };
                g[i * k + j] += z[i] as f64 * d;
            }
        }
    }
    g
}

/// The textbook training loss (1) (batch mean) on taped logits.
pub fn textbook_loss(
    logits: Mat<Tp>,
    labels: &[u32],
    trusted: &[bool],
    t: &Matrix,
) -> Tensor<(), f32, Dev, Tp> {
    loss::forward_corrected(logits, labels, t, Some(trusted))
}

/// The released code's training loss (1') (batch sum) on taped logits.
pub fn official_loss(logits: Mat<Tp>, labels: &[u32], t: &Matrix) -> Tensor<(), f32, Dev, Tp> {
    let b = labels.len() as f32;
    let k = t.k;
    // z·T as a linear layer without bias: its weight (out x in) is Tᵀ.
    let w = (0..k * k).map(|o| t.at(o % k, o / k) as f32).collect();
    let w = logits.device().tensor_from_vec(w, (k * k,));
    let zt = ops::linear(Ops::default(), logits, &w, None, k, true);
    loss::cross_entropy(zt, labels) * b
}

/// Steps (1)-(4): the meta loss at the looked-ahead weights and the hypergradient
/// `∇_T L_meta(θ'(T))` at `t` (row-major K×K), for a training batch `(input, labels,
/// trusted)` and a meta batch `(input, clean labels)`, with the loss of `variant`.
#[allow(clippy::too_many_arguments)]
pub fn t_hypergradient(
    variant: Variant,
    net: &Network,
    params: &ParamSet,
    buffers: &mut crate::nn::params::Buffers,
    batch: (Input, &[u32], &[bool]),
    t: &Matrix,
    meta: (Input, &[u32]),
    alpha: f32,
    eps0: f32,
    rng: &mut ChaCha8Rng,
) -> Result<(f32, Vec<f64>)> {
    let (input, labels, trusted) = batch;
    let loss = |z: Mat<Tp>| match variant {
        Variant::Textbook => textbook_loss(z, labels, trusted, t),
        Variant::OfficialCode => official_loss(z, labels, t),
    };
    let la = LookAhead {
        alpha,
        eps0,
        mask: None,
    };
    let (meta_loss, h) = hypergrad::hypergradient(
        net,
        params,
        buffers,
        TrainBatch { input, loss: &loss },
        meta,
        la,
        rng,
        |z| {
            match variant {
                Variant::Textbook => textbook_t_grad(z, labels, trusted, t),
                Variant::OfficialCode => official_t_grad(z, labels, t),
            }
            .into_iter()
            .map(|x| x as f32)
            .collect()
        },
    )?;
    Ok((meta_loss, h.into_iter().map(|x| x as f64).collect()))
}

/// T after each epoch, as written to `t_epochs.json`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TEpoch {
    pub epoch: usize,
    pub rows: Vec<Vec<f64>>,
}

/// What both MLC loops share: the meta batches, the hypergradient of T, the per-epoch
/// meta loss and the record of T.
pub struct MetaCore<'d> {
    k: usize,
    variant: Variant,
    alpha: f32,
    eps0: f32,
    sampler: MetaSampler<'d>,
    true_c: Matrix,
    progress: MetaProgress,
}

/// The checkpointed part of [`MetaCore`]: the epoch's meta loss and churn so far, T's
/// history.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct MetaProgress {
    meta_loss_sum: f64,
    meta_loss_count: u64,
    history: Vec<TEpoch>,
    /// This epoch's sum over meta steps of T's mean row L1 change, and their count.
    #[serde(default)]
    churn_sum: f64,
    #[serde(default)]
    churn_steps: u64,
}

/// The largest mean, over an epoch's meta steps, of the L1 change of a row of T (averaged
/// over rows) before the run is called diverged. A row's L1 change is at most 2: at 0.5 a
/// step replaces a quarter of every row's mass, every step, so T is rewritten rather than
/// learned. The meta learning rate is then off by orders of magnitude (`t_lr: 1e6` used to
/// finish near chance with every loss finite). The default's heavy-tailed steps rewrite a
/// row now and then, which a mean over the epoch absorbs.
pub const T_CHURN_LIMIT: f64 = 0.5;

impl<'d> MetaCore<'d> {
    pub fn new(
        p: &Params,
        ds: &'d Dataset,
        nl: &NoisyLabels,
        trusted_idx: Vec<u32>,
    ) -> MetaCore<'d> {
        let size = p.meta_batch_size(trusted_idx.len());
        MetaCore {
            k: ds.meta.num_classes,
            variant: p.variant,
            alpha: p.virtual_lr(),
            eps0: p.eps0,
            sampler: MetaSampler::new(
                trusted_idx,
                size,
                false,
                nl.clean.clone(),
                Decoder::new(ds, &ds.train),
            ),
            true_c: nl.true_c.clone(),
            progress: MetaProgress::default(),
        }
    }

    /// Steps (1)-(4) at `t` on the step's batch and a fresh meta batch.
    fn t_gradient(&mut self, s: &mut StepCtx, t: &Matrix) -> Result<Vec<f64>> {
        let (meta_input, meta_labels) = self.sampler.draw(s.rng)?;
        let batch = (
            s.batch.input.clone(),
            s.batch.labels.as_slice(),
            s.batch.trusted.as_slice(),
        );
        let (meta_loss, h) = t_hypergradient(
            self.variant,
            s.net,
            s.params,
            s.buffers,
            batch,
            t,
            (meta_input, &meta_labels),
            self.alpha,
            self.eps0,
            s.rng,
        )?;
        self.progress.meta_loss_sum += meta_loss as f64;
        self.progress.meta_loss_count += 1;
        ensure!(
            h.iter().all(|x| x.is_finite()),
            "training diverged: the hypergradient of T is not finite at epoch {} batch {}",
            s.info.epoch + 1,
            s.info.batch + 1
        );
        Ok(h)
    }

    /// Records one meta step's change of T, from `before` to `after`.
    fn record_churn(&mut self, before: &Matrix, after: &Matrix) {
        let l1: f64 = before
            .data
            .iter()
            .zip(&after.data)
            .map(|(b, a)| (a - b).abs())
            .sum();
        self.progress.churn_sum += l1 / self.k as f64;
        self.progress.churn_steps += 1;
    }

    /// The divergence rule of T ([`T_CHURN_LIMIT`]), at the last batch of an epoch.
    fn check_churn(&mut self, info: &StepInfo) -> Result<()> {
        if info.batch + 1 < info.iterations_per_epoch {
            return Ok(());
        }
        let pr = &mut self.progress;
        let (sum, n) = (pr.churn_sum, pr.churn_steps);
        pr.churn_sum = 0.0;
        pr.churn_steps = 0;
        let mean = sum / n.max(1) as f64;
        ensure!(
            mean <= T_CHURN_LIMIT,
            "training diverged: each meta step changed the rows of T by a mean L1 of {mean:.3} \
             over epoch {} ({n} steps; the limit is {T_CHURN_LIMIT}, of at most 2): T is \
             rewritten, not learned, and `t_lr` is too large",
            info.epoch + 1
        );
        Ok(())
    }

    /// The epoch's mean meta loss and the distances of `t` to the true C; records `t`.
    fn epoch_extra(&mut self, t: &Matrix) -> BTreeMap<String, f64> {
        let pr = &mut self.progress;
        let mut e = BTreeMap::new();
        if pr.meta_loss_count > 0 {
            e.insert(
                "meta_loss".to_string(),
                pr.meta_loss_sum / pr.meta_loss_count as f64,
            );
        }
        insert_distances(&mut e, "t", t, &self.true_c);
        pr.meta_loss_sum = 0.0;
        pr.meta_loss_count = 0;
        pr.history.push(TEpoch {
            epoch: pr.history.len() + 1,
            rows: (0..self.k).map(|i| t.row(i).to_vec()).collect(),
        });
        e
    }

    /// T's history so far.
    pub fn history(&self) -> &[TEpoch] {
        &self.progress.history
    }
}

/// Checks that a checkpointed vector holds `want` values.
fn check_len(name: &str, v: &[f64], want: usize) -> Result<()> {
    ensure!(
        v.len() == want,
        "MLC checkpoint: {name} has {} values, expected {want}",
        v.len()
    );
    Ok(())
}

/// One of MLC's two loops, each with its own T and checkpointed state: the textbook one
/// and the released code's, kept apart so that neither takes the other's steps.
pub enum TLoop {
    Textbook(Textbook),
    Official(Official),
}

impl TLoop {
    /// The current T.
    fn t_matrix(&self) -> Matrix {
        match self {
            TLoop::Textbook(l) => l.t_matrix(),
            TLoop::Official(l) => l.t.clone(),
        }
    }
}

/// The MLC method plugged into the training loop: one of its two loops ([`TLoop`]) and
/// what the loops share ([`MetaCore`]).
pub struct Mlc<'d> {
    pub core: MetaCore<'d>,
    pub t_loop: TLoop,
}

/// The checkpointed state of an [`Mlc`]: every value is f64 and lives in the checkpoint's
/// JSON, which `serde_json` (built with `float_roundtrip`) reads back to the very bits it
/// wrote, so a resumed run continues exactly. `t_loop` is the loop's own state
/// ([`TextbookState`], or the released code's T as a flat list).
#[derive(Serialize, Deserialize)]
struct MlcState {
    progress: MetaProgress,
    t_loop: serde_json::Value,
}

impl Mlc<'_> {
    /// The current T.
    pub fn t_matrix(&self) -> Matrix {
        self.t_loop.t_matrix()
    }
}

impl Objective for Mlc<'_> {
    fn step(&mut self, s: &mut StepCtx) -> Result<StepOut> {
        match &mut self.t_loop {
            TLoop::Textbook(l) => l.step(&mut self.core, s),
            TLoop::Official(l) => l.step(&mut self.core, s),
        }
    }

    fn state(&self) -> MethodState {
        let t_loop = match &self.t_loop {
            TLoop::Textbook(l) => serde_json::to_value(l.state()),
            TLoop::Official(l) => serde_json::to_value(&l.t.data),
        };
        MethodState::of_json(&MlcState {
            progress: self.core.progress.clone(),
            t_loop: t_loop.expect("f64 values serialize"),
        })
    }

    fn load_state(
        &mut self,
        json: &serde_json::Value,
        _tensors: &BTreeMap<String, NamedTensor>,
    ) -> Result<()> {
        let st: MlcState = serde_json::from_value(json.clone()).context("MLC checkpoint state")?;
        let loop_state = || format!("MLC checkpoint state of the {:?} loop", self.core.variant);
        match &mut self.t_loop {
            TLoop::Textbook(l) => {
                l.restore(serde_json::from_value(st.t_loop).with_context(loop_state)?)?
            }
            TLoop::Official(l) => {
                let t: Vec<f64> = serde_json::from_value(st.t_loop).with_context(loop_state)?;
                check_len("t", &t, l.t.data.len())?;
                l.t.data = t;
            }
        }
        self.core.progress = st.progress;
        Ok(())
    }

    fn epoch_extra(&mut self, _net: &Network, _params: &ParamSet) -> BTreeMap<String, f64> {
        let t = self.t_loop.t_matrix();
        self.core.epoch_extra(&t)
    }
}

/// The textbook loop: a persistent T (or its row logits S), updated every
/// `t_update_interval` steps by (5), then the real step (6) with the new T.
pub struct Textbook {
    k: usize,
    /// T (clamp projection) or its row logits S (softmax projection), row-major K×K.
    theta_t: Vec<f64>,
    projection: Projection,
    optimizer: MetaOptimizer<f64>,
    interval: usize,
    max_step: Option<f64>,
}

/// [`Textbook`]'s checkpointed state.
#[derive(Serialize, Deserialize)]
pub struct TextbookState {
    theta_t: Vec<f64>,
    adam_m: Vec<f64>,
    adam_v: Vec<f64>,
    t_steps: Vec<u32>,
}

impl<'d> Mlc<'d> {
    /// The textbook loop from T = `t0`.
    pub fn textbook(p: &Params, core: MetaCore<'d>, t0: Matrix) -> Self {
        let k = core.k;
        let theta_t = match p.projection {
            Projection::Softmax => t0.data.iter().map(|v| ln(v.max(T_FLOOR))).collect(),
            Projection::ClampNormalize => t0.data.clone(),
        };
        let t_loop = Textbook {
            k,
            theta_t,
            projection: p.projection,
            optimizer: MetaOptimizer::new(p.t_optimizer, p.t_lr() as f64, 1, k * k),
            interval: p.t_update_interval,
            max_step: p.t_max_step,
        };
        Mlc {
            core,
            t_loop: TLoop::Textbook(t_loop),
        }
    }

    /// The released code's loop.
    pub fn official(p: &Params, core: MetaCore<'d>) -> Self {
        let t_loop = Official {
            t: Matrix::identity(core.k),
            beta: p.t_lr(),
        };
        Mlc {
            core,
            t_loop: TLoop::Official(t_loop),
        }
    }
}

impl Textbook {
    /// Step (5): the meta step on T (or S, through the softmax's Jacobian) and the
    /// projection.
    fn update_t(&mut self, h: &[f64]) {
        let k = self.k;
        let grad: Vec<f64> = match self.projection {
            Projection::ClampNormalize => h.to_vec(),
            Projection::Softmax => {
                let t = softmax_rows(&self.theta_t, k);
                let mut g = vec![0.0; k * k];
                for i in 0..k {
                    let dot: f64 = (0..k).map(|j| t.at(i, j) * h[i * k + j]).sum();
                    for j in 0..k {
                        g[i * k + j] = t.at(i, j) * (h[i * k + j] - dot);
                    }
                }
                g
            }
        };
        let before = self.theta_t.clone();
        self.optimizer.step_row(0, &mut self.theta_t, &grad);
        if let Some(m) = self.max_step {
            for (x, b) in self.theta_t.iter_mut().zip(&before) {
                *x = x.clamp(b - m, b + m);
            }
        }
        if self.projection == Projection::ClampNormalize {
            self.theta_t = project_rows(&Matrix {
                k,
                data: self.theta_t.clone(),
            })
            .data;
        }
    }
}

impl Textbook {
    /// Steps (5) every `t_update_interval` steps, then (6).
    fn step(&mut self, core: &mut MetaCore, s: &mut StepCtx) -> Result<StepOut> {
        let t = if s.info.iteration % self.interval == 0 {
            let before = self.t_matrix();
            let h = core.t_gradient(s, &before)?;
            self.update_t(&h);
            let after = self.t_matrix();
            core.record_churn(&before, &after);
            after
        } else {
            self.t_matrix()
        };
        core.check_churn(&s.info)?;
        // (6) the real step with the new T.
        let logits = s.forward(Mode::Train);
        s.backward_and_update(textbook_loss(logits, &s.batch.labels, &s.batch.trusted, &t))
    }

    /// The current T (row-stochastic).
    pub fn t_matrix(&self) -> Matrix {
        match self.projection {
            Projection::Softmax => softmax_rows(&self.theta_t, self.k),
            Projection::ClampNormalize => Matrix {
                k: self.k,
                data: self.theta_t.clone(),
            },
        }
    }

    fn state(&self) -> TextbookState {
        TextbookState {
            theta_t: self.theta_t.clone(),
            adam_m: self.optimizer.m.clone(),
            adam_v: self.optimizer.v.clone(),
            t_steps: self.optimizer.steps.clone(),
        }
    }

    fn restore(&mut self, st: TextbookState) -> Result<()> {
        check_len("theta_t", &st.theta_t, self.theta_t.len())?;
        self.optimizer
            .restore(st.adam_m, st.adam_v, st.t_steps)
            .context("MLC checkpoint")?;
        self.theta_t = st.theta_t;
        Ok(())
    }
}

/// The released code's loop: every step, T = colnorm(max(I − β G, 0)) from the
/// hypergradient G at T = I, then the real step on the summed loss (1') with that T.
pub struct Official {
    /// The T of the last step (the identity before the first).
    t: Matrix,
    beta: f32,
}

impl Official {
    /// T from the hypergradient at the identity, then the real step (1') with it.
    fn step(&mut self, core: &mut MetaCore, s: &mut StepCtx) -> Result<StepOut> {
        let k = self.t.k;
        let h = core.t_gradient(s, &Matrix::identity(k))?;
        let t = official_t(&h, k, self.beta as f64);
        core.record_churn(&self.t, &t);
        core.check_churn(&s.info)?;
        self.t = t;
        let logits = s.forward(Mode::Train);
        let out = s.backward_and_update(official_loss(logits, &s.batch.labels, &self.t))?;
        Ok(StepOut {
            loss: out.loss / s.batch.labels.len() as f64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mlc_textbook_t_step_defaults_to_sgd_with_lr_1_and_adam_keeps_lr_001() {
        let p: Params = serde_json::from_str("{}").unwrap();
        assert_eq!(p.t_optimizer, MetaOptimizerKind::Sgd);
        assert_eq!(p.t_lr(), 1.0);
        let p: Params = serde_json::from_str(r#"{"t_optimizer": "adam"}"#).unwrap();
        assert_eq!(p.t_lr(), 0.01);
        let p: Params = serde_json::from_str(r#"{"variant": "official_code"}"#).unwrap();
        assert_eq!(p.t_lr(), 0.11);
        assert_eq!(p.virtual_lr(), 1e-3);
    }

    #[test]
    fn one_meta_step_moves_no_entry_of_t_by_more_than_t_max_step() {
        let k = 3;
        let p: Params = serde_json::from_str(r#"{"t_max_step": 0.02}"#).unwrap();
        let mut t_loop = Textbook {
            k,
            theta_t: Matrix::identity(k).data,
            projection: Projection::ClampNormalize,
            optimizer: MetaOptimizer::new(MetaOptimizerKind::Sgd, 1.0, 1, k * k),
            interval: 1,
            max_step: p.t_max_step,
        };
        // A batch whose hypergradient alone would move every off-diagonal entry to 10.
        let h: Vec<f64> = (0..k * k)
            .map(|e| if e % (k + 1) == 0 { 0.0 } else { -10.0 })
            .collect();
        t_loop.update_t(&h);
        let t = t_loop.t_matrix();
        // Each off-diagonal entry rose by exactly 0.02, then each row was divided by 1.04.
        for i in 0..k {
            for j in 0..k {
                let want = if i == j { 1.0 / 1.04 } else { 0.02 / 1.04 };
                assert!(
                    (t.at(i, j) - want).abs() < 1e-12,
                    "T[{i}][{j}] = {}",
                    t.at(i, j)
                );
            }
        }
    }

    #[test]
    fn t_max_step_must_be_a_positive_number() {
        for bad in ["0", "-0.5"] {
            let p: Params = serde_json::from_str(&format!(r#"{{"t_max_step": {bad}}}"#)).unwrap();
            let e = p.check().unwrap_err();
            assert!(e.contains("field `t_max_step`"), "{e}");
        }
        let p: Params = serde_json::from_str(r#"{"t_max_step": 1.0}"#).unwrap();
        assert!(p.check().is_ok());
        let p: Params = serde_json::from_str("{}").unwrap();
        assert_eq!(p.t_max_step, None, "unbounded by default");
    }
}
