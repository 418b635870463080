//! The child side of both executors: `repro exec-stage <job.json>` runs the one stage its job
//! file describes, prints progress as JSON lines on stdout and exits 0, 130 (stopped by SIGTERM
//! or Ctrl-C, checkpoint saved) or 1 (error, message on stderr).
//!
//! - **Interrupts.** The first SIGINT, SIGTERM or SIGHUP asks the stage to save a checkpoint
//!   and stop, as does the death of the parent (`repro run`, or the launcher); a second one
//!   ends it at once: a `command` stage's program is killed
//!   ([`repro_stages::kinds::command::kill_now`]), a built-in stage's process exits (its
//!   checkpoints are written whole or not at all, so the last complete one stays).
//! - **Time limit.** With a `timeout` in the job, the stage is asked to stop when it is
//!   reached; it then fails naming the limit, its checkpoint kept for the next run. A stage
//!   still running [`command::GRACE`] and 10 s more after that is ended as by a second
//!   interrupt.
//! - **Programs.** A `command` stage's program leads a process group of its own; its id is
//!   printed as a `process_group` event before the program runs, so that the executor can
//!   end the group should this process die without doing so.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context, Result};
use repro_stages::kinds::command;
use repro_stages::{Interrupted, Kind, Progress, StageContext};

use super::{Event, Job};
use crate::run_config::format_timeout;

/// Writes one progress line on stdout.
fn emit(ev: &Event) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer(&mut out, ev);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

/// Reports a program's process group (see [`command::on_program_start`]).
fn report_group(pgid: u32) {
    emit(&Event::ProcessGroup { pgid });
}

/// Progress of a running stage written as JSON lines on stdout (child side). Position
/// updates are throttled to one per 50 ms.
struct JsonLines {
    last: Mutex<Option<Instant>>,
}

impl JsonLines {
    fn emit(&self, ev: &Event) {
        emit(ev);
    }
}

impl Progress for JsonLines {
    fn phase(&self, name: &str, unit: &str, total: u64) {
        *self.last.lock().unwrap() = None;
        self.emit(&Event::Phase {
            name: name.into(),
            unit: unit.into(),
            total,
        });
    }
    fn position(&self, done: u64) {
        let mut last = self.last.lock().unwrap();
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t).as_millis() < 50) {
            return;
        }
        *last = Some(now);
        drop(last);
        self.emit(&Event::Position { done });
    }
    fn message(&self, msg: &str) {
        self.emit(&Event::Message { text: msg.into() });
    }
}

static STOP: AtomicBool = AtomicBool::new(false);
/// Interrupts received (SIGINT, SIGTERM, SIGHUP, the parent's death).
static SIGNALS: AtomicUsize = AtomicUsize::new(0);
/// The stage was stopped by its time limit.
static TIMED_OUT: AtomicBool = AtomicBool::new(false);

/// The child side: runs the job in `job_file` and returns the exit code.
pub fn exec_stage(job_file: &Path) -> i32 {
    match exec_inner(job_file) {
        Ok(()) => 0,
        Err(e) if e.chain().any(|c| c.is::<Interrupted>()) => 130,
        Err(e) => {
            eprintln!("{e:#}");
            1
        }
    }
}

/// One interrupt: the first asks the stage to stop, a second ends it at once.
fn interrupt(is_command: bool) {
    let n = SIGNALS.fetch_add(1, Ordering::SeqCst) + 1;
    STOP.store(true, Ordering::SeqCst);
    if n >= 2 {
        end_now(is_command, "at a second interrupt");
    }
}

/// Ends the stage without waiting for a checkpoint: a program is killed (its stage then
/// fails saying so); a built-in stage's process exits here.
fn end_now(is_command: bool, why: &str) {
    if is_command {
        command::kill_now();
    } else {
        eprintln!(
            "stopped {why} without waiting for a checkpoint; the stage's last complete \
             checkpoint is kept"
        );
        std::process::exit(1);
    }
}

/// Stops the stage when `limit` has passed; ends it if it is still running long after.
fn watchdog(limit: Duration, is_command: bool) {
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        TIMED_OUT.store(true, Ordering::SeqCst);
        STOP.store(true, Ordering::SeqCst);
        std::thread::sleep(command::GRACE + Duration::from_secs(10));
        if is_command {
            eprintln!(
                "the stage did not stop within {} s of reaching its time limit (timeout: {})",
                command::GRACE.as_secs() + 10,
                format_timeout(limit.as_secs())
            );
        }
        end_now(is_command, "long after reaching its time limit");
    });
}

fn exec_inner(job_file: &Path) -> Result<()> {
    let job: Job = serde_json::from_slice(
        &std::fs::read(job_file)
            .with_context(|| format!("reading job file {}", job_file.display()))?,
    )
    .with_context(|| format!("parsing job file {}", job_file.display()))?;
    let kind =
        Kind::from_name(&job.kind).with_context(|| format!("unknown kind `{}`", job.kind))?;
    let here = super::code_identity(kind);
    ensure!(
        job.code == here,
        "this stage process has other `{}` code than the run that started it (the run's: {}; \
         this binary's: {here}): the repro binary was replaced while the run was going \
         (rebuilt?), and its results would be stored under a key naming the old code. \
         Nothing was run; start the run again",
        job.kind,
        job.code
    );
    let is_command = kind == Kind::Command;
    #[cfg(target_os = "linux")]
    // SAFETY: getppid has no preconditions.
    let parent = unsafe { libc::getppid() };
    ctrlc::set_handler(move || interrupt(is_command)).context("installing the signal handler")?;
    // Stop (and checkpoint) if the parent dies: `repro run`, or the launcher. If it died
    // before that was set, this process was handed to another: stop now.
    #[cfg(target_os = "linux")]
    if !repro_stages::process::die_with_parent(libc::SIGTERM, parent) {
        interrupt(is_command);
    }
    command::on_program_start(report_group);
    std::fs::create_dir_all(&job.out_dir)
        .with_context(|| format!("creating {}", job.out_dir.display()))?;
    std::fs::create_dir_all(&job.checkpoint_dir)
        .with_context(|| format!("creating {}", job.checkpoint_dir.display()))?;
    std::fs::create_dir_all(&job.download_dir)
        .with_context(|| format!("creating {}", job.download_dir.display()))?;
    let progress = JsonLines {
        last: Mutex::new(None),
    };
    let ctx = StageContext {
        member: job.member.clone(),
        profile: job.profile.clone(),
        seed: job.seed,
        coords: job.coords.clone(),
        inputs: job.inputs.clone(),
        out_dir: job.out_dir.clone(),
        checkpoint_dir: job.checkpoint_dir.clone(),
        project_dir: job.project_dir.clone(),
        download_dir: job.download_dir.clone(),
        threads: threads(),
        progress: &progress,
        stop: &STOP,
    };
    if let Some(secs) = job.timeout {
        watchdog(Duration::from_secs(secs), is_command);
    }
    let result = kind.run(&job.params, &ctx);
    match (result, job.timeout) {
        (Err(e), Some(secs)) if TIMED_OUT.load(Ordering::SeqCst) => {
            let limit = format!("its time limit (timeout: {})", format_timeout(secs));
            Err(if e.chain().any(|c| c.is::<Interrupted>()) {
                anyhow!(
                    "stage {} reached {limit} and was stopped; its checkpoint is kept, so the \
                     next run resumes from it",
                    job.member
                )
            } else {
                e.context(format!("stopped at {limit}"))
            })
        }
        (result, _) => result,
    }
}

/// The cores this stage may use: what the executor set in `RAYON_NUM_THREADS` (the job's
/// `threads`, or the user's own setting), else all of them.
fn threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}
