//! The child side of both executors: `repro exec-stage <job.json>` runs the one stage its job
//! file describes, prints progress as JSON lines on stdout and exits 0, 130 (stopped by SIGTERM
//! or Ctrl-C, checkpoint saved) or 1 (error, message on stderr).

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, Result};
use repro_stages::{Interrupted, Kind, Progress, StageContext};

use super::{Event, Job};

/// Progress of a running stage written as JSON lines on stdout (child side). Position
/// updates are throttled to one per 50 ms.
struct JsonLines {
    last: Mutex<Option<Instant>>,
}

impl JsonLines {
    fn emit(&self, ev: &Event) {
        let mut out = std::io::stdout().lock();
        let _ = serde_json::to_writer(&mut out, ev);
        let _ = out.write_all(b"\n");
        let _ = out.flush();
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

fn exec_inner(job_file: &Path) -> Result<()> {
    let job: Job = serde_json::from_slice(
        &std::fs::read(job_file)
            .with_context(|| format!("reading job file {}", job_file.display()))?,
    )
    .with_context(|| format!("parsing job file {}", job_file.display()))?;
    let kind =
        Kind::from_name(&job.kind).with_context(|| format!("unknown kind `{}`", job.kind))?;
    ctrlc::set_handler(|| STOP.store(true, Ordering::SeqCst))
        .context("installing the signal handler")?;
    #[cfg(target_os = "linux")]
    {
        // Stop (and checkpoint) if the scheduler dies.
        // SAFETY: prctl with PR_SET_PDEATHSIG only sets a signal to receive.
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            if libc::getppid() == 1 {
                STOP.store(true, Ordering::SeqCst);
            }
        }
    }
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
        progress: &progress,
        stop: &STOP,
    };
    kind.run(&job.params, &ctx)
}
