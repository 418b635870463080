//! `inject_noise`: draws the trusted subset of the training split and corrupts the labels
//! of the rest; or, for a dataset that ships its own noise (Clothing1M, `corruption:
//! real`), takes its verified examples as the trusted set and measures the noise on those
//! that also carry a noisy label ([`noise::real`]).
//!
//! Protocol (GLC, Hendrycks et al. 2018; mlc-glc notes §2.3): a trusted subset, stratified
//! by class and seeded, keeps its clean labels; every other training label is replaced by a
//! draw from row `y` of a transition matrix C (GLC `uniform`, `flip`, `hierarchical`), or
//! relabelled by one of the exact-count generators of the official MLC code (`mlc_uniform`,
//! `mlc_symmetric`, `mlc_pair`; Wang et al. 2020, mlc-glc notes §2.2). The generators and
//! matrices are in [`crate::noise`]. `flip`'s targets (the other class each class sends its
//! flipped mass to) are by default the very ones GLC's `flip_labels_C` gets from NumPy
//! seeded with 1, the same for every seed, so flip numbers compare with GLC's;
//! `flip_targets: per_seed` draws them from the run's seed instead. The trusted set comes
//! from the train split, as in GLC; the released MLC code draws its 50-per-class clean set
//! from the CIFAR-10 *test* split instead (`Cifa10_val_build.py`), which `trusted_split:
//! test` follows: the trusted examples are drawn from the test split (stratified, seeded as
//! from train), every training label is corrupted, and the training stages evaluate on
//! the test examples left (see [`noise::TrustedSplit`]).
//!
//! Inputs: `data`, a `download` output (`Dataset::load`).
//! Outputs: `noise.safetensors` + `noise.json` ([`NoisyLabels`]): noisy labels, clean
//! labels, sorted trusted indices, the true C (for MLC generators the expected matrix they
//! realise), the realized C measured on the untrusted examples, the actual noise rate.
//! Deterministic: the same seed (`ctx.seed`) gives the same bytes.

use anyhow::{bail, ensure, Context, Result};
use serde::Deserialize;
use serde_json::Value;

use crate::context::StageContext;
use crate::data::dataset::Dataset;
use crate::declared::Inputs;
use crate::kind::Kind;
use crate::noise::{self, Corruption, FlipTargets, NoisyLabels, Trusted, TrustedSplit};
use crate::stage_kind::StageKind;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// `uniform` | `flip` | `hierarchical` | `mlc_uniform` | `mlc_symmetric` | `mlc_pair` |
    /// `real` (the dataset's own noise; takes no strength or trusted share). Required.
    pub corruption: Corruption,
    /// Corruption strength p in [0, 1] (for MLC generators the share of each class's
    /// untrusted examples that is relabelled). Default 0.
    #[serde(default, deserialize_with = "de_strength")]
    pub strength: f64,
    /// Share f in [0, 1] of the training split that is trusted (floor(f·N), stratified).
    /// Default 0.
    #[serde(default, deserialize_with = "de_trusted_fraction")]
    pub trusted_fraction: f64,
    /// Exactly this many trusted examples of every class instead of `trusted_fraction`
    /// (MLC protocol: 50). Default: none.
    #[serde(default)]
    pub trusted_per_class: Option<usize>,
    /// How `flip` draws each class's target class: `glc` (GLC's code: NumPy's legacy
    /// generator seeded with 1, one matrix shared by every seed) or `per_seed` (drawn from
    /// the run's seed, so seeds differ in their matrix too). Only `flip` reads it.
    /// Default `glc`.
    #[serde(default)]
    pub flip_targets: FlipTargets,
    /// The split the trusted examples are drawn from: `train` (default, GLC) or `test`
    /// (the released MLC code: the trusted set is taken out of the test split, and every
    /// training example is corrupted). `trusted_fraction` is then a share of the test
    /// split.
    #[serde(default)]
    pub trusted_split: TrustedSplit,
}

impl StageKind for Params {
    const VERSION: u32 = 1;

    /// What deserializing cannot say: `real` noise takes no strength or trusted share, and
    /// a trusted share is given one way only.
    fn check(&self) -> Result<(), String> {
        if self.corruption == Corruption::Real {
            for (field, set) in [
                ("strength", self.strength != 0.0),
                ("trusted_fraction", self.trusted_fraction != 0.0),
                ("trusted_per_class", self.trusted_per_class.is_some()),
                ("trusted_split", !self.trusted_split.is_train()),
            ] {
                if set {
                    return Err(format!(
                        "field `{field}`: corruption `real` takes no {field}: the dataset's \
                         verified examples are the trusted set"
                    ));
                }
            }
        }
        if self.trusted_per_class.is_some() && self.trusted_fraction != 0.0 {
            return Err(
                "field `trusted_per_class`: give either trusted_fraction or \
                 trusted_per_class, not both"
                    .into(),
            );
        }
        Ok(())
    }

    /// Refuses, when the pipeline loads, inputs other than `data`, a missing `data`, and a
    /// `data` input that reads no dataset.
    fn check_inputs(&self, inputs: &Inputs) -> Result<(), String> {
        inputs.only(&["data"])?;
        inputs.require("data", "the dataset whose labels it corrupts")?;
        inputs.of_kinds("data", &[Kind::Download, Kind::Command])
    }

    fn run(&self, ctx: &StageContext) -> Result<()> {
        run(self, ctx)
    }
}

/// The trusted set a member with `params` draws, as far as its params alone decide it:
/// what the training kinds check their `noise` input against when the pipeline loads.
#[derive(Clone, Debug, PartialEq)]
pub enum TrustedShare {
    /// No trusted example (the reason, naming the field).
    None(String),
    /// Every example trusted, so none untrusted (the reason).
    All(String),
    /// Some, or the data decide (`real` noise, a share that rounds to zero on a small
    /// dataset).
    Unknown,
}

pub fn trusted_share(params: &Value) -> TrustedShare {
    let Ok(p) = crate::kind::parse::<Params>(params) else {
        return TrustedShare::Unknown;
    };
    if p.corruption == Corruption::Real {
        return TrustedShare::Unknown;
    }
    match p.trusted_per_class {
        Some(0) => TrustedShare::None("its trusted_per_class is 0".into()),
        Some(_) => TrustedShare::Unknown,
        None if p.trusted_fraction == 0.0 => {
            TrustedShare::None(if params.get("trusted_fraction").is_some() {
                "its trusted_fraction is 0".into()
            } else {
                "it sets no trusted_fraction, whose default is 0".into()
            })
        }
        None if p.trusted_fraction == 1.0 => TrustedShare::All("its trusted_fraction is 1".into()),
        None => TrustedShare::Unknown,
    }
}

fn unit_interval<'de, D: serde::Deserializer<'de>>(d: D, field: &str) -> Result<f64, D::Error> {
    let v = f64::deserialize(d)?;
    if !(0.0..=1.0).contains(&v) {
        return Err(serde::de::Error::custom(format!(
            "{field} must be in [0, 1], got {v}"
        )));
    }
    Ok(v)
}
fn de_strength<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    unit_interval(d, "strength")
}
fn de_trusted_fraction<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    unit_interval(d, "trusted_fraction")
}

pub fn run(p: &Params, ctx: &StageContext) -> Result<()> {
    let input = ctx.input("data")?;
    let ds = Dataset::load(&input.dir)
        .with_context(|| format!("loading input `data` ({})", input.member))?;
    let nl = make(p, &ds, ctx.seed)?;
    nl.save(&ctx.out_dir)
        .with_context(|| format!("writing noisy labels to {}", ctx.out_dir.display()))
}

/// The noisy labels for `ds` (everything `run` does except the file I/O).
pub fn make(p: &Params, ds: &Dataset, seed: u64) -> Result<NoisyLabels> {
    if p.corruption == Corruption::Real || ds.real_noise.is_some() {
        let Some(rn) = &ds.real_noise else {
            bail!(
                "corruption `real`: {} has no noise of its own (only clothing1m has); inject one of the others",
                ds.meta.name
            );
        };
        ensure!(
            p.corruption == Corruption::Real,
            "{} comes with its own label noise: use `corruption: real`, not `{}`",
            ds.meta.name,
            p.corruption.name()
        );
        ensure!(
            p.strength == 0.0
                && p.trusted_fraction == 0.0
                && p.trusted_per_class.is_none()
                && p.trusted_split.is_train(),
            "corruption `real` takes no strength, trusted_fraction, trusted_per_class or trusted_split: \
             the dataset's verified examples are the trusted set"
        );
        return noise::real(
            &ds.train.y,
            &rn.verified,
            &rn.noisy_of_verified,
            ds.meta.num_classes,
            seed,
            (&ds.meta.name, &ds.meta.identity),
        )
        .with_context(|| format!("the real noise of {}", ds.meta.name));
    }
    ensure!(
        (0.0..=1.0).contains(&p.strength),
        "strength {} outside [0, 1]",
        p.strength
    );
    ensure!(
        (0.0..=1.0).contains(&p.trusted_fraction),
        "trusted_fraction {} outside [0, 1]",
        p.trusted_fraction
    );
    let mut trusted = match p.trusted_per_class {
        Some(n) => {
            ensure!(
                p.trusted_fraction == 0.0,
                "give either trusted_fraction or trusted_per_class, not both"
            );
            Trusted::PerClass(n)
        }
        None => Trusted::Fraction(p.trusted_fraction),
    };
    // A test-split trusted set: drawn from the test labels, the train split left whole.
    let from_test = match p.trusted_split {
        TrustedSplit::Train => None,
        TrustedSplit::Test => {
            let idx = noise::draw_trusted(&ds.test.y, ds.meta.num_classes, trusted, seed)
                .with_context(|| {
                    format!(
                        "drawing the trusted set from the test split of {}",
                        ds.meta.name
                    )
                })?;
            trusted = Trusted::Fraction(0.0);
            Some(idx)
        }
    };
    let how = noise::Injection {
        corruption: p.corruption,
        flip_targets: p.flip_targets,
        strength: p.strength,
        trusted,
        seed,
    };
    let mut nl = noise::inject_with(
        &ds.train.y,
        ds.train.coarse.as_deref(),
        ds.meta.num_classes,
        &how,
        (&ds.meta.name, &ds.meta.identity),
    )
    .with_context(|| format!("{} noise on {}", p.corruption.name(), ds.meta.name))?;
    if let Some(idx) = from_test {
        nl.meta.trusted_split = TrustedSplit::Test;
        nl.meta.num_trusted = idx.len();
        nl.meta.trusted_fraction = idx.len() as f64 / ds.test.len().max(1) as f64;
        nl.trusted = idx.iter().map(|&i| i as u32).collect();
    }
    Ok(nl)
}
