//! The GLC benchmark on the digits data (ignored by default; an experiment, not a check):
//! 5% trusted, uniform and flip corruption at strengths 0, 0.2, …, 1.0, every `train`
//! method with its defaults, 3 seeds; prints the mean test error (%) per method,
//! corruption and strength, and the mean over strengths (GLC's "area under the error
//! curve").
//!
//! `cargo test --release -p repro-stages --test train_glc_evidence -- --ignored --nocapture`

mod train_common;

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use repro_stages::kinds::train::{train, Params};
use repro_stages::NoProgress;
use train_common::*;

#[test]
#[ignore]
fn glc_benchmark_on_digits() {
    let ds = digits();
    let methods = [
        "ce",
        "trusted_only",
        "forward",
        "forward_gold",
        "ideal",
        "glc",
        "confusion",
        "label_smoothing",
    ];
    let strengths = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0];
    let seeds = [1u64, 2, 3];
    let started = Instant::now();
    let mut runs = 0;
    for corruption in ["uniform", "flip"] {
        println!("\n{corruption}, 5% trusted: mean test error (%) over seeds {seeds:?}");
        print!("{:<16}", "method");
        for s in strengths {
            print!("{s:>7.1}");
        }
        println!("{:>8}", "mean");
        for m in methods {
            let p: Params = serde_json::from_value(serde_json::json!({ "method": m })).unwrap();
            print!("{m:<16}");
            let mut row = vec![];
            for s in strengths {
                let mut err = 0.0;
                for &seed in &seeds {
                    let nl = noisy(&ds, corruption, s, 0.05, seed);
                    let dir = tempfile::tempdir().unwrap();
                    let stop = AtomicBool::new(false);
                    let ctx = context(dir.path(), seed, &NoProgress, &stop);
                    err += train(&p, &ctx, &ds, Some(&nl)).unwrap().final_test_error;
                    runs += 1;
                }
                let e = 100.0 * err / seeds.len() as f64;
                row.push(e);
                print!("{e:>7.1}");
            }
            println!("{:>8.1}", row.iter().sum::<f64>() / row.len() as f64);
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "\n{runs} runs in {secs:.1} s ({:.2} s per run)",
        secs / runs as f64
    );
}
