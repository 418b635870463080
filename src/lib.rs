//! `repro`: the engine that runs the cached DAG of stages declared in `pipeline.yaml`; the
//! `repro` binary is its command line ([`cli`]).
//!
//! Data flows one way: [`spec`] (the raw file, strict) -> [`pipeline`] (validated,
//! matrix-expanded DAG) -> [`plan`] (pure: Fresh / Restore / Run / Pending per member,
//! from [`fingerprint`] keys, the [`store`] and the [`lock`]) -> [`scheduler`] (runs
//! members through an [`executor`], commits them to the store, writes the lock);
//! [`plan::why`] says what changed for a member that is not fresh.
//! [`project`] finds the project and gives the planner its view of the disk (through the
//! [`stat_cache`], so files are judged by content without rehashing unchanged ones),
//! [`project_lock`] keeps one run per project and records the process groups its stages
//! run in, which [`process_groups`] ends when a killed run left them, [`progress`] draws, [`cli`] parses the
//! command line, [`error`] maps outcomes to exit codes, [`bench`] measures overheads.
//! [`code_files`] digests the project files a stage's params name as its code (a
//! `command` stage's `deps`) for its key; [`programs`] finds the programs they name to
//! run. [`strays`] finds the files no run wrote where the cache keeps outputs (a run's
//! `out/`, the publish directories); [`output`] writes what a command prints without
//! panicking on a full disk.
//! [`executor`] runs stages: as local child processes or as Slurm batch jobs (through the
//! [`slurm_client`] crate, which talks to Slurm and knows nothing of the engine, and through a
//! stage launcher when one is given), with the executor choice and resources of
//! [`run_config`] (the file's resources converted to the client's there).
//! [`check`] compares this project's runs with a reference lock (pure: one verdict per
//! member, and the cells of published tables that moved), for `repro check`.

pub mod bench;
pub mod check;
pub mod cli;
pub mod code_files;
pub mod error;
pub mod executor;
pub mod fingerprint;
pub mod lock;
pub mod output;
pub mod pipeline;
pub mod plan;
pub mod process_groups;
pub mod programs;
pub mod progress;
pub mod project;
pub mod project_lock;
pub mod run_config;
pub mod scheduler;
pub mod spec;
pub mod stat_cache;
pub mod store;
pub mod strays;
