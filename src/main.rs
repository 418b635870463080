//! `repro`: runs the cached DAG of stages declared in `pipeline.yaml`.
//!
//! Data flows one way: [`spec`] (the raw file, strict) -> [`pipeline`] (validated,
//! matrix-expanded DAG) -> [`plan`] (pure: Fresh / Restore / Run / Pending per member,
//! from [`fingerprint`] keys, the [`store`] and the [`lock`]) -> [`scheduler`] (runs
//! members through an [`executor`], commits them to the store, writes the lock).
//! [`project`] finds the project and gives the planner its view of the disk (through the
//! [`stat_cache`], so files are judged by content without rehashing unchanged ones),
//! [`project_lock`] keeps one run per project, [`progress`] draws, [`cli`] parses the
//! command line, [`error`] maps outcomes to exit codes, [`bench`] measures overheads.
//! [`slurm_executor`] runs stages as Slurm batch jobs through the [`slurm`] client, with
//! the executor choice and resources of [`run_config`].

mod bench;
mod cli;
mod code_files;
mod error;
mod executor;
mod fingerprint;
mod lock;
mod pipeline;
mod plan;
mod progress;
mod project;
mod project_lock;
mod run_config;
mod scheduler;
// A client library: the executor uses most of it, its tests the rest.
#[allow(dead_code, unused_imports)]
mod slurm;
mod slurm_executor;
mod spec;
mod stat_cache;
mod store;

use clap::Parser;

use crate::error::EngineError;

/// `repro status --json | head`, `repro dag | head`: a reader that goes away ends the
/// command quietly, as it ends `cat` or `git log` (Rust ignores SIGPIPE, so the next
/// `println!` would panic instead). The default action is restored for every command but
/// a real `run` and `exec-stage`: a run goes on when its viewer leaves (its reporter drops lines
/// it cannot write), so hours of training are not lost to a closed pager, and a stage
/// reports write errors on its progress pipe like any other.
fn quiet_on_closed_pipe(command: &cli::Command) {
    if !matches!(
        command,
        cli::Command::Run { dry_run: false, .. } | cli::Command::ExecStage { .. }
    ) {
        // SAFETY: sets a signal disposition before any thread is started.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
}

fn main() {
    let cli = cli::Cli::parse();
    quiet_on_closed_pipe(&cli.command);
    let code = match cli::main(cli) {
        Ok(code) => code,
        Err(e) => match e.downcast_ref::<EngineError>() {
            Some(EngineError::StagesFailed(_)) | Some(EngineError::Interrupted) => {
                eprintln!("{e}");
                e.downcast_ref::<EngineError>().unwrap().exit_code()
            }
            Some(ee) => {
                eprintln!("error: {e}");
                ee.exit_code()
            }
            None => {
                eprintln!("error: {e:#}");
                1
            }
        },
    };
    std::process::exit(code);
}
