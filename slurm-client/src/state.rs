//! Job states as Slurm reports them, mapped to what the engine needs to know.
//!
//! The source is one `squeue` call for all the run's jobs (see [`SQUEUE_FORMAT`]). Without
//! slurmdbd, `sacct` does not work, but `squeue -t all` keeps listing finished jobs for
//! `MinJobAge` seconds (300 by default) with their final state and raw wait status.

use std::collections::HashMap;
use std::fmt;

use crate::{JobId, SlurmError};

/// The `squeue -O` format this module reads: `|`-separated, the reason last.
/// A line looks like `4|FAILED|768|NonZeroExitCode|`.
pub const SQUEUE_FORMAT: &str = "JobID:|,State:|,exit_code:|,Reason:|";

/// How a finished job's process ended, decoded from the raw wait status `squeue` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobExit {
    /// Exited by itself with this code.
    Code(i32),
    /// Killed by this signal number.
    Signal(i32),
}

impl JobExit {
    /// Decodes a wait status: signal = `s & 0x7f` if non-zero, else exit code = `s >> 8`.
    pub fn from_wait_status(status: u32) -> JobExit {
        match status & 0x7f {
            0 => JobExit::Code(((status >> 8) & 0xff) as i32),
            sig => JobExit::Signal(sig as i32),
        }
    }
}

impl fmt::Display for JobExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobExit::Code(c) => write!(f, "exit code {c}"),
            JobExit::Signal(s) => match signal_name(*s) {
                Some(name) => write!(f, "killed by signal {s} ({name})"),
                None => write!(f, "killed by signal {s}"),
            },
        }
    }
}

fn signal_name(sig: i32) -> Option<&'static str> {
    Some(match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        6 => "SIGABRT",
        7 => "SIGBUS",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        15 => "SIGTERM",
        _ => return None,
    })
}

/// Why a job failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailReason {
    /// The command exited with a non-zero code other than 130, or was killed by a signal
    /// (Slurm: FAILED). The exit tells which.
    Exit,
    /// Over its time limit (TIMEOUT).
    Timeout,
    /// Over its memory limit (OUT_OF_MEMORY).
    OutOfMemory,
    /// The node failed (NODE_FAIL).
    NodeFail,
    /// Preempted by a higher-priority job (PREEMPTED).
    Preempted,
    /// The node could not boot (BOOT_FAIL).
    BootFail,
    /// Reached its deadline (DEADLINE).
    Deadline,
    /// Pending on a dependency that can never be satisfied.
    DependencyNeverSatisfied,
    /// `squeue` no longer knows the job: purged after `MinJobAge`, or the cluster was reset.
    Vanished,
    /// Another terminal Slurm state (e.g. SPECIAL_EXIT, REVOKED).
    Other(String),
}

/// What the engine needs to know about one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    /// Waiting to start (PENDING, CONFIGURING, REQUEUED, ...); `reason` is Slurm's
    /// (Priority, Resources, ...).
    Queued { reason: String },
    /// Started and not finished (RUNNING, COMPLETING, SUSPENDED, ...).
    Running,
    /// COMPLETED: the command exited 0.
    Succeeded,
    /// The command exited 130: it was interrupted and saved a checkpoint, a rerun resumes.
    Interrupted,
    /// CANCELLED (`scancel` by this run, a user or an admin). `exit` is how the process
    /// ended if it was running (SIGTERM, or exit 130 if it caught the signal), `None` if it
    /// never started.
    Cancelled { exit: Option<JobExit> },
    /// Any other end.
    Failed {
        reason: FailReason,
        exit: Option<JobExit>,
    },
}

impl JobState {
    /// True when the job will not change any more.
    pub fn is_finished(&self) -> bool {
        !matches!(self, JobState::Queued { .. } | JobState::Running)
    }

    /// Maps one `squeue` record: Slurm's state name, the raw wait status (`exit_code` field)
    /// and the reason field.
    pub fn from_squeue(state: &str, wait_status: Option<u32>, reason: &str) -> JobState {
        let exit = wait_status.map(JobExit::from_wait_status);
        // A job still running has no exit status yet; a pending one never ran.
        let exit_if_ran = || exit.filter(|e| *e != JobExit::Code(0));
        let failed = |reason| JobState::Failed {
            reason,
            exit: exit_if_ran(),
        };
        // squeue prints e.g. "CANCELLED" but other Slurm tools append " by <uid>"; keep the word.
        let state = state
            .split_whitespace()
            .next()
            .unwrap_or("")
            .trim_end_matches('+');
        match state {
            "PENDING" if reason == "DependencyNeverSatisfied" => {
                failed(FailReason::DependencyNeverSatisfied)
            }
            "PENDING" | "CONFIGURING" | "REQUEUED" | "REQUEUE_FED" | "REQUEUE_HOLD"
            | "RESV_DEL_HOLD" | "POWER_UP_NODE" => JobState::Queued {
                reason: reason.to_string(),
            },
            "RUNNING" | "COMPLETING" | "SUSPENDED" | "STOPPED" | "SIGNALING" | "STAGE_OUT"
            | "RESIZING" | "UPDATE_DB" => JobState::Running,
            "COMPLETED" => match exit {
                Some(JobExit::Code(0)) | None => JobState::Succeeded,
                Some(e) => JobState::Failed {
                    reason: FailReason::Exit,
                    exit: Some(e),
                },
            },
            "FAILED" => match exit {
                Some(JobExit::Code(130)) => JobState::Interrupted,
                e => JobState::Failed {
                    reason: FailReason::Exit,
                    exit: e,
                },
            },
            "CANCELLED" => JobState::Cancelled {
                exit: exit_if_ran(),
            },
            "TIMEOUT" => failed(FailReason::Timeout),
            "OUT_OF_MEMORY" => failed(FailReason::OutOfMemory),
            "NODE_FAIL" => failed(FailReason::NodeFail),
            "PREEMPTED" => failed(FailReason::Preempted),
            "BOOT_FAIL" => failed(FailReason::BootFail),
            "DEADLINE" => failed(FailReason::Deadline),
            // Unknown names (a newer Slurm): report rather than wait forever on them.
            other => failed(FailReason::Other(other.to_string())),
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let exit_suffix = |f: &mut fmt::Formatter<'_>, exit: &Option<JobExit>| match exit {
            Some(e) => write!(f, " ({e})"),
            None => Ok(()),
        };
        match self {
            JobState::Queued { reason } if reason.is_empty() || reason == "None" => {
                write!(f, "queued")
            }
            JobState::Queued { reason } => write!(f, "queued ({reason})"),
            JobState::Running => write!(f, "running"),
            JobState::Succeeded => write!(f, "succeeded"),
            JobState::Interrupted => write!(f, "interrupted (exit code 130; checkpoint saved)"),
            JobState::Cancelled { exit } => {
                write!(f, "cancelled")?;
                exit_suffix(f, exit)
            }
            JobState::Failed { reason, exit } => {
                match reason {
                    FailReason::Exit => match exit {
                        Some(e) => return write!(f, "failed: {e}"),
                        None => write!(f, "failed")?,
                    },
                    FailReason::Timeout => write!(f, "failed: time limit reached (TIMEOUT)")?,
                    FailReason::OutOfMemory => {
                        write!(f, "failed: memory limit exceeded (OUT_OF_MEMORY)")?
                    }
                    FailReason::NodeFail => write!(f, "failed: the node failed (NODE_FAIL)")?,
                    FailReason::Preempted => write!(f, "failed: preempted (PREEMPTED)")?,
                    FailReason::BootFail => write!(f, "failed: the node did not boot (BOOT_FAIL)")?,
                    FailReason::Deadline => write!(f, "failed: deadline reached (DEADLINE)")?,
                    FailReason::DependencyNeverSatisfied => {
                        write!(f, "failed: its dependency can never be satisfied")?
                    }
                    FailReason::Vanished => write!(
                        f,
                        "failed: the job vanished from the Slurm queue (squeue no longer knows \
                         it: purged after MinJobAge, or the cluster was reset); its result is \
                         unknown"
                    )?,
                    FailReason::Other(state) => write!(f, "failed: Slurm state {state}")?,
                }
                exit_suffix(f, exit)
            }
        }
    }
}

/// The state of one job in one poll, with Slurm's own words for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobStatus {
    pub id: JobId,
    pub state: JobState,
    /// Slurm's state name (`COMPLETED`, `FAILED`, ...), empty for a vanished job.
    pub slurm_state: String,
    /// Slurm's reason field (`None`, `Resources`, `NonZeroExitCode`, ...).
    pub slurm_reason: String,
}

impl JobStatus {
    fn vanished(id: JobId) -> JobStatus {
        JobStatus {
            id,
            state: JobState::Failed {
                reason: FailReason::Vanished,
                exit: None,
            },
            slurm_state: String::new(),
            slurm_reason: String::new(),
        }
    }
}

/// Reads the output of `squeue -h -t all -j <ids> -O SQUEUE_FORMAT` and returns one status per
/// id of `ids`, in that order. An id missing from the output is vanished (failed). Lines for
/// other jobs are ignored. `command` only names the command in errors.
pub fn parse_squeue(
    output: &str,
    ids: &[JobId],
    command: &str,
) -> Result<Vec<JobStatus>, SlurmError> {
    let mut found: HashMap<JobId, JobStatus> = HashMap::new();
    for line in output.lines().filter(|l| !l.trim().is_empty()) {
        let bad = |detail: &str| SlurmError::Output {
            command: command.to_string(),
            detail: format!("{detail} in line {line:?}"),
            output: output.to_string(),
        };
        let mut fields = line.splitn(4, '|');
        let (Some(id), Some(state), Some(exit), Some(reason)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(bad("expected 4 '|'-separated fields"));
        };
        let Ok(id) = id.trim().parse::<u64>() else {
            // Array or heterogeneous job ids ("12_3", "12+1") are never ours.
            continue;
        };
        let state = state.trim();
        if state.is_empty() {
            return Err(bad("empty state"));
        }
        let exit = exit.trim();
        let wait_status = if exit.is_empty() || exit == "N/A" {
            None
        } else {
            Some(
                exit.parse::<u32>()
                    .map_err(|_| bad("exit_code is not a number"))?,
            )
        };
        let reason = reason.trim().trim_end_matches('|').trim();
        let id = JobId(id);
        found.insert(
            id,
            JobStatus {
                id,
                state: JobState::from_squeue(state, wait_status, reason),
                slurm_state: state.to_string(),
                slurm_reason: reason.to_string(),
            },
        );
    }
    Ok(ids
        .iter()
        .map(|id| found.remove(id).unwrap_or_else(|| JobStatus::vanished(*id)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Literal output of
    /// `squeue -h -t all -j 3,4,5,6,7,8,9,99999 -O 'JobID:|,State:|,exit_code:|,Reason:|'`
    /// on the one-node test cluster of `.ci/slurm/start` (Slurm 22.05.8, Debian bookworm),
    /// after submitting with `sbatch --parsable --wrap ...`:
    ///  3 `echo hi`; 4 `echo boom >&2; exit 3`; 5 `sleep 30`, then `scancel 5` while running;
    ///  6 `exec sleep 30`, then `kill -9` of that sleep; 7 `exit 130`;
    ///  8 `--hold true`, then `scancel 8` while pending; 9 `--time=0:01 sleep 200` (running).
    /// Job 99999 never existed: squeue leaves it out.
    const OBSERVED: &str = "\
5|CANCELLED|15|None|
8|CANCELLED|0|JobHeldUser|
3|COMPLETED|0|None|
4|FAILED|768|NonZeroExitCode|
6|FAILED|9|JobLaunchFailure|
7|FAILED|33280|NonZeroExitCode|
9|RUNNING|0|None|
";

    /// Same cluster, later, lines as printed: 10 `-d afterok:4` (job 4 failed) while it was
    /// pending (one query), then (another query) 11 `trap "exit 143" TERM; sleep 30 & wait`
    /// after `scancel 11`, and job 9 above once its one-minute limit had passed.
    const OBSERVED_LATER: &str = "\
10|PENDING|0|DependencyNeverSatisfied|
11|CANCELLED|36608|None|
9|TIMEOUT|15|TimeLimit|
";

    #[test]
    fn observed_states_map_to_engine_states() {
        let ids: Vec<JobId> = [3, 4, 5, 6, 7, 8, 9, 99999].map(JobId).to_vec();
        let st = parse_squeue(OBSERVED, &ids, "squeue").unwrap();
        let states: Vec<&JobState> = st.iter().map(|s| &s.state).collect();
        assert_eq!(
            states,
            [
                &JobState::Succeeded,
                &JobState::Failed {
                    reason: FailReason::Exit,
                    exit: Some(JobExit::Code(3))
                },
                &JobState::Cancelled {
                    exit: Some(JobExit::Signal(15))
                },
                &JobState::Failed {
                    reason: FailReason::Exit,
                    exit: Some(JobExit::Signal(9))
                },
                &JobState::Interrupted,
                &JobState::Cancelled { exit: None },
                &JobState::Running,
                &JobState::Failed {
                    reason: FailReason::Vanished,
                    exit: None
                },
            ]
        );
        assert_eq!(
            st.iter().map(|s| s.id).collect::<Vec<_>>(),
            ids,
            "order of the request"
        );
        assert_eq!(st[1].slurm_state, "FAILED");
        assert_eq!(st[1].slurm_reason, "NonZeroExitCode");
        assert_eq!(
            st[3].state.to_string(),
            "failed: killed by signal 9 (SIGKILL)"
        );
        assert_eq!(st[1].state.to_string(), "failed: exit code 3");
        assert!(st[7]
            .state
            .to_string()
            .contains("vanished from the Slurm queue"));
        assert!(!st[6].state.is_finished());
        assert!(st
            .iter()
            .filter(|s| s.id != JobId(9))
            .all(|s| s.state.is_finished()));
    }

    #[test]
    fn later_observed_states() {
        let ids = [JobId(9), JobId(10), JobId(11)];
        // Returned in the order asked, not squeue's.
        let st = parse_squeue(OBSERVED_LATER, &ids, "squeue").unwrap();
        assert_eq!(
            st[0].state,
            JobState::Failed {
                reason: FailReason::Timeout,
                exit: Some(JobExit::Signal(15))
            }
        );
        assert_eq!(
            st[1].state,
            JobState::Failed {
                reason: FailReason::DependencyNeverSatisfied,
                exit: None
            }
        );
        assert_eq!(
            st[2].state,
            JobState::Cancelled {
                exit: Some(JobExit::Code(143))
            }
        );
        assert_eq!(
            st[0].state.to_string(),
            "failed: time limit reached (TIMEOUT) (killed by signal 15 (SIGTERM))"
        );
    }

    #[test]
    fn pending_and_other_states() {
        let q = JobState::from_squeue("PENDING", Some(0), "Resources");
        assert_eq!(
            q,
            JobState::Queued {
                reason: "Resources".into()
            }
        );
        assert_eq!(q.to_string(), "queued (Resources)");
        assert_eq!(
            JobState::from_squeue("COMPLETING", Some(0), "None"),
            JobState::Running
        );
        assert_eq!(
            JobState::from_squeue("OUT_OF_MEMORY", Some(9), "OutOfMemory"),
            JobState::Failed {
                reason: FailReason::OutOfMemory,
                exit: Some(JobExit::Signal(9))
            }
        );
        assert_eq!(
            JobState::from_squeue("NODE_FAIL", Some(0), "NodeDown"),
            JobState::Failed {
                reason: FailReason::NodeFail,
                exit: None
            }
        );
        assert_eq!(
            JobState::from_squeue("PREEMPTED", Some(15), "None"),
            JobState::Failed {
                reason: FailReason::Preempted,
                exit: Some(JobExit::Signal(15))
            }
        );
        assert_eq!(
            JobState::from_squeue("BOOT_FAIL", None, "None").to_string(),
            "failed: the node did not boot (BOOT_FAIL)"
        );
        assert_eq!(
            JobState::from_squeue("DEADLINE", Some(0), "None"),
            JobState::Failed {
                reason: FailReason::Deadline,
                exit: None
            }
        );
        assert_eq!(
            JobState::from_squeue("NEW_STATE", Some(0), "None"),
            JobState::Failed {
                reason: FailReason::Other("NEW_STATE".into()),
                exit: None
            }
        );
        assert_eq!(
            JobState::from_squeue("CANCELLED by 0", Some(15), "None"),
            JobState::Cancelled {
                exit: Some(JobExit::Signal(15))
            }
        );
    }

    #[test]
    fn wait_status_decoding() {
        assert_eq!(JobExit::from_wait_status(0), JobExit::Code(0));
        assert_eq!(JobExit::from_wait_status(256), JobExit::Code(1));
        assert_eq!(JobExit::from_wait_status(768), JobExit::Code(3));
        assert_eq!(JobExit::from_wait_status(33280), JobExit::Code(130));
        assert_eq!(JobExit::from_wait_status(9), JobExit::Signal(9));
        assert_eq!(JobExit::from_wait_status(15), JobExit::Signal(15));
        // 128 | 9: core-dump flag set, still signal 9.
        assert_eq!(JobExit::from_wait_status(137), JobExit::Signal(9));
    }

    #[test]
    fn empty_output_means_all_vanished_and_garbage_is_an_error() {
        // `squeue -h -t all -j 99999,99998 ...` printed nothing and exited 0.
        let st = parse_squeue("", &[JobId(99999), JobId(99998)], "squeue").unwrap();
        assert!(st.iter().all(|s| s.state
            == JobState::Failed {
                reason: FailReason::Vanished,
                exit: None
            }));
        let err = parse_squeue("3 COMPLETED 0\n", &[JobId(3)], "squeue -h").unwrap_err();
        assert!(
            err.to_string().contains("expected 4 '|'-separated fields"),
            "{err}"
        );
        let err = parse_squeue("3|COMPLETED|zero|None|\n", &[JobId(3)], "squeue").unwrap_err();
        assert!(
            err.to_string().contains("exit_code is not a number"),
            "{err}"
        );
        // Array tasks are not ours and are skipped.
        let st = parse_squeue("12_3|RUNNING|0|None|\n", &[JobId(12)], "squeue").unwrap();
        assert_eq!(
            st[0].state,
            JobState::Failed {
                reason: FailReason::Vanished,
                exit: None
            }
        );
    }
}
