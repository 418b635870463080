//! Cost of one meta-learning training step against one plain cross-entropy step, on the
//! same model, the same training batch and the same optimiser (target: an MLC step ≤ 4× a
//! plain CE step). Every line times the kinds' own `Objective::step`.
//!
//! ```text
//! cargo bench -p repro-stages --bench meta_step                     # all models
//! RAYON_NUM_THREADS=1 cargo bench -p repro-stages --bench meta_step -- --only=digits
//! cargo bench -p repro-stages --bench meta_step -- --quick          # fewer rounds
//! cargo bench -p repro-stages --bench meta_step -- --breakdown      # + where MLC's time goes
//! ```
//!
//! Models (as in `train_step.rs`, plus the pipeline's default):
//! - `digits_mlp_64_128_128_10`: the pipeline's default, MLP [128, 128] on the embedded
//!   digits (8×8, the real data: 1,297 train examples), batch 32, 5 % trusted (65
//!   examples).
//! - `mlp_784_256_256_10`: MLP [256, 256] on 784 random features, batch 128.
//! - `cnn_28x28_conv32_conv64_pool_fc128`: the small CNN on 1×28×28 random images, batch 128.
//!
//! The two MNIST-shaped models use a synthetic split whose trusted set has 3,000 examples
//! (5 % of MNIST's 60,000), which only matters for `official_code`, whose default meta set
//! is the whole trusted set.
//!
//! Every variant starts from the same initial weights (same seed) and keeps its own
//! weights, optimiser (the kinds' default, Adam lr 1e-3) and random stream; the variants
//! are run in turn within each round (CE, textbook, official, ..., CE, textbook, ...), so
//! that load from other processes hits all of them alike. Each step includes everything
//! the stage does per iteration after the trainer has decoded the batch (for the meta
//! methods: drawing and decoding the meta batch, the hypergradient, the update of T or
//! of the labels, the real step). The lines:
//!
//! - `ce`: `LossObjective { target: Hard }::step`, the `train` kind's `ce` step (forward,
//!   cross-entropy, backward, Adam update).
//! - `mlc_textbook`: `train_mlc::Mlc::step` (textbook loop) with default params (`variant: textbook`,
//!   meta batch = training batch, capped at the trusted set's size, T updated every
//!   step): virtual step,
//!   meta loss at the look-ahead weights, finite-difference hypergradient of T, Adam step
//!   and projection of T, real step with the new T.
//! - `mlc_textbook_m100`: the same with `meta_batch_size: 100` (the meta batch's share
//!   of the cost: on digits, 100 caps at the 65 trusted examples, twice the batch of 32).
//! - `mlc_official`: `train_mlc::Mlc::step` (released-code loop) with `variant: official_code` and its
//!   default meta set
//!   (all trusted examples).
//! - `mlc_official_m100`: the same with `meta_batch_size: 100` (separates the cost of the
//!   method from the size of the meta set).
//! - `soft_labels`: `train_soft_labels::SoftLabels::step` with default params
//!   (per-example labels, a `trusted` meta set, full look-ahead, meta batch 100 capped at
//!   the trusted set's size, Adam on the label logits).
//!
//! Output, per model: `model variant meta_batch median_ms min_ms ratio` where `ratio` is
//! the variant's median over the `ce` median. `--breakdown` adds, for `mlc_textbook`, the
//! median time of each phase of its hypergradient (forward+backward at θ, look-ahead,
//! meta forward+backward, two untaped forwards of the finite difference) and of the real
//! step, timed separately with the same `nn::hypergrad` functions the stage calls.

mod timing;

use std::time::Instant;

use anyhow::Result;
use dfdx::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use repro_stages::data::dataset::{Dataset, DatasetMeta, Encoding, Features, Split};
use repro_stages::data::digits;
use repro_stages::kinds::train_mlc::{self, MetaCore, Mlc};
use repro_stages::kinds::train_soft_labels::{self, label_schedule, MetaSet, SoftLabels};
use repro_stages::nn::batch::{input_kind, Decoder};
use repro_stages::nn::device::{host, Mat, Tp};
use repro_stages::nn::hypergrad;
use repro_stages::nn::model::{Mode, ModelSpec, Network};
use repro_stages::nn::objectives::{LossObjective, Target};
use repro_stages::nn::optim::{Optimizer, OptimizerSpec};
use repro_stages::nn::params::{Buffers, ParamSet};
use repro_stages::nn::trainer::{Batch, Objective, StepCtx, StepInfo, StepOut};
use repro_stages::noise::{Matrix, NoiseMeta, NoisyLabels};

const K: usize = 10;
const SEED: u64 = 7;

/// The kinds' default model optimiser: Adam at lr 1e-3, every other field at its
/// documented default.
fn adam() -> OptimizerSpec {
    serde_json::from_str(r#"{"kind": "adam", "lr": 0.001}"#).expect("optimizer spec")
}

/// Noisy labels over `clean`: the examples at `trusted` keep their label, 40 % of the
/// others get a uniformly drawn one.
fn noisy_labels(clean: &[u32], trusted: Vec<u32>, rng: &mut ChaCha8Rng) -> NoisyLabels {
    let mask: Vec<bool> = {
        let mut m = vec![false; clean.len()];
        trusted.iter().for_each(|&i| m[i as usize] = true);
        m
    };
    let noisy: Vec<u32> = clean
        .iter()
        .zip(&mask)
        .map(|(&y, &t)| {
            if !t && rng.random::<f64>() < 0.4 {
                rng.random_range(0..K as u32)
            } else {
                y
            }
        })
        .collect();
    let n_tr = trusted.len();
    NoisyLabels {
        meta: NoiseMeta {
            corruption: "uniform".into(),
            strength: 0.4,
            trusted_fraction: n_tr as f64 / clean.len() as f64,
            seed: SEED,
            num_classes: K,
            actual_noise_rate: 0.0,
            num_trusted: n_tr,
            num_untrusted: clean.len() - n_tr,
            dataset: "bench".into(),
            dataset_identity: String::new(),
            trusted_split: Default::default(),
        },
        noisy,
        clean: clean.to_vec(),
        trusted,
        true_c: Matrix::identity(K),
        realized_c: Matrix::identity(K),
    }
}

/// A split of `n` random examples of `shape` (features used as they are).
fn synthetic(shape: &[usize], n: usize, rng: &mut ChaCha8Rng) -> Dataset {
    let d: usize = shape.iter().product();
    let split = |n: usize, rng: &mut ChaCha8Rng| Split {
        x: Features::F32((0..n * d).map(|_| rng.random::<f32>()).collect()),
        y: (0..n).map(|_| rng.random_range(0..K as u32)).collect(),
        coarse: None,
    };
    Dataset {
        meta: DatasetMeta {
            name: "bench".into(),
            identity: String::new(),
            num_classes: K,
            class_names: (0..K).map(|c| c.to_string()).collect(),
            num_coarse: None,
            example_shape: shape.to_vec(),
            encoding: Encoding::Features,
            train_len: n,
            test_len: 1,
            notes: Vec::new(),
        },
        train: split(n, rng),
        test: split(1, rng),
        real_noise: None,
    }
}

/// One benchmarked configuration: data, noisy labels and one training batch.
struct Setup {
    name: &'static str,
    spec: ModelSpec,
    ds: Dataset,
    nl: NoisyLabels,
    batch: Batch,
}

fn make_batch(ds: &Dataset, nl: &NoisyLabels, b: usize, rng: &mut ChaCha8Rng) -> Batch {
    let n = ds.train.len();
    let mut idx: Vec<u32> = (0..n as u32).collect();
    for i in 0..b {
        let j = rng.random_range(i..n);
        idx.swap(i, j);
    }
    idx.truncate(b);
    let mask = nl.trusted_mask();
    Batch {
        input: Decoder::new(ds, &ds.train)
            .input(&idx, None)
            .expect("in-memory batch"),
        labels: idx.iter().map(|&i| nl.noisy[i as usize]).collect(),
        trusted: idx.iter().map(|&i| mask[i as usize]).collect(),
        indices: idx,
    }
}

/// The embedded digits as the pipeline reads them, 5 % trusted, batch 32.
fn digits_setup() -> Setup {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../data/optdigits/digits.csv.gz"
    );
    let ds = digits::read_file(std::path::Path::new(path), digits::DEFAULT_TEST_SIZE, 0)
        .expect("reading the embedded digits");
    let n = ds.train.len();
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let n_tr = (n as f64 * 0.05).round() as usize;
    let trusted: Vec<u32> = (0..n_tr).map(|i| (i * n / n_tr) as u32).collect();
    let nl = noisy_labels(&ds.train.y, trusted, &mut rng);
    let batch = make_batch(&ds, &nl, 32, &mut rng);
    Setup {
        name: "digits_mlp_64_128_128_10",
        spec: ModelSpec::Mlp {
            hidden: vec![128, 128],
            dropout: 0.0,
            embed_dim: None,
            weight_init: Default::default(),
        },
        ds,
        nl,
        batch,
    }
}

/// MNIST-shaped random data: `trusted` trusted examples plus 1,000 others, batch 128.
fn mnist_setup(name: &'static str, spec: ModelSpec, shape: &[usize], trusted: usize) -> Setup {
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let ds = synthetic(shape, trusted + 1000, &mut rng);
    let nl = noisy_labels(&ds.train.y, (0..trusted as u32).collect(), &mut rng);
    let batch = make_batch(&ds, &nl, 128, &mut rng);
    Setup {
        name,
        spec,
        ds,
        nl,
        batch,
    }
}

/// A model's own weights, optimiser and random stream.
struct State {
    params: ParamSet,
    buffers: Buffers,
    opt: Optimizer,
    rng: ChaCha8Rng,
    iteration: usize,
}

impl State {
    fn new(net_spec: &ModelSpec, ds: &Dataset) -> (Network, State) {
        let (net, params, buffers) = Network::new(net_spec, &input_kind(ds), K, SEED).unwrap();
        let opt = Optimizer::new(&adam(), &params);
        let st = State {
            params,
            buffers,
            opt,
            rng: ChaCha8Rng::seed_from_u64(SEED),
            iteration: 0,
        };
        (net, st)
    }

    /// Runs `f` on a step context for `batch`; returns the elapsed milliseconds.
    fn step(
        &mut self,
        net: &Network,
        batch: &Batch,
        f: impl FnOnce(&mut StepCtx) -> Result<StepOut>,
    ) -> f64 {
        let mut ctx = StepCtx {
            net,
            params: &mut self.params,
            buffers: &mut self.buffers,
            opt: &mut self.opt,
            lr: 1e-3,
            batch,
            rng: &mut self.rng,
            info: StepInfo {
                phase: 1,
                epoch: 0,
                batch: self.iteration,
                iteration: self.iteration,
                iterations_per_epoch: usize::MAX,
                total_iterations: usize::MAX,
            },
        };
        let t = Instant::now();
        let out = f(&mut ctx).expect("step");
        let ms = t.elapsed().as_secs_f64() * 1e3;
        assert!(out.loss.is_finite(), "non-finite loss");
        self.iteration += 1;
        ms
    }
}

fn mlc_params(json: &str) -> train_mlc::Params {
    serde_json::from_str(json).expect("train_mlc params")
}

fn bench(s: &Setup, rounds: usize, breakdown: bool) {
    let trusted_idx = s.nl.trusted.clone();
    let n_tr = trusted_idx.len();
    let bsz = s.batch.labels.len();
    let p_text = mlc_params(&format!(r#"{{"batch_size": {bsz}}}"#));
    let p_off = mlc_params(r#"{"variant": "official_code"}"#);
    let p_off100 = mlc_params(r#"{"variant": "official_code", "meta_batch_size": 100}"#);
    let t0 = Matrix::identity(K);
    let core = |p: &train_mlc::Params| MetaCore::new(p, &s.ds, &s.nl, trusted_idx.clone());
    let mut text = Mlc::textbook(&p_text, core(&p_text), t0.clone());
    let p_text_b = mlc_params(&format!(
        r#"{{"batch_size": {bsz}, "meta_batch_size": 100}}"#
    ));
    let mut text_b = Mlc::textbook(&p_text_b, core(&p_text_b), t0.clone());
    let mut off = Mlc::official(&p_off, core(&p_off));
    let mut off100 = Mlc::official(&p_off100, core(&p_off100));
    let p_soft: train_soft_labels::Params = serde_json::from_str("{}").expect("params");
    let (label_lr, _) = label_schedule(&p_soft, MetaSet::Trusted);
    let mask = s.nl.trusted_mask();
    let mut soft = SoftLabels::new(
        &p_soft,
        &s.ds,
        (&s.nl.noisy, &mask),
        MetaSet::Trusted,
        trusted_idx.clone(),
        label_lr,
        None,
    );
    let mut ce = LossObjective {
        target: Target::Hard,
    };

    let (net, mut st_ce) = State::new(&s.spec, &s.ds);
    let mut states: Vec<State> = (0..5).map(|_| State::new(&s.spec, &s.ds).1).collect();
    let names = [
        ("ce", 0),
        ("mlc_textbook", bsz.min(n_tr)),
        ("mlc_textbook_m100", 100.min(n_tr)),
        ("mlc_official", n_tr),
        ("mlc_official_m100", 100.min(n_tr)),
        ("soft_labels", 100.min(n_tr)),
    ];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    let warm = 2;
    for r in 0..rounds + warm {
        let b = &s.batch;
        let t = [
            st_ce.step(&net, b, |c| ce.step(c)),
            states[0].step(&net, b, |c| text.step(c)),
            states[1].step(&net, b, |c| text_b.step(c)),
            states[2].step(&net, b, |c| off.step(c)),
            states[3].step(&net, b, |c| off100.step(c)),
            states[4].step(&net, b, |c| soft.step(c)),
        ];
        if r >= warm {
            for (v, x) in times.iter_mut().zip(t) {
                v.push(x);
            }
        }
    }
    let ce_med = timing::median_min(times[0].clone()).0;
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into());
    println!(
        "# {} batch {} trusted {} rounds {} threads {}",
        s.name,
        s.batch.labels.len(),
        n_tr,
        rounds,
        threads
    );
    for ((name, m), v) in names.iter().zip(times) {
        let (med, min) = timing::median_min(v);
        println!(
            "{} {name} {m} {med:.3} {min:.3} {:.2}",
            s.name,
            med / ce_med
        );
    }
    if breakdown {
        textbook_breakdown(s, &net, rounds, ce_med);
    }
}

/// Times the phases of the textbook hypergradient (the steps of
/// `train_mlc::hypergradient`, called through the same `nn::hypergrad` functions) and the
/// real step, each as a median over `rounds`.
fn textbook_breakdown(s: &Setup, net: &Network, rounds: usize, ce_med: f64) {
    let (_, mut st) = State::new(&s.spec, &s.ds);
    let t = Matrix::identity(K);
    let m = s.batch.labels.len().min(s.nl.trusted.len());
    let midx: Vec<u32> = s.nl.trusted[..m].to_vec();
    let dec = Decoder::new(&s.ds, &s.ds.train);
    let mlabels: Vec<u32> = midx.iter().map(|&i| s.ds.train.y[i as usize]).collect();
    let b = &s.batch;
    let names = [
        "meta_decode",
        "fwd_bwd_train",
        "look_ahead",
        "fwd_bwd_meta",
        "fd_two_forwards",
        "real_step",
    ];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    for r in 0..rounds + 2 {
        let mut lap = Vec::new();
        let mut clock = Instant::now();
        let mut tick = |lap: &mut Vec<f64>| {
            lap.push(clock.elapsed().as_secs_f64() * 1e3);
            clock = Instant::now();
        };
        let meta_in = dec.input(&midx, None).expect("in-memory batch");
        tick(&mut lap);
        let logits = net.forward::<Tp>(
            &st.params,
            &mut st.buffers,
            b.input.clone(),
            Mode::TrainFrozenBn,
            Some(&mut st.rng),
        );
        let mut g = train_mlc::textbook_loss(logits, &b.labels, &b.trusted, &t).backward();
        let g_theta = st.params.grads(&mut g);
        tick(&mut lap);
        let looked = hypergrad::look_ahead(&st.params, &g_theta, 0.1, None);
        tick(&mut lap);
        let (_, v) = hypergrad::meta_gradient(
            net,
            &looked,
            &mut st.buffers,
            meta_in,
            &mlabels,
            None,
            &mut st.rng,
        );
        tick(&mut lap);
        let (buffers, rng) = (&mut st.buffers, &mut st.rng);
        let h = hypergrad::finite_difference(&st.params, &v, 0.1, 0.01, |p| {
            let z: Mat = net.forward::<NoneTape>(
                p,
                buffers,
                b.input.clone(),
                Mode::TrainFrozenBn,
                Some(rng),
            );
            Ok(
                train_mlc::textbook_t_grad(&host(&z), &b.labels, &b.trusted, &t)
                    .into_iter()
                    .map(|x| x as f32)
                    .collect(),
            )
        })
        .unwrap();
        assert!(h.iter().all(|x| x.is_finite()));
        tick(&mut lap);
        let logits = net.forward::<Tp>(
            &st.params,
            &mut st.buffers,
            b.input.clone(),
            Mode::Train,
            Some(&mut st.rng),
        );
        let l = train_mlc::textbook_loss(logits, &b.labels, &b.trusted, &t);
        let mut g = l.backward();
        st.opt.update(&mut st.params, &mut g, 1e-3);
        tick(&mut lap);
        if r >= 2 {
            for (v, x) in times.iter_mut().zip(lap) {
                v.push(x);
            }
        }
    }
    let mut total = 0.0;
    for (name, v) in names.iter().zip(times) {
        let med = timing::median_min(v).0;
        total += med;
        println!(
            "{} breakdown.mlc_textbook.{name} {m} {med:.3} - {:.2}",
            s.name,
            med / ce_med
        );
    }
    println!(
        "{} breakdown.mlc_textbook.sum {m} {total:.3} - {:.2}",
        s.name,
        total / ce_med
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let breakdown = args.iter().any(|a| a == "--breakdown");
    let only = args
        .iter()
        .find_map(|a| a.strip_prefix("--only=").map(str::to_string));
    let run = |n: &str| only.as_deref().is_none_or(|o| n.starts_with(o));
    let scale = |full: usize| if quick { full.div_ceil(5) } else { full };
    println!("# model variant meta_batch median_ms min_ms ratio_to_ce");
    if run("digits") {
        bench(&digits_setup(), scale(200), breakdown);
    }
    if run("mlp") {
        let spec = ModelSpec::Mlp {
            hidden: vec![256, 256],
            dropout: 0.0,
            embed_dim: None,
            weight_init: Default::default(),
        };
        let s = mnist_setup("mlp_784_256_256_10", spec, &[784], 3000);
        bench(&s, scale(40), breakdown);
    }
    if run("cnn") {
        let spec = ModelSpec::SmallCnn {
            channels: vec![32, 64],
            hidden: 128,
        };
        let s = mnist_setup(
            "cnn_28x28_conv32_conv64_pool_fc128",
            spec,
            &[1, 28, 28],
            3000,
        );
        bench(&s, scale(10), breakdown);
    }
}
