//! The local executor: each stage in a child process of this binary (`repro exec-stage`) on
//! this machine, its stdout read for progress lines and its stderr kept as the error message
//! (its first and last [`KEEP`] bytes). With a [`Launcher`], the child is the launcher, given
//! the same command line to start.
//!
//! Each child leads a process group of its own: a terminal's Ctrl-C reaches `repro` only,
//! and [`Executor::stop_all`] / [`Executor::kill_all`] signal the whole group (launcher and
//! stage alike, as a terminal would). The child's group and the groups of the programs a
//! `command` stage starts (reported as `process_group` events) are recorded with the project
//! lock while they run ([`ProcessGroups`]); when the child exits, whatever is left of them is
//! ended ([`crate::process_groups::end`]), so a stage process killed with `kill -9` leaves no
//! program running.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use repro_stages::process::capture::{BoundedLog, KEEP};
use repro_stages::process::exit_wording;

use super::{line_report, write_job_file, Event, Executor, Job, Launcher, Outcome, Report};
use crate::project_lock::ProcessGroups;

/// Runs each job as a child process of this binary on this machine.
pub struct LocalExecutor {
    exe: PathBuf,
    /// What starts each stage process, if not this binary directly.
    launcher: Option<Launcher>,
    /// Whether the user set `RAYON_NUM_THREADS` (then children inherit it).
    user_threads: bool,
    /// Where the process groups of running stages are recorded (the project lock's).
    groups: Option<ProcessGroups>,
    running: Arc<Mutex<HashMap<usize, u32>>>,
}

impl LocalExecutor {
    /// Children get `RAYON_NUM_THREADS` = the `threads` of each job, unless the user set
    /// `RAYON_NUM_THREADS`; with a `launcher`, each child is started through it. Their
    /// process groups are recorded in `groups` while they run.
    pub fn new(launcher: Option<Launcher>, groups: Option<ProcessGroups>) -> Result<LocalExecutor> {
        let exe = std::env::current_exe().context("locating the repro binary")?;
        Ok(LocalExecutor {
            exe,
            launcher,
            user_threads: std::env::var_os("RAYON_NUM_THREADS").is_some(),
            groups,
            running: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    fn signal_all(&self, sig: libc::c_int) {
        for &pid in self.running.lock().unwrap().values() {
            // SAFETY: signalling the process group of a child we started (it leads it).
            unsafe {
                libc::kill(-(pid as libc::pid_t), sig);
            }
        }
    }
}

/// The process groups of one stage: its own, then its programs'.
struct StageGroups {
    record: Option<ProcessGroups>,
    staging: PathBuf,
    pgids: Vec<u32>,
}

impl StageGroups {
    fn add(&mut self, pgid: u32) {
        if let Some(r) = &self.record {
            r.add(pgid, &self.staging);
        }
        self.pgids.push(pgid);
    }

    /// Ends what is left of every group; returns how many still had processes.
    fn end(self) -> usize {
        let mut ended = 0;
        for pgid in self.pgids {
            ended += usize::from(crate::process_groups::end(pgid, &self.staging));
            if let Some(r) = &self.record {
                r.remove(pgid);
            }
        }
        ended
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
        use std::os::unix::process::CommandExt;
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
            .stderr(Stdio::piped())
            .process_group(0);
        if !self.user_threads {
            cmd.env("RAYON_NUM_THREADS", threads.max(1).to_string());
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", argv[0].to_string_lossy()))?;
        let pid = child.id();
        let mut groups = StageGroups {
            record: self.groups.clone(),
            staging: job_file.parent().unwrap_or(Path::new("")).to_path_buf(),
            pgids: Vec::new(),
        };
        groups.add(pid);
        self.running.lock().unwrap().insert(id, pid);
        let _ = tx.send((id, Report::Started { pid }));
        let stdout = child.stdout.take().expect("piped");
        let mut stderr = child.stderr.take().expect("piped");
        let running = Arc::clone(&self.running);
        std::thread::spawn(move || {
            let err_reader = std::thread::spawn(move || {
                let mut log = BoundedLog::new(Vec::new(), KEEP, KEEP);
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = stderr.read(&mut buf) {
                    if n == 0 || log.write(&buf[..n]).is_err() {
                        break;
                    }
                }
                let text = log.finish().map(|(v, _)| v).unwrap_or_default();
                String::from_utf8_lossy(&text).into_owned()
            });
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match line_report(line) {
                    Some(Report::Event(Event::ProcessGroup { pgid })) => groups.add(pgid),
                    Some(report) => {
                        let _ = tx.send((id, report));
                    }
                    None => {}
                }
            }
            let status = child.wait();
            let err_text = err_reader.join().unwrap_or_default();
            running.lock().unwrap().remove(&id);
            let ended = groups.end();
            let outcome = match status {
                Ok(s) if s.success() => Outcome::Success,
                Ok(s) if s.code() == Some(130) => Outcome::Interrupted,
                Ok(s) => {
                    let mut how = exit_wording(&s);
                    if ended > 0 {
                        how.push_str("; the processes it left running were ended");
                    }
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
        self.signal_all(libc::SIGTERM);
    }

    fn kill_all(&self) {
        self.signal_all(libc::SIGKILL);
    }
}
