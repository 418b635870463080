//! The Slurm command-line client: submit, poll, cancel.
//!
//! Everything goes through Slurm's own commands (`sbatch`, `squeue`, `scancel`, `scontrol`),
//! which every cluster user has, rather than the REST API, which few clusters enable.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::process::{Command, Output};

use crate::{parse_squeue, JobId, JobSpec, JobStatus, SlurmError, SQUEUE_FORMAT};

/// At most this many ids go into one `squeue -j` call (command-line length); a run with more
/// outstanding jobs polls in several calls.
const MAX_IDS_PER_QUERY: usize = 500;

/// The programs run for each operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlurmCommands {
    pub sbatch: OsString,
    pub squeue: OsString,
    pub scancel: OsString,
    pub scontrol: OsString,
}

impl Default for SlurmCommands {
    /// The commands on PATH.
    fn default() -> SlurmCommands {
        SlurmCommands {
            sbatch: "sbatch".into(),
            squeue: "squeue".into(),
            scancel: "scancel".into(),
            scontrol: "scontrol".into(),
        }
    }
}

impl SlurmCommands {
    /// `REPRO_SBATCH`, `REPRO_SQUEUE`, `REPRO_SCANCEL` and `REPRO_SCONTROL` when set (a path or
    /// a name on PATH, e.g. a wrapper), else the plain command names.
    pub fn from_env() -> SlurmCommands {
        let var = |name: &str, default: &str| -> OsString {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| default.into())
        };
        SlurmCommands {
            sbatch: var("REPRO_SBATCH", "sbatch"),
            squeue: var("REPRO_SQUEUE", "squeue"),
            scancel: var("REPRO_SCANCEL", "scancel"),
            scontrol: var("REPRO_SCONTROL", "scontrol"),
        }
    }
}

/// Talks to one Slurm cluster. Cheap to clone; holds no connection: every call runs one command.
#[derive(Debug, Clone)]
pub struct SlurmClient {
    commands: SlurmCommands,
    conf: Option<PathBuf>,
}

impl SlurmClient {
    /// Commands from [`SlurmCommands::from_env`], and the cluster config from `SLURM_CONF` if
    /// set (else Slurm's built-in default, e.g. /etc/slurm/slurm.conf). Jobs inherit it.
    pub fn from_env() -> SlurmClient {
        let conf = std::env::var_os("SLURM_CONF")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        SlurmClient::new(SlurmCommands::from_env(), conf)
    }

    /// Explicit commands and config file (`None`: whatever the commands default to).
    pub fn new(commands: SlurmCommands, conf: Option<PathBuf>) -> SlurmClient {
        SlurmClient { commands, conf }
    }

    /// Checks that the controller answers (`scontrol ping` reports a controller "UP"). Call it
    /// once before submitting anything, to fail early with a clear message.
    pub fn check(&self) -> Result<(), SlurmError> {
        let args: Vec<OsString> = vec!["ping".into()];
        let out = self.run(&self.commands.scontrol, &args)?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if out.status.success() && stdout.contains("is UP") {
            Ok(())
        } else {
            Err(SlurmError::Command {
                command: command_line(&self.commands.scontrol, &args),
                status: out.status,
                stderr: format!(
                    "{} {}",
                    stdout.trim(),
                    String::from_utf8_lossy(&out.stderr).trim()
                )
                .trim()
                .to_string(),
            })
        }
    }

    /// Writes the job's batch script and submits it with `sbatch --parsable`; returns its id.
    /// The job is queued when this returns: a [`SlurmClient::poll`] right after sees it.
    pub fn submit(&self, spec: &JobSpec) -> Result<JobId, SlurmError> {
        let args = spec.sbatch_args()?;
        spec.write_script()?;
        let out = self.run_ok(&self.commands.sbatch, &args)?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        JobId::from_sbatch_parsable(&stdout).ok_or_else(|| SlurmError::Output {
            command: command_line(&self.commands.sbatch, &args),
            detail: "expected a job id".into(),
            output: stdout.into_owned(),
        })
    }

    /// The state of every job in `ids` in one `squeue` call (chunks of 500 ids), in the order
    /// of `ids`. A job Slurm no longer knows comes back as failed with
    /// [`crate::FailReason::Vanished`]. Errors are usually transient
    /// ([`SlurmError::is_transient`]): retry at the next poll.
    pub fn poll(&self, ids: &[JobId]) -> Result<Vec<JobStatus>, SlurmError> {
        let mut all = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(MAX_IDS_PER_QUERY) {
            let list: Vec<String> = chunk.iter().map(JobId::to_string).collect();
            let args: Vec<OsString> = vec![
                "--noheader".into(),
                "--states=all".into(),
                format!("--jobs={}", list.join(",")).into(),
                format!("--Format={SQUEUE_FORMAT}").into(),
            ];
            let out = self.run(&self.commands.squeue, &args)?;
            let command = command_line(&self.commands.squeue, &args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            let stdout = if out.status.success() {
                String::from_utf8_lossy(&out.stdout).into_owned()
            } else if stderr.contains("Invalid job id specified") {
                // With a single unknown id squeue fails instead of printing nothing.
                String::new()
            } else {
                return Err(SlurmError::Command {
                    command,
                    status: out.status,
                    stderr: stderr.trim().to_string(),
                });
            };
            all.extend(parse_squeue(&stdout, chunk, &command)?);
        }
        Ok(all)
    }

    /// Cancels the jobs (`scancel`, one call): running ones get SIGTERM, then SIGKILL after
    /// the cluster's KillWait. Jobs already finished or unknown are not an error.
    pub fn cancel(&self, ids: &[JobId]) -> Result<(), SlurmError> {
        for chunk in ids.chunks(MAX_IDS_PER_QUERY) {
            let args: Vec<OsString> = chunk.iter().map(|id| id.to_string().into()).collect();
            let out = self.run(&self.commands.scancel, &args)?;
            if out.status.success() {
                continue;
            }
            let stderr = String::from_utf8_lossy(&out.stderr);
            let harmless = |l: &str| {
                l.contains("already completing or completed") || l.contains("Invalid job id")
            };
            if !stderr
                .lines()
                .filter(|l| !l.trim().is_empty())
                .all(harmless)
            {
                return Err(SlurmError::Command {
                    command: command_line(&self.commands.scancel, &args),
                    status: out.status,
                    stderr: stderr.trim().to_string(),
                });
            }
        }
        Ok(())
    }

    fn run(&self, program: &OsStr, args: &[OsString]) -> Result<Output, SlurmError> {
        let mut cmd = Command::new(program);
        cmd.args(args);
        if let Some(conf) = &self.conf {
            cmd.env("SLURM_CONF", conf);
        }
        cmd.output().map_err(|source| SlurmError::Spawn {
            program: program.to_string_lossy().into_owned(),
            source,
        })
    }

    fn run_ok(&self, program: &OsStr, args: &[OsString]) -> Result<Output, SlurmError> {
        let out = self.run(program, args)?;
        if out.status.success() {
            Ok(out)
        } else {
            Err(SlurmError::Command {
                command: command_line(program, args),
                status: out.status,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    }
}

/// `program arg1 arg2` for messages.
fn command_line(program: &OsStr, args: &[OsString]) -> String {
    std::iter::once(program)
        .chain(args.iter().map(OsString::as_os_str))
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_program_is_a_spawn_error() {
        let commands = SlurmCommands {
            squeue: "/nonexistent/squeue".into(),
            ..SlurmCommands::default()
        };
        let client = SlurmClient::new(commands, None);
        let err = client.poll(&[JobId(1)]).unwrap_err();
        assert!(matches!(err, SlurmError::Spawn { .. }), "{err}");
        assert!(err.to_string().contains("/nonexistent/squeue"), "{err}");
        // Nothing to poll or cancel: no command is run at all.
        assert!(client.poll(&[]).unwrap().is_empty());
    }

    #[test]
    fn transient_errors() {
        let status = Command::new("false").status().unwrap();
        let err = |stderr: &str| SlurmError::Command {
            command: "squeue".into(),
            status,
            stderr: stderr.into(),
        };
        assert!(
            err("squeue: error: Unable to contact slurm controller (connect failure)")
                .is_transient()
        );
        assert!(
            err("slurm_load_jobs error: Socket timed out on send/recv operation").is_transient()
        );
        assert!(!err("squeue: error: Invalid user: nobody").is_transient());
    }
}
