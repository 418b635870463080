//! Independent float64 reference for the look-ahead hypergradient on softmax regression
//! (a linear classifier, no hidden layer). Nothing here uses dfdx: gradients are written
//! out by hand, and the hypergradient is the central difference of the whole look-ahead
//! objective with respect to each entry of the extra parameters.
//!
//! Shared by several test crates; each uses only part of it.
#![allow(dead_code)]

/// Softmax regression parameters: `w` is K×D row-major, `b` has K entries.
#[derive(Clone)]
pub struct Linear {
    pub k: usize,
    pub d: usize,
    pub w: Vec<f64>,
    pub b: Vec<f64>,
}

impl Linear {
    pub fn probs(&self, x: &[f64]) -> Vec<f64> {
        let z: Vec<f64> = (0..self.k)
            .map(|i| {
                self.b[i]
                    + (0..self.d)
                        .map(|j| self.w[i * self.d + j] * x[j])
                        .sum::<f64>()
            })
            .collect();
        let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = z.iter().map(|v| (v - m).exp()).collect();
        let s: f64 = e.iter().sum();
        e.iter().map(|v| v / s).collect()
    }
}

/// Mean over the batch of `-log(sum_j p_j T[j, y])` and its gradient (dW, db).
/// `t` is K×K row-major (row = true class, column = observed class).
pub fn forward_corrected_grad(
    m: &Linear,
    t: &[f64],
    xs: &[Vec<f64>],
    ys: &[usize],
) -> (f64, Vec<f64>, Vec<f64>) {
    let (k, d, n) = (m.k, m.d, xs.len() as f64);
    let mut gw = vec![0.0; k * d];
    let mut gb = vec![0.0; k];
    let mut loss = 0.0;
    for (x, &y) in xs.iter().zip(ys) {
        let p = m.probs(x);
        let q: f64 = (0..k).map(|j| p[j] * t[j * k + y]).sum();
        loss += -q.ln();
        for a in 0..k {
            let dz = p[a] * (1.0 - t[a * k + y] / q) / n;
            gb[a] += dz;
            for j in 0..d {
                gw[a * d + j] += dz * x[j];
            }
        }
    }
    (loss / n, gw, gb)
}

/// Mean cross-entropy on clean labels.
pub fn ce(m: &Linear, xs: &[Vec<f64>], ys: &[usize]) -> f64 {
    xs.iter()
        .zip(ys)
        .map(|(x, &y)| -m.probs(x)[y].ln())
        .sum::<f64>()
        / xs.len() as f64
}

/// The look-ahead objective `L_meta(theta - alpha * grad_theta L_train(theta, T))`.
pub fn lookahead(
    m: &Linear,
    t: &[f64],
    alpha: f64,
    tr: (&[Vec<f64>], &[usize]),
    meta: (&[Vec<f64>], &[usize]),
) -> f64 {
    let (_, gw, gb) = forward_corrected_grad(m, t, tr.0, tr.1);
    let mut m2 = m.clone();
    for (w, g) in m2.w.iter_mut().zip(&gw) {
        *w -= alpha * g;
    }
    for (b, g) in m2.b.iter_mut().zip(&gb) {
        *b -= alpha * g;
    }
    ce(&m2, meta.0, meta.1)
}

/// d lookahead / d T by central differences (step h), every entry.
pub fn hypergrad_t(
    m: &Linear,
    t: &[f64],
    alpha: f64,
    tr: (&[Vec<f64>], &[usize]),
    meta: (&[Vec<f64>], &[usize]),
    h: f64,
) -> Vec<f64> {
    (0..t.len())
        .map(|i| {
            let mut tp = t.to_vec();
            let mut tm = t.to_vec();
            tp[i] += h;
            tm[i] -= h;
            (lookahead(m, &tp, alpha, tr, meta) - lookahead(m, &tm, alpha, tr, meta)) / (2.0 * h)
        })
        .collect()
}

/// Mean soft cross-entropy `−1/B Σ_b Σ_k ŷ_bk log p_bk` with `ŷ_b = softmax(ℓ_b / τ)`, and its
/// gradient (dW, db): `∂L/∂z_b = (p_b − ŷ_b) / B` since each `ŷ_b` sums to one.
pub fn soft_ce_grad(
    m: &Linear,
    label_logits: &[f64],
    tau: f64,
    xs: &[Vec<f64>],
) -> (f64, Vec<f64>, Vec<f64>) {
    let (k, d, n) = (m.k, m.d, xs.len() as f64);
    let mut gw = vec![0.0; k * d];
    let mut gb = vec![0.0; k];
    let mut loss = 0.0;
    for (bi, x) in xs.iter().enumerate() {
        let p = m.probs(x);
        let y = softmax(&label_logits[bi * k..(bi + 1) * k], tau);
        loss -= (0..k).map(|j| y[j] * p[j].ln()).sum::<f64>();
        for a in 0..k {
            let dz = (p[a] - y[a]) / n;
            gb[a] += dz;
            for j in 0..d {
                gw[a * d + j] += dz * x[j];
            }
        }
    }
    (loss / n, gw, gb)
}

pub fn softmax(z: &[f64], tau: f64) -> Vec<f64> {
    let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = z.iter().map(|v| ((v - m) / tau).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

/// d/dℓ of `L_meta(θ − α ∇_θ L_soft(θ, ℓ))` by central differences, every entry of ℓ.
pub fn hypergrad_labels(
    m: &Linear,
    label_logits: &[f64],
    tau: f64,
    alpha: f64,
    xs: &[Vec<f64>],
    meta: (&[Vec<f64>], &[usize]),
    h: f64,
) -> Vec<f64> {
    let objective = |l: &[f64]| {
        let (_, gw, gb) = soft_ce_grad(m, l, tau, xs);
        let mut m2 = m.clone();
        m2.w.iter_mut().zip(&gw).for_each(|(w, g)| *w -= alpha * g);
        m2.b.iter_mut().zip(&gb).for_each(|(b, g)| *b -= alpha * g);
        ce(&m2, meta.0, meta.1)
    };
    (0..label_logits.len())
        .map(|i| {
            let mut a = label_logits.to_vec();
            let mut b = label_logits.to_vec();
            a[i] += h;
            b[i] -= h;
            (objective(&a) - objective(&b)) / (2.0 * h)
        })
        .collect()
}
