//! The timing summary every bench prints.

/// `(median, minimum)` of `v` (the upper median for an even count).
pub fn median_min(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[v.len() / 2], v[0])
}

/// Prints `name median_ms min_ms iterations`, the line `bench/pytorch_bench.sh` reads.
#[allow(dead_code)] // meta_step prints its own breakdown
pub fn report(name: &str, times_ms: Vec<f64>) {
    let n = times_ms.len();
    let (med, min) = median_min(times_ms);
    println!("{name} {med:.3} {min:.3} {n}");
}
