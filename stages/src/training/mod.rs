//! What the training kinds (`train`, `train_mlc`, `train_soft_labels`, `distill`) share:
//! the params every one of them takes, declared in each kind's `Params` by
//! [`training_params!`], with their defaults; the labels and trusted set a run trains on;
//! the set-up of a run ([`Training`]: the network from the seed or a starting-weights file,
//! the session); its outputs (`weights.safetensors`, `model.json`, timings) and its
//! `metrics.json` ([`Training::metrics`]); and reading a trained network back ([`load_trained`],
//! `distill`'s teacher).
//!
//! The shared fields are declared by a macro rather than a flattened struct because serde's
//! `flatten` does not combine with `deny_unknown_fields`. Keeping them here (not in the
//! `train` kind) also keeps the kinds' code hashes apart: editing one kind's file does not
//! rerun the stages of another.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{ensure, Context, Result};

use crate::data::dataset::Dataset;
pub mod inputs;
use crate::context::StageContext;
use crate::metrics::{DatasetId, Metrics, NoiseId};
use crate::nn::batch::input_kind;
use crate::nn::init::InitWeights;
use crate::nn::model::{ModelSpec, Network};
use crate::nn::optim::OptimizerSpec;
use crate::nn::params::{read_safetensors, Buffers, ParamSet};
use crate::nn::schedule::Schedule;
use crate::nn::trainer::{Objective, PhaseSpec, Session};
use crate::noise::{Matrix, NoisyLabels};
use crate::outputs::{MODEL_FILE, WEIGHTS_FILE};

/// Default network: an MLP with hidden layers `[128, 128]`, no dropout.
pub fn default_model() -> ModelSpec {
    ModelSpec::Mlp {
        hidden: vec![128, 128],
        dropout: 0.0,
        embed_dim: None,
        weight_init: Default::default(),
    }
}
/// Default optimizer: Adam, lr 1e-3, β₁ 0.9, β₂ 0.999, ε 1e-8, no weight decay.
pub fn default_optimizer() -> OptimizerSpec {
    OptimizerSpec::Adam {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
    }
}
/// Default epochs: 20.
pub fn default_epochs() -> usize {
    20
}
/// Default training batch size: 32.
pub fn default_batch_size() -> usize {
    32
}
/// Default evaluation batch size: 500.
pub fn default_eval_batch_size() -> usize {
    500
}

/// Declares a training kind's `Params`: the kind's own fields in three groups, `@network`
/// where `model`, `init`, `optimizer`, `schedule` and `epochs` go and `@batches` where
/// `batch_size`, `drop_last`, `eval_batch_size` and `augment` go (so each kind keeps its field order),
/// with `deny_unknown_fields`, and `Params::common()` returning the shared ones.
macro_rules! training_params {
    (
        $(#[$sm:meta])*
        pub struct $name:ident {
            $( $(#[$am:meta])* pub $af:ident : $at:ty, )*
            @network
            $( $(#[$bm:meta])* pub $bf:ident : $bt:ty, )*
            @batches
            $( $(#[$cm:meta])* pub $cf:ident : $ct:ty, )*
        }
    ) => {
        $(#[$sm])*
        #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $( $(#[$am])* pub $af: $at, )*
            /// The network (default: MLP with hidden layers `[128, 128]`, no dropout).
            #[serde(default = "crate::training::default_model")]
            pub model: crate::nn::model::ModelSpec,
            /// Starting weights from a file ([`crate::nn::init`]): `{ path, sha256, skip }`.
            /// Default: none (random initialisation from the seed).
            #[serde(default)]
            pub init: Option<crate::nn::init::InitWeights>,
            /// Optimizer of the network (default Adam, lr 1e-3, no weight decay).
            #[serde(default = "crate::training::default_optimizer")]
            pub optimizer: crate::nn::optim::OptimizerSpec,
            /// Learning-rate schedule, per iteration within each phase (default constant).
            #[serde(default)]
            pub schedule: crate::nn::schedule::Schedule,
            /// Epochs of training; a method with two phases runs each for this many
            /// (default 20).
            #[serde(default = "crate::training::default_epochs")]
            pub epochs: usize,
            $( $(#[$bm])* pub $bf: $bt, )*
            /// Training batch size (default 32).
            #[serde(default = "crate::training::default_batch_size")]
            pub batch_size: usize,
            /// Leave out each epoch's last, partial batch (default false: it is trained
            /// on). GLC's MNIST and Twitter scripts take ⌊n / batch⌋ batches per epoch.
            #[serde(default)]
            pub drop_last: bool,
            /// Evaluation batch size (default 500; does not change results).
            #[serde(default = "crate::training::default_eval_batch_size")]
            pub eval_batch_size: usize,
            /// CIFAR augmentation: random crop with 4-pixel padding + horizontal flip
            /// (default false).
            #[serde(default)]
            pub augment: bool,
            /// Also evaluate the test accuracy every this many iterations of a phase (after
            /// iterations 0, n, 2n, ... counted within the phase, as the released MLC code's
            /// `i % 100 == 0`), besides each epoch's end; the metrics' `extra` then holds
            /// `best_test_accuracy`, the best of the last phase's evaluations. Evaluating
            /// changes no weight. Default: none (once per epoch).
            #[serde(default)]
            pub eval_interval: Option<std::num::NonZeroUsize>,
            $( $(#[$cm])* pub $cf: $ct, )*
        }

        impl $name {
            /// The fields every training kind shares.
            pub fn common(&self) -> crate::training::Common<'_> {
                crate::training::Common {
                    model: &self.model,
                    init: self.init.as_ref(),
                    optimizer: &self.optimizer,
                    schedule: &self.schedule,
                    epochs: self.epochs,
                    batch_size: self.batch_size,
                    drop_last: self.drop_last,
                    eval_batch_size: self.eval_batch_size,
                    augment: self.augment,
                    eval_interval: self.eval_interval.map(|n| n.get()),
                }
            }
        }
    };
}
pub(crate) use training_params;

/// Declares the serde default functions of a kind's own params: each `name: Type = value`
/// becomes `fn name() -> Type { value }`.
macro_rules! defaults {
    ($($name:ident: $t:ty = $v:expr),* $(,)?) => {
        $(fn $name() -> $t { $v })*
    };
}
pub(crate) use defaults;

/// The params every training kind shares (see [`training_params!`]).
#[derive(Clone, Copy, Debug)]
pub struct Common<'p> {
    pub model: &'p ModelSpec,
    pub init: Option<&'p InitWeights>,
    pub optimizer: &'p OptimizerSpec,
    pub schedule: &'p Schedule,
    pub epochs: usize,
    pub batch_size: usize,
    pub drop_last: bool,
    pub eval_batch_size: usize,
    pub augment: bool,
    pub eval_interval: Option<usize>,
}

impl Common<'_> {
    /// Refuses zero epochs and a zero batch size.
    pub fn check(&self) -> Result<()> {
        ensure!(self.epochs > 0, "params.epochs must be positive");
        ensure!(self.batch_size > 0, "params.batch_size must be positive");
        Ok(())
    }
}

/// The labels training sees and the trusted mask: the noise input's noisy labels and
/// trusted set (checked against the dataset), or the clean labels with nothing trusted.
pub fn labels_of(ds: &Dataset, noise: Option<&NoisyLabels>) -> Result<(Vec<u32>, Vec<bool>)> {
    Ok(match noise {
        Some(nl) => {
            inputs::check_noise_fits(nl, ds)?;
            (nl.noisy.clone(), nl.trusted_mask())
        }
        None => (ds.train.y.clone(), vec![false; ds.train.len()]),
    })
}

/// `run` of a kind whose `noise` input is optional: loads `data` and `noise` (when
/// given), trains and saves the metrics.
pub fn run_with_optional_noise(
    ctx: &StageContext,
    train: impl FnOnce(&Dataset, Option<&NoisyLabels>) -> Result<Metrics>,
) -> Result<()> {
    let (ds, noise) = inputs::load_data_and_noise(ctx)?;
    train(&ds, noise.as_ref())?.save(&ctx.out_dir)
}

/// Inserts `{name}_frobenius_to_true_c` and `{name}_mean_row_l1_to_true_c`, the distances
/// of `m` to the true corruption matrix, into `extra`.
pub fn insert_distances(
    extra: &mut BTreeMap<String, f64>,
    name: &str,
    m: &Matrix,
    true_c: &Matrix,
) {
    extra.insert(
        format!("{name}_frobenius_to_true_c"),
        m.frobenius_distance(true_c),
    );
    extra.insert(
        format!("{name}_mean_row_l1_to_true_c"),
        m.mean_row_l1_distance(true_c),
    );
}

/// Positions `i` with `mask[i] == want`, ascending.
pub fn where_mask(mask: &[bool], want: bool) -> Vec<u32> {
    (0..mask.len() as u32)
        .filter(|&i| mask[i as usize] == want)
        .collect()
}

/// A training run: the shared params, the network and the session.
pub struct Training<'a, 'c> {
    pub ctx: &'a StageContext<'c>,
    pub ds: &'a Dataset,
    pub common: Common<'a>,
    pub net: Network,
    pub session: Session<'a, 'c>,
}

impl<'a, 'c> Training<'a, 'c> {
    /// Builds the network (seeded by the stage's seed, then the `init` file if any) and
    /// opens the session; returns the run and the starting parameters and buffers.
    pub fn new(
        ctx: &'a StageContext<'c>,
        ds: &'a Dataset,
        common: Common<'a>,
    ) -> Result<(Self, ParamSet, Buffers)> {
        let k = ds.meta.num_classes;
        let (net, mut params, mut buffers) =
            Network::new(common.model, &input_kind(ds), k, ctx.seed)?;
        crate::nn::init::start(common.init, ctx, &mut params, &mut buffers)?;
        let session = Session::new(ctx, ds, ctx.seed, common.eval_batch_size)?;
        let run = Training {
            ctx,
            ds,
            common,
            net,
            session,
        };
        Ok((run, params, buffers))
    }

    /// A second draw of the network's weights and buffers, for a phase that starts from
    /// new weights: the network built again from the stage's seed mixed with a constant
    /// (splitmix64), so the draw differs from the first and is the same on every run.
    pub fn fresh_weights(&self) -> Result<(ParamSet, Buffers)> {
        let mut z = self.ctx.seed ^ 0x7068_6173_6532_u64; // "phase2"
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        let seed = z ^ (z >> 31);
        let k = self.ds.meta.num_classes;
        let (_, params, buffers) = Network::new(self.common.model, &input_kind(self.ds), k, seed)?;
        Ok((params, buffers))
    }

    /// A phase on `examples` with the shared optimizer, schedule, batch size and
    /// augmentation.
    pub fn phase<'l>(
        &self,
        name: &str,
        examples: Vec<u32>,
        labels: &'l [u32],
        trusted: &'l [bool],
        epochs: usize,
    ) -> PhaseSpec<'l> {
        PhaseSpec {
            name: name.to_string(),
            examples,
            labels,
            trusted,
            epochs,
            batch_size: self.common.batch_size,
            drop_last: self.common.drop_last,
            optimizer: self.common.optimizer.clone(),
            carry_optimizer: false,
            schedule: self.common.schedule.clone(),
            augment: self.common.augment,
            eval_interval: self.common.eval_interval,
            keep_best: false,
        }
    }

    /// Runs phase `index` of the session (see [`Session::run_phase`]).
    pub fn run_phase(
        &mut self,
        index: usize,
        spec: &PhaseSpec,
        params: &mut ParamSet,
        buffers: &mut Buffers,
        obj: &mut dyn Objective,
    ) -> Result<()> {
        self.session
            .run_phase(index, spec, &self.net, params, buffers, obj)
    }

    /// Writes the weights, `model.json` and the timings (see [`Session::write_outputs`]).
    pub fn write_outputs(&self, params: &ParamSet, buffers: &Buffers) -> Result<()> {
        self.session
            .write_outputs(self.common.model, params, buffers)
    }

    /// The run's `metrics.json` (not yet saved): the last epoch's test accuracy and error,
    /// every epoch's metrics, and `extra`.
    pub fn metrics(
        &self,
        kind: &str,
        method: &str,
        noise: Option<&NoisyLabels>,
        extra: BTreeMap<String, f64>,
    ) -> Result<Metrics> {
        let history = self.session.history().to_vec();
        let last = history.last().context("no epoch was trained")?;
        let mut extra = extra;
        if self.common.eval_interval.is_some() {
            let best = self.session.best_test_accuracy(&last.phase);
            extra.insert("best_test_accuracy".to_string(), best);
        }
        Ok(Metrics {
            kind: kind.into(),
            method: method.into(),
            dataset: DatasetId {
                name: self.ds.meta.name.clone(),
                identity: self.ds.meta.identity.clone(),
            },
            noise: noise.map(|nl| NoiseId {
                corruption: nl.meta.corruption.clone(),
                strength: nl.meta.strength,
                trusted_fraction: nl.meta.trusted_fraction,
                actual_noise_rate: nl.meta.actual_noise_rate,
            }),
            model: crate::nn::init::model_label(self.common.model, self.common.init),
            profile: self.ctx.profile.clone(),
            device: crate::backend::BACKEND.into(),
            seed: self.ctx.seed,
            final_test_accuracy: last.test_accuracy,
            final_test_error: last.test_error,
            epochs: history,
            extra,
        })
    }
}

/// A trained network read back from a training stage's output directory `dir`: its
/// `model.json` and `weights.safetensors`, for `ds` (`what` names the input in errors).
pub fn load_trained(dir: &Path, ds: &Dataset, what: &str) -> Result<(Network, ParamSet, Buffers)> {
    let spec_path = dir.join(MODEL_FILE);
    ensure!(
        spec_path.exists(),
        "{what}: {} not found; training stages write their network there beside {WEIGHTS_FILE}",
        spec_path.display()
    );
    let text = std::fs::read_to_string(&spec_path)
        .with_context(|| format!("{what}: reading {}", spec_path.display()))?;
    let spec: ModelSpec = serde_json::from_str(&text)
        .with_context(|| format!("{what}: parsing {}", spec_path.display()))?;
    spec.check_bounds(MODEL_FILE)
        .map_err(|e| anyhow::anyhow!("{what}: {}: {e}", spec_path.display()))?;
    let k = ds.meta.num_classes;
    let (net, mut params, mut buffers) = Network::new(&spec, &input_kind(ds), k, 0)?;
    let wpath = dir.join(WEIGHTS_FILE);
    let (tensors, _) = read_safetensors(&wpath)?;
    params
        .load_named(&mut buffers, &tensors, &wpath.display().to_string())
        .with_context(|| format!("{what}: loading the weights of `{}`", spec.label()))?;
    Ok((net, params, buffers))
}
