//! The runner: executes a plan, re-planning as upstream members finish.
//!
//! Members are visited in topological order. A member is decided (with
//! [`plan::decide_member`]) as soon as all its upstream members are done, because only
//! then are their output digests, and so its key, known: an upstream that reran and
//! reproduced identical bytes leaves it Fresh (early cutoff). Members to run wait in a
//! queue for one of the `-j` slots and go to the [`Executor`]; independent members run in
//! parallel. One `Scheduler` holds a run: per member one `MemberState` (its phase, whether
//! it is forced, its upstream, fingerprint, decision and, while queued, its key), the
//! members running, the queue, and the lock being written.
//!
//! - **Success**: the staged outputs are committed to the store (hash, key, manifest
//!   last, rename), published, the checkpoint dir is removed, the lock entry set, and the
//!   files' stats recorded in the stat cache.
//! - **Failure**: the staging dir is removed (nothing is published, the checkpoint is
//!   kept); without `--keep-going` no new member starts and the running ones finish; with
//!   it, only members downstream of the failure are skipped.
//! - **Interrupt** (SIGINT/SIGTERM to `repro`): running stages get SIGTERM, save their
//!   checkpoint and stop; nothing half-written is published; the lock keeps what finished;
//!   the command exits with 130. A second interrupt kills the running stages at once
//!   ([`Executor::kill_all`]); each is reported as killed, not as having saved a checkpoint.
//! - **Time limit**: a stage's `timeout` travels in its job; the stage process stops the
//!   stage when it is reached, and it ends as a failure naming the limit.
//!
//! The lock file is written once at the end (and only when its text changed): a killed
//! scheduler leaves committed runs in the store that the next run restores for free. Before
//! it, unless interrupted, the files of the profile's publish directories that no member
//! published there are removed ([`crate::strays`]).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use anyhow::Result;
use repro_stages::{InputRef, Kind};

use crate::executor::{Executor, Job, Outcome, Report};
use crate::fingerprint::{Key, KindIdentity};
use crate::lock::{LockEntry, LockFile};
use crate::pipeline::Pipeline;
use crate::plan::{self, Decision};
use crate::progress::Reporter;
use crate::project::{FsWorld, Project};
use crate::store::{publish, Manifest};

/// What `repro run` was asked to do.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub targets: Vec<String>,
    pub jobs: usize,
    pub force: bool,
    pub keep_going: bool,
}

/// How a run went.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    pub ran: usize,
    pub restored: usize,
    pub fresh: usize,
    pub failed: usize,
    pub skipped: usize,
    pub interrupted: bool,
    /// Stages killed at a second interrupt, before they could save a checkpoint.
    pub killed: usize,
}

impl Summary {
    pub fn line(&self) -> String {
        let mut parts = vec![
            format!("{} ran", self.ran),
            format!("{} restored", self.restored),
            format!("{} fresh", self.fresh),
        ];
        if self.failed > 0 {
            parts.push(format!("{} failed", self.failed));
        }
        if self.skipped > 0 {
            parts.push(format!("{} not run", self.skipped));
        }
        let mut s = parts.join(", ");
        if self.killed > 0 {
            s.push_str(&format!(" (interrupted; {} killed)", self.killed));
        } else if self.interrupted {
            s.push_str(" (interrupted)");
        }
        s
    }
}

/// Where a member is in the run.
#[derive(Clone, Debug, PartialEq)]
enum Phase {
    NotSelected,
    Waiting,
    Queued,
    Running,
    Done,
    Failed,
    /// Not run because an upstream failed or was interrupted.
    Skipped,
}

/// What a run knows of one member.
struct MemberState {
    phase: Phase,
    /// Run even when fresh (`--force` names it, or names nothing).
    forced: bool,
    /// Its upstream members, deduplicated ([`crate::pipeline::Member::upstream`]).
    upstream: Vec<usize>,
    /// Its fingerprint, once it is decided.
    fingerprint: Option<String>,
    /// What the planner decided, shown when it starts.
    decision: Option<Decision>,
    /// The key of a member queued to run, until it starts.
    key: Option<Key>,
}

/// The members of `p` before the run: the `selected` ones waiting, those the targets name
/// (`direct`) forced when `force` is given.
fn member_states(
    p: &Pipeline,
    selected: &[bool],
    direct: &[bool],
    force: bool,
) -> Vec<MemberState> {
    p.members
        .iter()
        .enumerate()
        .map(|(mi, m)| MemberState {
            phase: if selected[mi] {
                Phase::Waiting
            } else {
                Phase::NotSelected
            },
            forced: direct[mi] && force,
            upstream: m.upstream(),
            fingerprint: None,
            decision: None,
            key: None,
        })
        .collect()
}

/// A member whose stage runs.
struct Running {
    key: Key,
    fp: String,
    staging: PathBuf,
    started: Instant,
    /// Cores the stage was given ([`stage_threads`]).
    threads: usize,
}

/// Threads for a stage about to start: its share of the `cores` among the stages that can
/// run now (`running` stages holding `held` cores between them, this one, and `waiting`
/// queued ones, at most `jobs` at a time), never more than the cores the running ones
/// leave free, and at least 1. A lone stage gets every core; `-j` stages started together
/// one share each; a stage starting beside one that already holds every core gets 1
/// rather than oversubscribing the machine.
pub fn stage_threads(
    cores: usize,
    jobs: usize,
    running: usize,
    held: usize,
    waiting: usize,
) -> usize {
    let sharing = (running + 1 + waiting).min(jobs.max(1)).max(1);
    (cores / sharing).min(cores.saturating_sub(held)).max(1)
}

/// Runs the selected members of `p`; the caller holds the project lock. `interrupts`
/// counts the interrupts (SIGINT, SIGTERM) `repro` received: one stops the run, two kill
/// its stages.
pub fn run(
    project: &Project,
    p: &Pipeline,
    opts: &RunOptions,
    executor: &dyn Executor,
    reporter: &mut Reporter,
    interrupts: &AtomicUsize,
) -> Result<Summary> {
    let old_lock = LockFile::load(&project.lock_path())?;
    let (selected, direct) = p
        .select(&opts.targets)
        .map_err(crate::error::EngineError::Usage)?;
    let states = member_states(p, &selected, &direct, opts.force);
    let mut r = Scheduler::new(project, p, opts, executor, reporter, &old_lock, states);
    let mut first_pass = true;
    loop {
        if r.dirty {
            r.dirty = false;
            let newly = r.decide_ready();
            if first_pass {
                // Members that will be decided later may run too; count them as they come.
                r.reporter.begin(newly);
                first_pass = false;
            } else {
                r.reporter.grow(newly);
            }
        }
        let n = interrupts.load(Ordering::SeqCst);
        if n >= 1 && !r.asked_to_stop {
            r.stop();
        }
        if n >= 2 && !r.killing {
            r.kill();
        }
        r.start_queued();
        if r.running.is_empty() && (r.queue.is_empty() || r.stopping || r.halted) && !r.dirty {
            break;
        }
        if r.running.is_empty() {
            continue;
        }
        match r.rx.recv_timeout(Duration::from_millis(100)) {
            Ok((mi, report)) => r.report(mi, report),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => unreachable!("we hold a sender"),
        }
    }
    r.reporter.end();
    if interrupts.load(Ordering::SeqCst) > 0 {
        r.summary.interrupted = true;
    }
    r.finish()
}

/// The state of one `repro run`: what each member is doing, what the new lock holds.
struct Scheduler<'a> {
    project: &'a Project,
    p: &'a Pipeline,
    opts: &'a RunOptions,
    executor: &'a dyn Executor,
    reporter: &'a mut Reporter,
    old_lock: &'a LockFile,
    new_lock: LockFile,
    world: FsWorld<'a>,
    ids: HashMap<Kind, KindIdentity>,
    /// Per member of the pipeline (indexed as [`Pipeline::members`]).
    states: Vec<MemberState>,
    /// The output digest of each member once it is done: apart from [`MemberState`]
    /// because the planner reads them as one slice ([`plan::decide_member`]).
    digests: Vec<Option<String>>,
    /// Fingerprints queued or running: a second member with the same key (two stages
    /// computing the same thing) waits for the first and is then restored from it.
    inflight: HashSet<String>,
    queue: VecDeque<usize>,
    running: HashMap<usize, Running>,
    summary: Summary,
    tx: Sender<(usize, Report)>,
    rx: Receiver<(usize, Report)>,
    jobs: usize,
    cores: usize,
    /// Interrupted: no new member starts, running ones are asked to stop.
    stopping: bool,
    /// The executor was asked to stop its running stages.
    asked_to_stop: bool,
    /// Interrupted twice: running members were killed.
    killing: bool,
    /// A member failed without `--keep-going`: no new member starts.
    halted: bool,
    /// A member finished or failed: waiting members may be decided.
    dirty: bool,
}

impl<'a> Scheduler<'a> {
    fn new(
        project: &'a Project,
        p: &'a Pipeline,
        opts: &'a RunOptions,
        executor: &'a dyn Executor,
        reporter: &'a mut Reporter,
        old_lock: &'a LockFile,
        states: Vec<MemberState>,
    ) -> Scheduler<'a> {
        let n = p.members.len();
        let (tx, rx) = channel::<(usize, Report)>();
        Scheduler {
            project,
            p,
            opts,
            executor,
            reporter,
            old_lock,
            new_lock: old_lock.clone(),
            world: FsWorld::new(project, old_lock, &p.profile),
            ids: plan::identities(),
            states,
            digests: vec![None; n],
            inflight: HashSet::new(),
            queue: VecDeque::new(),
            running: HashMap::new(),
            summary: Summary::default(),
            tx,
            rx,
            jobs: opts.jobs.max(1),
            cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            stopping: false,
            asked_to_stop: false,
            killing: false,
            halted: false,
            dirty: true,
        }
    }

    /// Decides every waiting member whose upstream members are all done (skips those with a
    /// failed or skipped upstream); returns how many were queued to run.
    fn decide_ready(&mut self) -> u64 {
        let mut newly = 0u64;
        for mi in 0..self.p.members.len() {
            if self.states[mi].phase != Phase::Waiting {
                continue;
            }
            let ups = &self.states[mi].upstream;
            if ups
                .iter()
                .any(|&u| matches!(self.states[u].phase, Phase::Failed | Phase::Skipped))
            {
                self.states[mi].phase = Phase::Skipped;
                continue;
            }
            if !ups.iter().all(|&u| self.states[u].phase == Phase::Done) {
                continue;
            }
            let e = plan::decide_member(
                self.p,
                mi,
                &self.digests,
                &self.ids,
                self.states[mi].forced,
                &self.world,
            );
            let fp = e.fingerprint.clone().expect("all upstream done");
            if matches!(e.decision, Decision::Run(_)) && self.inflight.contains(&fp) {
                continue;
            }
            match &e.decision {
                Decision::Fresh => {
                    self.digests[mi] = e.digest.clone();
                    self.states[mi].fingerprint = Some(fp);
                    self.states[mi].phase = Phase::Done;
                    self.summary.fresh += 1;
                    let name = &self.p.members[mi].name;
                    self.reporter.detail(&format!("fresh    {name}"));
                }
                Decision::Restore(_) => {
                    if !self.restore(mi, fp, &e.decision) {
                        continue;
                    }
                }
                Decision::Run(_) => {
                    self.states[mi].key = Some(e.key.clone().expect("decided"));
                    self.inflight.insert(fp.clone());
                    self.states[mi].fingerprint = Some(fp);
                    self.states[mi].phase = Phase::Queued;
                    self.queue.push_back(mi);
                    newly += 1;
                }
                Decision::Pending { .. } | Decision::NotSelected => {
                    unreachable!("upstream done")
                }
            }
            self.states[mi].decision = Some(e.decision);
        }
        newly
    }

    /// Restores member `mi` from stored run `fp` (publishes it, records it in the lock);
    /// returns false when it failed.
    fn restore(&mut self, mi: usize, fp: String, decision: &Decision) -> bool {
        let (p, project) = (self.p, self.project);
        let m = &p.members[mi];
        let Some(manifest) = project.store.manifest(&fp) else {
            self.fail(mi, &format!("run {fp} vanished from the store"));
            return false;
        };
        let published = match publish_member(project, p, mi, &fp, &manifest, self.old_lock) {
            Ok(x) => x,
            Err(err) => {
                self.fail(mi, &format!("publishing: {err:#}"));
                return false;
            }
        };
        self.new_lock.profile_mut(&p.profile).insert(
            m.name.clone(),
            LockEntry {
                fingerprint: fp.clone(),
                digest: manifest.digest.clone(),
                published,
            },
        );
        self.world.record(&fp, &manifest, m.publish.as_deref());
        self.digests[mi] = Some(manifest.digest);
        self.states[mi].fingerprint = Some(fp);
        self.states[mi].phase = Phase::Done;
        self.summary.restored += 1;
        self.reporter.line(&format!(
            "restore  {}  ({})",
            m.name,
            decision.explain(p).trim_start_matches("restore: ")
        ));
        true
    }

    /// Member `mi` failed with `msg`: reported, its downstream skipped, and without
    /// `--keep-going` nothing new starts.
    fn fail(&mut self, mi: usize, msg: &str) {
        let name = &self.p.members[mi].name;
        self.reporter.error(&format!("FAILED   {name}: {msg}"));
        self.states[mi].phase = Phase::Failed;
        self.summary.failed += 1;
        self.halted |= !self.opts.keep_going;
    }

    /// Asks the running stages to save a checkpoint and stop.
    fn stop(&mut self) {
        self.stopping = true;
        self.asked_to_stop = true;
        if !self.running.is_empty() {
            self.reporter
                .line("interrupted: asking running stages to save a checkpoint and stop");
        }
        self.executor.stop_all();
    }

    /// Kills the running stages at once (a second interrupt).
    fn kill(&mut self) {
        self.stopping = true;
        self.killing = true;
        if !self.running.is_empty() {
            self.reporter
                .line("interrupted again: killing the running stages without a checkpoint");
        }
        self.executor.kill_all();
    }

    /// Starts queued members while a `-j` slot is free (unless stopping or halted).
    fn start_queued(&mut self) {
        while !self.stopping && !self.halted && self.running.len() < self.jobs {
            let Some(mi) = self.queue.pop_front() else {
                break;
            };
            let fp = self.states[mi].fingerprint.clone().unwrap();
            let held = self.running.values().map(|r| r.threads).sum();
            let threads = stage_threads(
                self.cores,
                self.jobs,
                self.running.len(),
                held,
                self.queue.len(),
            );
            match self.launch(mi, &fp, threads) {
                Ok(staging) => {
                    self.states[mi].phase = Phase::Running;
                    let running = Running {
                        key: self.states[mi].key.take().unwrap(),
                        fp,
                        staging,
                        started: Instant::now(),
                        threads,
                    };
                    self.running.insert(mi, running);
                }
                Err(err) => {
                    self.inflight.remove(&fp);
                    self.fail(mi, &format!("could not start: {err:#}"));
                    self.dirty = true;
                }
            }
        }
    }

    /// Writes the job of member `mi` into a new staging dir for `fp` and starts it.
    fn launch(&self, mi: usize, fp: &str, threads: usize) -> Result<PathBuf> {
        let (p, store) = (self.p, &self.project.store);
        let m = &p.members[mi];
        let staging = store.new_staging(fp)?;
        let mut inputs = BTreeMap::new();
        for (name, ups) in &m.inputs {
            let refs = ups
                .iter()
                .map(|&u| InputRef {
                    dir: store.out_dir(self.states[u].fingerprint.as_ref().unwrap()),
                    member: p.members[u].name.clone(),
                    coords: p.members[u].coords.clone(),
                })
                .collect();
            inputs.insert(name.clone(), refs);
        }
        let job = Job {
            kind: m.kind.name().to_string(),
            params: m.params.clone(),
            seed: m.seed,
            member: m.name.clone(),
            profile: p.profile.clone(),
            coords: m.coords.clone(),
            inputs,
            out_dir: staging.join("out"),
            checkpoint_dir: store.checkpoint_dir(fp),
            project_dir: self.project.dir.clone(),
            download_dir: self.project.download_dir(),
            timeout: p.stages[m.stage].timeout,
            code: crate::executor::code_identity(m.kind),
        };
        let job_file = staging.join("job.json");
        self.executor
            .start(mi, &job, &job_file, threads, self.tx.clone())?;
        Ok(staging)
    }

    /// Handles one report of the executor about member `mi`.
    fn report(&mut self, mi: usize, report: Report) {
        let m = &self.p.members[mi];
        match report {
            Report::Started { pid } => {
                let why = self.states[mi]
                    .decision
                    .as_ref()
                    .map(|d| d.explain(self.p))
                    .unwrap_or_default();
                self.reporter
                    .started(mi, &m.name, why.trim_start_matches("run: "), pid);
            }
            Report::Event(ev) => self.reporter.event(mi, &m.name, &ev),
            Report::Done(outcome) => self.finished(mi, outcome),
        }
    }

    /// Member `mi` ended: commits it, or cleans up after it.
    fn finished(&mut self, mi: usize, outcome: Outcome) {
        let m = &self.p.members[mi];
        let r = self.running.remove(&mi).expect("a running member");
        self.inflight.remove(&r.fp);
        let secs = r.started.elapsed().as_secs_f64();
        self.dirty = true;
        let committed = match outcome {
            Outcome::Failed(_) if self.killing => {
                let _ = std::fs::remove_dir_all(&r.staging);
                let line = format!(
                    "killed   {}  after {secs:.1}s (interrupted twice: its checkpoint holds only \
                     what it had saved before)",
                    m.name
                );
                self.reporter.finished(mi, Some(&line));
                self.states[mi].phase = Phase::Skipped;
                self.summary.interrupted = true;
                self.summary.killed += 1;
                return;
            }
            Outcome::Success => commit(self.project, self.p, mi, &r, self.old_lock),
            Outcome::Interrupted => {
                let _ = std::fs::remove_dir_all(&r.staging);
                let line = format!("stopped  {}  after {secs:.1}s (checkpoint saved)", m.name);
                self.reporter.finished(mi, Some(&line));
                self.states[mi].phase = Phase::Skipped;
                self.summary.interrupted = true;
                self.stopping = true;
                return;
            }
            Outcome::Failed(msg) => {
                let _ = std::fs::remove_dir_all(&r.staging);
                self.reporter.finished(mi, None);
                self.fail(mi, &msg);
                return;
            }
        };
        match committed {
            Ok(entry) => {
                if let Some(man) = self.project.store.manifest(&r.fp) {
                    self.world.record(&r.fp, &man, m.publish.as_deref());
                }
                self.digests[mi] = Some(entry.digest.clone());
                self.new_lock
                    .profile_mut(&self.p.profile)
                    .insert(m.name.clone(), entry);
                self.states[mi].phase = Phase::Done;
                self.summary.ran += 1;
                let line = format!("done     {}  in {secs:.1}s", m.name);
                self.reporter.finished(mi, Some(&line));
            }
            Err(err) => {
                let _ = std::fs::remove_dir_all(&r.staging);
                self.reporter.finished(mi, None);
                self.fail(mi, &format!("committing outputs: {err:#}"));
            }
        }
    }

    /// Counts the members not run, removes the stray files of the publish directories
    /// ([`crate::strays`]) unless interrupted, writes the lock (forgetting members no longer
    /// in the pipeline when the whole pipeline was run) and the stat cache.
    fn finish(mut self) -> Result<Summary> {
        let p = self.p;
        self.summary.skipped = self
            .states
            .iter()
            .filter(|s| matches!(s.phase, Phase::Skipped | Phase::Waiting | Phase::Queued))
            .count();
        if self.opts.targets.is_empty() {
            let names: HashSet<&str> = p.members.iter().map(|m| m.name.as_str()).collect();
            self.new_lock
                .profile_mut(&p.profile)
                .retain(|k, _| names.contains(k.as_str()));
        }
        if self
            .new_lock
            .profiles
            .get(&p.profile)
            .is_some_and(|m| m.is_empty())
        {
            self.new_lock.profiles.remove(&p.profile);
        }
        if !self.summary.interrupted {
            let strays = crate::strays::in_publish_dirs(self.project, p, &self.new_lock);
            crate::strays::remove(self.project, p, &strays)?;
            for f in &strays {
                self.reporter.line(&format!(
                    "removed  {f}  (a stray file: published by no stage of profile `{}`)",
                    p.profile
                ));
            }
        }
        if self.world.rehashed() > 0 {
            self.reporter.detail(&format!(
                "rehashed {} file(s) whose stat changed since they were last checked",
                self.world.rehashed()
            ));
        }
        self.world.save();
        self.new_lock.save(&self.project.lock_path())?;
        Ok(self.summary)
    }
}

/// Publishes stored run `fp` of member `mi` (if it has a publish path) over the copies the
/// old lock records; returns the published files.
fn publish_member(
    project: &Project,
    p: &Pipeline,
    mi: usize,
    fp: &str,
    manifest: &Manifest,
    old_lock: &LockFile,
) -> Result<BTreeMap<String, String>> {
    let m = &p.members[mi];
    let previous = old_lock
        .entry(&p.profile, &m.name)
        .map(|e| e.published.clone())
        .unwrap_or_default();
    match &m.publish {
        Some(rel) => publish(
            &project.dir,
            &project.store.out_dir(fp),
            manifest,
            rel,
            &previous,
        ),
        None => Ok(BTreeMap::new()),
    }
}

/// Commits a successful run: store, publish, checkpoint removal; returns its lock entry.
fn commit(
    project: &Project,
    p: &Pipeline,
    mi: usize,
    r: &Running,
    old_lock: &LockFile,
) -> Result<LockEntry> {
    let manifest = project.store.commit(&r.fp, &r.staging, &r.key)?;
    let published = publish_member(project, p, mi, &r.fp, &manifest, old_lock)?;
    let ck = project.store.checkpoint_dir(&r.fp);
    if ck.exists() {
        let _ = std::fs::remove_dir_all(&ck);
    }
    Ok(LockEntry {
        fingerprint: r.fp.clone(),
        digest: manifest.digest,
        published,
    })
}

#[cfg(test)]
mod tests {
    use super::stage_threads;

    #[test]
    fn a_lone_stage_gets_every_core() {
        assert_eq!(stage_threads(8, 4, 0, 0, 0), 8);
        assert_eq!(stage_threads(2, 1, 0, 0, 5), 2);
    }

    #[test]
    fn stages_started_together_share_the_cores() {
        // -j 2 on 2 cores with work queued: one core each.
        assert_eq!(stage_threads(2, 2, 0, 0, 3), 1);
        assert_eq!(stage_threads(2, 2, 1, 1, 2), 1);
        // -j 3 on 8 cores: 2 each (the remainder stays free).
        assert_eq!(stage_threads(8, 3, 0, 0, 10), 2);
        assert_eq!(stage_threads(8, 3, 2, 4, 8), 2);
    }

    #[test]
    fn a_stage_never_takes_cores_others_hold() {
        // A lone stage took both cores; a second one that becomes ready gets the floor of 1
        // instead of another full share.
        assert_eq!(stage_threads(2, 2, 1, 2, 0), 1);
        // 8 cores, 6 held by a lone early stage: the next gets the 2 left, not 4.
        assert_eq!(stage_threads(8, 2, 1, 6, 0), 2);
    }

    #[test]
    fn every_stage_gets_at_least_one_thread() {
        assert_eq!(stage_threads(1, 4, 3, 3, 9), 1);
        assert_eq!(stage_threads(2, 0, 0, 0, 0), 2);
    }
}
