//! `command`: a program of the user's, in any language, run as a stage, so a method of
//! one's own sits in the same DAG, cache and tables as the built-in ones.
//!
//! The program is started from `run` (an argv list, no shell) in the project root, with
//! stdin closed and this environment:
//!
//! | variable | value |
//! |---|---|
//! | `REPRO_OUT` | the staging folder it writes its outputs into; only what is there is published |
//! | `REPRO_PARAMS` | a JSON file: `args`, `seed`, `coords` (the matrix coordinates), `profile`, `method`, `member`, `inputs` (name -> folders) |
//! | `REPRO_INPUT_<NAME>` | each input's folder, `NAME` upper-cased (other characters than letters and digits become `_`); a group input's folders joined by `:` |
//! | `REPRO_CHECKPOINT` | a folder kept across interruptions of the same fingerprint, removed on success |
//! | `REPRO_SEED` | the seed |
//! | `REPRO_THREADS` | the cores it may use |
//!
//! Its stdout and stderr go to `log/output.txt` in its outputs, its wall time to
//! `log/timings.json` (`log/` is published but left out of the output digest). A non-zero
//! exit, a signal or a program that cannot be started fails the stage with the exit status
//! and the last [`TAIL_LINES`] lines of the log; nothing is published.
//!
//! Interruption: the program runs in its own process group, so a terminal's Ctrl-C does not
//! reach it directly; when the stage is asked to stop, the group receives SIGINT (Python
//! raises `KeyboardInterrupt`), then SIGKILL after [`GRACE`], and the stage reports
//! [`Interrupted`], which keeps `REPRO_CHECKPOINT` for the next run. Under the Slurm
//! executor the stage runs as any other (`exec-stage` in a batch job); `scancel` signals
//! every process of the job, so the program may also receive SIGTERM directly.
//!
//! The file formats a program reads and writes (dataset, noisy labels, `metrics.json`,
//! matrices) are documented in `docs/formats.md`; `metrics.json` must match
//! `docs/metrics.schema.json` for the `tables` kind to read it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::metrics::LOG_DIR;
use crate::{CodeFile, InputRef, Interrupted, StageContext};

pub const VERSION: u32 = 1;

/// Lines of the program's log quoted in the error of a failed run.
pub const TAIL_LINES: usize = 20;

/// How long an interrupted program may take to save its checkpoint and exit.
pub const GRACE: Duration = Duration::from_secs(30);

/// The program's stdout and stderr, under `log/`.
pub const LOG_FILE: &str = "output.txt";

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
    /// The method name the tables show (the program writes it into `metrics.json`; it is
    /// handed to the program in `REPRO_PARAMS`). Required.
    pub method: String,
    /// Free-form arguments handed to the program in `REPRO_PARAMS`. Default: empty.
    #[serde(default)]
    pub args: serde_json::Map<String, Value>,
    /// Bumping it reruns the stage without an edit. Default: 0.
    #[serde(default)]
    pub version: u64,
}

impl Params {
    /// What deserializing cannot say: a program is named, `deps` stay inside the project.
    pub fn check(&self) -> Result<(), String> {
        if self.run.first().is_none_or(|p| p.is_empty()) {
            return Err("field `run`: must name a program: a list like [python3, prog.py]".into());
        }
        if self.method.is_empty() {
            return Err("field `method`: must not be empty".into());
        }
        for (i, d) in self.deps.iter().enumerate() {
            let p = Path::new(d);
            let inside = !d.is_empty()
                && p.components()
                    .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
            if !inside {
                return Err(format!(
                    "field `deps[{i}]`: `{d}` must be a path relative to the project root, without `..`"
                ));
            }
        }
        Ok(())
    }
}

/// The files and folders `deps` names (see `Kind::code_files`).
pub fn code_files(params: &Value) -> Vec<CodeFile> {
    let deps = params.get("deps").and_then(Value::as_array);
    deps.into_iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, d)| {
            d.as_str().map(|s| CodeFile {
                field: format!("deps[{i}]"),
                path: PathBuf::from(s),
            })
        })
        .collect()
}

/// The content of `REPRO_PARAMS`.
#[derive(Serialize)]
struct ProgramParams<'a> {
    method: &'a str,
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
        method: &p.method,
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

    let log_path = log_dir.join(LOG_FILE);
    let log =
        File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let mut cmd = Command::new(program_path(&p.run[0], &ctx.project_dir));
    cmd.args(&p.run[1..])
        .current_dir(&ctx.project_dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .env("REPRO_OUT", &ctx.out_dir)
        .env("REPRO_PARAMS", &params_file)
        .env("REPRO_CHECKPOINT", &state)
        .env("REPRO_SEED", ctx.seed.to_string())
        .env("REPRO_THREADS", threads().to_string());
    for (name, refs) in &ctx.inputs {
        cmd.env(input_var(name), join_dirs(refs));
    }
    own_process_group(&mut cmd);
    ctx.progress.phase(&p.method, "program", 1);
    let started = Instant::now();
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start `{}`", p.run[0]))?;
    let status = supervise(child, ctx)?;
    let seconds = started.elapsed().as_secs_f64();
    if ctx.should_stop() {
        return Err(Interrupted.into());
    }
    if !status.success() {
        bail!(
            "`{}` {}; the last lines of its log:\n{}",
            p.run.join(" "),
            describe(&status),
            tail(&log_path, TAIL_LINES)
        );
    }
    ctx.progress.position(1);
    let timings = serde_json::json!({ "epochs": [], "total_seconds": seconds });
    let t = log_dir.join("timings.json");
    std::fs::write(&t, serde_json::to_string_pretty(&timings)? + "\n")
        .with_context(|| format!("writing {}", t.display()))
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

/// The cores the stage may use: what the engine set in `RAYON_NUM_THREADS`, else all.
fn threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Starts the program in a process group of its own, ended with this process on Linux.
fn own_process_group(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
    #[cfg(target_os = "linux")]
    // SAFETY: prctl only sets the signal this child receives when its parent dies; it
    // allocates nothing and is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// Waits for the program; when the stage is asked to stop, sends its group SIGINT, then
/// SIGKILL after [`GRACE`].
fn supervise(mut child: Child, ctx: &StageContext) -> Result<ExitStatus> {
    let mut signalled: Option<Instant> = None;
    loop {
        if let Some(status) = child.try_wait().context("waiting for the program")? {
            return Ok(status);
        }
        if ctx.should_stop() {
            let pgid = child.id() as libc::pid_t;
            match signalled {
                None => {
                    // SAFETY: signals the process group of a child this stage started.
                    unsafe { libc::kill(-pgid, libc::SIGINT) };
                    signalled = Some(Instant::now());
                }
                Some(t) if t.elapsed() > GRACE => {
                    // SAFETY: as above.
                    unsafe { libc::kill(-pgid, libc::SIGKILL) };
                }
                Some(_) => {}
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn describe(status: &ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exited with status {c}"),
        (None, Some(s)) => format!("was killed by signal {s}"),
        _ => "ended abnormally".to_string(),
    }
}

/// The last `n` lines of the file (at most its last 64 KiB), or a note that it is empty.
fn tail(path: &Path, n: usize) -> String {
    let mut text = String::new();
    if let Ok(mut f) = File::open(path) {
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
        let mut bytes = Vec::new();
        let _ = f.read_to_end(&mut bytes);
        text = String::from_utf8_lossy(&bytes).into_owned();
    }
    let lines: Vec<&str> = text.lines().collect();
    if lines.is_empty() {
        return "(the program wrote nothing)".to_string();
    }
    lines[lines.len().saturating_sub(n)..].join("\n")
}
