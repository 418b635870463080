//! Errors of the engine, sorted by what the user must do about them (and so by exit code).
//!
//! - [`SpecError`]: `pipeline.yaml` is wrong. Names the file, the line, the stage and the
//!   field. Exit code 2.
//! - [`EngineError::Usage`]: the command line is wrong (unknown target, unknown profile, a
//!   stage launcher that does not exist). Exit code 2.
//! - [`EngineError::Reference`]: the reference of `repro check` cannot be read or is no lock.
//!   Exit code 2.
//! - [`EngineError::Busy`]: another `repro run` holds the project. Exit code 1.
//! - [`EngineError::StagesFailed`] / [`EngineError::Interrupted`]: exit codes 1 and 130.
//! - [`EngineError::VerifyFailed`] / [`EngineError::CheckFailed`]: `verify` found a mismatch,
//!   `check` a member whose bytes differ from the reference's. Exit code 1.
//!
//! Everything else (I/O) travels as `anyhow` errors with context and exits with 1.

use std::fmt;
use std::path::PathBuf;

use crate::check::reference::ReferenceError;

/// An error in `pipeline.yaml`, located as precisely as the parser allows.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecError {
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    pub stage: Option<String>,
    pub field: Option<String>,
    pub message: String,
}

impl SpecError {
    pub fn new(file: impl Into<PathBuf>, message: impl Into<String>) -> SpecError {
        SpecError {
            file: file.into(),
            line: None,
            stage: None,
            field: None,
            message: message.into(),
        }
    }
    pub fn line(mut self, line: Option<usize>) -> Self {
        self.line = line;
        self
    }
    pub fn stage(mut self, stage: impl Into<String>) -> Self {
        self.stage = Some(stage.into());
        self
    }
    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        write!(f, ":")?;
        if let Some(s) = &self.stage {
            write!(f, " stage `{s}`")?;
            if self.field.is_some() {
                write!(f, ",")?;
            }
        }
        if let Some(fl) = &self.field {
            write!(f, " field `{fl}`")?;
        }
        if self.stage.is_some() || self.field.is_some() {
            write!(f, ":")?;
        }
        write!(f, " {}", self.message)
    }
}

impl std::error::Error for SpecError {}

/// Engine errors that decide the exit code.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    Spec(#[from] SpecError),
    #[error("{0}")]
    Usage(String),
    #[error(
        "another `repro run` (pid {pid}) is working in {}; wait for it to finish \
         (the lock is {})",
        project.display(),
        lock.display()
    )]
    Busy {
        pid: u32,
        project: PathBuf,
        lock: PathBuf,
    },
    #[error("{0} stage(s) failed")]
    StagesFailed(usize),
    #[error("interrupted; {}", interrupted_detail(*killed, *failed))]
    Interrupted {
        /// Stages killed at a second interrupt.
        killed: usize,
        /// Stages that failed meanwhile (one that did not stop within its grace period).
        failed: usize,
    },
    #[error("verification failed: {0} problem(s)")]
    VerifyFailed(usize),
    #[error("{0}")]
    Reference(#[from] ReferenceError),
    #[error("check failed: {0} member(s) differ from the reference")]
    CheckFailed(usize),
}

/// What an interrupted run says of its stages: they saved their checkpoints, unless some
/// were killed or failed.
fn interrupted_detail(killed: usize, failed: usize) -> String {
    let mut parts = Vec::new();
    if killed > 0 {
        parts.push(format!(
            "{killed} stage(s) killed before saving a checkpoint"
        ));
    }
    if failed > 0 {
        parts.push(format!("{failed} stage(s) failed (see above)"));
    }
    if parts.is_empty() {
        "running stages saved their checkpoints".to_string()
    } else {
        parts.join(", ")
    }
}

impl EngineError {
    /// The process exit code this error maps to.
    pub fn exit_code(&self) -> i32 {
        match self {
            EngineError::Spec(_) | EngineError::Usage(_) | EngineError::Reference(_) => 2,
            EngineError::Busy { .. }
            | EngineError::StagesFailed(_)
            | EngineError::VerifyFailed(_)
            | EngineError::CheckFailed(_) => 1,
            EngineError::Interrupted { .. } => 130,
        }
    }
}
