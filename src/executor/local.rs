//! The local executor: each stage in a child process of this binary (`repro exec-stage`) on
//! this machine, its stdout read for progress lines and its stderr kept as the error message.
//! With a [`Launcher`], the child is the launcher, given the same command line to start.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};

use super::{line_report, write_job_file, Executor, Job, Launcher, Outcome, Report};

/// Runs each job as a child process of this binary on this machine.
pub struct LocalExecutor {
    exe: PathBuf,
    /// What starts each stage process, if not this binary directly.
    launcher: Option<Launcher>,
    /// Whether the user set `RAYON_NUM_THREADS` (then children inherit it).
    user_threads: bool,
    running: Arc<Mutex<HashMap<usize, u32>>>,
}

impl LocalExecutor {
    /// Children get `RAYON_NUM_THREADS` = the `threads` of each job, unless the user set
    /// `RAYON_NUM_THREADS`; with a `launcher`, each child is started through it.
    pub fn new(launcher: Option<Launcher>) -> Result<LocalExecutor> {
        let exe = std::env::current_exe().context("locating the repro binary")?;
        Ok(LocalExecutor {
            exe,
            launcher,
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
        write_job_file(job_file, job)?;
        let mut argv = vec![
            self.exe.clone().into_os_string(),
            "exec-stage".into(),
            job_file.into(),
        ];
        if let Some(l) = &self.launcher {
            argv = l.wrap(argv);
        }
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if !self.user_threads {
            cmd.env("RAYON_NUM_THREADS", threads.max(1).to_string());
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", argv[0].to_string_lossy()))?;
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
                if let Some(report) = line_report(line) {
                    let _ = tx.send((id, report));
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
