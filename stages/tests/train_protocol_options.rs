//! The `train` options that express GLC's CIFAR scripts, each against the default it
//! departs from: a carried optimizer continues phase 1's state (a rule with teeth only
//! when the optimizer has state), and phase 2 can start from phase 1's trained weights.

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
fn phase2_init_is_refused_for_a_one_phase_method() {
    use repro_stages::stage_kind::StageKind;
    let p: Params = serde_json::from_value(serde_json::json!({
        "method": "ce", "phase2_init": "phase1"
    }))
    .unwrap();
    let e = p.check().unwrap_err();
    assert!(
        e.starts_with("field `phase2_init`: method ce has one phase"),
        "{e}"
    );
    let p: Params = serde_json::from_value(serde_json::json!({
        "method": "forward", "anchor_percentile": 101
    }))
    .unwrap();
    assert!(p
        .check()
        .unwrap_err()
        .starts_with("field `anchor_percentile`"));
}
