//! Running stages as Slurm batch jobs: `repro run --executor slurm`.
//!
//! Each stage the scheduler starts becomes one batch job running this same binary's
//! `exec-stage` on the stage's job file (through the run's [`Launcher`], if any), in the
//! project directory, which must be on a
//! filesystem the compute nodes share (same absolute paths; the `repro` binary too). The
//! stage writes into its staging dir as it does locally; the engine (this process) keeps the
//! DAG, the fingerprints, the lock and the store, and commits a stage's outputs with the same
//! atomic rename after its job COMPLETED. A job that fails, is killed, or whose node dies
//! publishes nothing; its checkpoint (on the shared filesystem) lets the next run resume.
//!
//! One poller thread follows every outstanding job: one `squeue` call for all of them per
//! [`PollInterval`] (0.25 s after a change, backing off to 5 s while nothing changes), and
//! twice a second it reads the new lines of each job's stdout file (the same JSON progress
//! lines a local stage prints) and forwards them as [`Report::Event`]s. Job ends map to
//! outcomes:
//!
//! | Slurm | outcome |
//! |---|---|
//! | COMPLETED | `Success` |
//! | FAILED with exit code 130 (the stage caught SIGTERM and saved its checkpoint) | `Interrupted` |
//! | CANCELLED after [`Executor::stop_all`] | `Interrupted` |
//! | CANCELLED by someone else, FAILED, TIMEOUT, OUT_OF_MEMORY, NODE_FAIL, PREEMPTED, ... | `Failed`: the Slurm state, exit, and the tail of the job's stderr file |
//! | no longer listed by `squeue` | `Failed`: "vanished from the queue" |
//!
//! `stop_all` (Ctrl-C or SIGTERM to `repro run`) runs `scancel` on every job this run
//! submitted: a running stage gets SIGTERM, saves its checkpoint and exits 130 (Slurm sends
//! SIGKILL after the cluster's KillWait); the scheduler waits for every job to end and
//! publishes nothing of them. Job files live in `results/.runs/slurm/`: `<member>.<fp12>.sbatch`
//! (the batch script, resubmittable by hand), `.out` (progress lines) and `.err` (errors).
//!
//! Without slurmdbd, finished jobs are read from `squeue --states=all`, which lists them for
//! the cluster's MinJobAge (300 s by default): far longer than a poll interval. If `repro run`
//! itself is killed (SIGKILL), its jobs keep running to their end but nothing they write is
//! published; the next run cleans their staging dirs and resumes from their checkpoints.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use repro_stages::process::{log_tail, TAIL_LINES};
use slurm_client::{FailReason, JobId, JobSpec, JobState, LogFollower, PollInterval, SlurmClient};

use super::{line_report, write_job_file, Event, Executor, Job, Launcher, Outcome, Report};
use crate::run_config::ResourceTable;

/// The list of job ids submitted by the run in progress, under the run store.
const JOBS_FILE: &str = "slurm/jobs";
/// How long [`cancel_leftover_jobs`] waits for cancelled jobs to end.
const LEFTOVER_WAIT: Duration = Duration::from_secs(60);

/// How often the stdout files of running jobs are read for progress lines.
const LOG_INTERVAL: Duration = Duration::from_millis(500);
/// Consecutive failed `squeue` calls after which every outstanding job is given up as failed
/// (transient errors; with the poll back-off this is well over a minute).
const MAX_TRANSIENT_POLL_ERRORS: u32 = 30;
/// The same for errors that do not look transient.
const MAX_POLL_ERRORS: u32 = 3;

/// Submits stages to Slurm; see the module doc.
pub struct SlurmExecutor {
    client: SlurmClient,
    exe: PathBuf,
    /// What the batch script starts `exec-stage` through, if anything.
    launcher: Option<Launcher>,
    project_dir: PathBuf,
    files_dir: PathBuf,
    resources: ResourceTable,
    /// `results/.runs/slurm/jobs`.
    jobs_file: PathBuf,
    /// Whether the user set `RAYON_NUM_THREADS` (then jobs inherit it through sbatch).
    user_threads: bool,
    shared: Arc<Shared>,
    poller: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    state: Mutex<Tracked>,
    wake: Condvar,
}

#[derive(Default)]
struct Tracked {
    jobs: Vec<TrackedJob>,
    /// Every job this run submitted, finished or not.
    submitted: Vec<JobId>,
    /// `stop_all` was called: cancellations are ours, no new submission.
    stopping: bool,
    /// The executor is dropped: the poller ends.
    shutdown: bool,
    /// Jobs were added since the poller last looked.
    added: bool,
}

struct TrackedJob {
    id: usize,
    job: JobId,
    tx: Sender<(usize, Report)>,
    out: LogFollower,
    err: PathBuf,
    running: bool,
}

impl SlurmExecutor {
    /// An executor for the project in `project_dir` whose job files go to `runs_root/slurm`
    /// (`runs_root` is the run store, `results/.runs`); each job's command starts through
    /// `launcher` when there is one. Checks that the Slurm controller answers, so a run fails
    /// at once with a clear message when it does not.
    pub fn new(
        project_dir: &Path,
        runs_root: &Path,
        resources: ResourceTable,
        launcher: Option<Launcher>,
    ) -> Result<Self> {
        let client = SlurmClient::from_env();
        client.check().context(
            "--executor slurm: the Slurm controller does not answer (is SLURM_CONF set, and \
             are sbatch/squeue on PATH?)",
        )?;
        let exe = std::env::current_exe().context("locating the repro binary")?;
        let files_dir = runs_root.join("slurm");
        std::fs::create_dir_all(&files_dir)
            .with_context(|| format!("creating {}", files_dir.display()))?;
        Ok(SlurmExecutor {
            client,
            exe,
            launcher,
            project_dir: project_dir.to_path_buf(),
            files_dir,
            resources,
            jobs_file: runs_root.join(JOBS_FILE),
            user_threads: std::env::var_os("RAYON_NUM_THREADS").is_some(),
            shared: Arc::new(Shared {
                state: Mutex::new(Tracked::default()),
                wake: Condvar::new(),
            }),
            poller: Mutex::new(None),
        })
    }

    fn ensure_poller(&self) {
        let mut poller = self.poller.lock().unwrap();
        if poller.is_none() {
            let shared = Arc::clone(&self.shared);
            let client = self.client.clone();
            let project_dir = self.project_dir.clone();
            *poller = Some(std::thread::spawn(move || {
                poll_loop(&shared, &client, &project_dir)
            }));
        }
    }
}

impl Drop for SlurmExecutor {
    /// The run is over: jobs still outstanding (the run ended on an error) are cancelled, and
    /// the list of submitted jobs is removed.
    fn drop(&mut self) {
        let outstanding: Vec<JobId> = {
            let st = self.shared.state.lock().unwrap();
            st.jobs.iter().map(|j| j.job).collect()
        };
        let cancelled = outstanding.is_empty() || self.client.cancel(&outstanding).is_ok();
        if cancelled {
            let _ = std::fs::remove_file(&self.jobs_file);
        }
        self.shared.state.lock().unwrap().shutdown = true;
        self.shared.wake.notify_all();
        if let Some(h) = self.poller.lock().unwrap().take() {
            let _ = h.join();
        }
    }
}

/// A file name stem for a member: its name with everything unusual replaced, plus the start
/// of its fingerprint (two members never share files).
fn file_stem(member: &str, fp: &str) -> String {
    let mut name: String = member
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '_' | '-' | '.' | ',' | '=' | '+' => c,
            _ => '_',
        })
        .take(100)
        .collect();
    name.push('.');
    name.push_str(&fp[..fp.len().min(12)]);
    name
}

impl SlurmExecutor {
    /// The batch job of a stage whose job file is `job_file`: `exec-stage` of this binary
    /// (through the launcher, if any), with the stage's resources and thread count.
    fn job_spec(&self, job: &Job, job_file: &Path) -> JobSpec {
        let stage = job.member.split('[').next().unwrap_or(&job.member);
        let resources = self.resources.for_stage(stage, &job.kind);
        // The staging dir is `<fp>.<pid>`.
        let fp = job_file
            .parent()
            .and_then(|d| d.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stem = file_stem(&job.member, &fp);
        let mut spec = JobSpec::exec_stage(
            &stem,
            &self.exe,
            job_file,
            &self.project_dir,
            &self.files_dir,
            resources.clone(),
        );
        spec.name = format!("repro:{}", job.member);
        if let Some(l) = &self.launcher {
            spec.argv = l.wrap(std::mem::take(&mut spec.argv));
        }
        if !self.user_threads {
            let cpus = resources.cpus.unwrap_or(1);
            spec.env
                .push(("RAYON_NUM_THREADS".into(), cpus.to_string().into()));
        }
        spec
    }
}

impl Executor for SlurmExecutor {
    fn start(
        &self,
        id: usize,
        job: &Job,
        job_file: &Path,
        _threads: usize,
        tx: Sender<(usize, Report)>,
    ) -> Result<()> {
        write_job_file(job_file, job)?;
        let spec = self.job_spec(job, job_file);
        // Logs of an earlier attempt would be read as this job's progress or errors.
        for f in [&spec.stdout, &spec.stderr] {
            match std::fs::remove_file(f) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("removing {}", f.display())),
            }
        }

        let mut st = self.shared.state.lock().unwrap();
        if st.stopping {
            anyhow::bail!("the run is stopping; not submitted");
        }
        // Under the lock: `stop_all` cannot miss a job being submitted.
        let job_id = self
            .client
            .submit(&spec)
            .with_context(|| format!("submitting {} to Slurm", job.member))?;
        st.submitted.push(job_id);
        record_job(&self.jobs_file, job_id);
        let _ = tx.send((id, Report::Started { pid: 0 }));
        let rel = spec
            .stdout
            .strip_prefix(&self.project_dir)
            .unwrap_or(&spec.stdout)
            .with_extension("{out,err}");
        let _ = tx.send((
            id,
            Report::Event(Event::Message {
                text: format!("slurm job {job_id}, logs {}", rel.display()),
            }),
        ));
        st.jobs.push(TrackedJob {
            id,
            job: job_id,
            tx,
            out: LogFollower::new(&spec.stdout),
            err: spec.stderr.clone(),
            running: false,
        });
        st.added = true;
        drop(st);
        self.shared.wake.notify_all();
        self.ensure_poller();
        Ok(())
    }

    fn stop_all(&self) {
        let ids = {
            let mut st = self.shared.state.lock().unwrap();
            st.stopping = true;
            st.submitted.clone()
        };
        if ids.is_empty() {
            return;
        }
        if let Err(e) = self.client.cancel(&ids) {
            // The jobs keep running; nothing of them is published. Say so, and retry once.
            eprintln!("warning: cancelling the run's Slurm jobs: {e}");
            std::thread::sleep(Duration::from_secs(1));
            if let Err(e) = self.client.cancel(&ids) {
                let list: Vec<String> = ids.iter().map(JobId::to_string).collect();
                eprintln!(
                    "warning: could not cancel Slurm jobs {} ({e}); cancel them with scancel",
                    list.join(",")
                );
            }
        }
        self.shared.wake.notify_all();
    }
}

/// Appends `id` to the run's job list (best effort: the list only serves to cancel the jobs of
/// a run that was killed).
fn record_job(file: &Path, id: JobId) {
    use std::io::Write;
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .and_then(|mut f| writeln!(f, "{id}"));
    if let Err(e) = written {
        eprintln!(
            "warning: recording Slurm job {id} in {}: {e}",
            file.display()
        );
    }
}

/// Cancels the Slurm jobs of an earlier `repro run` of this project that was killed before it
/// could cancel them (listed in `<runs_root>/slurm/jobs`), and waits until they have ended, so
/// that none still writes a staging dir or a checkpoint. Call it holding the project lock,
/// before cleaning staging dirs. Returns how many jobs were still queued or running.
pub fn cancel_leftover_jobs(runs_root: &Path) -> Result<usize> {
    let file = runs_root.join(JOBS_FILE);
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
    };
    let ids: Vec<JobId> = text
        .lines()
        .filter_map(|l| l.trim().parse().ok().map(JobId))
        .collect();
    let client = SlurmClient::from_env();
    let live = |ids: &[JobId]| -> Result<Vec<JobId>> {
        Ok(client
            .poll(ids)
            .with_context(|| {
                format!(
                    "checking the Slurm jobs of an earlier run listed in {} (cancel them, then \
                     delete the file)",
                    file.display()
                )
            })?
            .into_iter()
            .filter(|s| !s.state.is_finished())
            .map(|s| s.id)
            .collect())
    };
    let mut left = live(&ids)?;
    let n = left.len();
    if n > 0 {
        client
            .cancel(&left)
            .context("cancelling the Slurm jobs of an earlier run")?;
        let start = Instant::now();
        while !left.is_empty() {
            if start.elapsed() > LEFTOVER_WAIT {
                anyhow::bail!(
                    "Slurm jobs {:?} of an earlier run did not end within {}s of scancel",
                    left.iter().map(JobId::to_string).collect::<Vec<_>>(),
                    LEFTOVER_WAIT.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(250));
            left = live(&left)?;
        }
    }
    std::fs::remove_file(&file).with_context(|| format!("removing {}", file.display()))?;
    Ok(n)
}

/// Forwards a stage's progress lines, as the local executor does with its stdout.
fn forward_lines(j: &mut TrackedJob) {
    let Ok(lines) = j.out.read_lines() else {
        return;
    };
    for report in lines.into_iter().filter_map(line_report) {
        let _ = j.tx.send((j.id, report));
    }
}

/// The outcome of a finished job.
fn outcome(j: &TrackedJob, state: &JobState, stopping: bool, project_dir: &Path) -> Outcome {
    match state {
        JobState::Succeeded => return Outcome::Success,
        JobState::Interrupted => return Outcome::Interrupted,
        JobState::Cancelled { .. } if stopping => return Outcome::Interrupted,
        _ => {}
    }
    let what = match state {
        JobState::Cancelled { .. } => format!("was {state} outside this run (scancel?)"),
        JobState::Failed {
            reason: FailReason::Vanished,
            ..
        } => "vanished from the queue: squeue no longer lists it (purged after the \
              cluster's MinJobAge, or the cluster was reset), so how it ended is unknown"
            .to_string(),
        _ => format!("{state}"),
    };
    let rel = j.err.strip_prefix(project_dir).unwrap_or(&j.err);
    let log = match log_tail(&j.err, TAIL_LINES) {
        Ok(Some(t)) if !t.trim().is_empty() => {
            format!("; last lines of {}:\n{}", rel.display(), indent(&t))
        }
        Ok(_) => format!("; {} is empty or missing", rel.display()),
        Err(e) => format!("; reading {}: {e}", rel.display()),
    };
    Outcome::Failed(format!("Slurm job {} {what}{log}", j.job))
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn poll_loop(shared: &Shared, client: &SlurmClient, project_dir: &Path) {
    let mut interval = PollInterval::default();
    let mut next_poll = Instant::now();
    let mut next_logs = Instant::now();
    let mut errors = 0u32;
    let mut last_states: HashMap<JobId, JobState> = HashMap::new();
    loop {
        // Wait for jobs, the next poll, or the next log read.
        let ids: Vec<JobId> = {
            let mut st = shared.state.lock().unwrap();
            loop {
                if st.shutdown {
                    return;
                }
                if st.added {
                    st.added = false;
                    next_poll = next_poll.min(Instant::now() + interval.next(true));
                }
                if !st.jobs.is_empty() {
                    let now = Instant::now();
                    let due = next_poll.min(next_logs);
                    if due <= now {
                        break;
                    }
                    st = shared.wake.wait_timeout(st, due - now).unwrap().0;
                } else {
                    st = shared.wake.wait(st).unwrap();
                }
            }
            let now = Instant::now();
            if now >= next_logs {
                for j in st.jobs.iter_mut().filter(|j| j.running) {
                    forward_lines(j);
                }
                next_logs = now + LOG_INTERVAL;
            }
            if now < next_poll {
                continue;
            }
            st.jobs.iter().map(|j| j.job).collect()
        };

        // squeue without holding the lock (start() may submit meanwhile).
        let polled = client.poll(&ids);
        let mut st = shared.state.lock().unwrap();
        let stopping = st.stopping;
        let statuses = match polled {
            Ok(s) => {
                errors = 0;
                s
            }
            Err(e) => {
                errors += 1;
                let limit = if e.is_transient() {
                    MAX_TRANSIENT_POLL_ERRORS
                } else {
                    MAX_POLL_ERRORS
                };
                if errors < limit {
                    next_poll = Instant::now() + interval.next(false);
                    continue;
                }
                // Give the polled jobs up: they may still run, but nothing will be published.
                let lost: Vec<JobId> = ids.clone();
                let _ = client.cancel(&lost);
                st.jobs.retain(|j| {
                    if !lost.contains(&j.job) {
                        return true;
                    }
                    let _ = j.tx.send((
                        j.id,
                        Report::Done(Outcome::Failed(format!(
                            "Slurm job {}: lost contact with Slurm after {errors} failed polls \
                             (last: {e}); the job was cancelled",
                            j.job
                        ))),
                    ));
                    false
                });
                errors = 0;
                continue;
            }
        };
        let mut changed = false;
        let by_id: HashMap<JobId, JobState> =
            statuses.into_iter().map(|s| (s.id, s.state)).collect();
        st.jobs.retain_mut(|j| {
            let Some(state) = by_id.get(&j.job) else {
                return true; // submitted after this poll started
            };
            if last_states.get(&j.job) != Some(state) {
                changed = true;
                last_states.insert(j.job, state.clone());
            }
            if matches!(state, JobState::Running) {
                j.running = true;
            }
            if !state.is_finished() {
                return true;
            }
            // Progress written just before the end, then the outcome.
            forward_lines(j);
            let out = outcome(j, state, stopping, project_dir);
            let _ = j.tx.send((j.id, Report::Done(out)));
            last_states.remove(&j.job);
            false
        });
        next_poll = Instant::now() + interval.next(changed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_launcher_starts_the_job_command() {
        let executor = |launcher: Option<Launcher>| SlurmExecutor {
            client: SlurmClient::from_env(),
            exe: PathBuf::from("/opt/repro/bin/repro"),
            launcher,
            project_dir: PathBuf::from("/p"),
            files_dir: PathBuf::from("/p/results/.runs/slurm"),
            resources: ResourceTable::default(),
            jobs_file: PathBuf::from("/p/results/.runs/slurm/jobs"),
            user_threads: true,
            shared: Arc::new(Shared {
                state: Mutex::new(Tracked::default()),
                wake: Condvar::new(),
            }),
            poller: Mutex::new(None),
        };
        let job = Job {
            kind: "probe".into(),
            params: serde_json::json!({}),
            seed: 1,
            member: "a".into(),
            profile: "default".into(),
            coords: Default::default(),
            inputs: Default::default(),
            out_dir: "/p/results/.runs/staging/ff.1/out".into(),
            checkpoint_dir: "/p/results/.runs/checkpoints/ff".into(),
            project_dir: "/p".into(),
            download_dir: "/p/data/downloads".into(),
            timeout: None,
            code: crate::executor::code_identity(repro_stages::Kind::Probe),
        };
        let job_file = Path::new("/p/results/.runs/staging/ff.1/job.json");
        let exec_line = |spec: &JobSpec| {
            let script = String::from_utf8(spec.batch_script()).unwrap();
            script.lines().last().unwrap().to_string()
        };
        let plain = executor(None).job_spec(&job, job_file);
        assert_eq!(
            exec_line(&plain),
            "exec '/opt/repro/bin/repro' 'exec-stage' '/p/results/.runs/staging/ff.1/job.json'"
        );
        let launcher = Launcher::choose(Some("qemu-x86_64 -cpu Nehalem"), None);
        let wrapped = executor(launcher).job_spec(&job, job_file);
        assert_eq!(
            exec_line(&wrapped),
            "exec 'qemu-x86_64' '-cpu' 'Nehalem' '/opt/repro/bin/repro' 'exec-stage' \
             '/p/results/.runs/staging/ff.1/job.json'"
        );
        assert_eq!((wrapped.stdout, wrapped.name), (plain.stdout, plain.name));
    }

    #[test]
    fn file_stems_are_safe_and_distinct() {
        assert_eq!(
            file_stem("train[flip,0.5,seed=1]", "0123456789abcdef.42"),
            "train_flip,0.5,seed=1_.0123456789ab"
        );
        assert_eq!(file_stem("a/b c%", "ff"), "a_b_c_.ff");
    }
}
