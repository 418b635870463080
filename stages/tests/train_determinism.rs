//! Same seed, same bytes: weights.safetensors and metrics.json of two runs are identical,
//! also when the rayon pool has 1 or 2 threads.

mod train_common;

use std::sync::atomic::AtomicBool;

use repro_stages::kinds::train::{train, Params};
use repro_stages::NoProgress;
use train_common::*;

fn run_bytes(params: serde_json::Value, threads: usize) -> (Vec<u8>, Vec<u8>) {
    let ds = digits();
    let nl = noisy(&ds, "flip", 0.6, 0.05, 3);
    let p: Params = serde_json::from_value(params).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let stop = AtomicBool::new(false);
    let ctx = context(dir.path(), 7, &NoProgress, &stop);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let m = pool.install(|| train(&p, &ctx, &ds, Some(&nl))).unwrap();
    m.save(&ctx.out_dir).unwrap();
    (
        std::fs::read(ctx.out_dir.join("weights.safetensors")).unwrap(),
        std::fs::read(ctx.out_dir.join("metrics.json")).unwrap(),
    )
}

#[test]
fn mlp_glc_twice_gives_identical_bytes_with_1_and_2_threads() {
    let params = serde_json::json!({"method": "glc", "epochs": 3});
    let a = run_bytes(params.clone(), 2);
    let b = run_bytes(params.clone(), 2);
    let c = run_bytes(params, 1);
    assert!(
        a.0 == b.0 && a.1 == b.1,
        "two runs with the same seed differ"
    );
    assert!(a.0 == c.0 && a.1 == c.1, "1 and 2 threads differ");
}

#[test]
fn cnn_with_batch_norm_free_convs_is_deterministic_across_threads() {
    let params = serde_json::json!({
        "method": "ce", "epochs": 1, "batch_size": 64,
        "model": {"arch": "small_cnn", "channels": [8, 16], "hidden": 32},
        "optimizer": {"kind": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": true, "weight_decay": 5e-4}
    });
    let a = run_bytes(params.clone(), 2);
    let b = run_bytes(params, 1);
    assert!(a.0 == b.0 && a.1 == b.1, "1 and 2 threads differ");
}

#[test]
fn wrn_with_batch_norm_and_dropout_is_deterministic_across_threads() {
    // WRN-10-1 on 8x8 digits: convs, batch norm, dropout, shortcut convs, cosine schedule.
    let params = serde_json::json!({
        "method": "ce", "epochs": 1, "batch_size": 128,
        "model": {"arch": "wrn", "depth": 10, "widen": 1, "dropout": 0.3},
        "optimizer": {"kind": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": true, "weight_decay": 5e-4},
        "schedule": {"kind": "cosine"}, "augment": true
    });
    let a = run_bytes(params.clone(), 2);
    let b = run_bytes(params, 1);
    assert!(a.0 == b.0 && a.1 == b.1, "1 and 2 threads differ");
}
