//! Running stages: the [`Executor`] interface and its two implementations.
//!
//! - [`local`]: each stage in a child process of this binary on this machine.
//! - [`slurm`]: each stage as a Slurm batch job on a cluster sharing the project directory,
//!   through the [`slurm_client`] crate (which knows nothing of the engine).
//! - [`child`]: the other end of both, `repro exec-stage <job.json>` (hidden subcommand,
//!   [`exec_stage`]), which runs one stage.
//! - [`launcher`]: an optional program both start that command through (`--launcher`,
//!   `REPRO_LAUNCHER`: an emulator, `nice`, a container), outside every fingerprint.
//!
//! The [`Job`] file says everything the stage may know; the child reports progress as JSON
//! lines on stdout ([`Event`]), an error message on stderr, and exits with 0 (success), 130
//! (interrupted, checkpoint saved) or 1 (error). A separate process isolates crashes and
//! aborts (a panic or `kill -9` loses one stage, never the scheduler), lets SIGTERM reach
//! exactly one stage, and lets a cluster run the same subcommand on another node: the planner
//! and the scheduler do not know which executor runs their stages.
//!
//! Job JSON (paths absolute; the file lives in the staging dir and never reaches the
//! store):
//!
//! ```json
//! { "kind": "train", "params": {...}, "seed": 1, "member": "train[flip,0.5,seed=1]",
//!   "profile": "default", "coords": {"corruption": "flip", "seed": 1, "strength": 0.5},
//!   "inputs": { "data": [ { "dir": "/p/results/.runs/runs/<fp>/out", "member": "digits",
//!                           "coords": {} } ] },
//!   "out_dir": "/p/results/.runs/staging/<fp>.<pid>/out",
//!   "checkpoint_dir": "/p/results/.runs/checkpoints/<fp>",
//!   "project_dir": "/p", "download_dir": "/p/data/downloads" }
//! ```
//!
//! `"timeout": 600` (seconds) is present when the stage has a time limit: `exec-stage` stops
//! the stage when it is reached and fails it naming the limit, with the checkpoint kept.
//!
//! Progress lines: `{"event":"phase","name":"train","unit":"epoch","total":10}`,
//! `{"event":"position","done":3}`, `{"event":"message","text":"loss 0.31"}`, and
//! `{"event":"process_group","pgid":4242}` when a `command` stage has started its program in
//! process group 4242 (the local executor ends that group if the stage process dies before
//! it could, and records it with the project lock meanwhile).
//!
//! Signals: the local executor starts each stage process in a process group of its own, so
//! a terminal's Ctrl-C reaches `repro` alone, which passes it on: a first interrupt sends
//! each stage's group SIGTERM (save a checkpoint and stop), a second SIGKILL
//! ([`Executor::kill_all`]). A stage process that receives a second SIGINT or SIGTERM
//! itself stops at once, killing its program.

pub mod child;
pub mod launcher;
pub mod local;
pub mod slurm;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;

use anyhow::{Context, Result};
use repro_stages::InputRef;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use child::exec_stage;
pub use launcher::Launcher;
pub use local::LocalExecutor;
pub use slurm::SlurmExecutor;

/// Everything one stage run needs; serialized as the job file of `repro exec-stage`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Job {
    pub kind: String,
    pub params: Value,
    pub seed: u64,
    pub member: String,
    pub profile: String,
    pub coords: BTreeMap<String, Value>,
    pub inputs: BTreeMap<String, Vec<InputRef>>,
    pub out_dir: PathBuf,
    pub checkpoint_dir: PathBuf,
    pub project_dir: PathBuf,
    pub download_dir: PathBuf,
    /// The stage's time limit in seconds (`timeout:` in pipeline.yaml), if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    /// [`code_identity`] of the kind in the binary that planned the run: the stage process
    /// refuses to run other code under the run's fingerprint.
    pub code: String,
}

/// What a member's fingerprint says about the code that computes it (the kind's code hash,
/// dfdx's version, the backend), as one string. The run writes its own into each job; the
/// stage process compares it with its own before it starts, so that a binary rebuilt while
/// a run is going (or a stale one on a cluster node) cannot publish its results under a key
/// that names other code.
pub fn code_identity(kind: repro_stages::Kind) -> String {
    format!(
        "{} dfdx {} {}",
        kind.code_hash(),
        repro_stages::DFDX_VERSION,
        repro_stages::BACKEND
    )
}

/// A progress line of a running stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Phase {
        name: String,
        unit: String,
        total: u64,
    },
    Position {
        done: u64,
    },
    Message {
        text: String,
    },
    /// A program the stage started leads process group `pgid`.
    ProcessGroup {
        pgid: u32,
    },
}

/// How a stage run ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Success,
    /// Asked to stop; its checkpoint is saved.
    Interrupted,
    /// The error message (the child's stderr, or how it died).
    Failed(String),
}

/// What an executor reports about a job.
#[derive(Clone, Debug, PartialEq)]
pub enum Report {
    /// The job started; `pid` of the local process (0 when there is none).
    Started {
        pid: u32,
    },
    Event(Event),
    /// The last report of a job.
    Done(Outcome),
}

/// Runs stage jobs. `start` returns at once; reports arrive on the channel tagged with
/// the caller's job id, ending with exactly one [`Report::Done`]. `threads` is the number
/// of cores the job may use (a local executor sets `RAYON_NUM_THREADS`; a cluster one
/// would ask for that many CPUs per task). Outputs never depend on it.
pub trait Executor: Send + Sync {
    fn start(
        &self,
        id: usize,
        job: &Job,
        job_file: &Path,
        threads: usize,
        tx: Sender<(usize, Report)>,
    ) -> Result<()>;
    /// Asks every running job to checkpoint and stop (they then report `Interrupted`).
    fn stop_all(&self);
    /// Ends every running job at once, without waiting for a checkpoint (a second
    /// interrupt). By default the same as [`Executor::stop_all`].
    fn kill_all(&self) {
        self.stop_all();
    }
}

/// Writes `job` to `job_file`, where `repro exec-stage` reads it.
fn write_job_file(job_file: &Path, job: &Job) -> Result<()> {
    std::fs::write(job_file, serde_json::to_vec_pretty(job)?)
        .with_context(|| format!("writing {}", job_file.display()))
}

/// The report for one line a stage printed on stdout: its [`Event`], a line that is not one
/// as a message, nothing for a blank line.
fn line_report(line: String) -> Option<Report> {
    match serde_json::from_str::<Event>(&line) {
        Ok(ev) => Some(Report::Event(ev)),
        Err(_) if !line.trim().is_empty() => Some(Report::Event(Event::Message { text: line })),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_have_a_stable_line_format() {
        let e = Event::Phase {
            name: "train".into(),
            unit: "epoch".into(),
            total: 3,
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"event":"phase","name":"train","unit":"epoch","total":3}"#
        );
        let m: Event = serde_json::from_str(r#"{"event":"message","text":"hi"}"#).unwrap();
        assert_eq!(m, Event::Message { text: "hi".into() });
    }
}
