//! `RunRecord`: one training stage's outputs as the tables see them (its metrics, its matrix
//! coordinates, the teacher of a distilled student), and the pipeline fingerprint over a
//! group of runs.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::context::InputRef;
use crate::metrics::{self, Metrics};
use crate::report::teacher::TeacherInfo;

/// The corruption of a run on clean labels ([`RunRecord::corruption`]).
pub const CLEAN: &str = "clean";

#[derive(Clone, Debug)]
pub struct RunRecord {
    pub member: String,
    pub dir: PathBuf,
    pub coords: BTreeMap<String, Value>,
    pub metrics: Metrics,
    /// The raw bytes of `metrics.json` (for the fingerprint).
    pub metrics_bytes: Vec<u8>,
    /// For `distill` runs: the teacher (from `teacher.json`, else the `teacher` coordinate).
    pub teacher: Option<TeacherInfo>,
}

impl RunRecord {
    pub fn load(input: &InputRef) -> Result<RunRecord> {
        let path = input.dir.join(metrics::FILE);
        let metrics_bytes = std::fs::read(&path)
            .with_context(|| format!("reading {} (input {})", path.display(), input.member))?;
        let metrics: Metrics = serde_json::from_slice(&metrics_bytes)
            .with_context(|| format!("parsing {} (input {})", path.display(), input.member))?;
        let mut teacher = TeacherInfo::load_opt(&input.dir)?;
        if teacher.is_none() {
            if let Some(t) = input.coords.get("teacher") {
                let method = t
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| t.to_string());
                teacher = Some(TeacherInfo {
                    method,
                    model: String::new(),
                });
            }
        }
        Ok(RunRecord {
            member: input.member.clone(),
            dir: input.dir.clone(),
            coords: input.coords.clone(),
            metrics,
            metrics_bytes,
            teacher,
        })
    }

    /// Corruption name, `clean` for clean-data runs.
    pub fn corruption(&self) -> &str {
        self.metrics
            .noise
            .as_ref()
            .map(|n| n.corruption.as_str())
            .unwrap_or(CLEAN)
    }
    pub fn strength(&self) -> Option<f64> {
        self.metrics.noise.as_ref().map(|n| n.strength)
    }
    pub fn trusted_fraction(&self) -> Option<f64> {
        self.metrics.noise.as_ref().map(|n| n.trusted_fraction)
    }
    pub fn extra(&self, key: &str) -> Option<f64> {
        self.metrics.extra.get(key).copied()
    }
}

/// Loads every input of a group, sorted by member name (the order of the inputs never
/// changes a table).
pub fn load_runs(inputs: &[InputRef]) -> Result<Vec<RunRecord>> {
    let mut runs = inputs
        .iter()
        .map(RunRecord::load)
        .collect::<Result<Vec<_>>>()?;
    runs.sort_by(|a, b| a.member.cmp(&b.member));
    Ok(runs)
}

/// SHA-256 (hex) over the sorted (member name, `metrics.json` bytes) of the runs, each
/// field length-prefixed.
pub fn fingerprint(runs: &[RunRecord]) -> String {
    let mut items: Vec<(&str, &[u8])> = runs
        .iter()
        .map(|r| (r.member.as_str(), r.metrics_bytes.as_slice()))
        .collect();
    items.sort();
    let mut h = Sha256::new();
    for (m, b) in items {
        h.update((m.len() as u64).to_le_bytes());
        h.update(m.as_bytes());
        h.update((b.len() as u64).to_le_bytes());
        h.update(b);
    }
    hex::encode(h.finalize())
}
