//! A Slurm client: submits batch jobs, follows their states and logs, and cancels them,
//! through Slurm's own commands (`sbatch`, `squeue`, `scancel`) and the jobs' log files.
//!
//! It is the part of `repro`'s Slurm executor that talks to Slurm, a crate of its own
//! because it knows nothing of the engine: no stage, fingerprint or pipeline file, only
//! jobs. The engine reads the resources a stage asks for from `pipeline.yaml` and hands
//! them over as [`SlurmResources`].
//!
//! The executor submits each ready stage as one batch job running `repro exec-stage <job.json>`
//! in the project directory (a shared filesystem), polls all of the run's jobs in one call,
//! cancels them all on Ctrl-C and shows a failed job's log. The engine keeps the DAG, the
//! fingerprints, the lock and the publication of outputs, exactly as with local processes.
//!
//! Use:
//! 1. `let slurm = SlurmClient::from_env(); slurm.check()?;`
//! 2. for each ready stage: `let id = slurm.submit(&JobSpec { .. })?;`
//! 3. loop: `for st in slurm.poll(&outstanding)? { .. }` then sleep
//!    [`PollInterval::next`]`(changed)`; a [`JobState`] that [`JobState::is_finished`] ends the
//!    stage: `Succeeded` -> publish its outputs, `Interrupted` -> checkpoint kept,
//!    `Failed`/`Cancelled` -> show the tail of its stderr file.
//!    While jobs run, [`LogFollower::read_lines`] on their stdout files gives progress lines.
//! 4. on Ctrl-C: `slurm.cancel(&every_id_submitted)`.
//!
//! Jobs need no accounting (slurmdbd): `squeue -t all` lists finished jobs for the cluster's
//! `MinJobAge` (300 s by default), far longer than one poll interval.

mod commands;
mod error;
mod job;
mod log;
mod poll;
mod resources;
mod state;

pub use commands::{SlurmClient, SlurmCommands};
pub use error::SlurmError;
pub use job::{JobId, JobSpec};
pub use log::LogFollower;
pub use poll::PollInterval;
pub use resources::SlurmResources;
pub use state::{parse_squeue, FailReason, JobExit, JobState, JobStatus, SQUEUE_FORMAT};
