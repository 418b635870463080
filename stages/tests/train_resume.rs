//! A run stopped between batches saves a checkpoint and returns `Interrupted`; the rerun
//! resumes from it and ends with the same bytes as an uninterrupted run, for every
//! training kind (two-phase `train` methods, `train_mlc` in both variants,
//! `train_soft_labels` in both granularities, `distill`), stopped at seeded random
//! batches of every phase. Also: a diverging run stops with an error naming the epoch and
//! batch.

mod train_common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use repro_stages::kinds::train::{train, Params};
use repro_stages::nn::optim::OptimizerSpec;
use repro_stages::{InputRef, Interrupted, NoProgress, StageContext};
use train_common::*;

fn outputs(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    ["weights.safetensors", "metrics.json", "c_hat.json"]
        .iter()
        .map(|f| (f.to_string(), std::fs::read(dir.join(f)).unwrap()))
        .collect()
}

#[test]
fn glc_resumed_twice_equals_uninterrupted() {
    let ds = digits();
    let nl = noisy(&ds, "flip", 0.8, 0.05, 11);
    let p: Params =
        serde_json::from_value(serde_json::json!({"method": "glc", "epochs": 3})).unwrap();

    let ref_dir = tempfile::tempdir().unwrap();
    let stop = AtomicBool::new(false);
    let ctx = context(ref_dir.path(), 5, &NoProgress, &stop);
    train(&p, &ctx, &ds, Some(&nl))
        .unwrap()
        .save(&ctx.out_dir)
        .unwrap();
    let want = outputs(&ctx.out_dir);

    let dir = tempfile::tempdir().unwrap();
    // phase 1 has 3 epochs of ceil(1366/32) = 43 batches; stop mid-epoch 2 of phase 1,
    // then mid-epoch 1 of phase 2 (positions count batches within a phase)
    for stop_at in [50u64, 20, 0] {
        let stop = AtomicBool::new(false);
        let prog = StopAt {
            stop: &stop,
            stop_at: AtomicU64::new(stop_at),
            last: AtomicU64::new(0),
        };
        let ctx = context(dir.path(), 5, &prog, &stop);
        let r = train(&p, &ctx, &ds, Some(&nl));
        if stop_at == 0 {
            r.unwrap().save(&ctx.out_dir).unwrap();
        } else {
            let e = r.err().expect("the run should have been interrupted");
            assert!(e.downcast_ref::<Interrupted>().is_some(), "{e:#}");
            assert!(ctx.checkpoint_dir.join("checkpoint.safetensors").exists());
            assert!(prog.last.load(Ordering::Relaxed) >= stop_at);
        }
    }
    let got = outputs(&dir.path().join("out"));
    for ((name, a), (_, b)) in want.iter().zip(&got) {
        if a != b {
            std::fs::write(format!("/tmp/nn_{name}.a"), a).unwrap();
            std::fs::write(format!("/tmp/nn_{name}.b"), b).unwrap();
        }
        assert!(a == b, "{name} differs after resuming");
    }
}

#[test]
fn diverging_loss_names_epoch_and_batch() {
    let ds = digits();
    let mut p: Params =
        serde_json::from_value(serde_json::json!({"method": "ce", "epochs": 2})).unwrap();
    // Built in code: a params file cannot give this learning rate (see
    // `absurd_learning_rate_is_refused_at_load`), but the loop must still stop on ∞/NaN.
    p.optimizer = OptimizerSpec::Sgd {
        lr: 1e30,
        momentum: 0.0,
        nesterov: false,
        weight_decay: 0.0,
    };
    let dir = tempfile::tempdir().unwrap();
    let stop = AtomicBool::new(false);
    let ctx = context(dir.path(), 1, &NoProgress, &stop);
    let e = train(&p, &ctx, &ds, None).unwrap_err().to_string();
    assert!(
        e.contains("training diverged") && e.contains("epoch 1") && e.contains("batch "),
        "{e}"
    );
}

/// Records the batch count of every phase a run announces.
#[derive(Default)]
struct PhaseTotals(std::sync::Mutex<Vec<u64>>);
impl repro_stages::Progress for PhaseTotals {
    fn phase(&self, _: &str, _: &str, total: u64) {
        self.0.lock().unwrap().push(total);
    }
    fn position(&self, _: u64) {}
    fn message(&self, _: &str) {}
}

/// Runs a stage once uninterrupted, then, in a fresh directory, stops it at a seeded
/// random batch of every phase (two stops when there is one phase), resuming from the
/// checkpoint each time until it completes; every output file of the resumed run must
/// equal the uninterrupted run's (all but `log/timings.json`). An interrupted run must
/// leave the output directory empty.
fn assert_resume_is_byte_identical(
    label: &str,
    seed: u64,
    inputs: &BTreeMap<String, Vec<InputRef>>,
    run: impl Fn(&StageContext) -> anyhow::Result<()>,
) {
    use rand::{Rng, SeedableRng};

    let ref_dir = tempfile::tempdir().unwrap();
    let stop = AtomicBool::new(false);
    let totals = PhaseTotals::default();
    let mut ctx = context(ref_dir.path(), 5, &totals, &stop);
    ctx.inputs = inputs.clone();
    run(&ctx).unwrap();
    let want = output_files(&ctx.out_dir);
    assert!(!want.is_empty(), "{label}: no outputs");

    // Absolute batch positions (counted over all phases) to stop before.
    let phases = totals.0.lock().unwrap().clone();
    let mut windows = Vec::new();
    let mut start = 0u64;
    for &n in &phases {
        assert!(
            n >= 4,
            "{label}: a phase of {n} batches is too short to stop inside"
        );
        if phases.len() == 1 {
            windows.push(start + 1..start + n / 2);
            windows.push(start + n / 2..start + n - 1);
        } else {
            windows.push(start + 1..start + n - 1);
        }
        start += n;
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let stops: Vec<u64> = windows.into_iter().map(|w| rng.random_range(w)).collect();

    let dir = tempfile::tempdir().unwrap();
    let mut done = 0u64;
    for &at in &stops {
        let stop = AtomicBool::new(false);
        let prog = StopAfter {
            stop: &stop,
            after: at - done,
            seen: AtomicU64::new(0),
        };
        let mut ctx = context(dir.path(), 5, &prog, &stop);
        ctx.inputs = inputs.clone();
        let e = run(&ctx).expect_err(&format!("{label}: the run should stop before batch {at}"));
        assert!(e.downcast_ref::<Interrupted>().is_some(), "{label}: {e:#}");
        assert!(
            ctx.checkpoint_dir.join("checkpoint.safetensors").exists(),
            "{label}: no checkpoint"
        );
        assert!(
            output_files(&ctx.out_dir).is_empty(),
            "{label}: an interrupted run wrote outputs"
        );
        done = at;
    }
    let stop = AtomicBool::new(false);
    let mut ctx = context(dir.path(), 5, &NoProgress, &stop);
    ctx.inputs = inputs.clone();
    run(&ctx).unwrap();
    let got = output_files(&ctx.out_dir);
    let names = |v: &[(String, Vec<u8>)]| v.iter().map(|f| f.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(&want), names(&got), "{label}: output files differ");
    for ((name, a), (_, b)) in want.iter().zip(&got) {
        assert!(
            a == b,
            "{label}: {name} differs after stopping before batches {stops:?} of phases {phases:?} and resuming"
        );
    }
}

#[test]
fn train_mlc_resume_is_byte_identical() {
    use repro_stages::kinds::train_mlc;
    let ds = digits();
    let nl = noisy(&ds, "flip", 0.6, 0.05, 21);
    let none = BTreeMap::new();
    for (seed, params) in [
        // textbook with a warm-up phase and Adam on T (f64 T and moments in the state)
        (
            31,
            serde_json::json!({"epochs": 2, "warmup_epochs": 1, "t_optimizer": "adam"}),
        ),
        (
            32,
            serde_json::json!({"variant": "official_code", "epochs": 2}),
        ),
        // the released code's protocol: the MLC phase from the warm-up's best interval
        // evaluation (its weights in the checkpoint), the meta set not trained on
        (
            33,
            serde_json::json!({
                "variant": "official_code", "warmup_epochs": 2, "epochs": 1,
                "eval_interval": 5, "continue_from": "best", "train_on_trusted": false
            }),
        ),
    ] {
        let p: train_mlc::Params = serde_json::from_value(params.clone()).unwrap();
        assert_resume_is_byte_identical(&params.to_string(), seed, &none, |ctx| {
            train_mlc::train(&p, ctx, &ds, &nl, None)?.save(&ctx.out_dir)
        });
    }
}

#[test]
fn train_soft_labels_resume_is_byte_identical() {
    use repro_stages::kinds::train_soft_labels;
    let ds = digits();
    let nl = noisy(&ds, "flip", 0.6, 0.05, 22);
    let none = BTreeMap::new();
    for (seed, g) in [(41, "per_example"), (42, "per_class")] {
        // a CE warm-up phase, then label steps with meta batches sampled from the
        // trusted set (20 of its 71 examples)
        let params = serde_json::json!({
            "granularity": g, "epochs": 2, "warmup_epochs": 1, "meta_batch_size": 20
        });
        let p: train_soft_labels::Params = serde_json::from_value(params.clone()).unwrap();
        assert_resume_is_byte_identical(&params.to_string(), seed, &none, |ctx| {
            train_soft_labels::train(&p, ctx, &ds, Some(&nl))?.save(&ctx.out_dir)
        });
    }
}

#[test]
fn distill_resume_is_byte_identical() {
    use repro_stages::kinds::distill;
    let ds = digits();
    let base = tempfile::tempdir().unwrap();
    let inputs = distill_inputs(base.path(), &ds);
    // a student with dropout and augmentation: both draw from the epoch's stream
    let params = serde_json::json!({
        "epochs": 2, "augment": true,
        "model": {"arch": "mlp", "hidden": [64], "dropout": 0.2}
    });
    let p: distill::Params = serde_json::from_value(params.clone()).unwrap();
    assert_resume_is_byte_identical(&params.to_string(), 51, &inputs, |ctx| {
        distill::run(&p, ctx)
    });
}

#[test]
fn two_phase_train_resume_is_byte_identical() {
    let ds = digits();
    let nl = noisy(&ds, "uniform", 0.5, 0.05, 23);
    let none = BTreeMap::new();
    for (seed, method) in [(61, "glc"), (62, "forward"), (63, "confusion")] {
        let params = serde_json::json!({
            "method": method, "epochs": 2, "augment": true,
            "model": {"arch": "mlp", "hidden": [64, 64], "dropout": 0.2}
        });
        let p: Params = serde_json::from_value(params.clone()).unwrap();
        assert_resume_is_byte_identical(&params.to_string(), seed, &none, |ctx| {
            train(&p, ctx, &ds, Some(&nl))?.save(&ctx.out_dir)
        });
    }
}

#[test]
fn forward_continuing_phase1_with_its_optimizer_resumes_byte_identical() {
    // GLC's CIFAR Forward: phase 2 from phase 1's weights, one SGD with momentum across
    // both phases, the plain arg-max anchor; stopped inside each phase.
    let ds = digits();
    let nl = noisy(&ds, "flip", 0.4, 0.05, 24);
    let none = BTreeMap::new();
    let params = serde_json::json!({
        "method": "forward", "epochs": 2, "phase2_init": "phase1", "carry_optimizer": true,
        "anchor_percentile": null,
        "optimizer": {"kind": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": true},
        "model": {"arch": "mlp", "hidden": [64]}
    });
    let p: Params = serde_json::from_value(params.clone()).unwrap();
    assert_resume_is_byte_identical(&params.to_string(), 64, &none, |ctx| {
        train(&p, ctx, &ds, Some(&nl))?.save(&ctx.out_dir)
    });
}

#[test]
fn interval_evaluations_resume_byte_identical() {
    // the best-so-far accuracy of evaluations every 7 iterations survives the stops
    let ds = digits();
    let nl = noisy(&ds, "flip", 0.4, 0.05, 25);
    let none = BTreeMap::new();
    let params = serde_json::json!({
        "method": "confusion", "epochs": 2, "eval_interval": 7,
        "model": {"arch": "mlp", "hidden": [32]}
    });
    let p: Params = serde_json::from_value(params.clone()).unwrap();
    assert_resume_is_byte_identical(&params.to_string(), 65, &none, |ctx| {
        train(&p, ctx, &ds, Some(&nl))?.save(&ctx.out_dir)
    });
}
