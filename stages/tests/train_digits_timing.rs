//! Wall time of single default digits runs (ignored by default; a measurement):
//! `cargo test --release -p repro-stages --test train_digits_timing -- --ignored --nocapture`

mod train_common;

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use repro_stages::kinds::train::{train, Params};
use repro_stages::NoProgress;
use train_common::*;

#[test]
#[ignore]
fn default_digits_runs() {
    let ds = digits();
    let nl = noisy(&ds, "flip", 0.6, 0.05, 1);
    for m in ["ce", "glc", "trusted_only"] {
        let p: Params = serde_json::from_value(serde_json::json!({ "method": m })).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let stop = AtomicBool::new(false);
        let ctx = context(dir.path(), 1, &NoProgress, &stop);
        let t = Instant::now();
        let r = train(&p, &ctx, &ds, Some(&nl)).unwrap();
        println!(
            "{m}: {:.2} s, test error {:.3}",
            t.elapsed().as_secs_f64(),
            r.final_test_error
        );
    }
}
