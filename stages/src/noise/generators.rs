//! The label-noise generators: the trusted subset, then the corruption of every other
//! label, then what the corruption measurably did (realized C, flip rate).
//!
//! * GLC (Hendrycks et al. 2018, `mmazeika/glc`): each untrusted label `y` is resampled
//!   from row `C[y]` of the model's matrix ([`sample_row`]; `uniform`, `flip`,
//!   `hierarchical`, see [`super::transition`]). How `flip`'s targets are drawn is
//!   [`FlipTargets`]: as GLC's code draws them ([`FlipTargets::Glc`], the default: the
//!   same matrix for every seed) or per seed ([`FlipTargets::PerSeed`]).
//! * The official MLC code (Wang et al. 2020; mlc-glc notes §2.2), exact counts per
//!   class: of the `n_c` untrusted examples of class c, exactly `round(p·n_c)` are chosen
//!   (seeded) and relabelled ([`mlc_count`]). [`Corruption::MlcUniform`]: from a shuffled
//!   list holding every class equally often (`m/K` each; when K does not divide m the
//!   remaining `m mod K` entries are distinct random classes), so a share 1/K keeps its
//!   label; expected C = `uniform_mix_c(K, p)`. [`Corruption::MlcSymmetric`]: each chosen
//!   example gets an independent uniformly random *other* class; expected C =
//!   `symmetric_c(K, p)`. [`Corruption::MlcPair`] ("flip to one"): all chosen examples of
//!   class c go to one seeded random other class t(c) (t need not be a permutation);
//!   C = `pair_c(t, p)`.
//! * Real noise ([`real`], Clothing1M): nothing is injected; C is estimated from the
//!   verified examples.
//!
//! Randomness: one `ChaCha8Rng::seed_from_u64(seed)` per purpose, told apart by its
//! stream ([`STREAM_TRUSTED`], [`STREAM_MATRIX`], [`STREAM_LABELS`]), so the trusted subset
//! does not depend on the corruption, and a seed gives the same bytes everywhere. The one
//! exception is GLC's flip targets, which GLC's code draws with NumPy's legacy generator
//! seeded with a fixed 1 whatever the run's seed.

use anyhow::{bail, ensure, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::transition::{
    fine_to_coarse, flip_c, glc_flip_c, hierarchical_c, other_class, pair_c, random_targets,
    symmetric_c, uniform_mix_c,
};
use super::{Matrix, NoiseMeta, NoisyLabels};
use crate::data::split;

/// RNG stream for drawing the trusted subset.
pub const STREAM_TRUSTED: u64 = 1;
/// RNG stream for random parts of C (flip targets, pair targets).
pub const STREAM_MATRIX: u64 = 2;
/// RNG stream for relabelling examples.
pub const STREAM_LABELS: u64 = 3;

/// `ChaCha8Rng::seed_from_u64(seed)` on `stream`.
pub fn rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(stream);
    r
}

/// A corruption, as named in params.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Corruption {
    /// GLC `uniform_mix`.
    Uniform,
    /// GLC `flip_labels`.
    Flip,
    /// GLC CIFAR-100 hierarchical (needs coarse labels).
    Hierarchical,
    /// MLC code type 1: exact-count uniform.
    MlcUniform,
    /// MLC code type 2 (`flip`): symmetric, excluding the true class, exact counts.
    MlcSymmetric,
    /// MLC code type 3 (`flip_to_one`): pair noise, exact counts.
    MlcPair,
    /// The noise the dataset comes with (Clothing1M): nothing is injected, see [`real`].
    Real,
}

impl Corruption {
    pub const ALL: [Corruption; 7] = [
        Corruption::Uniform,
        Corruption::Flip,
        Corruption::Hierarchical,
        Corruption::MlcUniform,
        Corruption::MlcSymmetric,
        Corruption::MlcPair,
        Corruption::Real,
    ];

    /// The corruption named `name` in params and `metrics.json`.
    pub fn from_name(name: &str) -> Option<Corruption> {
        Corruption::ALL.into_iter().find(|c| c.name() == name)
    }

    /// How tables show it (their writers escape it for LaTeX and Markdown).
    pub fn display(self) -> &'static str {
        match self {
            Corruption::Uniform => "Uniform",
            Corruption::Flip => "Flip",
            Corruption::Hierarchical => "Hierarchical",
            Corruption::MlcUniform => "Uniform (MLC code)",
            Corruption::MlcSymmetric => "Symmetric (MLC code)",
            Corruption::MlcPair => "Pair (MLC code)",
            Corruption::Real => "Real (the dataset's own)",
        }
    }

    /// Its rank among the rows of a table (GLC's three, the MLC code's three, real noise).
    pub fn place(self) -> usize {
        match self {
            Corruption::Uniform => 0,
            Corruption::Flip => 1,
            Corruption::Hierarchical => 2,
            Corruption::MlcUniform => 3,
            Corruption::MlcSymmetric => 4,
            Corruption::MlcPair => 5,
            Corruption::Real => 6,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Corruption::Uniform => "uniform",
            Corruption::Flip => "flip",
            Corruption::Hierarchical => "hierarchical",
            Corruption::MlcUniform => "mlc_uniform",
            Corruption::MlcSymmetric => "mlc_symmetric",
            Corruption::MlcPair => "mlc_pair",
            Corruption::Real => "real",
        }
    }
}

/// How the targets of `flip` noise (the one other class each class sends its flipped mass
/// to) are drawn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlipTargets {
    /// As GLC's `flip_labels_C` draws them: NumPy's legacy generator seeded with 1, one
    /// `choice` among the other classes per class in class order; one matrix per number of
    /// classes, shared by every seed, so numbers compare with GLC's
    /// ([`crate::numpy_legacy::glc_flip_targets`]).
    #[default]
    Glc,
    /// Drawn afresh from the run's seed ([`STREAM_MATRIX`]): seeds differ in their matrix
    /// too (some get 2-cycles, which make C singular at strength 0.5).
    PerSeed,
}

impl FlipTargets {
    pub fn name(self) -> &'static str {
        match self {
            FlipTargets::Glc => "glc",
            FlipTargets::PerSeed => "per_seed",
        }
    }
}

/// Draws a class from row `y` of `c` (inverse CDF on one uniform draw; the last class with
/// positive mass absorbs rounding).
pub fn sample_row(c: &Matrix, y: usize, rng: &mut ChaCha8Rng) -> usize {
    let u: f64 = rng.random();
    let row = c.row(y);
    let mut acc = 0.0;
    let mut last = y;
    for (j, &p) in row.iter().enumerate() {
        if p > 0.0 {
            acc += p;
            last = j;
            if u < acc {
                return j;
            }
        }
    }
    last
}

/// The empirical transition matrix over `idx`: row i = distribution of `noisy` among the
/// examples with `clean == i`. A class with no example gets the identity row.
pub fn realized_c(clean: &[u32], noisy: &[u32], idx: &[usize], k: usize) -> Matrix {
    let mut counts = vec![0u64; k * k];
    for &i in idx {
        counts[clean[i] as usize * k + noisy[i] as usize] += 1;
    }
    let mut m = Matrix::zeros(k);
    for i in 0..k {
        let n: u64 = counts[i * k..(i + 1) * k].iter().sum();
        if n == 0 {
            m.set(i, i, 1.0);
        } else {
            for j in 0..k {
                m.set(i, j, counts[i * k + j] as f64 / n as f64);
            }
        }
    }
    m
}

/// How the trusted subset is drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Trusted {
    /// `floor(f·N)` examples, split over classes by the largest remainder (stratified).
    Fraction(f64),
    /// Exactly `n` examples of every class (MLC protocol).
    PerClass(usize),
}

/// The sorted trusted indices (stratified, seeded on [`STREAM_TRUSTED`]).
pub fn draw_trusted(clean: &[u32], k: usize, t: Trusted, seed: u64) -> Result<Vec<usize>> {
    let counts = split::class_counts(clean, k);
    let take = match t {
        Trusted::Fraction(f) => {
            ensure!(
                (0.0..=1.0).contains(&f),
                "trusted_fraction {f} outside [0, 1]"
            );
            let total = ((f * clean.len() as f64) + 1e-9).floor() as usize;
            split::proportional_counts(&counts, total.min(clean.len()))
        }
        Trusted::PerClass(n) => {
            if let Some((c, &have)) = counts.iter().enumerate().find(|(_, &h)| h < n) {
                bail!("trusted_per_class {n}: class {c} has only {have} training examples");
            }
            vec![n; k]
        }
    };
    split::stratified_pick(clean, &take, &mut rng(seed, STREAM_TRUSTED))
}

/// Corrupts `clean[i]` for every `i` in `untrusted` (sorted) with `corruption` of strength
/// `p`. `coarse` (train coarse labels) is needed for [`Corruption::Hierarchical`];
/// `flip_targets` says how [`Corruption::Flip`]'s matrix is drawn (ignored otherwise).
/// Returns the labels (unchanged outside `untrusted`) and the true (for the MLC
/// generators: expected) transition matrix.
#[allow(clippy::too_many_arguments)]
pub fn corrupt(
    clean: &[u32],
    coarse: Option<&[u32]>,
    k: usize,
    untrusted: &[usize],
    corruption: Corruption,
    flip_targets: FlipTargets,
    p: f64,
    seed: u64,
) -> Result<(Vec<u32>, Matrix)> {
    ensure!((0.0..=1.0).contains(&p), "strength {p} outside [0, 1]");
    ensure!(k >= 2, "label noise needs at least 2 classes, got {k}");
    let mut mrng = rng(seed, STREAM_MATRIX);
    let mut lrng = rng(seed, STREAM_LABELS);
    let mut noisy = clean.to_vec();
    let resample = |c: &Matrix, noisy: &mut Vec<u32>, lrng: &mut ChaCha8Rng| {
        for &i in untrusted {
            noisy[i] = sample_row(c, clean[i] as usize, lrng) as u32;
        }
    };
    let c = match corruption {
        Corruption::Real => bail!("`real` noise comes with the dataset and is not injected"),
        Corruption::Uniform => {
            let c = uniform_mix_c(k, p);
            resample(&c, &mut noisy, &mut lrng);
            c
        }
        Corruption::Flip => {
            let c = match flip_targets {
                FlipTargets::Glc => glc_flip_c(k, p),
                FlipTargets::PerSeed => flip_c(k, p, &mut mrng),
            };
            resample(&c, &mut noisy, &mut lrng);
            c
        }
        Corruption::Hierarchical => {
            let Some(coarse) = coarse else {
                bail!("hierarchical noise needs coarse labels (CIFAR-100); this dataset has none");
            };
            let c = hierarchical_c(&fine_to_coarse(clean, coarse, k)?, p);
            resample(&c, &mut noisy, &mut lrng);
            c
        }
        Corruption::MlcUniform | Corruption::MlcSymmetric | Corruption::MlcPair => {
            let targets = random_targets(k, &mut mrng);
            let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); k];
            for &i in untrusted {
                by_class[clean[i] as usize].push(i);
            }
            for (cls, idx) in by_class.iter_mut().enumerate() {
                let m = mlc_count(idx.len(), p);
                split::shuffle(idx, &mut lrng);
                let chosen = &idx[..m];
                match corruption {
                    Corruption::MlcUniform => {
                        let mut list: Vec<u32> =
                            (0..m).map(|j| (j % k) as u32).take(m / k * k).collect();
                        let mut extra: Vec<u32> = (0..k as u32).collect();
                        split::shuffle(&mut extra, &mut lrng);
                        list.extend_from_slice(&extra[..m % k]);
                        split::shuffle(&mut list, &mut lrng);
                        for (&i, &l) in chosen.iter().zip(&list) {
                            noisy[i] = l;
                        }
                    }
                    Corruption::MlcSymmetric => {
                        for &i in chosen {
                            noisy[i] = other_class(cls, k, &mut lrng) as u32;
                        }
                    }
                    Corruption::MlcPair => {
                        for &i in chosen {
                            noisy[i] = targets[cls] as u32;
                        }
                    }
                    Corruption::Uniform
                    | Corruption::Flip
                    | Corruption::Hierarchical
                    | Corruption::Real => unreachable!("{} is no MLC generator", corruption.name()),
                }
            }
            match corruption {
                Corruption::MlcUniform => uniform_mix_c(k, p),
                Corruption::MlcSymmetric => symmetric_c(k, p),
                Corruption::MlcPair => pair_c(&targets, p),
                Corruption::Uniform
                | Corruption::Flip
                | Corruption::Hierarchical
                | Corruption::Real => unreachable!("{} is no MLC generator", corruption.name()),
            }
        }
    };
    Ok((noisy, c))
}

/// How many of `n` examples of a class an MLC generator relabels: `round(p·n)`.
pub fn mlc_count(n: usize, p: f64) -> usize {
    ((p * n as f64).round() as usize).min(n)
}

/// What [`inject_with`] injects: the corruption and its strength, how `flip`'s targets
/// are drawn, the trusted subset and the seed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Injection {
    pub corruption: Corruption,
    pub flip_targets: FlipTargets,
    pub strength: f64,
    pub trusted: Trusted,
    pub seed: u64,
}

/// [`inject_with`] with flip targets drawn as GLC's code draws them ([`FlipTargets::Glc`],
/// the `inject_noise` default).
#[allow(clippy::too_many_arguments)]
pub fn inject(
    clean: &[u32],
    coarse: Option<&[u32]>,
    k: usize,
    corruption: Corruption,
    p: f64,
    trusted: Trusted,
    seed: u64,
    dataset: (&str, &str),
) -> Result<NoisyLabels> {
    let how = Injection {
        corruption,
        flip_targets: FlipTargets::Glc,
        strength: p,
        trusted,
        seed,
    };
    inject_with(clean, coarse, k, &how, dataset)
}

/// Everything `inject_noise` computes, without the file I/O: draws the trusted subset of
/// the train labels `clean` (K = `k` classes; `coarse`: the superclass labels, if any),
/// corrupts the rest as `how` says and measures the result.
pub fn inject_with(
    clean: &[u32],
    coarse: Option<&[u32]>,
    k: usize,
    how: &Injection,
    dataset: (&str, &str),
) -> Result<NoisyLabels> {
    let Injection {
        corruption,
        flip_targets,
        strength: p,
        trusted,
        seed,
    } = *how;
    let n = clean.len();
    let trusted_idx = draw_trusted(clean, k, trusted, seed)?;
    let untrusted = split::complement(&trusted_idx, n);
    let (noisy, true_c) = corrupt(
        clean,
        coarse,
        k,
        &untrusted,
        corruption,
        flip_targets,
        p,
        seed,
    )?;
    let realized = realized_c(clean, &noisy, &untrusted, k);
    let flipped = untrusted.iter().filter(|&&i| noisy[i] != clean[i]).count();
    let trusted_fraction = match trusted {
        Trusted::Fraction(f) => f,
        Trusted::PerClass(_) => trusted_idx.len() as f64 / n.max(1) as f64,
    };
    Ok(NoisyLabels {
        meta: NoiseMeta {
            corruption: corruption.name().into(),
            strength: p,
            trusted_fraction,
            seed,
            num_classes: k,
            actual_noise_rate: if untrusted.is_empty() {
                0.0
            } else {
                flipped as f64 / untrusted.len() as f64
            },
            num_trusted: trusted_idx.len(),
            num_untrusted: untrusted.len(),
            dataset: dataset.0.into(),
            dataset_identity: dataset.1.into(),
            trusted_split: Default::default(),
        },
        noisy,
        clean: clean.to_vec(),
        trusted: trusted_idx.iter().map(|&i| i as u32).collect(),
        true_c,
        realized_c: realized,
    })
}

/// The noisy labels of a dataset that ships its own noise (Clothing1M): nothing is
/// corrupted. `labels` are the train labels as given, `verified` the sorted indices whose
/// label was verified (they are the trusted set), `noisy_of_verified` the noisy source's
/// label of each verified example or `NO_LABEL`.
///
/// The clean label of an unverified example is unknown, so `clean` repeats `labels` (no
/// untrusted example counts as corrupted: rates that need the truth, such as a label
/// correction rate, are not defined). The true C is estimated from the verified examples
/// that also carry a noisy label: row `i` is the distribution of the noisy label among
/// those whose verified label is `i` (an identity row where a class has none); it is also
/// the realized C. `strength` and `actual_noise_rate` are the share of those pairs whose
/// labels differ; `trusted_fraction` the verified share of the train split.
pub fn real(
    labels: &[u32],
    verified: &[u32],
    noisy_of_verified: &[u32],
    k: usize,
    seed: u64,
    dataset: (&str, &str),
) -> Result<NoisyLabels> {
    ensure!(
        verified.len() == noisy_of_verified.len(),
        "{} verified examples but {} noisy labels for them",
        verified.len(),
        noisy_of_verified.len()
    );
    ensure!(
        !verified.is_empty(),
        "the dataset has no verified examples to trust"
    );
    let mut counts = Matrix::zeros(k);
    let (mut pairs, mut differ) = (0usize, 0usize);
    for (&i, &z) in verified.iter().zip(noisy_of_verified) {
        if z == crate::data::dataset::NO_LABEL {
            continue;
        }
        let y = labels[i as usize] as usize;
        counts.data[y * k + z as usize] += 1.0;
        pairs += 1;
        differ += usize::from(y != z as usize);
    }
    let mut c = Matrix::zeros(k);
    for i in 0..k {
        let total: f64 = counts.row(i).iter().sum();
        for j in 0..k {
            let v = if total > 0.0 {
                counts.at(i, j) / total
            } else {
                f64::from(u8::from(i == j))
            };
            c.set(i, j, v);
        }
    }
    let rate = if pairs == 0 {
        0.0
    } else {
        differ as f64 / pairs as f64
    };
    let n = labels.len();
    Ok(NoisyLabels {
        meta: NoiseMeta {
            corruption: Corruption::Real.name().into(),
            strength: rate,
            trusted_fraction: verified.len() as f64 / n.max(1) as f64,
            seed,
            num_classes: k,
            actual_noise_rate: rate,
            num_trusted: verified.len(),
            num_untrusted: n - verified.len(),
            dataset: dataset.0.into(),
            dataset_identity: dataset.1.into(),
            trusted_split: Default::default(),
        },
        noisy: labels.to_vec(),
        clean: labels.to_vec(),
        trusted: verified.to_vec(),
        realized_c: c.clone(),
        true_c: c,
    })
}
