//! What a running stage is given: its [`StageContext`] (where its inputs are, where to
//! write, where it may checkpoint, how many cores it may use, how to report progress), the
//! [`Progress`] sink and the [`Interrupted`] error it returns when asked to stop.
//!
//! These types sit below everything that uses them (the kinds, the training loop, the
//! report, the downloader) and use nothing of the crate, so no leaf reaches up to the
//! dispatch at the crate root for them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One upstream output a stage reads: the directory holding the upstream's published
/// files, the upstream member's name and its matrix coordinates (axis -> value).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InputRef {
    pub dir: PathBuf,
    pub member: String,
    #[serde(default)]
    pub coords: BTreeMap<String, Value>,
}

/// Receives progress from a running stage. The engine draws bars from it (or plain log
/// lines when not on a terminal); stages never print.
pub trait Progress: Send + Sync {
    /// A new phase with `total` steps of `unit` (e.g. "epoch", "batch", "bytes").
    fn phase(&self, name: &str, unit: &str, total: u64);
    /// Steps done so far in the current phase.
    fn position(&self, done: u64);
    /// A short status line (last loss, accuracy, ...).
    fn message(&self, msg: &str);
}

/// A progress sink that drops everything (tests, library use).
pub struct NoProgress;
impl Progress for NoProgress {
    fn phase(&self, _: &str, _: &str, _: u64) {}
    fn position(&self, _: u64) {}
    fn message(&self, _: &str) {}
}

/// The error a stage returns when it was asked to stop and has saved a checkpoint.
#[derive(Debug)]
pub struct Interrupted;
impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "interrupted; progress saved to the checkpoint")
    }
}
impl std::error::Error for Interrupted {}

/// Everything a stage may know about where it runs.
pub struct StageContext<'a> {
    /// The member's full name, e.g. `train[digits,flip,0.6,0.05,seed=1]` (for messages).
    pub member: String,
    /// The active profile name (recorded in metrics so scaled-down runs are never
    /// mistaken for paper-scale ones).
    pub profile: String,
    /// The seed (the `seed` matrix axis, or the stage's `seed`, default 0).
    pub seed: u64,
    /// The member's own matrix coordinates.
    pub coords: BTreeMap<String, Value>,
    /// Named inputs; a group input holds many refs, a single input one.
    pub inputs: BTreeMap<String, Vec<InputRef>>,
    /// Where outputs are written (a staging directory the engine publishes atomically).
    pub out_dir: PathBuf,
    /// Survives a crash or an interruption; tied to the fingerprint; removed on success.
    pub checkpoint_dir: PathBuf,
    /// The project root: relative paths in params (e.g. `data/...`) resolve against it.
    pub project_dir: PathBuf,
    /// A cache for downloaded raw files, shared by all stages (verified by SHA-256).
    pub download_dir: PathBuf,
    /// The cores the stage may use (the job's `threads`); a `command` stage's program is
    /// told it in `REPRO_THREADS`. The built-in kinds' thread pool is sized by the engine.
    pub threads: usize,
    pub progress: &'a dyn Progress,
    /// Set when the stage should checkpoint and return [`Interrupted`].
    pub stop: &'a AtomicBool,
}

impl StageContext<'_> {
    pub fn should_stop(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// The single input named `name`, or an error naming the stage and the input.
    pub fn input(&self, name: &str) -> anyhow::Result<&InputRef> {
        match self.inputs.get(name).map(|v| v.as_slice()) {
            Some([one]) => Ok(one),
            Some(many) if many.len() > 1 => anyhow::bail!(
                "input `{name}` of {} must be a single stage, but {} members match",
                self.member,
                many.len()
            ),
            _ => anyhow::bail!("{} needs an input named `{name}`", self.member),
        }
    }

    /// An optional single input.
    pub fn input_opt(&self, name: &str) -> anyhow::Result<Option<&InputRef>> {
        if self.inputs.contains_key(name) {
            self.input(name).map(Some)
        } else {
            Ok(None)
        }
    }

    /// All refs of a (group) input; empty when absent.
    pub fn group(&self, name: &str) -> &[InputRef] {
        self.inputs.get(name).map(|v| v.as_slice()).unwrap_or(&[])
    }

    /// Resolves a path from params against the project root.
    pub fn project_path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.project_dir.join(p)
        }
    }
}
