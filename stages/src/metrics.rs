//! `metrics.json`: what every training kind (`train`, `train_mlc`, `train_soft_labels`,
//! `distill`) writes, and what `tables` reads. One schema for all methods, so a table can
//! put any two methods side by side.
//!
//! Every file records the dataset identity, the profile and the device, so a scaled-down
//! CPU run is never mistaken for a paper-scale reproduction.
//!
//! Nothing here depends on the clock: the same seed gives the same bytes. Wall times go
//! to `log/timings.json` (see [`LOG_DIR`]).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

pub const FILE: &str = "metrics.json";

/// Sub-directory of a stage's outputs for what describes how a run went rather than what
/// it computed (wall times, per-epoch seconds). The engine publishes it with the outputs
/// but leaves it out of the output digest, so a rerun that computes the same bytes keeps
/// downstream stages fresh.
pub const LOG_DIR: &str = "log";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DatasetId {
    pub name: String,
    /// SHA-256 of the raw content (see `data::dataset::DatasetMeta::identity`).
    pub identity: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NoiseId {
    pub corruption: String,
    pub strength: f64,
    pub trusted_fraction: f64,
    pub actual_noise_rate: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// 1-based epoch number (within `phase`).
    pub epoch: usize,
    /// Training phase, e.g. `main`, or `phase1`/`phase2` for two-phase methods, `warmup`.
    pub phase: String,
    pub train_loss: f64,
    pub test_accuracy: f64,
    pub test_error: f64,
    /// Method-specific per-epoch values (e.g. `meta_loss`, `label_correction_rate`,
    /// `t_frobenius_to_true_c`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Stage kind that produced the file (`train`, `train_mlc`, ...).
    pub kind: String,
    /// Method label as tables show it: `ce`, `trusted_only`, `forward`, `forward_gold`,
    /// `glc`, `confusion`, `label_smoothing`, `mlc`, `mlc_official`, `soft_labels`,
    /// `distill`, ...
    pub method: String,
    pub dataset: DatasetId,
    /// Absent for clean-data runs.
    #[serde(default)]
    pub noise: Option<NoiseId>,
    pub model: String,
    pub profile: String,
    /// `cpu` or `cuda`.
    pub device: String,
    pub seed: u64,
    pub epochs: Vec<EpochMetrics>,
    /// Test accuracy and error of the final model (the last epoch; no model selection on
    /// the test split unless a variant documents it).
    pub final_test_accuracy: f64,
    pub final_test_error: f64,
    /// Method-specific final values (e.g. `c_hat_frobenius_to_true_c`,
    /// `label_correction_rate`, `best_test_accuracy`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, f64>,
}

impl Metrics {
    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join(FILE);
        std::fs::write(&path, serde_json::to_string_pretty(self)? + "\n")
            .with_context(|| format!("writing {}", path.display()))
    }

    pub fn load(dir: &Path) -> Result<Metrics> {
        let path = dir.join(FILE);
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
    }
}
