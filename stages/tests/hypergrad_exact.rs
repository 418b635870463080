//! The MLC hypergradient (finite differences of first-order dfdx gradients) against an
//! independent float64 value: the central difference, entry by entry of T, of the whole
//! look-ahead objective `L_meta(θ − α ∇_θ L_train(θ, T))` for softmax regression, with
//! every gradient of the reference written out by hand (`reference` below: no dfdx).

use dfdx::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use repro_stages::kinds::train_mlc::{t_hypergradient, Variant};
use repro_stages::nn::model::{Input, InputKind, ModelSpec, Network};
use repro_stages::noise::Matrix;

mod reference;

struct Problem {
    k: usize,
    d: usize,
    xs: Vec<Vec<f64>>,
    ys: Vec<usize>,
    mx: Vec<Vec<f64>>,
    my: Vec<usize>,
    t: Vec<f64>,
}

fn problem(seed: u64) -> Problem {
    let (k, d, b, m) = (4, 5, 12, 9);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut draw = |n: usize| -> Vec<Vec<f64>> {
        (0..n)
            .map(|_| (0..d).map(|_| rng.random_range(-1.5..1.5)).collect())
            .collect()
    };
    let xs = draw(b);
    let mx = draw(m);
    let mut rng = ChaCha8Rng::seed_from_u64(seed + 1);
    let ys = (0..b).map(|_| rng.random_range(0..k)).collect();
    let my = (0..m).map(|_| rng.random_range(0..k)).collect();
    // A row-stochastic T away from the identity.
    let mut t = vec![0.0; k * k];
    for i in 0..k {
        let row: Vec<f64> = (0..k)
            .map(|j| {
                if i == j {
                    2.0
                } else {
                    rng.random_range(0.1..1.0)
                }
            })
            .collect();
        let s: f64 = row.iter().sum();
        for j in 0..k {
            t[i * k + j] = row[j] / s;
        }
    }
    Problem {
        k,
        d,
        xs,
        ys,
        mx,
        my,
        t,
    }
}

fn mat(rows: &[Vec<f64>]) -> Input {
    let dev = Cpu::default();
    let d = rows[0].len();
    Input::Dense(dev.tensor_from_vec(
        rows.iter().flatten().map(|&v| v as f32).collect(),
        (rows.len(), d),
    ))
}

fn relative_error(a: &[f64], b: &[f64]) -> f64 {
    let num: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f64>()
        .sqrt();
    let den: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    num / den
}

fn check(seed: u64, alpha: f32) -> f64 {
    let pr = problem(seed);
    let spec = ModelSpec::Mlp {
        hidden: vec![],
        dropout: 0.0,
        embed_dim: None,
        weight_init: Default::default(),
    };
    let (net, params, mut buffers) =
        Network::new(&spec, &InputKind::Dense(vec![pr.d]), pr.k, seed).unwrap();
    // The same weights in the reference (PyTorch layout: weight [out, in], then bias).
    let host = params.to_host();
    assert_eq!(
        host.len(),
        2,
        "softmax regression has one weight and one bias"
    );
    let lin = reference::Linear {
        k: pr.k,
        d: pr.d,
        w: host[0].iter().map(|&v| v as f64).collect(),
        b: host[1].iter().map(|&v| v as f64).collect(),
    };
    let exact = reference::hypergrad_t(
        &lin,
        &pr.t,
        alpha as f64,
        (&pr.xs, &pr.ys),
        (&pr.mx, &pr.my),
        1e-5,
    );

    let labels: Vec<u32> = pr.ys.iter().map(|&y| y as u32).collect();
    let trusted = vec![false; labels.len()];
    let meta_labels: Vec<u32> = pr.my.iter().map(|&y| y as u32).collect();
    let t = Matrix {
        k: pr.k,
        data: pr.t.clone(),
    };
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let (_, fd) = t_hypergradient(
        Variant::Textbook,
        &net,
        &params,
        &mut buffers,
        (mat(&pr.xs), &labels, &trusted),
        &t,
        (mat(&pr.mx), &meta_labels),
        alpha,
        0.01,
        &mut rng,
    )
    .unwrap();
    let err = relative_error(&fd, &exact);
    eprintln!(
        "seed {seed} alpha {alpha}: relative error {err:.2e} (|exact| = {:.3e})",
        exact.iter().map(|v| v * v).sum::<f64>().sqrt()
    );
    err
}

#[test]
fn mlc_hypergradient_matches_float64_central_differences() {
    for (seed, alpha) in [(1, 0.1), (2, 0.5), (3, 1.0)] {
        let err = check(seed, alpha);
        assert!(
            err < 1e-3,
            "seed {seed}: relative error {err:.3e} of the finite-difference hypergradient"
        );
    }
}

#[test]
fn reference_gradient_matches_its_own_central_differences() {
    // The hand-written gradient of the reference, checked once against differences of
    // its loss, so the reference itself cannot drift.
    let pr = problem(7);
    let lin = reference::Linear {
        k: pr.k,
        d: pr.d,
        w: (0..pr.k * pr.d).map(|i| (i as f64 * 0.37).sin()).collect(),
        b: vec![0.1, -0.2, 0.3, 0.0],
    };
    let (_, gw, gb) = reference::forward_corrected_grad(&lin, &pr.t, &pr.xs, &pr.ys);
    let h = 1e-6;
    for i in 0..lin.w.len() {
        let mut a = lin.clone();
        let mut b = lin.clone();
        a.w[i] += h;
        b.w[i] -= h;
        let num = (reference::forward_corrected_grad(&a, &pr.t, &pr.xs, &pr.ys).0
            - reference::forward_corrected_grad(&b, &pr.t, &pr.xs, &pr.ys).0)
            / (2.0 * h);
        assert!((num - gw[i]).abs() < 1e-7, "dW[{i}]: {num} vs {}", gw[i]);
    }
    for i in 0..lin.b.len() {
        let mut a = lin.clone();
        let mut b = lin.clone();
        a.b[i] += h;
        b.b[i] -= h;
        let num = (reference::forward_corrected_grad(&a, &pr.t, &pr.xs, &pr.ys).0
            - reference::forward_corrected_grad(&b, &pr.t, &pr.xs, &pr.ys).0)
            / (2.0 * h);
        assert!((num - gb[i]).abs() < 1e-7, "db[{i}]: {num} vs {}", gb[i]);
    }
}
