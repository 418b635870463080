//! Which differences between table entries are real: Welch's t-test over seeds, and the
//! Student t distribution it needs, computed here from the regularized incomplete beta
//! function.
//!
//! A table entry is a mean ± sample std over n seeds ([`Stat`]). T1 and T4 test every
//! entry of a row against the row's best one: the one-sided Welch's t-test of "this entry
//! is worse than the best" gives a p-value, and an entry with p ≥ [`ALPHA`] is *not
//! significantly worse* than the best, so the writers mark it (see
//! [`crate::report::table::Table::vs_best`]). One-sided, because the question a reader asks
//! of a row is only whether an entry loses to the best, never whether it beats it (the best
//! is the best by its mean). Entries with fewer than [`MIN_SEEDS`] seeds are not tested:
//! with one seed there is no spread to test against, with two the spread is one number.
//!
//! Numerics: `ln Γ` by the Lanczos approximation (g = 7, 9 terms; relative error about
//! 1e-15 for positive arguments); `I_x(a, b)` by its continued fraction evaluated with the
//! modified Lentz method, on `x` or, by `I_x(a, b) = 1 − I_{1−x}(b, a)`, on `1 − x`, whichever
//! converges fast (`x < (a + 1)/(a + b + 2)`). The `significance` tests hold the t CDF to
//! values from SciPy.

use crate::math::{exp, ln, sin};
use crate::report::aggregate::Stat;

/// The level below which a difference counts as real.
pub const ALPHA: f64 = 0.05;
/// The fewest seeds an entry needs to be tested.
pub const MIN_SEEDS: usize = 3;

/// Lanczos coefficients for g = 7, n = 9.
const LANCZOS: [f64; 9] = [
    0.999_999_999_999_809_9,
    676.520_368_121_885_1,
    -1_259.139_216_722_402_8,
    771.323_428_777_653_1,
    -176.615_029_162_140_6,
    12.507_343_278_686_905,
    -0.138_571_095_265_720_12,
    9.984_369_578_019_572e-6,
    1.505_632_735_149_311_6e-7,
];

/// `ln Γ(x)` for `x > 0`.
pub fn ln_gamma(x: f64) -> f64 {
    if x < 0.5 {
        // Reflection: Γ(x) Γ(1 − x) = π / sin(πx).
        let pi = std::f64::consts::PI;
        return ln(pi / sin(pi * x)) - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut sum = LANCZOS[0];
    for (i, c) in LANCZOS.iter().enumerate().skip(1) {
        sum += c / (x + i as f64);
    }
    let t = x + 7.5;
    0.5 * ln(2.0 * std::f64::consts::PI) + (x + 0.5) * ln(t) - t + ln(sum)
}

/// The continued fraction of `I_x(a, b)` (without its prefactor), by the modified Lentz
/// method: terms `d_{2m} = m(b − m)x / ((a + 2m − 1)(a + 2m))` and
/// `d_{2m+1} = −(a + m)(a + b + m)x / ((a + 2m)(a + 2m + 1))`.
fn beta_continued_fraction(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    const EPS: f64 = 1e-16;
    let fix = |v: f64| if v.abs() < TINY { TINY } else { v };
    let mut c = 1.0;
    let mut d = 1.0 / fix(1.0 - (a + b) * x / (a + 1.0));
    let mut h = d;
    for m in 1..=1000 {
        let m = m as f64;
        let even = m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m));
        d = 1.0 / fix(1.0 + even * d);
        c = fix(1.0 + even / c);
        h *= d * c;
        let odd = -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0));
        d = 1.0 / fix(1.0 + odd * d);
        c = fix(1.0 + odd / c);
        let step = d * c;
        h *= step;
        if (step - 1.0).abs() < EPS {
            break;
        }
    }
    h
}

/// The regularized incomplete beta function `I_x(a, b)` for `a, b > 0`, `x` in `[0, 1]`.
pub fn incomplete_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * ln(x) + b * ln(1.0 - x);
    if x < (a + 1.0) / (a + b + 2.0) {
        exp(ln_front) * beta_continued_fraction(a, b, x) / a
    } else {
        1.0 - exp(ln_front) * beta_continued_fraction(b, a, 1.0 - x) / b
    }
}

/// `P(T ≤ t)` for Student's t with `df > 0` degrees of freedom (not necessarily whole):
/// the tail beyond `|t|` is `I_{df/(df+t²)}(df/2, 1/2) / 2`.
pub fn student_t_cdf(t: f64, df: f64) -> f64 {
    if t.is_infinite() {
        return if t > 0.0 { 1.0 } else { 0.0 };
    }
    let tail = 0.5 * incomplete_beta(df / 2.0, 0.5, df / (df + t * t));
    if t > 0.0 {
        1.0 - tail
    } else {
        tail
    }
}

/// One-sided Welch's t-test that `other`'s mean exceeds `base`'s: the p-value
/// `P(T ≥ t)` with `t = (mean_o − mean_b) / sqrt(s_o²/n_o + s_b²/n_b)` and the
/// Welch–Satterthwaite degrees of freedom. None when either has fewer than
/// [`MIN_SEEDS`] seeds. When both spreads are 0, the difference is certain: p is 0 if
/// `other` is larger, else 1.
pub fn welch_greater(other: &Stat, base: &Stat) -> Option<f64> {
    if other.n < MIN_SEEDS || base.n < MIN_SEEDS {
        return None;
    }
    let (vo, vb) = (
        other.std.unwrap_or(0.0).powi(2) / other.n as f64,
        base.std.unwrap_or(0.0).powi(2) / base.n as f64,
    );
    let diff = other.mean - base.mean;
    let se2 = vo + vb;
    if se2 == 0.0 {
        return Some(if diff > 0.0 { 0.0 } else { 1.0 });
    }
    let df = se2 * se2 / (vo * vo / (other.n - 1) as f64 + vb * vb / (base.n - 1) as f64);
    Some(student_t_cdf(-diff / se2.sqrt(), df))
}
