//! The noisy-labels folder format: what `inject_noise` writes into its output directory
//! and every training stage reads back ([`NoisyLabels::save`], [`NoisyLabels::load`]).
//!
//! * `noise.safetensors` ([`TENSORS_FILE`]): `noisy` (U32 `[N]`, the labels training
//!   sees: trusted examples keep their clean label), `clean` (U32 `[N]`), `trusted` (U32
//!   `[M]`, sorted indices into the train split), `true_c` and `realized_c` (F64 `[K, K]`,
//!   row = true class, column = observed class; `realized_c` is measured on the untrusted
//!   examples).
//! * `noise.json` ([`META_FILE`]): [`NoiseMeta`].
//!
//! With `trusted_split: test` in `noise.json` ([`TrustedSplit::Test`]), `trusted` indexes
//! the *test* split and every train example is untrusted; a training stage moves those
//! test examples into its train split before it trains
//! ([`crate::training::inputs::load_data_and_noise`]).

use std::path::Path;

use anyhow::{ensure, Context, Result};
use safetensors::tensor::{Dtype, TensorView};
use serde::{Deserialize, Serialize};

use super::Matrix;
use crate::data::dataset::{read_u32, u32_bytes};

pub const TENSORS_FILE: &str = "noise.safetensors";
pub const META_FILE: &str = "noise.json";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NoiseMeta {
    /// Corruption name as in params (`uniform`, `flip`, `hierarchical`, `mlc_uniform`, ...).
    pub corruption: String,
    pub strength: f64,
    pub trusted_fraction: f64,
    pub seed: u64,
    pub num_classes: usize,
    /// Share of untrusted examples whose noisy label differs from the clean one.
    pub actual_noise_rate: f64,
    pub num_trusted: usize,
    pub num_untrusted: usize,
    /// Name and identity of the dataset the labels belong to.
    pub dataset: String,
    pub dataset_identity: String,
    /// The split `trusted` indexes (default `train`; not written when it is).
    #[serde(default, skip_serializing_if = "TrustedSplit::is_train")]
    pub trusted_split: TrustedSplit,
}

/// Which split a noise output's trusted examples come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrustedSplit {
    /// The train split (GLC): trusted training examples keep their clean label.
    #[default]
    Train,
    /// The test split (the released MLC code's meta set, `Cifa10_val_build.py`): the
    /// trusted examples are taken out of the test split, so the test runs on the rest,
    /// and every training example carries a noisy label.
    Test,
}

impl TrustedSplit {
    pub fn is_train(&self) -> bool {
        *self == TrustedSplit::Train
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct NoisyLabels {
    pub meta: NoiseMeta,
    pub noisy: Vec<u32>,
    pub clean: Vec<u32>,
    pub trusted: Vec<u32>,
    pub true_c: Matrix,
    pub realized_c: Matrix,
}

impl NoisyLabels {
    /// A boolean mask over the train split: true for trusted examples. Only for trusted
    /// examples of the train split: a training stage first moves a test-split trusted set
    /// into its train split ([`crate::training::inputs::load_data_and_noise`]).
    pub fn trusted_mask(&self) -> Vec<bool> {
        assert!(
            self.meta.trusted_split.is_train(),
            "trusted_mask of a test-split trusted set"
        );
        let mut m = vec![false; self.noisy.len()];
        for &i in &self.trusted {
            m[i as usize] = true;
        }
        m
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        let k = self.true_c.k;
        let f64b = |m: &Matrix| {
            m.data
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect::<Vec<u8>>()
        };
        let owned: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)> = vec![
            (
                "noisy",
                Dtype::U32,
                vec![self.noisy.len()],
                u32_bytes(&self.noisy),
            ),
            (
                "clean",
                Dtype::U32,
                vec![self.clean.len()],
                u32_bytes(&self.clean),
            ),
            (
                "trusted",
                Dtype::U32,
                vec![self.trusted.len()],
                u32_bytes(&self.trusted),
            ),
            ("true_c", Dtype::F64, vec![k, k], f64b(&self.true_c)),
            ("realized_c", Dtype::F64, vec![k, k], f64b(&self.realized_c)),
        ];
        let views: Vec<(&str, TensorView)> = owned
            .iter()
            .map(|(n, dt, s, b)| Ok((*n, TensorView::new(*dt, s.clone(), b)?)))
            .collect::<Result<_>>()?;
        safetensors::serialize_to_file(views, None, &dir.join(TENSORS_FILE))?;
        std::fs::write(
            dir.join(META_FILE),
            serde_json::to_string_pretty(&self.meta)? + "\n",
        )?;
        Ok(())
    }

    pub fn load(dir: &Path) -> Result<NoisyLabels> {
        let mp = dir.join(META_FILE);
        let meta: NoiseMeta = serde_json::from_slice(
            &std::fs::read(&mp).with_context(|| format!("reading {}", mp.display()))?,
        )
        .with_context(|| format!("parsing {}", mp.display()))?;
        let tp = dir.join(TENSORS_FILE);
        let bytes = std::fs::read(&tp).with_context(|| format!("reading {}", tp.display()))?;
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .with_context(|| format!("parsing {}", tp.display()))?;
        let k = meta.num_classes;
        let mat = |name: &str| -> Result<Matrix> {
            let t = st.tensor(name)?;
            ensure!(
                t.shape() == [k, k],
                "{}: {name} has shape {:?}, expected [{k}, {k}]",
                tp.display(),
                t.shape()
            );
            Ok(Matrix {
                k,
                data: t
                    .data()
                    .chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
            })
        };
        let nl = NoisyLabels {
            noisy: read_u32(st.tensor("noisy")?.data()),
            clean: read_u32(st.tensor("clean")?.data()),
            trusted: read_u32(st.tensor("trusted")?.data()),
            true_c: mat("true_c")?,
            realized_c: mat("realized_c")?,
            meta,
        };
        ensure!(
            nl.noisy.len() == nl.clean.len(),
            "{}: noisy and clean label counts differ",
            tp.display()
        );
        Ok(nl)
    }
}
