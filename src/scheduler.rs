//! The runner: executes a plan, re-planning as upstream members finish.
//!
//! Members are visited in topological order. A member is decided (with
//! [`plan::decide_member`]) as soon as all its upstream members are done, because only
//! then are their output digests, and so its key, known: an upstream that reran and
//! reproduced identical bytes leaves it Fresh (early cutoff). Members to run wait in a
//! queue for one of the `-j` slots and go to the [`Executor`]; independent members run in
//! parallel.
//!
//! - **Success**: the staged outputs are committed to the store (hash, key, manifest
//!   last, rename), published, the checkpoint dir is removed, the lock entry set, and the
//!   files' stats recorded in the stat cache.
//! - **Failure**: the staging dir is removed (nothing is published, the checkpoint is
//!   kept); without `--keep-going` no new member starts and the running ones finish; with
//!   it, only members downstream of the failure are skipped.
//! - **Interrupt** (SIGINT/SIGTERM to `repro`): running stages get SIGTERM, save their
//!   checkpoint and stop; nothing half-written is published; the lock keeps what finished;
//!   the command exits with 130.
//!
//! The lock file is written once at the end (and only when its text changed): a killed
//! scheduler leaves committed runs in the store that the next run restores for free.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::Result;
use repro_stages::InputRef;

use crate::executor::{Executor, Job, Outcome, Report};
use crate::fingerprint::Key;
use crate::lock::{LockEntry, LockFile};
use crate::pipeline::Pipeline;
use crate::plan::{self, Decision};
use crate::progress::Reporter;
use crate::project::{FsWorld, Project};
use crate::store::publish;

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
        if self.interrupted {
            s.push_str(" (interrupted)");
        }
        s
    }
}

#[derive(Clone, Debug, PartialEq)]
enum State {
    NotSelected,
    Waiting,
    Queued,
    Running,
    Done,
    Failed,
    /// Not run because an upstream failed or was interrupted.
    Skipped,
}

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

/// Runs the selected members of `p`; the caller holds the project lock.
pub fn run(
    project: &Project,
    p: &Pipeline,
    opts: &RunOptions,
    executor: &dyn Executor,
    reporter: &mut Reporter,
    interrupted: &AtomicBool,
) -> Result<Summary> {
    let n = p.members.len();
    let old_lock = LockFile::load(&project.lock_path())?;
    let mut new_lock = old_lock.clone();
    let world = FsWorld::new(project, &old_lock, &p.profile);
    let ids = plan::identities();
    let (selected, direct) = p
        .select(&opts.targets)
        .map_err(crate::error::EngineError::Usage)?;
    let forced: Vec<bool> = direct.iter().map(|d| *d && opts.force).collect();

    let mut state: Vec<State> = selected
        .iter()
        .map(|s| {
            if *s {
                State::Waiting
            } else {
                State::NotSelected
            }
        })
        .collect();
    let mut digests: Vec<Option<String>> = vec![None; n];
    let mut fps: Vec<Option<String>> = vec![None; n];
    let mut decisions: Vec<Option<Decision>> = vec![None; n];
    let mut keys: HashMap<usize, Key> = HashMap::new();
    // Fingerprints queued or running: a second member with the same key (two stages
    // computing the same thing) waits for the first and is then restored from it.
    let mut inflight: HashSet<String> = HashSet::new();
    let mut queue: VecDeque<usize> = VecDeque::new();
    let mut running: HashMap<usize, Running> = HashMap::new();
    let mut summary = Summary::default();
    let (tx, rx) = channel::<(usize, Report)>();
    let jobs = opts.jobs.max(1);
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mut stopping = false;
    let mut halted = false;
    let mut dirty = true;
    let mut first_pass = true;

    let upstream: Vec<Vec<usize>> = p.members.iter().map(|m| m.upstream()).collect();
    loop {
        if dirty {
            dirty = false;
            let mut newly = 0u64;
            for mi in 0..n {
                if state[mi] != State::Waiting {
                    continue;
                }
                let ups = &upstream[mi];
                if ups
                    .iter()
                    .any(|&u| matches!(state[u], State::Failed | State::Skipped))
                {
                    state[mi] = State::Skipped;
                    continue;
                }
                if !ups.iter().all(|&u| state[u] == State::Done) {
                    continue;
                }
                let e = plan::decide_member(p, mi, &digests, &ids, forced[mi], &world);
                let m = &p.members[mi];
                let fp = e.fingerprint.clone().expect("all upstream done");
                if matches!(e.decision, Decision::Run(_)) && inflight.contains(&fp) {
                    continue;
                }
                match &e.decision {
                    Decision::Fresh => {
                        digests[mi] = e.digest.clone();
                        fps[mi] = Some(fp);
                        state[mi] = State::Done;
                        summary.fresh += 1;
                        reporter.detail(&format!("fresh    {}", m.name));
                    }
                    Decision::Restore(_) => {
                        let Some(manifest) = project.store.manifest(&fp) else {
                            reporter.error(&format!(
                                "FAILED   {}: run {fp} vanished from the store",
                                m.name
                            ));
                            state[mi] = State::Failed;
                            summary.failed += 1;
                            halted |= !opts.keep_going;
                            continue;
                        };
                        let previous = old_lock
                            .entry(&p.profile, &m.name)
                            .map(|e| e.published.clone())
                            .unwrap_or_default();
                        let published = match &m.publish {
                            Some(rel) => {
                                match publish(
                                    &project.dir,
                                    &project.store.out_dir(&fp),
                                    &manifest,
                                    rel,
                                    &previous,
                                ) {
                                    Ok(x) => x,
                                    Err(err) => {
                                        reporter.error(&format!(
                                            "FAILED   {}: publishing: {err:#}",
                                            m.name
                                        ));
                                        state[mi] = State::Failed;
                                        summary.failed += 1;
                                        halted |= !opts.keep_going;
                                        continue;
                                    }
                                }
                            }
                            None => BTreeMap::new(),
                        };
                        new_lock.profile_mut(&p.profile).insert(
                            m.name.clone(),
                            LockEntry {
                                fingerprint: fp.clone(),
                                digest: manifest.digest.clone(),
                                published,
                            },
                        );
                        world.record(&fp, &manifest, m.publish.as_deref());
                        digests[mi] = Some(manifest.digest);
                        fps[mi] = Some(fp);
                        state[mi] = State::Done;
                        summary.restored += 1;
                        reporter.line(&format!(
                            "restore  {}  ({})",
                            m.name,
                            e.decision.explain(p).trim_start_matches("restore: ")
                        ));
                    }
                    Decision::Run(_) => {
                        keys.insert(mi, e.key.clone().expect("decided"));
                        inflight.insert(fp.clone());
                        fps[mi] = Some(fp);
                        state[mi] = State::Queued;
                        queue.push_back(mi);
                        newly += 1;
                    }
                    Decision::Pending { .. } | Decision::NotSelected => {
                        unreachable!("upstream done")
                    }
                }
                decisions[mi] = Some(e.decision);
            }
            if first_pass {
                // Members that will be decided later may run too; count them as they come.
                reporter.begin(newly);
                first_pass = false;
            } else {
                reporter.grow(newly);
            }
        }

        if interrupted.load(Ordering::SeqCst) && !stopping {
            stopping = true;
            if !running.is_empty() {
                reporter.line("interrupted: asking running stages to save a checkpoint and stop");
            }
            executor.stop_all();
        }

        while !stopping && !halted && running.len() < jobs {
            let Some(mi) = queue.pop_front() else { break };
            let m = &p.members[mi];
            let fp = fps[mi].clone().unwrap();
            let held = running.values().map(|r| r.threads).sum();
            let threads = stage_threads(cores, jobs, running.len(), held, queue.len());
            let launched = (|| -> Result<PathBuf> {
                let staging = project.store.new_staging(&fp)?;
                let mut inputs = BTreeMap::new();
                for (name, ups) in &m.inputs {
                    let refs = ups
                        .iter()
                        .map(|&u| InputRef {
                            dir: project.store.out_dir(fps[u].as_ref().unwrap()),
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
                    checkpoint_dir: project.store.checkpoint_dir(&fp),
                    project_dir: project.dir.clone(),
                    download_dir: project.download_dir(),
                };
                executor.start(mi, &job, &staging.join("job.json"), threads, tx.clone())?;
                Ok(staging)
            })();
            match launched {
                Ok(staging) => {
                    state[mi] = State::Running;
                    running.insert(
                        mi,
                        Running {
                            key: keys.remove(&mi).unwrap(),
                            fp,
                            staging,
                            started: Instant::now(),
                            threads,
                        },
                    );
                }
                Err(err) => {
                    inflight.remove(fps[mi].as_ref().unwrap());
                    reporter.error(&format!("FAILED   {}: could not start: {err:#}", m.name));
                    state[mi] = State::Failed;
                    summary.failed += 1;
                    dirty = true;
                    if !opts.keep_going {
                        halted = true;
                    }
                }
            }
        }

        if running.is_empty() && (queue.is_empty() || stopping || halted) && !dirty {
            break;
        }
        if running.is_empty() {
            continue;
        }

        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok((mi, report)) => {
                let m = &p.members[mi];
                match report {
                    Report::Started { pid } => {
                        let why = decisions[mi]
                            .as_ref()
                            .map(|d| d.explain(p))
                            .unwrap_or_default();
                        reporter.started(mi, &m.name, why.trim_start_matches("run: "), pid);
                    }
                    Report::Event(ev) => reporter.event(mi, &m.name, &ev),
                    Report::Done(outcome) => {
                        let r = running.remove(&mi).expect("a running member");
                        inflight.remove(&r.fp);
                        let secs = r.started.elapsed().as_secs_f64();
                        dirty = true;
                        match outcome {
                            Outcome::Success => match commit(project, p, mi, &r, &old_lock) {
                                Ok(entry) => {
                                    if let Some(man) = project.store.manifest(&r.fp) {
                                        world.record(&r.fp, &man, m.publish.as_deref());
                                    }
                                    digests[mi] = Some(entry.digest.clone());
                                    new_lock
                                        .profile_mut(&p.profile)
                                        .insert(m.name.clone(), entry);
                                    state[mi] = State::Done;
                                    summary.ran += 1;
                                    reporter.finished(
                                        mi,
                                        Some(&format!("done     {}  in {secs:.1}s", m.name)),
                                    );
                                }
                                Err(err) => {
                                    let _ = std::fs::remove_dir_all(&r.staging);
                                    reporter.finished(mi, None);
                                    reporter.error(&format!(
                                        "FAILED   {}: committing outputs: {err:#}",
                                        m.name
                                    ));
                                    state[mi] = State::Failed;
                                    summary.failed += 1;
                                    if !opts.keep_going {
                                        halted = true;
                                    }
                                }
                            },
                            Outcome::Interrupted => {
                                let _ = std::fs::remove_dir_all(&r.staging);
                                reporter.finished(
                                    mi,
                                    Some(&format!(
                                        "stopped  {}  after {secs:.1}s (checkpoint saved)",
                                        m.name
                                    )),
                                );
                                state[mi] = State::Skipped;
                                summary.interrupted = true;
                                stopping = true;
                            }
                            Outcome::Failed(msg) => {
                                let _ = std::fs::remove_dir_all(&r.staging);
                                reporter.finished(mi, None);
                                reporter.error(&format!("FAILED   {}: {msg}", m.name));
                                state[mi] = State::Failed;
                                summary.failed += 1;
                                if !opts.keep_going {
                                    halted = true;
                                }
                            }
                        }
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => unreachable!("we hold a sender"),
        }
    }
    reporter.end();
    if interrupted.load(Ordering::SeqCst) {
        summary.interrupted = true;
    }
    summary.skipped = state
        .iter()
        .filter(|s| matches!(s, State::Skipped | State::Waiting | State::Queued))
        .count();

    // Forget members no longer in the pipeline (only when the whole pipeline was run).
    if opts.targets.is_empty() {
        let names: std::collections::HashSet<&str> =
            p.members.iter().map(|m| m.name.as_str()).collect();
        new_lock
            .profile_mut(&p.profile)
            .retain(|k, _| names.contains(k.as_str()));
    }
    if new_lock
        .profiles
        .get(&p.profile)
        .is_some_and(|m| m.is_empty())
    {
        new_lock.profiles.remove(&p.profile);
    }
    if world.rehashed() > 0 {
        reporter.detail(&format!(
            "rehashed {} file(s) whose stat changed since they were last checked",
            world.rehashed()
        ));
    }
    world.save();
    new_lock.save(&project.lock_path())?;
    Ok(summary)
}

/// Commits a successful run: store, publish, checkpoint removal; returns its lock entry.
fn commit(
    project: &Project,
    p: &Pipeline,
    mi: usize,
    r: &Running,
    old_lock: &LockFile,
) -> Result<LockEntry> {
    let m = &p.members[mi];
    let manifest = project.store.commit(&r.fp, &r.staging, &r.key)?;
    let previous = old_lock
        .entry(&p.profile, &m.name)
        .map(|e| e.published.clone())
        .unwrap_or_default();
    let published = match &m.publish {
        Some(rel) => publish(
            &project.dir,
            &project.store.out_dir(&r.fp),
            &manifest,
            rel,
            &previous,
        )?,
        None => BTreeMap::new(),
    };
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
