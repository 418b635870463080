//! The `train` options that express GLC's scripts, each against the default it departs
//! from: a carried optimizer continues phase 1's state (a rule with teeth only when the
//! optimizer has state), phase 2 can start from phase 1's trained weights or from a new
//! draw, and the partial last batch can be dropped.

mod train_common;

use std::sync::atomic::AtomicBool;

use repro_stages::kinds::train::{train, Params};
use repro_stages::metrics::Metrics;
use repro_stages::NoProgress;
use train_common::*;

/// Trains `params` (a `train` params object) on the digits with flip noise; returns the
/// metrics and the weights file's bytes.
fn run(params: serde_json::Value) -> (Metrics, Vec<u8>) {
    let ds = digits();
    let nl = noisy(&ds, "flip", 0.4, 0.05, 7);
    let p: Params = serde_json::from_value(params).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let stop = AtomicBool::new(false);
    let ctx = context(dir.path(), 3, &NoProgress, &stop);
    let m = train(&p, &ctx, &ds, Some(&nl)).unwrap();
    let w = std::fs::read(ctx.out_dir.join("weights.safetensors")).unwrap();
    (m, w)
}

fn glc_with(optimizer: serde_json::Value, carry: bool) -> Vec<u8> {
    run(serde_json::json!({
        "method": "glc", "epochs": 1, "optimizer": optimizer, "carry_optimizer": carry,
        "model": {"arch": "mlp", "hidden": [32]}
    }))
    .1
}

#[test]
fn a_carried_optimizer_changes_the_result_only_through_its_state() {
    // SGD without momentum has no state to carry: the same bytes either way.
    let plain = serde_json::json!({"kind": "sgd", "lr": 0.05, "momentum": 0.0});
    assert!(glc_with(plain.clone(), false) == glc_with(plain, true));
    // With momentum, phase 2's first steps move along phase 1's last direction.
    let heavy = serde_json::json!({"kind": "sgd", "lr": 0.05, "momentum": 0.9});
    assert!(glc_with(heavy.clone(), false) != glc_with(heavy, true));
}

#[test]
fn phase_two_can_continue_from_phase_one_weights() {
    let params = |init: &str| {
        serde_json::json!({
            "method": "forward", "epochs": 3, "phase2_init": init,
            "optimizer": {"kind": "adam", "lr": 0.01},
            "model": {"arch": "mlp", "hidden": [32]}
        })
    };
    let (restart, _) = run(params("initial"));
    let (cont, _) = run(params("phase1"));
    let phase = |m: &Metrics, name: &str| -> Vec<f64> {
        m.epochs
            .iter()
            .filter(|e| e.phase == name)
            .map(|e| e.train_loss)
            .collect()
    };
    // the same phase 1 ...
    assert_eq!(phase(&restart, "phase1"), phase(&cont, "phase1"));
    // ... then phase 2 starts where phase 1 ended: its first epoch's loss is lower than
    // from the initial weights, and below phase 1's first epoch's
    let (r, c) = (phase(&restart, "phase2"), phase(&cont, "phase2"));
    assert!(c[0] < 0.8 * r[0], "continued {c:?} against restarted {r:?}");
    assert!(c[0] < phase(&cont, "phase1")[0], "{c:?}");
}

#[test]
fn phase2_init_and_anchor_percentile_are_checked_when_the_pipeline_loads() {
    use repro_stages::stage_kind::StageKind;
    let p: Params = serde_json::from_value(serde_json::json!({
        "method": "glc", "phase2_init": "fresh",
        "init": {"path": "w.safetensors", "sha256": "00"}
    }))
    .unwrap();
    assert!(p
        .check()
        .unwrap_err()
        .starts_with("field `phase2_init`: fresh draws new weights"));
    let p: Params = serde_json::from_value(serde_json::json!({
        "method": "forward", "anchor_percentile": 101
    }))
    .unwrap();
    assert!(p
        .check()
        .unwrap_err()
        .starts_with("field `anchor_percentile`"));
    // one setting serves a grid of one- and two-phase methods
    let p: Params = serde_json::from_value(serde_json::json!({
        "method": "ce", "phase2_init": "fresh", "carry_optimizer": true
    }))
    .unwrap();
    assert!(p.check().is_ok());
}

#[test]
fn phase_two_from_fresh_weights_is_a_second_seeded_draw() {
    let params = |init: &str| {
        serde_json::json!({
            "method": "glc", "epochs": 1, "phase2_init": init,
            "model": {"arch": "mlp", "hidden": [32]}
        })
    };
    let (_, initial) = run(params("initial"));
    let (m1, fresh) = run(params("fresh"));
    let (m2, again) = run(params("fresh"));
    assert!(fresh != initial);
    assert!(fresh == again);
    assert_eq!(m1.final_test_accuracy, m2.final_test_accuracy);
}

#[test]
fn dropping_the_last_batch_changes_only_epochs_with_a_partial_batch() {
    // CE trains on all 1,438 training digits: batches of 100 leave a partial one of 38,
    // batches of 719 none.
    let with = |batch: usize, drop_last: bool| {
        run(serde_json::json!({
            "method": "ce", "epochs": 2, "batch_size": batch, "drop_last": drop_last,
            "model": {"arch": "mlp", "hidden": [16]}
        }))
        .1
    };
    assert!(with(100, false) != with(100, true));
    assert!(
        with(719, false) == with(719, true),
        "1,438 = 2 × 719: no partial batch"
    );
}

#[test]
fn drop_last_that_leaves_no_batch_is_refused_with_the_sizes() {
    let ds = digits();
    let nl = noisy(&ds, "flip", 0.4, 0.05, 7);
    let p: Params = serde_json::from_value(serde_json::json!({
        "method": "trusted_only", "batch_size": 100, "drop_last": true, "min_updates": 0,
        "model": {"arch": "mlp", "hidden": [16]}
    }))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let stop = AtomicBool::new(false);
    let ctx = context(dir.path(), 3, &NoProgress, &stop);
    let e = train(&p, &ctx, &ds, Some(&nl)).unwrap_err().to_string();
    assert!(
        e.contains("drop_last leaves no batch") && e.contains("batch_size 100"),
        "{e}"
    );
}

#[test]
fn a_warmup_optimizer_changes_the_warmup_only() {
    use repro_stages::kinds::train_mlc;
    let ds = digits();
    let nl = noisy(&ds, "flip", 0.4, 0.05, 7);
    let run_mlc = |warmup_optimizer: Option<serde_json::Value>| {
        let mut params = serde_json::json!({
            "variant": "official_code", "warmup_epochs": 1, "epochs": 1,
            "optimizer": {"kind": "sgd", "lr": 1.0e-4, "momentum": 0.9},
            "meta_batch_size": 20, "model": {"arch": "mlp", "hidden": [16]}
        });
        if let Some(o) = warmup_optimizer {
            params["warmup_optimizer"] = o;
        }
        let p: train_mlc::Params = serde_json::from_value(params).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let stop = AtomicBool::new(false);
        let ctx = context(dir.path(), 3, &NoProgress, &stop);
        let m = train_mlc::train(&p, &ctx, &ds, &nl, None).unwrap();
        let loss = |phase: &str| {
            m.epochs
                .iter()
                .find(|e| e.phase == phase)
                .unwrap()
                .train_loss
        };
        (loss("warmup"), loss("mlc"))
    };
    let same = serde_json::json!({"kind": "sgd", "lr": 1.0e-4, "momentum": 0.9});
    let fast = serde_json::json!({"kind": "sgd", "lr": 0.1, "momentum": 0.9});
    // the same spec as `optimizer` is the default; a faster warm-up learns in it
    assert_eq!(run_mlc(None), run_mlc(Some(same)));
    let (slow, _) = run_mlc(None);
    let (quick, _) = run_mlc(Some(fast));
    assert!(
        quick < 0.9 * slow,
        "warm-up loss {quick} at lr 0.1 against {slow} at 1e-4"
    );
    // refused without a warm-up
    use repro_stages::stage_kind::StageKind;
    let p: train_mlc::Params = serde_json::from_value(serde_json::json!({
        "warmup_optimizer": {"kind": "sgd", "lr": 0.1}
    }))
    .unwrap();
    assert!(p
        .check()
        .unwrap_err()
        .starts_with("field `warmup_optimizer`"));
}

#[test]
fn interval_evaluations_change_no_weight_and_give_the_best_of_the_last_phase() {
    let params = |interval: Option<usize>| {
        let mut p = serde_json::json!({
            "method": "glc", "epochs": 2, "model": {"arch": "mlp", "hidden": [16]}
        });
        if let Some(n) = interval {
            p["eval_interval"] = n.into();
        }
        p
    };
    let (plain, w_plain) = run(params(None));
    let (every, w_every) = run(params(Some(10)));
    assert!(w_plain == w_every, "evaluating changed the weights");
    assert_eq!(plain.epochs, every.epochs);
    assert!(!plain.extra.contains_key("best_test_accuracy"));
    // phase 2's evaluations include its epoch ends, so its best is at least their best,
    // and it comes from phase 2 only
    let best = every.extra["best_test_accuracy"];
    let phase2_epochs = every.epochs.iter().filter(|e| e.phase == "phase2");
    assert!(
        phase2_epochs.clone().all(|e| e.test_accuracy <= best),
        "{best}"
    );
    assert!(best <= 1.0 && best > 0.0, "{best}");
    // 0 is no interval
    assert!(serde_json::from_value::<Params>(serde_json::json!({
        "method": "ce", "eval_interval": 0
    }))
    .is_err());
}

#[test]
fn the_mlc_phase_can_start_from_the_best_warmup_evaluation() {
    use repro_stages::kinds::train_mlc;
    let ds = digits();
    let nl = noisy(&ds, "flip", 0.6, 0.05, 7);
    let run_mlc = |warmup_epochs: usize, from: &str| {
        let p: train_mlc::Params = serde_json::from_value(serde_json::json!({
            "variant": "official_code", "warmup_epochs": warmup_epochs, "epochs": 1,
            "continue_from": from, "optimizer": {"kind": "sgd", "lr": 0.2, "momentum": 0.9},
            "meta_batch_size": 20, "model": {"arch": "mlp", "hidden": [32]}
        }))
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let stop = AtomicBool::new(false);
        let ctx = context(dir.path(), 3, &NoProgress, &stop);
        let m = train_mlc::train(&p, &ctx, &ds, &nl, None).unwrap();
        let w = std::fs::read(ctx.out_dir.join("weights.safetensors")).unwrap();
        (m, w)
    };
    let (best, w_best) = run_mlc(6, "best");
    let warmup: Vec<f64> = best
        .epochs
        .iter()
        .filter(|e| e.phase == "warmup")
        .map(|e| e.test_accuracy)
        .collect();
    // without an interval, the best of the warm-up's epoch ends, the first of equals
    let top = warmup.iter().cloned().fold(0.0, f64::max);
    let e = warmup.iter().position(|&a| a == top).unwrap() + 1;
    assert_eq!(best.extra["warmup_best_test_accuracy"], top);
    assert!(
        e < warmup.len(),
        "the last warm-up epoch is the best: {warmup:?}"
    );
    // the MLC phase then runs exactly as after a warm-up that stopped at that epoch
    let (cut, w_cut) = run_mlc(e, "last");
    let mlc = |m: &Metrics| -> Vec<(f64, f64)> {
        m.epochs
            .iter()
            .filter(|x| x.phase == "mlc")
            .map(|x| (x.train_loss, x.test_accuracy))
            .collect()
    };
    assert_eq!(mlc(&best), mlc(&cut));
    assert!(
        w_best == w_cut,
        "the MLC phase did not start from epoch {e}'s weights"
    );
    assert!(!cut.extra.contains_key("warmup_best_test_accuracy"));
    // and differs from continuing from the last warm-up epoch
    let (_, w_last) = run_mlc(6, "last");
    assert!(w_last != w_best);
    // refused without a warm-up
    use repro_stages::stage_kind::StageKind;
    let p: train_mlc::Params =
        serde_json::from_value(serde_json::json!({"continue_from": "best"})).unwrap();
    assert!(p.check().unwrap_err().starts_with("field `continue_from`"));
}
