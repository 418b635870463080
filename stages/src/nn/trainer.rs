//! The one training loop every method runs on.
//!
//! A stage builds a [`Session`] (it owns the checkpoint, the per-epoch metrics and the
//! timings), then runs one or more phases with [`Session::run_phase`]. A phase is a
//! [`PhaseSpec`] (which examples, labels, epochs, batch size, optimizer, schedule,
//! augmentation) plus an [`Objective`]: the method. The loop does everything that is not
//! the method: seeded shuffling, batching and augmentation, the learning-rate schedule,
//! the divergence check (see [Divergence](#divergence)), evaluation on the test split
//! after every epoch, progress, the checkpoint after every epoch (at most one per
//! [`CHECKPOINT_INTERVAL`] seconds, and always at the end of a phase) and on a stop
//! request, and resuming from it.
//!
//! # Writing a method
//!
//! Implement [`Objective::step`]: it receives a [`StepCtx`] holding the network, the
//! parameters, buffers and optimizer (all mutable), the batch, the step's learning rate
//! and a random stream, and must perform *one training step* (usually: forward, loss,
//! backward, optimizer update) and return the batch loss. The helpers on [`StepCtx`]
//! cover the common parts:
//!
//! ```ignore
//! fn step(&mut self, s: &mut StepCtx) -> Result<StepOut> {
//!     let logits = s.forward(Mode::Train);                       // taped, leaky tape
//!     let loss = loss::cross_entropy(logits, &s.batch.labels);
//!     s.backward_and_update(loss)                                  // grads + optimizer step
//! }
//! ```
//!
//! A meta-learning method (MLC's T, learned soft labels) computes, in `step`, the
//! hypergradient of its own parameters through a one-step look-ahead with
//! [`super::hypergrad::hypergradient`] (its taped training loss and the closed-form
//! gradient of that loss with respect to its parameters), draws its meta batches with
//! [`super::hypergrad::MetaSampler`], updates its parameters with
//! [`super::optim::MetaOptimizer`], then takes the real step as above.
//!
//! State that must survive a kill (a learned T, a table of soft labels, moving averages)
//! goes into [`Objective::state`] / [`Objective::load_state`]; values to report per epoch
//! (e.g. distance of T to the true C) into [`Objective::epoch_extra`]. Per-example state
//! is indexed by `s.batch.indices` (positions in the train split).
//!
//! # Determinism
//!
//! The random stream of epoch e of phase p is ChaCha8 seeded from (seed, p, e); the
//! permutation is drawn first, then augmentation and dropout draw in batch order. A
//! checkpoint stores the stream's word position, so a resumed run continues the same
//! stream and ends with the same bytes as an uninterrupted one. Every piece of state is
//! kept exactly: tensors as f32 in the safetensors file, f64 values (loss sums, metrics,
//! a method's f64 state) in its JSON metadata, which `serde_json` (built with
//! `float_roundtrip`) reads back to the same bits.
//!
//! # Divergence
//!
//! A run has diverged, and the phase fails with `training diverged: …` (the stage
//! publishes nothing), when
//! * a batch loss is not finite (NaN or ±∞), checked after every batch; or
//! * an epoch's mean training loss exceeds [`DIVERGENCE_FACTOR`] (100) × R, where
//!   R = max(ln K, ℓ₀), K the number of classes and ℓ₀ the loss of the phase's first
//!   batch (the loss at the phase's starting weights, before any update). Checked at the
//!   end of every epoch, before the evaluation and the checkpoint.
//!
//! ln K is the cross-entropy of a uniform prediction, so R is the loss of a network that
//! has learned nothing or, for a loss on another scale (distillation's τ²-weighted term)
//! or a phase that starts worse than chance, the loss it started from. A healthy run's
//! epoch means stay below R; a mean a hundred times above it means predictions far
//! more confident and wrong than chance: on the digits, Adam at lr 10² to 10⁶ gives
//! first-epoch means of 10⁸ to 10²¹ (R ≈ 2.3) with every kind. A method that finds its
//! own quantities non-finite (MLC's and the soft labels' hypergradients) fails with the
//! same `training diverged: …`. The rule only reads losses the loop already computes: it
//! changes no number of a run that does not trip it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use dfdx::prelude::*;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::batch::Decoder;
use super::checkpoint::{self, Evaluation, LoopState, MethodState};
use super::device::{Dev, Mat, Tp};
use super::model::{Input, Mode, ModelSpec, Network};
use super::optim::{Optimizer, OptimizerSpec};
use super::params::{write_safetensors, Buffers, NamedTensor, ParamSet};
use super::schedule::Schedule;
use crate::context::{Interrupted, StageContext};
use crate::data::dataset::Dataset;
use crate::metrics::{EpochMetrics, LOG_DIR};
use crate::outputs::{MODEL_FILE, WEIGHTS_FILE};

/// One mini-batch.
pub struct Batch {
    /// Positions of the examples in the train split.
    pub indices: Vec<u32>,
    /// The decoded (and augmented) input, untaped.
    pub input: Input,
    /// The labels training sees (noisy for untrusted examples).
    pub labels: Vec<u32>,
    /// Whether each example is in the trusted set.
    pub trusted: Vec<bool>,
}

/// Where a step falls.
#[derive(Clone, Copy, Debug)]
pub struct StepInfo {
    pub phase: usize,
    /// 0-based epoch within the phase.
    pub epoch: usize,
    /// 0-based batch within the epoch.
    pub batch: usize,
    /// 0-based iteration within the phase.
    pub iteration: usize,
    pub iterations_per_epoch: usize,
    pub total_iterations: usize,
}

/// What a step hands to the method.
pub struct StepCtx<'a> {
    pub net: &'a Network,
    pub params: &'a mut ParamSet,
    pub buffers: &'a mut Buffers,
    pub opt: &'a mut Optimizer,
    /// The schedule's learning rate for this step.
    pub lr: f32,
    pub batch: &'a Batch,
    /// The epoch's random stream (dropout; any randomness a method needs).
    pub rng: &'a mut ChaCha8Rng,
    pub info: StepInfo,
}

/// What a step reports.
#[derive(Clone, Copy, Debug)]
pub struct StepOut {
    /// The batch loss (mean over the batch) that the step minimised.
    pub loss: f64,
}

impl StepCtx<'_> {
    /// Training forward of the batch with the current parameters.
    pub fn forward(&mut self, mode: Mode) -> Mat<Tp> {
        self.net.forward::<Tp>(
            self.params,
            self.buffers,
            self.batch.input.clone(),
            mode,
            Some(self.rng),
        )
    }

    /// Backward pass: the loss value and the (leaky) gradient store.
    pub fn backward(&self, loss: Tensor<(), f32, Dev, Tp>) -> (f32, Gradients<f32, Dev>) {
        let v = loss.array();
        (v, loss.backward())
    }

    /// Backward pass and one optimizer step on the parameters.
    pub fn backward_and_update(&mut self, loss: Tensor<(), f32, Dev, Tp>) -> Result<StepOut> {
        let (v, mut g) = self.backward(loss);
        if v.is_finite() {
            self.opt.update(self.params, &mut g, self.lr);
        }
        Ok(StepOut { loss: v as f64 })
    }
}

/// A training method plugged into the loop.
pub trait Objective {
    /// One training step on `s.batch` (see the module docs).
    fn step(&mut self, s: &mut StepCtx) -> Result<StepOut>;
    /// State to checkpoint (default: none).
    fn state(&self) -> MethodState {
        MethodState::default()
    }
    /// Restores what [`Objective::state`] returned. `tensors` holds the method's tensors
    /// by name.
    fn load_state(
        &mut self,
        _json: &serde_json::Value,
        _tensors: &BTreeMap<String, NamedTensor>,
    ) -> Result<()> {
        Ok(())
    }
    /// Extra per-epoch metrics, called after the epoch's evaluation.
    fn epoch_extra(&mut self, _net: &Network, _params: &ParamSet) -> BTreeMap<String, f64> {
        BTreeMap::new()
    }
}

/// One phase of training.
pub struct PhaseSpec<'a> {
    /// Metrics label, e.g. `main`, `phase1`, `phase2`.
    pub name: String,
    /// Train-split positions of the examples used, in a fixed order (shuffled per epoch).
    pub examples: Vec<u32>,
    /// Labels for every train example (indexed by position).
    pub labels: &'a [u32],
    /// Trusted flag for every train example.
    pub trusted: &'a [bool],
    pub epochs: usize,
    pub batch_size: usize,
    /// Leave out the last, partial batch of each epoch ([`batches_per_epoch`]).
    pub drop_last: bool,
    pub optimizer: OptimizerSpec,
    /// Start from the optimizer state the session's previous phase ended with (momentum
    /// buffers or moments, and the step count) instead of a fresh one, as a script that
    /// keeps one optimizer object for both phases does; only the schedule restarts. No
    /// effect on a session's first phase.
    pub carry_optimizer: bool,
    pub schedule: Schedule,
    pub augment: bool,
    /// Evaluate the test accuracy after every this many iterations of the phase too
    /// (iteration % n == 0), recorded apart from the epochs' metrics.
    pub eval_interval: Option<usize>,
    /// Keep a copy of the weights (parameters and buffers) at the phase's best test
    /// evaluation, the first of equal ones: among the interval evaluations when
    /// `eval_interval` is set, else among the epochs' ends. [`Session::take_best`] hands
    /// it over once the phase has run; it is checkpointed with the phase.
    pub keep_best: bool,
}

/// The network, its parameters, buffers and optimizer, as a phase's loop holds them.
struct Model<'m> {
    net: &'m Network,
    params: &'m mut ParamSet,
    buffers: &'m mut Buffers,
    opt: &'m mut Optimizer,
}

/// The epoch a phase's loop is in: the phase's index and spec, and when the epoch (or
/// its resumed part) started.
struct Epoch<'s, 'l> {
    phase: usize,
    spec: &'s PhaseSpec<'l>,
    started: Instant,
}

/// Per-run data the loop needs besides the phase.
pub struct Session<'a, 'c> {
    pub ctx: &'a StageContext<'c>,
    pub data: &'a Dataset,
    pub seed: u64,
    pub eval_batch_size: usize,
    state: LoopState,
    resume: Option<BTreeMap<String, NamedTensor>>,
    last_save: Instant,
    /// The optimizer the last phase run in this process ended with, for a phase that
    /// carries it ([`PhaseSpec::carry_optimizer`]).
    last_optimizer: Option<Optimizer>,
    /// The weights at the current phase's best evaluation ([`PhaseSpec::keep_best`]).
    best: Option<BTreeMap<String, NamedTensor>>,
}

/// Least seconds between two end-of-epoch checkpoints within a phase.
pub const CHECKPOINT_INTERVAL: f64 = 5.0;

/// An epoch whose mean training loss exceeds this multiple of max(ln K, first-batch
/// loss) has diverged (see the module docs).
pub const DIVERGENCE_FACTOR: f64 = 100.0;

#[derive(Serialize)]
struct Timings<'a> {
    epochs: Vec<TimingRow<'a>>,
    total_seconds: f64,
}
#[derive(Serialize)]
struct TimingRow<'a> {
    phase: &'a str,
    epoch: usize,
    seconds: f64,
}

/// Batches in an epoch of `n` examples: ⌈n / batch⌉, or ⌊n / batch⌋ when the partial
/// last batch is dropped.
pub fn batches_per_epoch(n: usize, batch: usize, drop_last: bool) -> usize {
    if drop_last {
        n / batch
    } else {
        n.div_ceil(batch)
    }
}

fn epoch_seed(seed: u64, phase: usize, epoch: usize) -> u64 {
    // splitmix-style mixing of the three numbers
    let mut z = seed ^ ((phase as u64) << 40) ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl<'a, 'c> Session<'a, 'c> {
    /// Opens a session; picks up the checkpoint in `ctx.checkpoint_dir` if there is one.
    pub fn new(
        ctx: &'a StageContext<'c>,
        data: &'a Dataset,
        seed: u64,
        eval_batch_size: usize,
    ) -> Result<Self> {
        super::float_env::enter();
        let (state, resume) = match checkpoint::load(&ctx.checkpoint_dir)? {
            Some(c) => (c.state, Some(c.tensors)),
            None => (LoopState::default(), None),
        };
        Ok(Session {
            ctx,
            data,
            seed,
            eval_batch_size,
            state,
            resume,
            last_save: Instant::now(),
            last_optimizer: None,
            best: None,
        })
    }

    /// The weights (parameters and buffers, by name) at the best evaluation of the phase
    /// just run with [`PhaseSpec::keep_best`], and that evaluation; `None` when no such
    /// phase ran or was restored in this process.
    pub fn take_best(&mut self) -> Option<(BTreeMap<String, NamedTensor>, Evaluation)> {
        let weights = self.best.take()?;
        Some((weights, self.state.best.clone()?))
    }

    /// Records an evaluation of a phase that keeps its best weights, copying them when it
    /// beats the best so far.
    fn consider_best(&mut self, spec: &PhaseSpec, m: &Model, iteration: usize, acc: f64) {
        if self
            .state
            .best
            .as_ref()
            .is_some_and(|b| acc <= b.test_accuracy)
        {
            return;
        }
        self.state.best = Some(Evaluation {
            phase: spec.name.clone(),
            iteration,
            test_accuracy: acc,
        });
        let named = m.params.named(m.buffers);
        self.best = Some(named.into_iter().map(|t| (t.name.clone(), t)).collect());
    }

    /// A value stored by [`Session::set_carry`] before the checkpoint was written.
    pub fn carry<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        self.state
            .carry
            .get(key)
            .map(|v| {
                serde_json::from_value(v.clone())
                    .with_context(|| format!("checkpoint carry `{key}`"))
            })
            .transpose()
    }

    /// Stores a value that later checkpoints keep (e.g. a matrix estimated between phases).
    pub fn set_carry<T: Serialize>(&mut self, key: &str, v: &T) -> Result<()> {
        self.state
            .carry
            .insert(key.to_string(), serde_json::to_value(v)?);
        Ok(())
    }

    /// Metrics of every completed epoch so far.
    pub fn history(&self) -> &[EpochMetrics] {
        &self.state.history
    }

    /// The best test accuracy phase `phase` reached, at an epoch's end or at an interval
    /// evaluation ([`PhaseSpec::eval_interval`]); 0 when it has none.
    pub fn best_test_accuracy(&self, phase: &str) -> f64 {
        let epochs = self.state.history.iter().filter(|e| e.phase == phase);
        let interval = self.state.evaluations.iter().filter(|e| e.phase == phase);
        epochs
            .map(|e| e.test_accuracy)
            .chain(interval.map(|e| e.test_accuracy))
            .fold(0.0, f64::max)
    }

    fn save(
        &self,
        params: &ParamSet,
        buffers: &Buffers,
        opt: &Optimizer,
        obj: &dyn Objective,
    ) -> Result<()> {
        let mut state = self.state.clone();
        let ms = obj.state();
        state.method = ms.json;
        state.opt_step = opt.step;
        let mut tensors = params.named(buffers);
        tensors.extend(opt.named(params));
        tensors.extend(ms.tensors.into_iter().map(|mut t| {
            t.name = format!("method.{}", t.name);
            t
        }));
        if let Some(best) = &self.best {
            tensors.extend(best.values().map(|t| NamedTensor {
                name: format!("best.{}", t.name),
                ..t.clone()
            }));
        }
        checkpoint::save(&self.ctx.checkpoint_dir, &state, &tensors)
    }

    /// Runs phase `index` (0-based, in the order the stage runs its phases).
    ///
    /// * A phase the checkpoint shows as finished returns at once without touching
    ///   `params` (the stage must take what it needs from [`Session::carry`]).
    /// * The phase the checkpoint was taken in is resumed: parameters, buffers, the
    ///   optimizer and the method's state are restored first.
    /// * Otherwise the phase starts from the given parameters with a fresh optimizer, or
    ///   the previous phase's when the spec carries it ([`PhaseSpec::carry_optimizer`]).
    ///   A phase resumed from a checkpoint needs no carried optimizer: its own state was
    ///   saved with it.
    pub fn run_phase(
        &mut self,
        index: usize,
        spec: &PhaseSpec,
        net: &Network,
        params: &mut ParamSet,
        buffers: &mut Buffers,
        obj: &mut dyn Objective,
    ) -> Result<()> {
        if self.state.phase > index {
            return Ok(());
        }
        let carried = self.last_optimizer.take().filter(|_| spec.carry_optimizer);
        let mut opt = carried.unwrap_or_else(|| Optimizer::new(&spec.optimizer, params));
        self.start_phase(index, params, buffers, &mut opt, obj)?;
        if spec.batch_size == 0 {
            bail!("phase {}: batch_size must be positive", spec.name);
        }
        if spec.examples.is_empty() {
            bail!("phase {}: no training examples", spec.name);
        }
        let per_epoch = batches_per_epoch(spec.examples.len(), spec.batch_size, spec.drop_last);
        if per_epoch == 0 {
            bail!(
                "phase {}: drop_last leaves no batch: {} examples, batch_size {}",
                spec.name,
                spec.examples.len(),
                spec.batch_size
            );
        }
        let total = per_epoch * spec.epochs;
        self.ctx.progress.phase(&spec.name, "batch", total as u64);
        let mut model = Model {
            net,
            params,
            buffers,
            opt: &mut opt,
        };
        while self.state.epoch < spec.epochs {
            let e = Epoch {
                phase: index,
                spec,
                started: Instant::now(),
            };
            self.run_epoch(&e, &mut model, obj)?;
            self.finish_epoch(&e, &mut model, obj)?;
        }
        self.last_optimizer = Some(opt);
        Ok(())
    }

    /// Restores the checkpoint's parameters, optimizer and method state when it was taken
    /// in phase `index`; otherwise resets the loop's position to the phase's start.
    fn start_phase(
        &mut self,
        index: usize,
        params: &mut ParamSet,
        buffers: &mut Buffers,
        opt: &mut Optimizer,
        obj: &mut dyn Objective,
    ) -> Result<()> {
        if self.state.phase == index && self.resume.is_some() {
            let tensors = self.resume.take().unwrap();
            params.load_named(buffers, &tensors, "checkpoint")?;
            opt.load_named(params, &tensors, self.state.opt_step)?;
            let prefixed = |prefix: &str| -> BTreeMap<String, NamedTensor> {
                tensors
                    .iter()
                    .filter_map(|(k, t)| {
                        k.strip_prefix(prefix).map(|s| {
                            let t = NamedTensor {
                                name: s.to_string(),
                                ..t.clone()
                            };
                            (s.to_string(), t)
                        })
                    })
                    .collect()
            };
            obj.load_state(&self.state.method, &prefixed("method."))?;
            if self.state.best.is_some() {
                self.best = Some(prefixed("best."));
            }
        } else {
            self.state.phase = index;
            self.state.epoch = 0;
            self.state.batch = 0;
            self.state.loss_sum = 0.0;
            self.state.loss_count = 0;
            self.state.first_loss = None;
            self.state.epoch_seconds = 0.0;
            self.state.best = None;
            self.best = None;
        }
        Ok(())
    }

    /// The batches of the current epoch from the loop's position on; on a stop request,
    /// checkpoints and returns [`Interrupted`].
    fn run_epoch(&mut self, e: &Epoch, m: &mut Model, obj: &mut dyn Objective) -> Result<()> {
        let (index, spec) = (e.phase, e.spec);
        let n = spec.examples.len();
        let per_epoch = batches_per_epoch(n, spec.batch_size, spec.drop_last);
        let total = per_epoch * spec.epochs;
        let epoch = self.state.epoch;
        let decoder = Decoder::new(self.data, &self.data.train);
        let base_lr = spec.optimizer.lr();
        let mut rng = ChaCha8Rng::seed_from_u64(epoch_seed(self.seed, index, epoch));
        let mut order = spec.examples.clone();
        order.shuffle(&mut rng);
        if self.state.batch > 0 {
            let pos: u128 = self
                .state
                .rng_word_pos
                .parse()
                .context("checkpoint: rng position")?;
            rng.set_word_pos(pos);
        }
        while self.state.batch < per_epoch {
            if self.ctx.should_stop() {
                self.state.rng_word_pos = rng.get_word_pos().to_string();
                self.state.epoch_seconds += e.started.elapsed().as_secs_f64();
                self.save(m.params, m.buffers, m.opt, obj)?;
                return Err(Interrupted.into());
            }
            let b = self.state.batch;
            let idx = &order[b * spec.batch_size..((b + 1) * spec.batch_size).min(n)];
            let input = decoder.input(idx, spec.augment.then_some(&mut rng))?;
            let batch = Batch {
                indices: idx.to_vec(),
                input,
                labels: idx.iter().map(|&i| spec.labels[i as usize]).collect(),
                trusted: idx.iter().map(|&i| spec.trusted[i as usize]).collect(),
            };
            let iteration = epoch * per_epoch + b;
            let lr = spec.schedule.lr(base_lr, iteration, total, per_epoch);
            let info = StepInfo {
                phase: index,
                epoch,
                batch: b,
                iteration,
                iterations_per_epoch: per_epoch,
                total_iterations: total,
            };
            let mut s = StepCtx {
                net: m.net,
                params: m.params,
                buffers: m.buffers,
                opt: m.opt,
                lr,
                batch: &batch,
                rng: &mut rng,
                info,
            };
            let out = obj.step(&mut s)?;
            if spec.eval_interval.is_some_and(|n| iteration % n == 0) {
                let acc = evaluate(m.net, m.params, m.buffers, self.data, self.eval_batch_size)?;
                self.state.evaluations.push(Evaluation {
                    phase: spec.name.clone(),
                    iteration,
                    test_accuracy: acc,
                });
                if spec.keep_best {
                    self.consider_best(spec, m, iteration, acc);
                }
            }
            if !out.loss.is_finite() {
                bail!(
                    "training diverged: loss {} in phase {} ({}), epoch {}, batch {} (learning rate {lr})",
                    out.loss,
                    index + 1,
                    spec.name,
                    epoch + 1,
                    b + 1
                );
            }
            self.state.first_loss.get_or_insert(out.loss);
            self.state.loss_sum += out.loss;
            self.state.loss_count += 1;
            self.state.batch += 1;
            self.ctx.progress.position((iteration + 1) as u64);
        }
        Ok(())
    }

    /// The end of an epoch: the divergence rule, the test evaluation, the epoch's metrics
    /// and timing, and the checkpoint.
    fn finish_epoch(&mut self, e: &Epoch, m: &mut Model, obj: &mut dyn Objective) -> Result<()> {
        let (index, spec) = (e.phase, e.spec);
        let epoch = self.state.epoch;
        let per_epoch = batches_per_epoch(spec.examples.len(), spec.batch_size, spec.drop_last);
        let base_lr = spec.optimizer.lr();
        let train_loss = self.state.loss_sum / self.state.loss_count.max(1) as f64;
        let chance = crate::math::ln(m.net.classes as f64);
        let first = self.state.first_loss.unwrap_or(chance);
        let limit = DIVERGENCE_FACTOR * chance.max(first);
        if train_loss > limit {
            bail!(
                "training diverged: mean loss {train_loss:e} in phase {} ({}), epoch {} ({per_epoch} batches), \
                 is above {DIVERGENCE_FACTOR} x max(ln K = {chance:.4}, first-batch loss {first:.4}) = {limit:.4} \
                 (learning rate {base_lr})",
                index + 1,
                spec.name,
                epoch + 1,
            );
        }
        let acc = evaluate(m.net, m.params, m.buffers, self.data, self.eval_batch_size)?;
        if spec.keep_best && spec.eval_interval.is_none() {
            let iteration = (epoch + 1) * per_epoch - 1;
            self.consider_best(spec, m, iteration, acc);
        }
        let extra = obj.epoch_extra(m.net, m.params);
        let seconds = self.state.epoch_seconds + e.started.elapsed().as_secs_f64();
        self.ctx.progress.message(&format!(
            "{} epoch {}/{}: loss {train_loss:.4}, test accuracy {:.2}%",
            spec.name,
            epoch + 1,
            spec.epochs,
            acc * 100.0
        ));
        self.state.history.push(EpochMetrics {
            epoch: epoch + 1,
            phase: spec.name.clone(),
            train_loss,
            test_accuracy: acc,
            test_error: 1.0 - acc,
            extra,
        });
        self.state.timings.push(seconds);
        self.state.epoch += 1;
        self.state.batch = 0;
        self.state.loss_sum = 0.0;
        self.state.loss_count = 0;
        self.state.epoch_seconds = 0.0;
        // A checkpoint after every epoch, but at most one per CHECKPOINT_INTERVAL
        // seconds except at the end of the phase (hundreds of sub-second epochs,
        // e.g. trusted-only training on a few dozen examples, would otherwise spend
        // more time writing checkpoints than training). A stop request always
        // checkpoints, so no work is lost on an orderly stop.
        let last = self.state.epoch == spec.epochs;
        if last || self.last_save.elapsed().as_secs_f64() >= CHECKPOINT_INTERVAL {
            self.save(m.params, m.buffers, m.opt, obj)?;
            self.last_save = Instant::now();
        }
        Ok(())
    }

    /// Writes `weights.safetensors` (parameters then buffers, by name, no metadata),
    /// `model.json` (the network's spec, so that a later stage can rebuild the network the
    /// weights fit) and `log/timings.json` into the output directory.
    pub fn write_outputs(
        &self,
        model: &ModelSpec,
        params: &ParamSet,
        buffers: &Buffers,
    ) -> Result<()> {
        let out = &self.ctx.out_dir;
        write_safetensors(&out.join(WEIGHTS_FILE), &params.named(buffers), None)?;
        std::fs::write(
            out.join(MODEL_FILE),
            serde_json::to_string_pretty(model)? + "\n",
        )?;
        let log: PathBuf = out.join(LOG_DIR);
        std::fs::create_dir_all(&log).with_context(|| format!("creating {}", log.display()))?;
        let rows = self
            .state
            .history
            .iter()
            .zip(&self.state.timings)
            .map(|(h, &s)| TimingRow {
                phase: &h.phase,
                epoch: h.epoch,
                seconds: s,
            })
            .collect();
        let t = Timings {
            epochs: rows,
            total_seconds: self.state.timings.iter().sum(),
        };
        std::fs::write(
            log.join("timings.json"),
            serde_json::to_string_pretty(&t)? + "\n",
        )?;
        Ok(())
    }
}

/// Test-split accuracy in evaluation mode.
pub fn evaluate(
    net: &Network,
    params: &ParamSet,
    buffers: &mut Buffers,
    data: &Dataset,
    batch_size: usize,
) -> Result<f64> {
    let (correct, total) = predict_each(
        net,
        params,
        buffers,
        data,
        &data.test,
        batch_size,
        |_, logits, labels| {
            argmax_rows(logits, net.classes)
                .iter()
                .zip(labels)
                .filter(|(p, y)| **p as u32 == **y)
                .count()
        },
    )?;
    Ok(correct as f64 / total.max(1) as f64)
}

/// Index of the largest value per row (first on ties).
pub fn argmax_rows(v: &[f32], k: usize) -> Vec<usize> {
    v.chunks_exact(k)
        .map(|r| {
            r.iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |best, (i, &x)| {
                    if x > best.1 {
                        (i, x)
                    } else {
                        best
                    }
                })
                .0
        })
        .collect()
}

/// Runs the network in evaluation mode over a split in batches; `f(indices, logits,
/// labels)` gets each batch's host logits and returns a count that is summed.
pub fn predict_each(
    net: &Network,
    params: &ParamSet,
    buffers: &mut Buffers,
    data: &Dataset,
    split: &crate::data::dataset::Split,
    batch_size: usize,
    mut f: impl FnMut(&[u32], &[f32], &[u32]) -> usize,
) -> Result<(usize, usize)> {
    let dec = Decoder::new(data, split);
    let n = split.len();
    let mut acc = 0;
    let all: Vec<u32> = (0..n as u32).collect();
    for idx in all.chunks(batch_size.max(1)) {
        let logits: Mat =
            net.forward::<NoneTape>(params, buffers, dec.input(idx, None)?, Mode::Eval, None);
        let host = super::device::host(&logits);
        let labels: Vec<u32> = idx.iter().map(|&i| split.y[i as usize]).collect();
        acc += f(idx, &host, &labels);
    }
    Ok((acc, n))
}

/// Host logits of the given train examples in evaluation mode, row-major.
pub fn logits_of(
    net: &Network,
    params: &ParamSet,
    buffers: &mut Buffers,
    data: &Dataset,
    examples: &[u32],
    batch_size: usize,
) -> Result<Vec<f32>> {
    let dec = Decoder::new(data, &data.train);
    let mut out = Vec::with_capacity(examples.len() * net.classes);
    for idx in examples.chunks(batch_size.max(1)) {
        let logits: Mat =
            net.forward::<NoneTape>(params, buffers, dec.input(idx, None)?, Mode::Eval, None);
        out.extend(super::device::host(&logits));
    }
    Ok(out)
}
