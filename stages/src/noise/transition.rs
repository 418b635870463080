//! The transition matrices C of the injected noise models (K classes, strength p, row =
//! true class, column = observed class): what a generator resamples labels from, or for
//! the MLC generators the expectation of what they produce.
//!
//! * GLC (Hendrycks et al. 2018, `mmazeika/glc`): [`uniform_mix_c`] `C = p/K·11ᵀ + (1−p)I`
//!   (flip rate p(K−1)/K); flip, diagonal `1−p` and mass `p` on one other class per row,
//!   with the targets GLC's `flip_labels_C` draws ([`glc_flip_c`]: NumPy's legacy
//!   generator seeded with 1, see [`crate::numpy_legacy`]) or targets drawn per seed
//!   ([`flip_c`]); [`hierarchical_c`] (CIFAR-100), `p` spread evenly over the other fine
//!   classes of the same superclass.
//! * The official MLC code (Wang et al. 2020): [`symmetric_c`], diagonal `1−p` and
//!   `p/(K−1)` elsewhere; [`pair_c`], diagonal `1−p` and `p` at `(c, t(c))`.

use anyhow::{bail, ensure, Context, Result};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::Matrix;

/// The seed GLC's `flip_labels_C` gives NumPy (its default, and what every GLC script uses).
pub const GLC_FLIP_SEED: u32 = 1;

/// GLC `uniform_mix_C`: `p/K·11ᵀ + (1−p)I`.
pub fn uniform_mix_c(k: usize, p: f64) -> Matrix {
    let mut m = Matrix {
        k,
        data: vec![p / k as f64; k * k],
    };
    for i in 0..k {
        m.data[i * k + i] += 1.0 - p;
    }
    m
}

/// Diagonal `1−p`, every other entry `p/(K−1)` (symmetric noise excluding the true class).
pub fn symmetric_c(k: usize, p: f64) -> Matrix {
    let mut m = Matrix {
        k,
        data: vec![if k > 1 { p / (k - 1) as f64 } else { 0.0 }; k * k],
    };
    for i in 0..k {
        m.data[i * k + i] = if k > 1 { 1.0 - p } else { 1.0 };
    }
    m
}

/// Diagonal `1−p`, `p` at `(c, targets[c])` (`targets[c] != c`).
pub fn pair_c(targets: &[usize], p: f64) -> Matrix {
    let k = targets.len();
    let mut m = Matrix::identity(k);
    for (c, &t) in targets.iter().enumerate() {
        m.set(c, c, 1.0 - p);
        m.set(c, t, m.at(c, t) + p);
    }
    m
}

/// A uniformly random class other than `c` in `0..k` (`k ≥ 2`).
pub fn other_class(c: usize, k: usize, rng: &mut ChaCha8Rng) -> usize {
    let j = rng.random_range(0..k - 1);
    if j >= c {
        j + 1
    } else {
        j
    }
}

/// One random other class per class, drawn in class order.
pub fn random_targets(k: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    (0..k).map(|c| other_class(c, k, rng)).collect()
}

/// Flip noise with targets drawn from `rng` ([`super::FlipTargets::PerSeed`]): diagonal `1−p`,
/// mass `p` on one random other class per row.
pub fn flip_c(k: usize, p: f64, rng: &mut ChaCha8Rng) -> Matrix {
    pair_c(&random_targets(k, rng), p)
}

/// GLC `flip_labels_C(p, k)` exactly ([`super::FlipTargets::Glc`]): diagonal `1−p`, mass `p` on
/// the other class NumPy seeded with 1 picks for each row (`k ≥ 2`).
pub fn glc_flip_c(k: usize, p: f64) -> Matrix {
    pair_c(&crate::numpy_legacy::glc_flip_targets(k, GLC_FLIP_SEED), p)
}

/// The superclass of each fine class, read off (fine, coarse) label pairs. Errors when a
/// fine class appears with two superclasses or never appears.
pub fn fine_to_coarse(fine: &[u32], coarse: &[u32], k: usize) -> Result<Vec<u32>> {
    ensure!(
        fine.len() == coarse.len(),
        "{} fine labels but {} coarse labels",
        fine.len(),
        coarse.len()
    );
    let mut map: Vec<Option<u32>> = vec![None; k];
    for (&f, &c) in fine.iter().zip(coarse) {
        match map[f as usize] {
            None => map[f as usize] = Some(c),
            Some(prev) if prev != c => {
                bail!("fine class {f} appears under superclasses {prev} and {c}")
            }
            _ => {}
        }
    }
    map.iter()
        .enumerate()
        .map(|(f, c)| {
            c.with_context(|| format!("fine class {f} never appears, its superclass is unknown"))
        })
        .collect()
}

/// GLC hierarchical C: diagonal `1−p`, `p/(s−1)` on the other `s−1` fine classes of the
/// same superclass. A fine class alone in its superclass keeps its label.
pub fn hierarchical_c(fine_to_coarse: &[u32], p: f64) -> Matrix {
    let k = fine_to_coarse.len();
    let mut m = Matrix::identity(k);
    for i in 0..k {
        let sibs: Vec<usize> = (0..k)
            .filter(|&j| j != i && fine_to_coarse[j] == fine_to_coarse[i])
            .collect();
        if sibs.is_empty() {
            continue;
        }
        m.set(i, i, 1.0 - p);
        for &j in &sibs {
            m.set(i, j, p / sibs.len() as f64);
        }
    }
    m
}
