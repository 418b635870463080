//! `TeacherInfo`: `teacher.json`, written by `distill` beside its `metrics.json`, naming the
//! teacher whose labels the student learned from (T5 groups students by `method`).

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

pub const FILE: &str = "teacher.json";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeacherInfo {
    /// The teacher's `metrics.method` (`ce` = one-hot labels, `label_smoothing`,
    /// `soft_labels`, ...).
    pub method: String,
    /// The teacher's `metrics.model`.
    pub model: String,
}

impl TeacherInfo {
    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join(FILE);
        std::fs::write(&path, serde_json::to_string_pretty(self)? + "\n")
            .with_context(|| format!("writing {}", path.display()))
    }

    /// Reads `dir/teacher.json` if it exists.
    pub fn load_opt(dir: &Path) -> Result<Option<TeacherInfo>> {
        let path = dir.join(FILE);
        if !path.exists() {
            return Ok(None);
        }
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("parsing {}", path.display()))
            .map(Some)
    }
}
