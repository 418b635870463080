//! The command line: `repro run | status | why | dag | verify | gc` (and the hidden
//! `exec-stage` and `bench`).
//!
//! Exit codes: 0 success (for `status`: everything fresh), 1 a stage failed / `status`
//! found work / `verify` found a mismatch / the project is busy, 2 a bad pipeline file or
//! command line (a stage launcher that does not exist), 130 interrupted.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::error::EngineError;
use crate::executor::slurm::cancel_leftover_jobs;
use crate::executor::{exec_stage, Executor, Launcher, LocalExecutor, SlurmExecutor};
use crate::lock::LockFile;
use crate::pipeline::{Pipeline, DEFAULT_PROFILE};
use crate::plan::why::WhyReason;
use crate::plan::{self, Decision};
use crate::progress::{Reporter, Verbosity};
use crate::project::{FsWorld, Project};
use crate::project_lock::ProjectLock;
use crate::run_config::ExecutorKind;
use crate::scheduler::{self, RunOptions};
use crate::store::hash_file;

#[derive(Debug, Parser)]
#[command(
    name = "repro",
    version,
    about = "Reproduces the tables of two label-noise papers with a cached DAG of stages"
)]
pub struct Cli {
    /// Project directory (the one holding pipeline.yaml, or below it). Default: the current one.
    #[arg(short = 'C', long = "project", global = true, value_name = "DIR")]
    pub project: Option<PathBuf>,
    /// The pipeline file (its directory is the project).
    #[arg(long, global = true, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// More detail: fresh members, stage phases, pids.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct ProfileArg {
    /// The profile (see `profiles:` in pipeline.yaml).
    #[arg(short, long, default_value = DEFAULT_PROFILE)]
    pub profile: String,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run what is stale (all members, or the targets and their upstream).
    Run {
        /// Stage names (all their members) or member names, e.g. `train[flip,0.5,seed=1]`.
        targets: Vec<String>,
        #[command(flatten)]
        profile: ProfileArg,
        /// Stages run at once. Default: the number of cores (local), 64 (slurm).
        #[arg(short, long)]
        jobs: Option<usize>,
        /// Where stages run: `local` (child processes) or `slurm` (one batch job per stage on
        /// the cluster of SLURM_CONF; the project must be on a shared filesystem). Default:
        /// `executor:` of the profile or of pipeline.yaml, else local.
        #[arg(long, value_name = "local|slurm")]
        executor: Option<ExecutorKind>,
        /// Rerun the targets (all members without targets) even when fresh.
        #[arg(short, long)]
        force: bool,
        /// Show what would run, run nothing.
        #[arg(short = 'n', long)]
        dry_run: bool,
        /// After a failure, keep running everything that does not depend on it.
        #[arg(short, long)]
        keep_going: bool,
        /// Start every stage process as `CMD ARGS <repro> exec-stage <job>`: an emulator
        /// (`qemu-x86_64 -cpu Nehalem`), `nice -n 19`, `taskset -c 0-3`, a container. Split on
        /// whitespace, no shell (quote the whole string). Default: $REPRO_LAUNCHER;
        /// `--launcher ""` for none. Not part of any fingerprint.
        #[arg(long, value_name = "CMD ARGS")]
        launcher: Option<String>,
    },
    /// What would run. Exit 0 when everything is fresh, 1 otherwise.
    Status {
        targets: Vec<String>,
        #[command(flatten)]
        profile: ProfileArg,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Why a stage (or member) would run: its key compared with the last recorded run.
    Why {
        target: String,
        #[command(flatten)]
        profile: ProfileArg,
    },
    /// Print the stage graph.
    Dag {
        #[command(flatten)]
        profile: ProfileArg,
        /// Graphviz.
        #[arg(long, conflicts_with = "mermaid")]
        dot: bool,
        /// Mermaid.
        #[arg(long)]
        mermaid: bool,
    },
    /// Rehash the runs in the store and the published files the lock lists. Exit 1 on a
    /// mismatch (each is named); members whose runs were never built here are listed, not
    /// counted as mismatches.
    Verify {
        /// Check only this profile's lock entries, their runs and published files.
        /// Default: every profile of the lock, and every run in the store.
        #[arg(short, long)]
        profile: Option<String>,
    },
    /// Remove runs no profile of the lock refers to, and leftovers of killed runs.
    Gc {
        /// Only show what would be removed.
        #[arg(short = 'n', long)]
        dry_run: bool,
    },
    /// Run one stage job (used by the executor).
    #[command(hide = true)]
    ExecStage { job: PathBuf },
    /// Measure the engine's overheads.
    #[command(hide = true)]
    Bench {
        /// Members of the generated no-op pipeline.
        #[arg(long, default_value_t = 662)]
        noop_members: usize,
        /// Members of the generated planning pipeline.
        #[arg(long, default_value_t = 10_000)]
        plan_members: usize,
        /// MB hashed for the throughput figure.
        #[arg(long, default_value_t = 512)]
        hash_mb: usize,
        #[arg(long, default_value_t = 5)]
        rounds: usize,
    },
}

/// `-j` of `--executor slurm` when not given.
const SLURM_DEFAULT_JOBS: usize = 64;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

impl Cli {
    fn verbosity(&self) -> Verbosity {
        if self.quiet {
            Verbosity::Quiet
        } else if self.verbose {
            Verbosity::Verbose
        } else {
            Verbosity::Normal
        }
    }

    fn project(&self) -> Result<Project> {
        Project::find(self.project.as_deref(), self.file.as_deref())
    }
}

fn load(project: &Project, profile: &str) -> Result<Pipeline> {
    Ok(Pipeline::load(&project.file, profile).map_err(EngineError::Spec)?)
}

/// `repro status --json | head`, `repro dag | head`: a reader that goes away ends the
/// command quietly, as it ends `cat` or `git log` (Rust ignores SIGPIPE, so the next
/// `println!` would panic instead). The default action is restored for every command but
/// a real `run` and `exec-stage`: a run goes on when its viewer leaves (its reporter drops lines
/// it cannot write), so hours of training are not lost to a closed pager, and a stage
/// reports write errors on its progress pipe like any other.
fn quiet_on_closed_pipe(command: &Command) {
    if !matches!(
        command,
        Command::Run { dry_run: false, .. } | Command::ExecStage { .. }
    ) {
        // SAFETY: sets a signal disposition before any thread is started.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
}

/// Runs the command line: prints what went wrong, returns the exit code.
pub fn main(cli: Cli) -> i32 {
    quiet_on_closed_pipe(&cli.command);
    match dispatch(cli) {
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
    }
}

/// Runs the command; returns the exit code for outcomes that are not errors.
fn dispatch(cli: Cli) -> Result<i32> {
    match &cli.command {
        Command::ExecStage { job } => Ok(exec_stage(job)),
        Command::Run {
            targets,
            profile,
            jobs,
            force,
            dry_run,
            keep_going,
            executor,
            launcher,
        } => {
            let project = cli.project()?;
            let p = load(&project, &profile.profile)?;
            if *dry_run {
                return status(&project, &p, targets, false, *force, cli.verbosity()).map(|_| 0);
            }
            let launcher = stage_launcher(launcher.as_deref())?;
            let _guard = ProjectLock::acquire(project.store.root(), &project.dir)?;
            // Jobs of a killed earlier run must stop before their staging dirs go.
            let leftover = cancel_leftover_jobs(project.store.root())?;
            let cleaned = project.store.clean_staging()?;
            ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst))
                .context("installing the signal handler")?;
            let kind = executor.or(p.executor).unwrap_or_default();
            let jobs = jobs.unwrap_or_else(|| match kind {
                // The cluster queues what it cannot run yet; this only bounds the queue.
                ExecutorKind::Slurm => SLURM_DEFAULT_JOBS,
                ExecutorKind::Local => std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1),
            });
            let executor: Box<dyn Executor> = match kind {
                ExecutorKind::Local => Box::new(LocalExecutor::new(launcher.clone())?),
                ExecutorKind::Slurm => Box::new(SlurmExecutor::new(
                    &project.dir,
                    project.store.root(),
                    p.resources.clone(),
                    launcher.clone(),
                )?),
            };
            let mut reporter = Reporter::new(cli.verbosity());
            if let Some(l) = &launcher {
                reporter.line(&format!(
                    "stages start through `{}` (from {})",
                    l.argv.join(" "),
                    l.origin
                ));
            }
            if leftover > 0 {
                reporter.line(&format!(
                    "cancelled {leftover} Slurm job(s) left running by an earlier run"
                ));
            }
            if cleaned > 0 {
                reporter.detail(&format!(
                    "removed {cleaned} staging dir(s) left by an earlier run"
                ));
            }
            let opts = RunOptions {
                targets: targets.clone(),
                jobs,
                force: *force,
                keep_going: *keep_going,
            };
            let summary =
                scheduler::run(&project, &p, &opts, &*executor, &mut reporter, &INTERRUPTED)?;
            if cli.verbosity() != Verbosity::Quiet {
                // Not println!: a closed stdout must not turn a finished run into a panic.
                let _ = writeln!(std::io::stdout(), "{}", summary.line());
            }
            if summary.interrupted {
                Err(EngineError::Interrupted.into())
            } else if summary.failed > 0 {
                Err(EngineError::StagesFailed(summary.failed).into())
            } else {
                Ok(0)
            }
        }
        Command::Status {
            targets,
            profile,
            json,
        } => {
            let project = cli.project()?;
            let p = load(&project, &profile.profile)?;
            let all_fresh = status(&project, &p, targets, *json, false, cli.verbosity())?;
            Ok(if all_fresh { 0 } else { 1 })
        }
        Command::Why { target, profile } => {
            let project = cli.project()?;
            let p = load(&project, &profile.profile)?;
            why(&project, &p, target)?;
            Ok(0)
        }
        Command::Dag {
            profile,
            dot,
            mermaid,
        } => {
            let project = cli.project()?;
            let p = load(&project, &profile.profile)?;
            print!("{}", dag(&p, *dot, *mermaid));
            Ok(0)
        }
        Command::Verify { profile } => verify(&cli.project()?, profile.as_deref(), cli.verbosity()),
        Command::Gc { dry_run } => gc(&cli.project()?, *dry_run),
        Command::Bench {
            noop_members,
            plan_members,
            hash_mb,
            rounds,
        } => {
            crate::bench::run(*noop_members, *plan_members, *hash_mb, *rounds)?;
            Ok(0)
        }
    }
}

/// The stage launcher of `repro run` (`--launcher`, else `REPRO_LAUNCHER`), checked to exist
/// before anything runs.
fn stage_launcher(flag: Option<&str>) -> Result<Option<Launcher>> {
    let usage = |e: crate::executor::launcher::LauncherError| EngineError::Usage(e.to_string());
    let Some(l) = Launcher::from_flag_or_env(flag).map_err(usage)? else {
        return Ok(None);
    };
    let cwd = std::env::current_dir().context("reading the current directory")?;
    let path = std::env::var_os("PATH");
    Ok(Some(l.resolve(&cwd, path.as_deref()).map_err(usage)?))
}

/// Prints the plan; returns whether every selected member is fresh.
fn status(
    project: &Project,
    p: &Pipeline,
    targets: &[String],
    json: bool,
    force: bool,
    v: Verbosity,
) -> Result<bool> {
    let lock = LockFile::load(&project.lock_path())?;
    let world = FsWorld::new(project, &lock, &p.profile);
    let (sel, direct) = p.select(targets).map_err(EngineError::Usage)?;
    let forced: Vec<bool> = direct.iter().map(|d| *d && force).collect();
    let ids = plan::identities();
    let entries = plan::plan(p, &sel, &forced, &ids, &world);
    world.save();
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    let mut rows = Vec::new();
    for (m, e) in p.members.iter().zip(&entries) {
        if e.decision == Decision::NotSelected {
            continue;
        }
        *counts.entry(e.decision.label()).or_default() += 1;
        if json {
            rows.push(serde_json::json!({
                "member": m.name,
                "stage": p.stages[m.stage].name,
                "decision": e.decision.label(),
                "reason": e.decision.explain(p),
                "fingerprint": e.fingerprint,
            }));
        } else if (e.decision != Decision::Fresh || v == Verbosity::Verbose)
            && v != Verbosity::Quiet
        {
            println!(
                "{:<8} {}  ({})",
                e.decision.label(),
                m.name,
                e.decision.explain(p)
            );
        }
    }
    let all_fresh = counts.keys().all(|k| *k == "fresh");
    if json {
        let out = serde_json::json!({ "profile": p.profile, "all_fresh": all_fresh, "counts": counts, "members": rows });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else if v != Verbosity::Quiet {
        let total: usize = counts.values().sum();
        let parts: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
        println!(
            "profile {}: {total} members: {}",
            p.profile,
            parts.join(", ")
        );
    }
    Ok(all_fresh)
}

fn why(project: &Project, p: &Pipeline, target: &str) -> Result<()> {
    let members: Vec<usize> = if let Some(si) = p.stage_index(target) {
        p.stages[si].members.clone()
    } else if let Some(mi) = p.member_index(target) {
        vec![mi]
    } else {
        return Err(EngineError::Usage(format!(
            "no stage or member named `{target}` in profile `{}`",
            p.profile
        ))
        .into());
    };
    let lock = LockFile::load(&project.lock_path())?;
    let world = FsWorld::new(project, &lock, &p.profile);
    let ids = plan::identities();
    let all = vec![true; p.members.len()];
    let no = vec![false; p.members.len()];
    let entries = plan::plan(p, &all, &no, &ids, &world);
    world.save();
    let short = |fp: &str| fp[..12.min(fp.len())].to_string();
    for mi in members {
        println!(
            "{}: {}",
            p.members[mi].name,
            entries[mi].decision.explain(p)
        );
        let Some(reason) = plan::why::why(p, mi, &entries, &ids, &world) else {
            continue;
        };
        match reason {
            WhyReason::NoLockEntry => println!(
                "  no run of this member is recorded in {}",
                project.rel(&project.lock_path()).display()
            ),
            WhyReason::OutputsGone { run } => println!(
                "  the outputs of run {} are missing or damaged in the store",
                short(&run)
            ),
            WhyReason::RecordedKeyGone { run } => println!(
                "  the key of the last recorded run ({}) is no longer in the store",
                short(&run)
            ),
            WhyReason::UpstreamNotRun { upstream } => println!(
                "  its key depends on {}, which has not run yet",
                p.members[upstream].name
            ),
            WhyReason::UnchangedItself { upstream } => println!(
                "  unchanged itself; fresh again if {} reproduces its recorded bytes",
                p.members[upstream].name
            ),
            WhyReason::Unchanged => {}
            WhyReason::KeyChanged(changes) => {
                for change in changes {
                    println!("  {change}");
                }
            }
        }
    }
    Ok(())
}

fn dag(p: &Pipeline, dot: bool, mermaid: bool) -> String {
    let mut s = String::new();
    let label = |si: usize| {
        let st = &p.stages[si];
        let n = st.members.len();
        if n > 1 {
            format!("{} ({}, {n} members)", st.name, st.kind.name())
        } else {
            format!("{} ({})", st.name, st.kind.name())
        }
    };
    if dot || mermaid {
        // Graphviz when both are asked for.
        let (head, foot) = if dot {
            (
                "digraph pipeline {\n  rankdir=LR;\n  node [shape=box];\n",
                "}\n",
            )
        } else {
            ("graph LR\n", "")
        };
        s.push_str(head);
        for (si, st) in p.stages.iter().enumerate() {
            let (name, label) = (&st.name, label(si));
            s.push_str(&if dot {
                format!("  \"{name}\" [label=\"{label}\"];\n")
            } else {
                format!("  {name}[\"{label}\"]\n")
            });
        }
        for st in &p.stages {
            for &u in &st.upstream {
                let (up, down) = (&p.stages[u].name, &st.name);
                s.push_str(&if dot {
                    format!("  \"{up}\" -> \"{down}\";\n")
                } else {
                    format!("  {up} --> {down}\n")
                });
            }
        }
        s.push_str(foot);
    } else {
        for (si, st) in p.stages.iter().enumerate() {
            let ups: Vec<&str> = st
                .upstream
                .iter()
                .map(|&u| p.stages[u].name.as_str())
                .collect();
            s.push_str(&label(si));
            if !ups.is_empty() {
                s.push_str(&format!("  <- {}", ups.join(", ")));
            }
            if let Some(dir) = &st.publish {
                s.push_str(&format!("  => {dir}"));
            }
            s.push('\n');
        }
    }
    s
}

/// `repro verify`: rehashes what the lock vouches for and what the store holds.
///
/// A mismatch is a run whose files differ from its manifest, a lock digest that differs
/// from its run's manifest, or a published file that differs from (or lacks) the hash the
/// lock records. A lock entry whose run is not in this store is no mismatch: a clone
/// carries the lock of every profile but only the runs made here (e.g. the `cpu`
/// entries on a machine that ran `default`); those are counted per profile as "not built
/// here" (listed with `-v`) and their published copies are still checked.
fn verify(project: &Project, only: Option<&str>, v: Verbosity) -> Result<i32> {
    let lock = LockFile::load(&project.lock_path())?;
    if let Some(name) = only {
        if !lock.profiles.contains_key(name) {
            let known: Vec<&str> = lock.profiles.keys().map(|k| k.as_str()).collect();
            return Err(EngineError::Usage(format!(
                "profile `{name}` has no entries in {} (profiles there: {})",
                project.rel(&project.lock_path()).display(),
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ))
            .into());
        }
    }
    let mut problems = Vec::new();
    // Without -p, every run in the store (a restore may read any of them).
    let mut fps: BTreeSet<String> = if only.is_none() {
        project.store.runs().into_iter().collect()
    } else {
        BTreeSet::new()
    };
    let mut published = 0usize;
    let mut not_here: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for (profile, members) in &lock.profiles {
        if only.is_some_and(|o| o != profile) {
            continue;
        }
        for (name, e) in members {
            match project.store.manifest(&e.fingerprint) {
                Some(m) => {
                    if m.digest != e.digest {
                        problems.push(format!(
                            "{profile}/{name}: the lock's output digest differs from run {}'s manifest",
                            e.fingerprint
                        ));
                    }
                    fps.insert(e.fingerprint.clone());
                }
                // A run dir without a readable manifest: reported by the rehash below.
                None if project.store.run_dir(&e.fingerprint).exists() => {
                    fps.insert(e.fingerprint.clone());
                }
                None => not_here.entry(profile).or_default().push(name),
            }
            for (rel, sha) in &e.published {
                published += 1;
                match hash_file(&project.dir.join(rel)) {
                    Ok((_, h)) if &h == sha => {}
                    Ok(_) => problems.push(format!(
                        "{rel}: published copy differs from the lock's hash ({profile}/{name})"
                    )),
                    Err(err) => problems.push(format!("{rel}: {err} ({profile}/{name})")),
                }
            }
        }
    }
    let mut runs = 0usize;
    for fp in &fps {
        if project.store.run_dir(fp).exists() {
            runs += 1;
            problems.extend(project.store.verify(fp));
        }
    }
    for pb in &problems {
        eprintln!("MISMATCH {pb}");
    }
    if v != Verbosity::Quiet {
        for (profile, names) in &not_here {
            println!(
                "not built here: {} member(s) of profile `{profile}` (their runs are not in this store)",
                names.len()
            );
            if v == Verbosity::Verbose {
                for n in names {
                    println!("  {n}");
                }
            }
        }
    }
    if problems.is_empty() {
        if v != Verbosity::Quiet {
            println!("ok: {runs} runs and {published} published files verified");
        }
        Ok(0)
    } else {
        Err(EngineError::VerifyFailed(problems.len()).into())
    }
}

fn gc(project: &Project, dry_run: bool) -> Result<i32> {
    let _guard = ProjectLock::acquire(project.store.root(), &project.dir)?;
    if !dry_run {
        let n = cancel_leftover_jobs(project.store.root())?;
        if n > 0 {
            println!("cancelled {n} Slurm job(s) left running by an earlier run");
        }
    }
    let lock = LockFile::load(&project.lock_path())?;
    let keep: BTreeSet<&str> = lock
        .profiles
        .values()
        .flat_map(|m| m.values().map(|e| e.fingerprint.as_str()))
        .collect();
    let mut removed = 0;
    let mut cache = crate::stat_cache::StatCache::load(&project.dir, project.store.root());
    for fp in project.store.runs() {
        if !keep.contains(fp.as_str()) {
            removed += 1;
            if dry_run {
                println!("would remove run {fp}");
            } else {
                project.store.remove_run(&fp)?;
                let dir = project.store.run_dir(&fp);
                cache.forget_under(&format!("{}/", project.rel(&dir).to_string_lossy()));
            }
        }
    }
    cache.save();
    // Checkpoints of runs that completed (normally already removed) are leftovers.
    let mut ck = 0;
    if let Ok(rd) = std::fs::read_dir(project.store.root().join("checkpoints")) {
        for e in rd.flatten() {
            let fp = e.file_name().to_string_lossy().into_owned();
            if project.store.manifest(&fp).is_some() {
                ck += 1;
                if !dry_run {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }
    let staged = if dry_run {
        0
    } else {
        project.store.clean_staging()?
    };
    println!(
        "removed {removed} unreferenced run(s), {staged} staging dir(s), {ck} stale checkpoint(s)"
    );
    Ok(0)
}
