//! Running one stage: the [`Executor`] interface and the local implementation.
//!
//! A stage runs in a child process of the same binary, `repro exec-stage <job.json>`
//! (hidden subcommand, [`exec_stage`]). The [`Job`] file says everything the stage may
//! know; the child reports progress as JSON lines on stdout ([`Event`]), an error message
//! on stderr, and exits with 0 (success), 130 (interrupted, checkpoint saved) or 1
//! (error). A separate process isolates crashes and aborts (a panic or `kill -9` loses
//! one stage, never the scheduler), lets SIGTERM reach exactly one stage, and is what a
//! cluster executor needs: a Slurm executor would write the same job file to a shared
//! file system, `sbatch`/`srun` the same subcommand and forward the same lines; the
//! planner and the scheduler would not change.
//!
//! Job JSON (paths absolute; the file lives in the staging dir and never reaches the
//! store):
//!
//! ```json
//! { "kind": "train", "params": {...}, "seed": 1, "member": "train[flip,0.5,seed=1]",
//!   "profile": "default", "coords": {"corruption": "flip", "seed": 1, "strength": 0.5},
//!   "inputs": { "data": [ { "dir": "/p/results/.runs/runs/<fp>/out", "member": "digits",
//!                           "coords": {} } ] },
//!   "out_dir": "/p/results/.runs/staging/<fp>.<pid>/out",
//!   "checkpoint_dir": "/p/results/.runs/checkpoints/<fp>",
//!   "project_dir": "/p", "download_dir": "/p/data/downloads" }
//! ```
//!
//! Progress lines: `{"event":"phase","name":"train","unit":"epoch","total":10}`,
//! `{"event":"position","done":3}`, `{"event":"message","text":"loss 0.31"}`.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result};
use repro_stages::{InputRef, Interrupted, Kind, Progress, StageContext};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Everything one stage run needs; serialized as the job file of `repro exec-stage`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Job {
    pub kind: String,
    pub params: Value,
    pub seed: u64,
    pub member: String,
    pub profile: String,
    pub coords: BTreeMap<String, Value>,
    pub inputs: BTreeMap<String, Vec<InputRef>>,
    pub out_dir: PathBuf,
    pub checkpoint_dir: PathBuf,
    pub project_dir: PathBuf,
    pub download_dir: PathBuf,
}

/// A progress line of a running stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Phase {
        name: String,
        unit: String,
        total: u64,
    },
    Position {
        done: u64,
    },
    Message {
        text: String,
    },
}

/// How a stage run ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Success,
    /// Asked to stop; its checkpoint is saved.
    Interrupted,
    /// The error message (the child's stderr, or how it died).
    Failed(String),
}

/// What an executor reports about a job.
#[derive(Clone, Debug, PartialEq)]
pub enum Report {
    /// The job started; `pid` of the local process (0 when there is none).
    Started {
        pid: u32,
    },
    Event(Event),
    /// The last report of a job.
    Done(Outcome),
}

/// Runs stage jobs. `start` returns at once; reports arrive on the channel tagged with
/// the caller's job id, ending with exactly one [`Report::Done`]. `threads` is the number
/// of cores the job may use (a local executor sets `RAYON_NUM_THREADS`; a cluster one
/// would ask for that many CPUs per task). Outputs never depend on it.
pub trait Executor: Send + Sync {
    fn start(
        &self,
        id: usize,
        job: &Job,
        job_file: &Path,
        threads: usize,
        tx: Sender<(usize, Report)>,
    ) -> Result<()>;
    /// Asks every running job to checkpoint and stop (they then report `Interrupted`).
    fn stop_all(&self);
}

/// Runs each job as a child process of this binary on this machine.
pub struct LocalExecutor {
    exe: PathBuf,
    /// Whether the user set `RAYON_NUM_THREADS` (then children inherit it).
    user_threads: bool,
    running: Arc<Mutex<HashMap<usize, u32>>>,
}

impl LocalExecutor {
    /// Children get `RAYON_NUM_THREADS` = the `threads` of each job, unless the user set
    /// `RAYON_NUM_THREADS`.
    pub fn new() -> Result<LocalExecutor> {
        let exe = std::env::current_exe().context("locating the repro binary")?;
        Ok(LocalExecutor {
            exe,
            user_threads: std::env::var_os("RAYON_NUM_THREADS").is_some(),
            running: Arc::new(Mutex::new(HashMap::new())),
        })
    }
}

impl Executor for LocalExecutor {
    fn start(
        &self,
        id: usize,
        job: &Job,
        job_file: &Path,
        threads: usize,
        tx: Sender<(usize, Report)>,
    ) -> Result<()> {
        std::fs::write(job_file, serde_json::to_vec_pretty(job)?)
            .with_context(|| format!("writing {}", job_file.display()))?;
        let mut cmd = Command::new(&self.exe);
        cmd.arg("exec-stage")
            .arg(job_file)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if !self.user_threads {
            cmd.env("RAYON_NUM_THREADS", threads.max(1).to_string());
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", self.exe.display()))?;
        let pid = child.id();
        self.running.lock().unwrap().insert(id, pid);
        let _ = tx.send((id, Report::Started { pid }));
        let stdout = child.stdout.take().expect("piped");
        let mut stderr = child.stderr.take().expect("piped");
        let running = Arc::clone(&self.running);
        std::thread::spawn(move || {
            let err_reader = std::thread::spawn(move || {
                let mut s = String::new();
                let _ = stderr.read_to_string(&mut s);
                s
            });
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str::<Event>(&line) {
                    Ok(ev) => {
                        let _ = tx.send((id, Report::Event(ev)));
                    }
                    Err(_) if !line.trim().is_empty() => {
                        let _ = tx.send((id, Report::Event(Event::Message { text: line })));
                    }
                    Err(_) => {}
                }
            }
            let status = child.wait();
            let err_text = err_reader.join().unwrap_or_default();
            running.lock().unwrap().remove(&id);
            let outcome = match status {
                Ok(s) if s.success() => Outcome::Success,
                Ok(s) if s.code() == Some(130) => Outcome::Interrupted,
                Ok(s) => {
                    use std::os::unix::process::ExitStatusExt;
                    let how = match (s.code(), s.signal()) {
                        (Some(c), _) => format!("exited with code {c}"),
                        (None, Some(sig)) => format!("killed by signal {sig}"),
                        _ => "ended abnormally".to_string(),
                    };
                    let msg = err_text.trim();
                    Outcome::Failed(if msg.is_empty() {
                        how
                    } else {
                        format!("{msg} ({how})")
                    })
                }
                Err(e) => Outcome::Failed(format!("waiting for the stage process: {e}")),
            };
            let _ = tx.send((id, Report::Done(outcome)));
        });
        Ok(())
    }

    fn stop_all(&self) {
        for &pid in self.running.lock().unwrap().values() {
            // SAFETY: sending SIGTERM to a child we started.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGTERM);
            }
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_have_a_stable_line_format() {
        let e = Event::Phase {
            name: "train".into(),
            unit: "epoch".into(),
            total: 3,
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"event":"phase","name":"train","unit":"epoch","total":3}"#
        );
        let m: Event = serde_json::from_str(r#"{"event":"message","text":"hi"}"#).unwrap();
        assert_eq!(m, Event::Message { text: "hi".into() });
    }
}
