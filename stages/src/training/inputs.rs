//! The `data` and `noise` inputs of the training kinds: loading them, checking that the
//! noisy labels were made for the dataset the stage trains on, and, when the pipeline
//! loads, that they are declared and read stages that make them.
//!
//! A noise input whose trusted set comes from the test split ([`TrustedSplit::Test`]) is
//! turned, on loading, into one whose trusted set is in the train split: those test
//! examples are taken out of the test split and appended to the train split with their
//! clean labels, marked trusted ([`move_trusted_from_test`]). Every training kind then
//! treats them as any trusted set (a kind's `train_on_trusted: false` makes them a meta
//! set only), and the test accuracy is measured on the test examples left, as the
//! released MLC code measures it.

use anyhow::{ensure, Context, Result};

use crate::context::StageContext;
use crate::data::dataset::Dataset;
use crate::data::dataset::{Features, Split};
use crate::declared::Inputs;
use crate::kind::Kind;
use crate::noise::{NoisyLabels, TrustedSplit};

/// Checks a training stage's declared inputs: none but `known`, a `data` input reading a
/// `download` stage (or a program's), a `noise` input, when present, reading an
/// `inject_noise` stage (or a program's).
pub fn check_data_and_noise(inputs: &Inputs, known: &[&str]) -> Result<(), String> {
    inputs.only(known)?;
    inputs.require("data", "the dataset (a `download` stage)")?;
    inputs.of_kinds("data", &[Kind::Download, Kind::Command])?;
    inputs.of_kinds("noise", &[Kind::InjectNoise, Kind::Command])
}

/// The `data` input (a `download` output).
pub fn load_data(ctx: &StageContext) -> Result<Dataset> {
    let dir = &ctx.input("data")?.dir;
    Dataset::load(dir).with_context(|| format!("loading input `data` from {}", dir.display()))
}

/// The `noise` input (an `inject_noise` output).
pub fn load_noise(ctx: &StageContext) -> Result<NoisyLabels> {
    let dir = &ctx.input("noise")?.dir;
    NoisyLabels::load(dir).with_context(|| format!("loading input `noise` from {}", dir.display()))
}

/// The `noise` input when the stage has one.
pub fn load_noise_opt(ctx: &StageContext) -> Result<Option<NoisyLabels>> {
    match ctx.input_opt("noise")? {
        Some(_) => load_noise(ctx).map(Some),
        None => Ok(None),
    }
}

/// The `data` input and the `noise` input when the stage has one, a test-split trusted
/// set moved into the train split ([`move_trusted_from_test`]).
pub fn load_data_and_noise(ctx: &StageContext) -> Result<(Dataset, Option<NoisyLabels>)> {
    let ds = load_data(ctx)?;
    match load_noise_opt(ctx)? {
        Some(nl) => {
            let (ds, nl) = move_trusted_from_test(ds, nl).context("input `noise`")?;
            Ok((ds, Some(nl)))
        }
        None => Ok((ds, None)),
    }
}

/// For noisy labels whose trusted set indexes the test split: the dataset with those test
/// examples appended, in index order, to the train split (clean label, coarse label if
/// any) and removed from the test split, and the noisy labels extended to match, the
/// appended examples trusted. Anything else is returned as it is.
pub fn move_trusted_from_test(
    mut ds: Dataset,
    mut nl: NoisyLabels,
) -> Result<(Dataset, NoisyLabels)> {
    if nl.meta.trusted_split == TrustedSplit::Train {
        return Ok((ds, nl));
    }
    check_noise_fits_train(&nl, &ds)?;
    let n_test = ds.test.len();
    let picked: Vec<usize> = nl.trusted.iter().map(|&i| i as usize).collect();
    ensure!(
        picked.windows(2).all(|w| w[0] < w[1]) && picked.iter().all(|&i| i < n_test),
        "its trusted indices into the test split must be sorted, distinct and below {n_test}"
    );
    let rest = crate::data::split::complement(&picked, n_test);
    let d = ds.example_len();
    let moved = select(&ds.test, &picked, d);
    let n = ds.train.len();
    nl.noisy.extend_from_slice(&moved.y);
    nl.clean.extend_from_slice(&moved.y);
    nl.trusted = (n..n + picked.len()).map(|i| i as u32).collect();
    nl.meta.trusted_split = TrustedSplit::Train;
    append(&mut ds.train, moved);
    ds.test = select(&ds.test, &rest, d);
    ds.meta.train_len = ds.train.len();
    ds.meta.test_len = ds.test.len();
    ds.validate()
        .context("the dataset after moving the trusted set out of its test split")?;
    Ok((ds, nl))
}

/// The examples `idx` of `s` (`d` stored values per example; one path per example for
/// image files), in that order.
fn select(s: &Split, idx: &[usize], d: usize) -> Split {
    fn rows<T: Clone>(v: &[T], idx: &[usize], d: usize) -> Vec<T> {
        idx.iter()
            .flat_map(|&i| v[i * d..(i + 1) * d].iter().cloned())
            .collect()
    }
    let x = match &s.x {
        Features::U8(v) => Features::U8(rows(v, idx, d)),
        Features::F32(v) => Features::F32(rows(v, idx, d)),
        Features::U32(v) => Features::U32(rows(v, idx, d)),
        Features::Files(v) => Features::Files(rows(v, idx, 1)),
    };
    Split {
        x,
        y: rows(&s.y, idx, 1),
        coarse: s.coarse.as_ref().map(|c| rows(c, idx, 1)),
    }
}

/// Appends `more`'s examples to `s` (the same storage).
fn append(s: &mut Split, more: Split) {
    match (&mut s.x, more.x) {
        (Features::U8(a), Features::U8(b)) => a.extend(b),
        (Features::F32(a), Features::F32(b)) => a.extend(b),
        (Features::U32(a), Features::U32(b)) => a.extend(b),
        (Features::Files(a), Features::Files(b)) => a.extend(b),
        _ => unreachable!("the splits of one dataset share a storage"),
    }
    s.y.extend(more.y);
    if let (Some(a), Some(b)) = (&mut s.coarse, more.coarse) {
        a.extend(b);
    }
}

/// Fails unless `nl` labels `ds`'s training split: one label per example, the same class
/// count, and the same clean labels.
pub fn check_noise_fits(nl: &NoisyLabels, ds: &Dataset) -> Result<()> {
    ensure!(
        nl.meta.trusted_split.is_train(),
        "input `noise` draws its trusted set from the test split: load it with \
         load_data_and_noise, which moves that set into the train split"
    );
    check_noise_fits_train(nl, ds)
}

/// [`check_noise_fits`] for the train split's labels only.
fn check_noise_fits_train(nl: &NoisyLabels, ds: &Dataset) -> Result<()> {
    let (n, k) = (ds.train.len(), ds.meta.num_classes);
    ensure!(
        nl.noisy.len() == n,
        "input `noise` has {} labels but the train split has {n} examples",
        nl.noisy.len()
    );
    ensure!(
        nl.meta.num_classes == k,
        "input `noise` has {} classes, the dataset {k}",
        nl.meta.num_classes
    );
    ensure!(
        nl.clean == ds.train.y,
        "input `noise` was made for other data: its clean labels differ from the dataset's"
    );
    Ok(())
}
