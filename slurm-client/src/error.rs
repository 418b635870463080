//! The error type of every Slurm operation.

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;

/// What went wrong talking to Slurm or preparing a job.
#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    /// A Slurm command could not be started at all (not installed, not on PATH, not executable).
    #[error("cannot run `{program}` (is Slurm installed and on PATH?): {source}")]
    Spawn {
        program: String,
        #[source]
        source: io::Error,
    },
    /// A Slurm command ran and failed. `stderr` is its trimmed error output. Failures such as
    /// "Unable to contact slurm controller" are usually transient: see [`SlurmError::is_transient`].
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: ExitStatus,
        stderr: String,
    },
    /// A Slurm command succeeded but printed something this module cannot read.
    #[error("unexpected output from `{command}`: {detail}; output was {output:?}")]
    Output {
        command: String,
        detail: String,
        output: String,
    },
    /// A [`crate::SlurmResources`] field has a value Slurm would reject or that would clash with
    /// the options this module sets itself.
    #[error("invalid Slurm resources: {0}")]
    Resources(String),
    /// A [`crate::JobSpec`] cannot be submitted as it is (relative path, empty command, ...).
    #[error("invalid Slurm job `{name}`: {detail}")]
    Spec { name: String, detail: String },
    /// Reading or writing a file of a job (batch script, log) failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl SlurmError {
    /// True for failures worth retrying at the next poll: the controller was unreachable or
    /// busy, or a command timed out. The executor should give up only after several in a row.
    pub fn is_transient(&self) -> bool {
        match self {
            SlurmError::Command { stderr, .. } => {
                let s = stderr.to_ascii_lowercase();
                [
                    "unable to contact slurm controller",
                    "socket timed out",
                    "connection refused",
                    "connection timed out",
                    "temporarily unavailable",
                    "try again",
                    "slurmctld is busy",
                    "communication connection failure",
                ]
                .iter()
                .any(|needle| s.contains(needle))
            }
            _ => false,
        }
    }
}
