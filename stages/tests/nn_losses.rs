//! Losses against values computed in the test itself in f64 from their definitions
//! (softmax by hand; −log Σ_i p_i C[i, ỹ] for forward correction).

use dfdx::prelude::*;
use repro_stages::nn::device::{Dev, Mat};
use repro_stages::nn::loss::{
    cross_entropy, forward_corrected, smoothed_targets, soft_cross_entropy,
};
use repro_stages::noise::Matrix;

const Z: [f32; 6] = [1.0, 2.0, 0.0, -1.0, 0.5, 3.0];

fn softmax(row: &[f32]) -> Vec<f64> {
    let e: Vec<f64> = row.iter().map(|&v| (v as f64).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

fn logits() -> Mat<OwnedTape<f32, Dev>> {
    Dev::default()
        .tensor_from_vec(Z.to_vec(), (2, 3))
        .leaky_traced()
}

#[test]
fn cross_entropy_and_smoothing() {
    let (p0, p1) = (softmax(&Z[..3]), softmax(&Z[3..]));
    let want = -(p0[1].ln() + p1[2].ln()) / 2.0;
    let got = cross_entropy(logits(), &[1, 2]).array() as f64;
    assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    let t = smoothed_targets(&[1, 2], 3, 0.3);
    assert!((t[1] - 0.8).abs() < 1e-7 && (t[0] - 0.1).abs() < 1e-7);
    let want_s = -(0.1 * p0[0].ln()
        + 0.8 * p0[1].ln()
        + 0.1 * p0[2].ln()
        + 0.1 * p1[0].ln()
        + 0.1 * p1[1].ln()
        + 0.8 * p1[2].ln())
        / 2.0;
    let got_s = soft_cross_entropy(logits(), t).array() as f64;
    assert!((got_s - want_s).abs() < 1e-6, "{got_s} vs {want_s}");
}

#[test]
fn forward_correction_with_zeros_in_c_and_trusted_examples() {
    // flip-like C with zeros; row = true class, column = observed class
    let c = Matrix {
        k: 3,
        data: vec![0.6, 0.4, 0.0, 0.0, 0.5, 0.5, 0.3, 0.0, 0.7],
    };
    let (p0, p1) = (softmax(&Z[..3]), softmax(&Z[3..]));
    // example 0 observed 1: Σ_i p_i C[i,1] = 0.4 p0 + 0.5 p1 + 0 p2
    let l0 = -(0.4 * p0[0] + 0.5 * p0[1]).ln();
    // example 1 observed 0: 0.6 p0 + 0.3 p2
    let l1 = -(0.6 * p1[0] + 0.3 * p1[2]).ln();
    let got = forward_corrected(logits(), &[1, 0], &c, None).array() as f64;
    assert!((got - (l0 + l1) / 2.0).abs() < 1e-6, "{got}");
    // example 1 trusted: plain CE for it
    let got_t = forward_corrected(logits(), &[1, 0], &c, Some(&[false, true])).array() as f64;
    assert!((got_t - (l0 - p1[0].ln()) / 2.0).abs() < 1e-6, "{got_t}");
    // with C = I forward correction is CE
    let id = Matrix::identity(3);
    let a = forward_corrected(logits(), &[1, 2], &id, None).array();
    let b = cross_entropy(logits(), &[1, 2]).array();
    assert!((a - b).abs() < 1e-6);
    // gradient stays finite where C has zeros
    let g = forward_corrected(logits(), &[1, 0], &c, None).backward();
    let _ = g;
}
