//! Where a matrix product starts to gain from more threads: each product of the host
//! kernels' shapes (the MLP 784-128-128-10 at batch 32 as the `cpu` profile trains it and
//! at batch 500 as it evaluates, the batch-128 MLP 784-256-256-10, square sizes) timed on
//! the calling thread and on the rayon pool, alternately, so
//! that load from other processes hits both alike. This is the measurement behind
//! [`repro_stages::nn::kernels::PAR_MIN_MULADDS`].
//!
//! `RAYON_NUM_THREADS=2 cargo bench -p repro-stages --bench products` (threads: the
//! pool's, default all cores). Prints `name m n k muladds seq_us pool_us pool/seq` per
//! product (medians), and the threshold the kernels use.

mod timing;

use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use repro_stages::nn::kernels::{matmul_with, Isa, Operand, PAR_MIN_MULADDS};

/// `(name, m, n, k, a transposed, b transposed)`, as the linear layer calls them.
const SHAPES: &[(&str, usize, usize, usize, bool, bool)] = &[
    ("mlp128_b32_fwd1", 32, 128, 784, false, true),
    ("mlp128_b32_gw1", 128, 784, 32, true, false),
    ("mlp128_b32_fwd2", 32, 128, 128, false, true),
    ("mlp128_b32_gx2", 32, 128, 128, false, false),
    ("mlp128_b32_gw2", 128, 128, 32, true, false),
    ("mlp128_b500_eval1", 500, 128, 784, false, true),
    ("mlp256_b128_fwd1", 128, 256, 784, false, true),
    ("mlp256_b128_gw1", 256, 784, 128, true, false),
    ("mlp256_b128_fwd2", 128, 256, 256, false, true),
    ("square_128", 128, 128, 128, false, false),
    ("square_192", 192, 192, 192, false, false),
    ("square_256", 256, 256, 256, false, false),
    ("square_320", 320, 320, 320, false, false),
    ("square_384", 384, 384, 384, false, false),
    ("square_512", 512, 512, 512, false, false),
];

fn main() {
    let threads = rayon::current_num_threads();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    println!("threads {threads}  PAR_MIN_MULADDS {PAR_MIN_MULADDS}");
    for &(name, m, n, k, ta, tb) in SHAPES {
        let a: Vec<f32> = (0..m * k).map(|_| rng.random::<f32>()).collect();
        let b: Vec<f32> = (0..k * n).map(|_| rng.random::<f32>()).collect();
        let (oa, ob) = (
            if ta {
                Operand::t(&a, k, m)
            } else {
                Operand::n(&a, m, k)
            },
            if tb {
                Operand::t(&b, n, k)
            } else {
                Operand::n(&b, k, n)
            },
        );
        let mut c = vec![0.0f32; m * n];
        let work = m * n * k;
        // About 0.3 s per side.
        let iters = (3e8 / work as f64).clamp(5.0, 20_000.0) as usize;
        let (mut seq, mut pool) = (Vec::new(), Vec::new());
        for i in 0..2 * iters {
            let p = if i % 2 == 0 { 1 } else { threads };
            let t = Instant::now();
            matmul_with(oa, ob, &mut c, false, p, Isa::detect());
            let us = t.elapsed().as_secs_f64() * 1e6;
            if i % 2 == 0 { &mut seq } else { &mut pool }.push(us);
        }
        let (s, _) = timing::median_min(seq);
        let (p, _) = timing::median_min(pool);
        println!("{name} {m} {n} {k} {work} {s:.1} {p:.1} {:.2}", p / s);
    }
}
