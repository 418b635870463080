//! The checkpoint of a training stage: one safetensors file in the stage's checkpoint
//! directory holding the parameters, buffers, optimizer state and a method's tensors,
//! with the loop's position and everything else as JSON in the file's metadata (one
//! key, `state`). Written to a temporary name and renamed, so a kill while writing
//! leaves the previous checkpoint intact.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::params::{read_safetensors, write_safetensors, NamedTensor};
use crate::metrics::EpochMetrics;

pub const FILE: &str = "checkpoint.safetensors";

/// A method's own state (see [`super::trainer::Objective::state`]): JSON plus tensors.
#[derive(Clone, Debug, Default)]
pub struct MethodState {
    pub json: serde_json::Value,
    pub tensors: Vec<NamedTensor>,
}

impl MethodState {
    /// A state held in JSON only (f64 values read back to the same bits).
    pub fn of_json<T: Serialize>(state: &T) -> MethodState {
        MethodState {
            json: serde_json::to_value(state).expect("a method state serializes"),
            tensors: Vec::new(),
        }
    }
}

/// Where the loop stands and what it has produced so far.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LoopState {
    /// Index of the phase in progress (phases before it are complete).
    pub phase: usize,
    /// Epochs of this phase completed.
    pub epoch: usize,
    /// Next batch of the current epoch (0 at an epoch boundary).
    pub batch: usize,
    /// Word position of the epoch's random stream after the permutation was drawn
    /// (only meaningful mid-epoch), as a decimal string (u128).
    pub rng_word_pos: String,
    /// Sum and count of batch losses so far in the current epoch.
    pub loss_sum: f64,
    pub loss_count: u64,
    /// Loss of the current phase's first batch (the loss at the phase's starting
    /// weights), the reference of the divergence rule; `None` before that batch.
    #[serde(default)]
    pub first_loss: Option<f64>,
    /// Seconds spent so far in the current epoch (for log/timings.json only).
    pub epoch_seconds: f64,
    pub opt_step: u64,
    /// Metrics of every completed epoch, all phases.
    pub history: Vec<EpochMetrics>,
    /// Wall seconds per completed epoch, parallel to `history`.
    pub timings: Vec<f64>,
    /// Values a stage carries between phases (e.g. an estimated corruption matrix).
    pub carry: BTreeMap<String, serde_json::Value>,
    /// Test accuracies taken between epochs ([`super::trainer::PhaseSpec::eval_interval`]).
    #[serde(default)]
    pub evaluations: Vec<Evaluation>,
    /// The current phase's best evaluation so far, when its spec keeps the best weights
    /// ([`super::trainer::PhaseSpec::keep_best`]); the weights are the checkpoint's
    /// tensors named `best.*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best: Option<Evaluation>,
    /// The method's JSON state.
    pub method: serde_json::Value,
}

/// A test evaluation taken after iteration `iteration` (within the phase) of `phase`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub phase: String,
    pub iteration: usize,
    pub test_accuracy: f64,
}

pub struct Checkpoint {
    pub state: LoopState,
    pub tensors: BTreeMap<String, NamedTensor>,
}

pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

pub fn save(dir: &Path, state: &LoopState, tensors: &[NamedTensor]) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating checkpoint dir {}", dir.display()))?;
    let mut meta = BTreeMap::new();
    meta.insert("state".to_string(), serde_json::to_string(state)?);
    write_safetensors(&path(dir), tensors, Some(meta))
        .with_context(|| format!("saving checkpoint in {}", dir.display()))
}

pub fn load(dir: &Path) -> Result<Option<Checkpoint>> {
    let p = path(dir);
    if !p.exists() {
        return Ok(None);
    }
    let (tensors, meta) = read_safetensors(&p)?;
    let json = meta
        .get("state")
        .with_context(|| format!("{}: no `state` metadata", p.display()))?;
    let state: LoopState = serde_json::from_str(json)
        .with_context(|| format!("{}: parsing the loop state", p.display()))?;
    Ok(Some(Checkpoint { state, tensors }))
}
