//! The `data` and `noise` inputs of the training kinds: loading them, checking that the
//! noisy labels were made for the dataset the stage trains on, and, when the pipeline
//! loads, that they are declared and read stages that make them.

use anyhow::{ensure, Context, Result};

use crate::context::StageContext;
use crate::data::dataset::Dataset;
use crate::declared::Inputs;
use crate::kind::Kind;
use crate::noise::NoisyLabels;

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

/// Fails unless `nl` labels `ds`'s training split: one label per example, the same class
/// count, and the same clean labels.
pub fn check_noise_fits(nl: &NoisyLabels, ds: &Dataset) -> Result<()> {
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
