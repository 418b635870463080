//! A run stopped between batches saves a checkpoint and returns `Interrupted`; the rerun
//! resumes from it and ends with the same bytes as an uninterrupted run. Also: a
//! diverging run stops with an error naming the epoch and batch.

mod train_common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use repro_stages::kinds::train::{train, Params};
use repro_stages::{Interrupted, NoProgress};
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
    let p: Params = serde_json::from_value(serde_json::json!({
        "method": "ce", "epochs": 2,
        "optimizer": {"kind": "sgd", "lr": 1e30, "momentum": 0.0}
    }))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let stop = AtomicBool::new(false);
    let ctx = context(dir.path(), 1, &NoProgress, &stop);
    let e = train(&p, &ctx, &ds, None).unwrap_err().to_string();
    assert!(
        e.contains("training diverged") && e.contains("epoch 1") && e.contains("batch "),
        "{e}"
    );
}
