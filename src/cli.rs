//! The command line: `repro run | status | why | dag | verify | check | gc` (and the hidden
//! `exec-stage` and `bench`).
//!
//! Exit codes: 0 success (for `status`: everything fresh), 1 a stage failed / `status`
//! found work / `verify` found a mismatch / `check` found a member whose bytes differ from
//! the reference's / the project is busy / the output could not be written (a full disk:
//! one line on stderr, never a panic; `run` finishes first), 2 a bad pipeline file or
//! command line (a stage launcher that does not exist, a `check` reference that cannot be
//! read), 130 interrupted.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::check::reference::Reference;
use crate::check::{self as checking, Here, NotComparable, TableChange, Verdict};
use crate::error::EngineError;
use crate::executor::slurm::cancel_leftover_jobs;
use crate::executor::{exec_stage, Executor, Launcher, LocalExecutor, SlurmExecutor};
use crate::lock::LockFile;
use crate::pipeline::{profiles_with_stage, Pipeline, DEFAULT_PROFILE};
use crate::plan::why::WhyReason;
use crate::plan::{self, Decision};
use crate::progress::{Reporter, Verbosity};
use crate::project::{FsWorld, Project};
use crate::project_lock::ProjectLock;
use crate::run_config::ExecutorKind;
use crate::scheduler::{self, RunOptions};
use crate::store::hash_file;
use crate::strays;

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

/// What `repro run` is asked: the targets, the profile, and how to run them.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Stage names (all their members) or member names, e.g. `train[flip,0.5,seed=1]`.
    pub targets: Vec<String>,
    #[command(flatten)]
    pub profile: ProfileArg,
    /// Stages run at once. Default: the number of cores (local), 64 (slurm).
    #[arg(short, long)]
    pub jobs: Option<usize>,
    /// Where stages run: `local` (child processes) or `slurm` (one batch job per stage on
    /// the cluster of SLURM_CONF; the project must be on a shared filesystem). Default:
    /// `executor:` of the profile or of pipeline.yaml, else local.
    #[arg(long, value_name = "local|slurm")]
    pub executor: Option<ExecutorKind>,
    /// Rerun the targets (all members without targets) even when fresh.
    #[arg(short, long)]
    pub force: bool,
    /// Show what would run, run nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// After a failure, keep running everything that does not depend on it.
    #[arg(short, long)]
    pub keep_going: bool,
    /// Start every stage process as `CMD ARGS <repro> exec-stage <job>`: an emulator
    /// (`qemu-x86_64 -cpu Nehalem`), `nice -n 19`, `taskset -c 0-3`, a container. Split on
    /// whitespace, no shell (quote the whole string). Default: $REPRO_LAUNCHER;
    /// `--launcher ""` for none. Not part of any fingerprint.
    #[arg(long, value_name = "CMD ARGS")]
    pub launcher: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run what is stale (all members, or the targets and their upstream).
    Run(RunArgs),
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
    /// With -v, also each member's params as merged from every layer (defaults, profile,
    /// stage, matrix values, `when` entries) and its seed: what the kind is given.
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
    /// Did this run reproduce the reference's bit for bit? Compares each member's fingerprint
    /// and output digest with a reference lock and prints the table cells that moved. Exit 1
    /// when a member with the reference's fingerprint has other output bytes; members not run
    /// here, or whose key changed, are listed, not failures.
    Check {
        #[command(flatten)]
        profile: ProfileArg,
        /// The reference: a lock file (when a file exists at that path), else a git revision
        /// whose pipeline.lock is read. Default: HEAD.
        #[arg(long, value_name = "FILE|REV")]
        against: Option<String>,
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

/// `println!` for what a command prints: a line stdout cannot take (a full disk) ends the
/// command with an error ([`crate::output`]), not a panic.
macro_rules! outln {
    ($($arg:tt)*) => {
        crate::output::write(format_args!("{}\n", format_args!($($arg)*)))
            .context("writing the output")?
    };
}

/// `-j` of `--executor slurm` when not given.
const SLURM_DEFAULT_JOBS: usize = 64;

/// SIGINT and SIGTERM received by `repro run`: one stops the run, two kill its stages.
static INTERRUPTS: AtomicUsize = AtomicUsize::new(0);

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
        Command::Run(RunArgs { dry_run: false, .. }) | Command::ExecStage { .. }
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
    let result = dispatch(cli).and_then(|code| {
        crate::output::flush().context("writing the output")?;
        Ok(code)
    });
    match result {
        Ok(code) => code,
        Err(e) => match e.downcast_ref::<EngineError>() {
            Some(EngineError::StagesFailed(_)) | Some(EngineError::Interrupted { .. }) => {
                crate::output::error_line(format_args!("{e}"));
                e.downcast_ref::<EngineError>().unwrap().exit_code()
            }
            Some(ee) => {
                crate::output::error_line(format_args!("error: {e}"));
                ee.exit_code()
            }
            None => {
                crate::output::error_line(format_args!("error: {e:#}"));
                1
            }
        },
    }
}

/// Runs the command; returns the exit code for outcomes that are not errors.
fn dispatch(cli: Cli) -> Result<i32> {
    match &cli.command {
        Command::ExecStage { job } => Ok(exec_stage(job)),
        Command::Run(args) => run(&cli, args),
        Command::Status {
            targets,
            profile,
            json,
        } => {
            let project = cli.project()?;
            let p = load(&project, &profile.profile)?;
            check_targets(&project, &p, targets)?;
            let all_fresh = status(&project, &p, targets, *json, false, cli.verbosity())?;
            Ok(if all_fresh { 0 } else { 1 })
        }
        Command::Why { target, profile } => {
            let project = cli.project()?;
            let p = load(&project, &profile.profile)?;
            why(&project, &p, target, cli.verbosity())?;
            Ok(0)
        }
        Command::Dag {
            profile,
            dot,
            mermaid,
        } => {
            let project = cli.project()?;
            let p = load(&project, &profile.profile)?;
            crate::output::write(format_args!("{}", dag(&p, *dot, *mermaid)))
                .context("writing the output")?;
            Ok(0)
        }
        Command::Verify { profile } => verify(&cli.project()?, profile.as_deref(), cli.verbosity()),
        Command::Check { profile, against } => check(&cli, &profile.profile, against.as_deref()),
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

/// `repro run`: runs what is stale of the targets (all members without targets) under the
/// project lock, after ending what a killed earlier run left (its stages' process groups,
/// its Slurm jobs, its staging dirs); `--dry-run` shows the plan instead.
fn run(cli: &Cli, args: &RunArgs) -> Result<i32> {
    let project = cli.project()?;
    let p = load(&project, &args.profile.profile)?;
    check_targets(&project, &p, &args.targets)?;
    if args.dry_run {
        let v = cli.verbosity();
        return status(&project, &p, &args.targets, false, args.force, v).map(|_| 0);
    }
    let launcher = stage_launcher(args.launcher.as_deref())?;
    let mut guard = ProjectLock::acquire(project.store.root(), &project.dir)?;
    // Stages and jobs of a killed earlier run must stop before their staging dirs go.
    let orphans = guard.end_left_over();
    let leftover = cancel_leftover_jobs(project.store.root())?;
    let cleaned = project.store.clean_staging()?;
    ctrlc::set_handler(|| {
        INTERRUPTS.fetch_add(1, Ordering::SeqCst);
    })
    .context("installing the signal handler")?;
    let kind = args.executor.or(p.executor).unwrap_or_default();
    let jobs = args.jobs.unwrap_or_else(|| match kind {
        // The cluster queues what it cannot run yet; this only bounds the queue.
        ExecutorKind::Slurm => SLURM_DEFAULT_JOBS,
        ExecutorKind::Local => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
    });
    let executor: Box<dyn Executor> = match kind {
        ExecutorKind::Local => {
            Box::new(LocalExecutor::new(launcher.clone(), Some(guard.groups()))?)
        }
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
    report_left_over(&mut reporter, orphans, leftover, cleaned);
    let opts = RunOptions {
        targets: args.targets.clone(),
        jobs,
        force: args.force,
        keep_going: args.keep_going,
    };
    let summary = scheduler::run(&project, &p, &opts, &*executor, &mut reporter, &INTERRUPTS)?;
    if cli.verbosity() != Verbosity::Quiet {
        // Not outln!: the output failing must not hide how the run went.
        if let Err(e) = crate::output::write(format_args!("{}\n", summary.line())) {
            reporter.output_failed(e);
        }
    }
    if summary.interrupted {
        Err(EngineError::Interrupted {
            killed: summary.killed,
            failed: summary.failed,
        }
        .into())
    } else if summary.failed > 0 {
        Err(EngineError::StagesFailed(summary.failed).into())
    } else if let Some(e) = reporter.output_error() {
        Err(anyhow::anyhow!(
            "writing the output: {e} (the run itself finished: {})",
            summary.line()
        ))
    } else {
        Ok(0)
    }
}

/// Says what an earlier run that was killed left and this one ended: `orphans` process
/// groups of its stages, `leftover` Slurm jobs, `cleaned` staging dirs.
fn report_left_over(reporter: &mut Reporter, orphans: usize, leftover: usize, cleaned: usize) {
    if orphans > 0 {
        reporter.line(&format!(
            "ended {orphans} process group(s) of stages left running by an earlier run \
             that was killed"
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
            outln!(
                "{:<8} {}  ({})",
                e.decision.label(),
                m.name,
                e.decision.explain(p)
            );
        }
    }
    let strays = stray_files(project, p, &lock, &entries);
    if !json && v != Verbosity::Quiet {
        for (path, why) in &strays {
            outln!("stray    {path}  ({why})");
        }
    }
    let all_fresh = counts.keys().all(|k| *k == "fresh") && strays.is_empty();
    if json {
        let strays: Vec<_> = strays
            .iter()
            .map(|(path, why)| serde_json::json!({ "path": path, "reason": why }))
            .collect();
        let out = serde_json::json!({ "profile": p.profile, "all_fresh": all_fresh, "counts": counts, "members": rows, "stray": strays });
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else if v != Verbosity::Quiet {
        let total: usize = counts.values().sum();
        let parts: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
        let stray = match strays.len() {
            0 => String::new(),
            n => format!("; {n} stray file(s)"),
        };
        outln!(
            "profile {}: {total} members: {}{stray}",
            p.profile,
            parts.join(", ")
        );
    }
    Ok(all_fresh)
}

/// The stray files [`status`] lists, with why each is one ([`crate::strays`]): files in the
/// `out/` of the stored runs the plan finds damaged, and in the profile's publish
/// directories.
fn stray_files(
    project: &Project,
    p: &Pipeline,
    lock: &LockFile,
    entries: &[plan::Entry],
) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for (m, e) in p.members.iter().zip(entries) {
        let (Decision::Run(plan::RunReason::OutputDamaged), Some(fp)) =
            (&e.decision, &e.fingerprint)
        else {
            continue;
        };
        let Some(man) = project.store.manifest(fp) else {
            continue;
        };
        let out = project.store.out_dir(fp);
        for f in strays::in_run(&project.store, fp, &man) {
            found.push((
                project.rel(&out.join(f)).display().to_string(),
                format!("not in the manifest of the run of {}: it reruns", m.name),
            ));
        }
    }
    for f in strays::in_publish_dirs(project, p, lock) {
        found.push((
            f,
            format!(
                "published by no stage of profile `{}`: `repro run` removes it",
                p.profile
            ),
        ));
    }
    found
}

/// Refuses targets that profile `p` has neither as stages nor as members
/// ([`unknown_target`]).
fn check_targets(project: &Project, p: &Pipeline, targets: &[String]) -> Result<()> {
    match targets
        .iter()
        .find(|t| p.stage_index(t).is_none() && p.member_index(t).is_none())
    {
        Some(t) => Err(unknown_target(project, p, t).into()),
        None => Ok(()),
    }
}

/// The error for target `t`, which profile `p` has neither as a stage nor as a member. It
/// names the profiles that have a stage of that name (a stage left out of the default
/// profile is asked for without `-p`), else the stage's members when `p` has the stage,
/// else the stages `p` has.
fn unknown_target(project: &Project, p: &Pipeline, t: &str) -> EngineError {
    let stage = t.split('[').next().unwrap_or(t);
    let head = format!("no stage or member named `{t}` in profile `{}`", p.profile);
    if let Some(si) = p.stage_index(stage) {
        let members: Vec<&str> = p.stages[si]
            .members
            .iter()
            .map(|&m| p.members[m].name.as_str())
            .collect();
        let shown = members
            .iter()
            .take(5)
            .copied()
            .collect::<Vec<_>>()
            .join(", ");
        let more = if members.len() > 5 { ", ..." } else { "" };
        return EngineError::Usage(format!(
            "{head} (stage `{stage}` has {} member(s): {shown}{more})",
            members.len()
        ));
    }
    let others: Vec<String> = Pipeline::read(&project.file)
        .map(|(_, spec)| profiles_with_stage(&spec, stage))
        .unwrap_or_default();
    let hint = match others.as_slice() {
        [] => format!(
            " (stages: {})",
            p.stages
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        [one] => format!("; profile `{one}` has stage `{stage}`: add `-p {one}`"),
        many => format!(
            "; profiles {} have stage `{stage}`: add `-p` and one of them",
            many.iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    EngineError::Usage(format!("{head}{hint}"))
}

fn why(project: &Project, p: &Pipeline, target: &str, v: Verbosity) -> Result<()> {
    let members: Vec<usize> = if let Some(si) = p.stage_index(target) {
        p.stages[si].members.clone()
    } else if let Some(mi) = p.member_index(target) {
        vec![mi]
    } else {
        return Err(unknown_target(project, p, target).into());
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
        outln!(
            "{}: {}",
            p.members[mi].name,
            entries[mi].decision.explain(p)
        );
        if v == Verbosity::Verbose {
            let m = &p.members[mi];
            outln!("  params: {}", m.params);
            outln!("  seed: {}", m.seed);
        }
        let Some(reason) = plan::why::why(p, mi, &entries, &ids, &world) else {
            continue;
        };
        match reason {
            WhyReason::NoLockEntry => outln!(
                "  no run of this member is recorded in {}",
                project.rel(&project.lock_path()).display()
            ),
            WhyReason::OutputsGone { run } => outln!(
                "  the outputs of run {} are missing or damaged in the store",
                short(&run)
            ),
            WhyReason::RecordedKeyGone { run } => outln!(
                "  the key of the last recorded run ({}) is no longer in the store",
                short(&run)
            ),
            WhyReason::UpstreamNotRun { upstream } => outln!(
                "  its key depends on {}, which has not run yet",
                p.members[upstream].name
            ),
            WhyReason::UnchangedItself { upstream } => outln!(
                "  unchanged itself; fresh again if {} reproduces its recorded bytes",
                p.members[upstream].name
            ),
            WhyReason::Unchanged => {}
            WhyReason::KeyChanged(changes) => {
                for change in changes {
                    outln!("  {change}");
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
    // Stray files in the publish directories of the profiles checked that the file has.
    if let Ok((text, spec)) = Pipeline::read(&project.file) {
        for profile in lock.profiles.keys() {
            if only.is_some_and(|o| o != profile) {
                continue;
            }
            let Ok(p) = Pipeline::build(&spec, &text, &project.file, profile) else {
                continue;
            };
            for f in strays::in_publish_dirs(project, &p, &lock) {
                problems.push(format!(
                    "{f}: in a publish directory of profile `{profile}`, but published by no \
                     stage (`repro run -p {profile}` removes it)"
                ));
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
        crate::output::error_line(format_args!("MISMATCH {pb}"));
    }
    if v != Verbosity::Quiet {
        for (profile, names) in &not_here {
            outln!(
                "not built here: {} member(s) of profile `{profile}` (their runs are not in this store)",
                names.len()
            );
            if v == Verbosity::Verbose {
                for n in names {
                    outln!("  {n}");
                }
            }
        }
    }
    if problems.is_empty() {
        if v != Verbosity::Quiet {
            outln!("ok: {runs} runs and {published} published files verified");
        }
        Ok(0)
    } else {
        Err(EngineError::VerifyFailed(problems.len()).into())
    }
}

/// `repro check`: the runs of one profile against a reference lock ([`crate::check`]).
/// Prints the summary, the members that are not reproduced and why, and the cells of the
/// published tables that moved; a member that differs fails the command (exit 1).
fn check(cli: &Cli, profile: &str, against: Option<&str>) -> Result<i32> {
    let v = cli.verbosity();
    let project = cli.project()?;
    let p = load(&project, profile)?;
    // A file given to --against is found as --file is: from the -C directory.
    let base = std::env::current_dir()
        .context("reading the current directory")?
        .join(cli.project.as_deref().unwrap_or(std::path::Path::new("")));
    let lock_path = project.lock_path();
    let reference = Reference::load(&project.dir, project.rel(&lock_path), &base, against)
        .map_err(EngineError::from)?;
    let theirs = reference.profile(&p.profile).map_err(EngineError::from)?;

    let lock = LockFile::load(&lock_path)?;
    let world = FsWorld::new(&project, &lock, &p.profile);
    let ids = plan::identities();
    let n = p.members.len();
    let entries = plan::plan(&p, &vec![true; n], &vec![false; n], &ids, &world);
    world.save();
    let members: Vec<checking::Member> = p
        .members
        .iter()
        .zip(&entries)
        .map(|(m, e)| checking::Member {
            name: m.name.clone(),
            upstream: m.upstream(),
            here: held_here(&project, &p, m, e),
        })
        .collect();
    let report = checking::compare(&members, theirs);
    let counts = report.counts();

    let loud = v != Verbosity::Quiet;
    if loud {
        outln!("{}", counts.line());
        outln!("against {}, profile {}", reference.label, p.profile);
    }
    let short = |s: &str| s[..12.min(s.len())].to_string();
    let row = |label: &str, name: &str, why: &str| -> Result<()> {
        outln!("{label:<14}  {name}  ({why})");
        Ok(())
    };
    for (mi, verdict) in report.verdicts.iter().enumerate() {
        let name = &members[mi].name;
        match verdict {
            Verdict::Reproduced if v == Verbosity::Verbose => {
                outln!("{:<14}  {name}", "reproduced")
            }
            Verdict::Reproduced => {}
            Verdict::Differs {
                fingerprint,
                here,
                reference: digest,
            } => row(
                "DIFFERS",
                name,
                &format!(
                    "same fingerprint {}, output digest {} here, {} in the reference",
                    short(fingerprint),
                    short(here),
                    short(digest)
                ),
            )?,
            Verdict::NotComparable(why) if loud => {
                let why = match why {
                    NotComparable::NotInReference => "not in the reference".to_string(),
                    NotComparable::InputDiffers { upstream } => format!(
                        "its input {} differs from the reference's",
                        members[*upstream].name
                    ),
                    NotComparable::KeyChanged {
                        reference: fp,
                        same_bytes,
                    } => format!(
                        "{}; {}",
                        key_changes(&project, entries[mi].key.as_ref(), fp),
                        if *same_bytes {
                            "its outputs are the reference's bytes all the same"
                        } else {
                            "other output bytes than the reference's"
                        }
                    ),
                };
                row("not comparable", name, &why)?;
            }
            Verdict::NotRun { reason } if loud => row("not run", name, reason)?,
            Verdict::NotComparable(_) | Verdict::NotRun { .. } => {}
        }
    }
    if loud && counts.members > 0 && counts.reproduced + counts.differ + counts.not_comparable == 0
    {
        let flag = if p.profile == DEFAULT_PROFILE {
            String::new()
        } else {
            format!(" -p {}", p.profile)
        };
        outln!(
            "nothing to compare: no member of profile `{}` has its outputs here (`repro run{flag}` first)",
            p.profile
        );
    }
    if loud && !report.only_in_reference.is_empty() {
        outln!(
            "{} member(s) of the reference are not in this pipeline",
            report.only_in_reference.len()
        );
        if v == Verbosity::Verbose {
            for name in &report.only_in_reference {
                outln!("  {name}");
            }
        }
    }
    if loud {
        for t in checking::changed_tables(&members, theirs) {
            print_table_change(&project, &p, &members, &reference, &t)?;
        }
    }
    if counts.differ > 0 {
        Err(EngineError::CheckFailed(counts.differ).into())
    } else {
        Ok(0)
    }
}

/// What this project holds for member `m`, planned as `e`: its stored outputs when the store
/// has those of its current key.
fn held_here(
    project: &Project,
    p: &Pipeline,
    m: &crate::pipeline::Member,
    e: &plan::Entry,
) -> Here {
    use plan::RunReason;
    match (&e.decision, &e.fingerprint, &e.digest) {
        (Decision::Fresh | Decision::Restore(_), Some(fp), Some(digest)) => {
            let published = match (&m.publish, project.store.manifest(fp)) {
                (Some(rel), Some(man)) => man.published_under(rel),
                _ => Default::default(),
            };
            Here::Ran {
                fingerprint: fp.clone(),
                digest: digest.clone(),
                published,
            }
        }
        (decision, _, _) => Here::NotRun {
            reason: match decision {
                Decision::Run(RunReason::NeverRun) => "never run here".to_string(),
                // A clone carries the lock but not the store.
                Decision::Run(RunReason::Changed { .. } | RunReason::OutputMissing) => {
                    "no outputs for its current key in this store".to_string()
                }
                Decision::Run(RunReason::OutputDamaged) => {
                    "its outputs in the store are damaged".to_string()
                }
                Decision::Pending { upstream } => {
                    format!("waits for {}", p.members[*upstream].name)
                }
                other => other.explain(p),
            },
        },
    }
}

/// What changed in a member's key since the reference's run (fingerprint `theirs`): the
/// exact differences when that run is in this store, else the kinds of change it can be.
fn key_changes(project: &Project, now: Option<&crate::fingerprint::Key>, theirs: &str) -> String {
    let changes = match (now, project.store.key(theirs)) {
        (Some(now), Some(old)) => now.diff(&old),
        _ => Vec::new(),
    };
    if changes.is_empty() {
        "its own key changed: code, params, seed, kind version, dfdx or backend".to_string()
    } else {
        let list: Vec<String> = changes.iter().map(ToString::to_string).collect();
        format!("its own key changed: {}", list.join("; "))
    }
}

/// Prints how one published table differs from the reference's: the cells that moved, rows
/// and columns only one side has, or why it cannot be compared.
fn print_table_change(
    project: &Project,
    p: &Pipeline,
    members: &[checking::Member],
    reference: &Reference,
    t: &checking::ChangedTable,
) -> Result<()> {
    let owner = &members[t.member].name;
    let head = format!("table {} ({owner})", t.path);
    match t.change {
        TableChange::OnlyHere => {
            outln!("{head}: not in the reference");
            return Ok(());
        }
        TableChange::OnlyInReference => {
            outln!("{head}: only in the reference");
            return Ok(());
        }
        TableChange::Changed => {}
    }
    // This run's copy, from the store: the published one may be stale.
    let ours = match (&members[t.member].here, &p.members[t.member].publish) {
        (Here::Ran { fingerprint, .. }, Some(rel)) => {
            let inner = t.path.strip_prefix(&format!("{rel}/")).unwrap_or(&t.path);
            let path = project.store.out_dir(fingerprint).join(inner);
            std::fs::read(&path).map_err(|e| format!("{}: {e}", project.rel(&path).display()))
        }
        _ => Err("not published by this run".to_string()),
    };
    let (old, new) = match (reference.file(&t.path), ours) {
        (Ok(old), Ok(new)) => (old, new),
        (Err(why), _) => {
            outln!("{head}: differs; the reference's table is not available: {why}");
            return Ok(());
        }
        (_, Err(why)) => {
            outln!("{head}: differs; this run's table cannot be read: {why}");
            return Ok(());
        }
    };
    let d = checking::table::diff(
        &String::from_utf8_lossy(&old),
        &String::from_utf8_lossy(&new),
    );
    if d.comments_only() {
        outln!("{head}: only its comment lines differ");
        return Ok(());
    }
    outln!("{head}: {} cell(s) moved", d.cells.len());
    for c in &d.cells {
        outln!("  {c}");
    }
    for r in &d.rows_added {
        outln!("  {r}: not in the reference");
    }
    for r in &d.rows_removed {
        outln!("  {r}: only in the reference");
    }
    for c in &d.columns_added {
        outln!("  column `{c}`: not in the reference");
    }
    for c in &d.columns_removed {
        outln!("  column `{c}`: only in the reference");
    }
    Ok(())
}

fn gc(project: &Project, dry_run: bool) -> Result<i32> {
    let mut guard = ProjectLock::acquire(project.store.root(), &project.dir)?;
    if dry_run && guard.left_over() > 0 {
        outln!(
            "would end the process groups of stages left running by an earlier run ({} recorded)",
            guard.left_over()
        );
    }
    if !dry_run {
        let n = guard.end_left_over();
        if n > 0 {
            outln!("ended {n} process group(s) of stages left running by an earlier run");
        }
        let n = cancel_leftover_jobs(project.store.root())?;
        if n > 0 {
            outln!("cancelled {n} Slurm job(s) left running by an earlier run");
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
                outln!("would remove run {fp}");
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
        project.store.staging_count()
    } else {
        project.store.clean_staging()?
    };
    let verb = if dry_run { "would remove" } else { "removed" };
    outln!(
        "{verb} {removed} unreferenced run(s), {staged} staging dir(s), {ck} stale checkpoint(s)"
    );
    Ok(0)
}
