//! `command`: a program of the user's, in any language, run as a stage, so a method of
//! one's own sits in the same DAG, cache and tables as the built-in ones.
//!
//! The program is started from `run` (an argv list, no shell) in the project root, with
//! stdin closed and this environment:
//!
//! | variable | value |
//! |---|---|
//! | `REPRO_OUT` | the staging folder it writes its outputs into; only what is there is published |
//! | `REPRO_PARAMS` | a JSON file: `args`, `seed`, `coords` (the matrix coordinates), `profile`, `method` (null without one), `member`, `inputs` (name -> folders) |
//! | `REPRO_INPUT_<NAME>` | each input's folder, `NAME` upper-cased (other characters than letters and digits become `_`); a group input's folders joined by `:` |
//! | `REPRO_CHECKPOINT` | a folder kept across interruptions of the same fingerprint, removed on success |
//! | `REPRO_SEED` | the seed |
//! | `REPRO_THREADS` | the cores it may use; also given as each variable of [`THREAD_VARS`] the environment does not set already |
//! | `TMPDIR`, `TMP`, `TEMP` | a private temporary folder, removed when the program ends ([`PrivateTmp`]) |
//!
//! Its stdout and stderr go to `log/output.txt` in its outputs (the first and last
//! [`capture::KEEP`] bytes, with a line saying how much was left out between them), its
//! wall time to `log/timings.json` (`log/` is published but left out of the output digest).
//! A non-zero exit, a signal or a program that cannot be started fails the stage with the
//! exit status and the last [`TAIL_LINES`] lines of the log; nothing is published.
//!
//! **What it must leave.** An exit status of 0 is not enough: the outputs are checked
//! before the stage succeeds, and a stage that breaks a rule fails at once, naming the file
//! and the field, with nothing published (a result that would only fail in a table stage
//! later is never cached):
//!
//! - with a `method`, a `metrics.json` that matches `docs/metrics.schema.json`
//!   ([`crate::metrics_schema`]) and names that method;
//! - every path of `outputs` (files or folders, relative to `REPRO_OUT`);
//! - something besides `log/`, unless the stage declares `outputs: []`.
//!
//! Any `metrics.json` it leaves is checked against the schema, with a `method` or not.
//!
//! **Where it may write.** On Linux the program may write only into `REPRO_OUT`,
//! `REPRO_CHECKPOINT`, its temporary folder and `/dev` ([`sandbox`], Landlock); any other
//! write (the project root, `/tmp`, an input's folder) fails in the program as "Permission
//! denied". Where the kernel cannot enforce it, the first line of the log says so and the
//! program runs unconfined. `sandbox: false` runs it unconfined on purpose.
//!
//! **Interruption** ([`process`]): the program runs in a process group of its own, which
//! dies with the stage; when the stage is asked to stop, the group receives SIGINT (Python
//! raises `KeyboardInterrupt`) and the stage reports [`Interrupted`], which keeps
//! `REPRO_CHECKPOINT` for the next run. A program still running [`GRACE`] later is killed,
//! and the stage fails saying so (its checkpoint may be incomplete), as it does when
//! [`kill_now`] kills it at once. Under the Slurm executor the stage runs as any other
//! (`exec-stage` in a batch job); `scancel` signals every process of the job, so the program
//! may also receive SIGTERM directly.
//!
//! The file formats a program reads and writes (dataset, noisy labels, `metrics.json`,
//! matrices) are documented in `docs/formats.md`.

pub mod process;
pub mod sandbox;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::context::{InputRef, Interrupted, StageContext};
use crate::declared::Inputs;
use crate::kind::CodeFile;
use crate::metrics::{FILE as METRICS_FILE, LOG_DIR};
use crate::metrics_schema;
use crate::process::{capture, exit_wording, log_tail};
use crate::stage_kind::StageKind;
use process::Ending;
use sandbox::Sandbox;

pub use process::{kill_now, on_program_start, GRACE};

/// Lines of the program's log quoted in the error of a failed run.
pub use crate::process::TAIL_LINES;

/// The program's stdout and stderr, under `log/`.
pub const LOG_FILE: &str = "output.txt";

/// The variables thread pools read, each set to `REPRO_THREADS` unless already set: OpenMP
/// (PyTorch's CPU operators, scikit-learn), MKL, OpenBLAS, Apple's Accelerate, numexpr,
/// BLIS, GotoBLAS, Numba, Julia, TensorFlow's operator pool, Polars, Go.
pub const THREAD_VARS: [&str; 12] = [
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "GOTO_NUM_THREADS",
    "NUMBA_NUM_THREADS",
    "JULIA_NUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
    "POLARS_MAX_THREADS",
    "GOMAXPROCS",
];

/// The params file, in the stage's checkpoint folder (never published).
const PARAMS_FILE: &str = "params.json";
/// The program's own checkpoint folder, inside the stage's.
const STATE_DIR: &str = "state";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// The program and its arguments (no shell); a relative program path resolves against
    /// the project root, a bare name through `PATH`. Required, not empty.
    pub run: Vec<String>,
    /// Project files or folders hashed as the stage's code (folders: every file under them,
    /// by relative path and bytes), relative to the project root. Default: none.
    #[serde(default)]
    pub deps: Vec<String>,
    /// The method name the tables show: the program must write a `metrics.json` naming it
    /// (it is handed to the program in `REPRO_PARAMS`). Default: none, for a stage that is
    /// no method (its outputs are then checked by `outputs` alone).
    #[serde(default)]
    pub method: Option<String>,
    /// Free-form arguments handed to the program in `REPRO_PARAMS`. Default: empty.
    #[serde(default)]
    pub args: serde_json::Map<String, Value>,
    /// Bumping it reruns the stage without an edit. Default: 0.
    #[serde(default)]
    pub version: u64,
    /// Paths (files or folders, relative to `REPRO_OUT`) the program must leave; the stage
    /// fails naming the first one missing. `[]` declares a stage that may leave nothing.
    /// Default: unset (anything, but not nothing).
    #[serde(default)]
    pub outputs: Option<Vec<String>>,
    /// Confine the program's writes to its own folders (Linux, Landlock; see the module
    /// doc). `false` for a program that must write elsewhere (a cache in the home folder).
    /// Default: true.
    #[serde(default = "yes")]
    pub sandbox: bool,
}

fn yes() -> bool {
    true
}

/// A path relative to its base that stays beneath it (no `..`, not absolute, not empty).
fn relative_inside(s: &str) -> bool {
    !s.is_empty()
        && Path::new(s)
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

impl StageKind for Params {
    const VERSION: u32 = 1;

    /// What deserializing cannot say: a program is named, `deps` stay inside the project,
    /// `outputs` inside `REPRO_OUT` and out of `log/`.
    fn check(&self) -> Result<(), String> {
        if self.run.first().is_none_or(|p| p.is_empty()) {
            return Err("field `run`: must name a program: a list like [python3, prog.py]".into());
        }
        if self.method.as_deref() == Some("") {
            return Err("field `method`: must not be empty".into());
        }
        for (i, d) in self.deps.iter().enumerate() {
            if !relative_inside(d) {
                return Err(format!(
                    "field `deps[{i}]`: `{d}` must be a path relative to the project root, without `..`"
                ));
            }
        }
        for (i, o) in self.outputs.iter().flatten().enumerate() {
            if !relative_inside(o) {
                return Err(format!(
                    "field `outputs[{i}]`: `{o}` must be a path relative to REPRO_OUT, without `..`"
                ));
            }
            if Path::new(o).components().find(|c| *c != Component::CurDir)
                == Some(Component::Normal(LOG_DIR.as_ref()))
            {
                return Err(format!(
                    "field `outputs[{i}]`: `{o}` is under `{LOG_DIR}/`, which is not part of the outputs"
                ));
            }
        }
        Ok(())
    }

    fn check_inputs(&self, _: &Inputs) -> Result<(), String> {
        Ok(())
    }

    fn declared_method(&self) -> Option<String> {
        self.method.clone()
    }

    fn programs(&self) -> Vec<(String, String)> {
        self.run
            .first()
            .map(|r| vec![("run[0]".to_string(), r.clone())])
            .unwrap_or_default()
    }

    fn code_files(&self) -> Vec<CodeFile> {
        code_files(self)
    }

    fn run(&self, ctx: &StageContext) -> Result<()> {
        run(self, ctx)
    }
}

/// The files and folders `deps` names ([`StageKind::code_files`]).
fn code_files(p: &Params) -> Vec<CodeFile> {
    let deps = p.deps.iter().enumerate();
    deps.map(|(i, d)| CodeFile {
        field: format!("deps[{i}]"),
        path: PathBuf::from(d),
    })
    .collect()
}

/// The content of `REPRO_PARAMS`.
#[derive(Serialize)]
struct ProgramParams<'a> {
    method: Option<&'a str>,
    args: &'a serde_json::Map<String, Value>,
    seed: u64,
    coords: &'a BTreeMap<String, Value>,
    profile: &'a str,
    member: &'a str,
    inputs: BTreeMap<&'a str, Vec<&'a Path>>,
}

pub fn run(p: &Params, ctx: &StageContext) -> Result<()> {
    let log_dir = ctx.out_dir.join(LOG_DIR);
    let state = ctx.checkpoint_dir.join(STATE_DIR);
    for d in [&log_dir, &state] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let params_file = ctx.checkpoint_dir.join(PARAMS_FILE);
    let pp = ProgramParams {
        method: p.method.as_deref(),
        args: &p.args,
        seed: ctx.seed,
        coords: &ctx.coords,
        profile: &ctx.profile,
        member: &ctx.member,
        inputs: ctx
            .inputs
            .iter()
            .map(|(n, refs)| (n.as_str(), refs.iter().map(|r| r.dir.as_path()).collect()))
            .collect(),
    };
    std::fs::write(&params_file, serde_json::to_string_pretty(&pp)? + "\n")
        .with_context(|| format!("writing {}", params_file.display()))?;
    let tmp = PrivateTmp::new()?;

    let mut first_lines = String::new();
    let sandbox = if p.sandbox {
        match Sandbox::new(&[&ctx.out_dir, &state, &tmp.0]) {
            Ok(sb) => Some(sb),
            Err(Ok(why)) => {
                let note = format!(
                    "repro: the program's writes are not confined to REPRO_OUT, REPRO_CHECKPOINT \
                     and TMPDIR: {why}"
                );
                ctx.progress.message(&note);
                first_lines = note + "\n";
                None
            }
            Err(Err(e)) => return Err(e).context("setting up the program's sandbox"),
        }
    } else {
        None
    };

    let log_path = log_dir.join(LOG_FILE);
    let log =
        File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let (out, capture) = process::capture(log, first_lines.as_bytes(), capture::KEEP)
        .context("creating the program's output pipe")?;
    let threads = ctx.threads.to_string();
    let mut cmd = std::process::Command::new(program_path(&p.run[0], &ctx.project_dir));
    cmd.args(&p.run[1..])
        .current_dir(&ctx.project_dir)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .env("REPRO_OUT", &ctx.out_dir)
        .env("REPRO_PARAMS", &params_file)
        .env("REPRO_CHECKPOINT", &state)
        .env("REPRO_SEED", ctx.seed.to_string())
        .env("REPRO_THREADS", &threads);
    for var in THREAD_VARS {
        if std::env::var_os(var).is_none() {
            cmd.env(var, &threads);
        }
    }
    for var in ["TMPDIR", "TMP", "TEMP"] {
        cmd.env(var, &tmp.0);
    }
    for (name, refs) in &ctx.inputs {
        cmd.env(input_var(name), join_dirs(refs));
    }
    let label = p.method.as_deref().unwrap_or("program");
    ctx.progress.phase(label, "program", 1);
    let started = Instant::now();
    let spawned = process::start(&mut cmd, sandbox.as_ref().map(Sandbox::fd));
    // The command holds copies of the pipe's writing end: the log ends when they are closed.
    drop(cmd);
    let ending = match spawned {
        Ok(child) => process::supervise(child, || ctx.should_stop()),
        Err(e) => Err(e),
    };
    let dropped = capture.finish();
    drop(tmp);
    let prog = format!("`{}`", p.run.join(" "));
    let ending = ending.with_context(|| format!("cannot start {prog}"))?;
    dropped.with_context(|| format!("writing {}", log_path.display()))?;
    let seconds = started.elapsed().as_secs_f64();
    match ending {
        Ending::Exited(status) if status.success() => {}
        Ending::Exited(status) => bail!(
            "{prog} {}; the last lines of its log:\n{}",
            exit_wording(&status),
            tail(&log_path)
        ),
        Ending::Stopped(_) => return Err(Interrupted.into()),
        Ending::KilledAfterGrace => bail!(
            "{prog} did not stop within {} s of being asked to (SIGINT) and was killed; what it \
             saved in REPRO_CHECKPOINT may be incomplete",
            GRACE.as_secs()
        ),
        Ending::Killed => bail!(
            "{prog} was killed at once, without a grace period (a second interrupt); what it \
             saved in REPRO_CHECKPOINT may be incomplete"
        ),
    }
    check_outputs(p, &ctx.out_dir, &prog)?;
    ctx.progress.position(1);
    let timings = serde_json::json!({ "epochs": [], "total_seconds": seconds });
    let t = log_dir.join("timings.json");
    std::fs::write(&t, serde_json::to_string_pretty(&timings)? + "\n")
        .with_context(|| format!("writing {}", t.display()))
}

/// The rules of "What it must leave" (module doc) for a program `prog` that exited 0.
fn check_outputs(p: &Params, out: &Path, prog: &str) -> Result<()> {
    for (i, o) in p.outputs.iter().flatten().enumerate() {
        if !out.join(o).exists() {
            bail!(
                "{prog} exited 0 without leaving `{o}` in REPRO_OUT (params field `outputs[{i}]`); \
                 nothing is published"
            );
        }
    }
    let metrics = out.join(METRICS_FILE);
    match (&p.method, metrics.exists()) {
        (Some(m), false) => bail!(
            "{prog} exited 0 without writing {METRICS_FILE} into REPRO_OUT: a stage with a \
             `method` ({m}) must leave one that matches docs/metrics.schema.json; nothing is \
             published"
        ),
        (_, true) => check_metrics(&metrics, p.method.as_deref(), prog)?,
        (None, false) => {}
    }
    if p.outputs.is_none() {
        let rd = std::fs::read_dir(out).with_context(|| format!("reading {}", out.display()))?;
        let mut names = rd.map(|e| e.map(|e| e.file_name()));
        if !names.any(|n| n.is_ok_and(|n| n != LOG_DIR)) {
            bail!(
                "{prog} exited 0 but left nothing in REPRO_OUT; nothing is published (a stage \
                 that has no outputs says `outputs: []`)"
            );
        }
    }
    Ok(())
}

/// A `metrics.json` the program left: the schema's rules, and the stage's `method`.
fn check_metrics(path: &Path, method: Option<&str>, prog: &str) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let what = format!("the {METRICS_FILE} {prog} left in REPRO_OUT");
    let v: Value = serde_json::from_slice(&bytes).with_context(|| format!("{what} is not JSON"))?;
    if let Err((field, msg)) = metrics_schema::check(&v) {
        bail!("{what} does not match docs/metrics.schema.json: field `{field}`: {msg}");
    }
    if let Some(m) = method {
        let written = v["method"].as_str().unwrap_or_default();
        if written != m {
            bail!(
                "{what}: field `method` is `{written}`, but the stage's `method` param is `{m}` \
                 (tables list a run by the name in its file)"
            );
        }
    }
    Ok(())
}

/// The start of a private temporary folder's name; the stage process's pid follows.
const TMP_PREFIX: &str = "repro-stage-";

/// A temporary folder of the program's own (mode 0700), `repro-stage-<pid>-<n>` in the
/// system's temporary folder (a short path: Unix sockets made in it stay within their
/// length limit), removed when dropped. The folders of stage processes that were killed
/// before removing theirs are removed when the next one is made.
struct PrivateTmp(PathBuf);

impl PrivateTmp {
    fn new() -> Result<PrivateTmp> {
        use std::os::unix::fs::DirBuilderExt;
        let base = std::env::temp_dir();
        remove_dead_tmps(&base);
        let pid = std::process::id();
        for n in 0u32.. {
            let dir = base.join(format!("{TMP_PREFIX}{pid}-{n}"));
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => return Ok(PrivateTmp(dir)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => continue,
                Err(e) => {
                    return Err(e).with_context(|| format!("creating {}", dir.display()));
                }
            }
        }
        unreachable!("the loop returns")
    }
}

impl Drop for PrivateTmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Removes the private temporary folders in `base` whose stage process no longer exists
/// (best effort: another user's cannot be removed, and are left alone).
fn remove_dead_tmps(base: &Path) {
    let Ok(rd) = std::fs::read_dir(base) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name();
        let pid = name
            .to_str()
            .and_then(|n| n.strip_prefix(TMP_PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<libc::pid_t>().ok());
        let Some(pid) = pid.filter(|&p| p > 0) else {
            continue;
        };
        // SAFETY: signal 0 only asks whether the process exists.
        let gone = unsafe { libc::kill(pid, 0) } != 0
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// `prog.py` or `examples/x` against the project root; a bare name (`python3`) as is,
/// for `PATH`.
fn program_path(prog: &str, project: &Path) -> PathBuf {
    let p = Path::new(prog);
    if p.is_relative() && p.components().count() > 1 {
        project.join(p)
    } else {
        p.to_path_buf()
    }
}

/// `REPRO_INPUT_<NAME>`.
pub fn input_var(name: &str) -> String {
    let up: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("REPRO_INPUT_{up}")
}

fn join_dirs(refs: &[InputRef]) -> String {
    let dirs: Vec<String> = refs.iter().map(|r| r.dir.display().to_string()).collect();
    dirs.join(":")
}

/// The end of the program's log, or a note that it wrote nothing.
fn tail(path: &Path) -> String {
    let tail = log_tail(path, TAIL_LINES).ok().flatten();
    tail.filter(|t| !t.is_empty())
        .unwrap_or_else(|| "(the program wrote nothing)".to_string())
}
