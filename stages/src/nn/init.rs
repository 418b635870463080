//! Starting weights from a file instead of a random initialisation: the `init` param of
//! the training kinds (an ImageNet-pretrained ResNet-50 for Clothing1M, as most Clothing1M
//! work uses, or any network trained elsewhere).
//!
//! The file is safetensors with this project's names, which for the ResNets are
//! torchvision's (`conv1.weight`, `bn1.running_mean`, `layer1.0.downsample.0.weight`,
//! `fc.weight`, ...), in the same layouts (convolutions `[out, in, kh, kw]`, linear
//! `[out, in]`), so `safetensors.torch.save_file(torchvision_model.state_dict(), path)`
//! writes a usable file.
//!
//! Rules:
//! * the file's SHA-256 must equal `sha256`: that digest is a param, so it is part of the
//!   stage's fingerprint and a changed file can never pass for the cached one;
//! * every parameter and buffer of the network, except those whose name starts with one
//!   of `skip`, must be in the file as F32 with the same shape; skipped ones keep their
//!   random initialisation (by default the classifier `fc.`, whose class count differs);
//! * tensors of the file that the network does not have are ignored (torchvision's
//!   `num_batches_tracked` counters, a different classifier), and counted in the report.

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use safetensors::tensor::Dtype;
use serde::{Deserialize, Serialize};

use super::params::{Buffers, ParamSet};
use crate::data::raw;

fn default_skip() -> Vec<String> {
    vec!["fc.".into()]
}

/// The `init` param.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitWeights {
    /// The safetensors file (relative paths resolve against the project). Required.
    pub path: PathBuf,
    /// Its SHA-256 (hex). Required.
    pub sha256: String,
    /// Name prefixes left at their random initialisation. Default `["fc."]`.
    #[serde(default = "default_skip")]
    pub skip: Vec<String>,
}

/// What [`apply`] did.
#[derive(Clone, Debug, PartialEq)]
pub struct InitReport {
    /// Parameters and buffers loaded from the file.
    pub loaded: usize,
    /// Parameters and buffers left at their initialisation (`skip`).
    pub skipped: usize,
    /// Tensors of the file the network does not use.
    pub unused: usize,
}

/// Overwrites `params` and `buffers` with the file's values (see the module doc).
/// `project` resolves a relative `path`.
pub fn apply(
    init: &InitWeights,
    project: &Path,
    params: &mut ParamSet,
    buffers: &mut Buffers,
) -> Result<InitReport> {
    let path = if init.path.is_absolute() {
        init.path.clone()
    } else {
        project.join(&init.path)
    };
    let what = format!("init weights {}", path.display());
    let bytes = std::fs::read(&path).with_context(|| format!("reading {what}"))?;
    let got = raw::sha256_hex(&bytes);
    ensure!(
        got.eq_ignore_ascii_case(init.sha256.trim()),
        "{what}: SHA-256 is {got}, but params.init.sha256 says {}",
        init.sha256.trim()
    );
    let st =
        safetensors::SafeTensors::deserialize(&bytes).with_context(|| format!("parsing {what}"))?;
    let skipped = |name: &str| init.skip.iter().any(|s| name.starts_with(s.as_str()));
    let read = |name: &str, shape: &[usize]| -> Result<Vec<f32>> {
        let t = st.tensor(name).map_err(|_| {
            anyhow::anyhow!(
                "{what}: tensor {name} is missing (list it in params.init.skip to keep it random)"
            )
        })?;
        ensure!(
            t.dtype() == Dtype::F32,
            "{what}: tensor {name} is {:?}, expected F32",
            t.dtype()
        );
        ensure!(
            t.shape() == shape,
            "{what}: tensor {name} has shape {:?}, the network's is {shape:?}",
            t.shape()
        );
        Ok(t.data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect())
    };
    let mut report = InitReport {
        loaded: 0,
        skipped: 0,
        unused: 0,
    };
    let mut used = std::collections::BTreeSet::new();
    for i in 0..params.len() {
        let name = params.names[i].clone();
        if skipped(&name) {
            report.skipped += 1;
            continue;
        }
        let v = read(&name, &params.shapes[i])?;
        params.set(i, &v);
        used.insert(name);
        report.loaded += 1;
    }
    for (name, b) in buffers.names.iter().zip(buffers.values.iter_mut()) {
        if skipped(name) {
            report.skipped += 1;
            continue;
        }
        let v = read(name, &[b.len()])?;
        b.copy_from_slice(&v);
        used.insert(name.clone());
        report.loaded += 1;
    }
    if report.loaded == 0 {
        bail!("{what}: skip leaves nothing to load");
    }
    report.unused = st.names().iter().filter(|n| !used.contains(**n)).count();
    Ok(report)
}

/// Applies `init` when given, and says what was loaded on the stage's progress line.
pub fn start(
    init: Option<&InitWeights>,
    ctx: &crate::context::StageContext,
    params: &mut ParamSet,
    buffers: &mut Buffers,
) -> Result<()> {
    if let Some(i) = init {
        let r = apply(i, &ctx.project_dir, params, buffers)?;
        ctx.progress.message(&format!(
            "init: {} tensors from {}, {} left random, {} unused",
            r.loaded,
            i.path.display(),
            r.skipped,
            r.unused
        ));
    }
    Ok(())
}

/// The model label metrics record: the architecture's, with `+init` when the weights
/// started from a file.
pub fn model_label(model: &super::model::ModelSpec, init: Option<&InitWeights>) -> String {
    match init {
        Some(_) => format!("{}+init", model.label()),
        None => model.label(),
    }
}
