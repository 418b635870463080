//! `repro`: runs the cached DAG of stages declared in `pipeline.yaml`.
//!
//! Data flows one way: [`spec`] (the raw file, strict) -> [`pipeline`] (validated,
//! matrix-expanded DAG) -> [`plan`] (pure: Fresh / Restore / Run / Pending per member,
//! from [`fingerprint`] keys, the [`store`] and the [`lock`]) -> [`scheduler`] (runs
//! members through an [`executor`], commits them to the store, writes the lock).
//! [`project`] finds the project and gives the planner its view of the disk,
//! [`project_lock`] keeps one run per project, [`progress`] draws, [`cli`] parses the
//! command line, [`error`] maps outcomes to exit codes, [`bench`] measures overheads.
//! [`slurm_executor`] runs stages as Slurm batch jobs through the [`slurm`] client, with
//! the executor choice and resources of [`run_config`].

mod bench;
mod cli;
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
mod store;

use clap::Parser;

use crate::error::EngineError;

fn main() {
    let cli = cli::Cli::parse();
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
