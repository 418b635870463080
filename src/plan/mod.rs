//! The planner: for each member, Fresh / Restore / Run(reason) / Pending. No I/O of its
//! own: what the store and the lock hold comes through the [`World`] trait, so the truth
//! table below is unit-tested with an in-memory world.
//!
//! | forced | stored run of the current fingerprint | lock entry of the member | decision |
//! |---|---|---|---|
//! | yes | any | any | Run(forced) |
//! | no | present | same fingerprint and digest, published copies intact | **Fresh** |
//! | no | present | same fingerprint and digest, published copies missing or changed | Restore(published copies stale) |
//! | no | present | same fingerprint, another digest or list of published copies (a hand-edited lock) | Restore(lock disagrees): the entry is rewritten |
//! | no | present | other fingerprint | Restore(lock differs): e.g. a reverted param; free |
//! | no | present | none | Restore(not in lock): e.g. run by another profile or lost lock |
//! | no | damaged (a listed file missing or its content changed, or a file the manifest does not list) | any | Run(output damaged): never read |
//! | no | absent | same fingerprint | Run(output missing): the store was cleaned |
//! | no | absent | other fingerprint | Run(changed) |
//! | no | absent | none | Run(never run) |
//!
//! A member whose upstream will run (or is pending) is **Pending**: its key contains the
//! upstream's output digest, which only exists once the upstream has run. The scheduler
//! decides it again at that point with [`decide_member`] (dynamic re-planning); if the
//! upstream reproduced identical bytes, it comes out Fresh (early cutoff).
//!
//! [`why`] explains a decision in more detail: what changed in a member's key since its
//! recorded run (`repro why`).

pub mod why;

use std::collections::{BTreeMap, HashMap};

use repro_stages::Kind;

use crate::fingerprint::{InputKey, Key, KindIdentity};
use crate::lock::LockEntry;
use crate::pipeline::Pipeline;

/// What the store holds for a fingerprint.
#[derive(Clone, Debug, PartialEq)]
pub enum Stored {
    Absent,
    /// A manifest exists but a listed file is missing or its content differs from the
    /// manifest's hash, or `out/` holds a file the manifest does not list
    /// ([`crate::strays`]): the run must not be read (nor restored from).
    Damaged,
    /// Present, with its output content digest.
    Present {
        digest: String,
    },
}

/// Read access to the store and the lock (implemented over the file system by the
/// runner, in memory by tests).
pub trait World {
    /// What the store holds for `fp`, judged by content (see [`Stored`]).
    fn stored(&self, fp: &str) -> Stored;
    fn lock_entry(&self, member: &str) -> Option<LockEntry>;
    /// Whether the published copies of run `fp` under `rel` are intact (the content hashes
    /// of the run's manifest).
    fn published_ok(&self, fp: &str, rel: &str) -> bool;
    /// Whether lock entry `entry` of stored run `fp` says what the store says: the run's
    /// output digest, and (published under `rel`) the hashes of its content files as
    /// copies there.
    fn lock_agrees(&self, fp: &str, entry: &LockEntry, rel: Option<&str>) -> bool;
    /// The key of stored run `fp` (its `key.json`), if the store still holds it.
    fn stored_key(&self, fp: &str) -> Option<Key>;
}

#[derive(Clone, Debug, PartialEq)]
pub enum RunReason {
    Forced,
    NeverRun,
    /// The key differs from the one recorded in the lock (`why` shows how).
    Changed {
        previous: String,
    },
    OutputMissing,
    /// The stored run is incomplete or its content changed.
    OutputDamaged,
}

#[derive(Clone, Debug, PartialEq)]
pub enum RestoreReason {
    NotInLock,
    LockDiffers {
        previous: String,
    },
    PublishedStale,
    /// The lock's entry has the run's fingerprint but another digest or list of published
    /// copies than the store's (a hand-edited lock): restoring rewrites it.
    LockDisagrees,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    Fresh,
    Restore(RestoreReason),
    Run(RunReason),
    /// Waits for this upstream member (index) to run.
    Pending {
        upstream: usize,
    },
    /// Not among the targets.
    NotSelected,
}

impl Decision {
    pub fn label(&self) -> &'static str {
        match self {
            Decision::Fresh => "fresh",
            Decision::Restore(_) => "restore",
            Decision::Run(_) => "run",
            Decision::Pending { .. } => "pending",
            Decision::NotSelected => "not selected",
        }
    }

    /// A one-line explanation (member names resolved through `p`).
    pub fn explain(&self, p: &Pipeline) -> String {
        match self {
            Decision::Fresh => "fresh".into(),
            Decision::Restore(RestoreReason::NotInLock) => {
                "restore: in the store, not in the lock".into()
            }
            Decision::Restore(RestoreReason::LockDiffers { .. }) => {
                "restore: an earlier run with the same key is in the store".into()
            }
            Decision::Restore(RestoreReason::PublishedStale) => {
                "restore: published copies missing or changed".into()
            }
            Decision::Restore(RestoreReason::LockDisagrees) => {
                "restore: the lock's digest or published hashes differ from the store's".into()
            }
            Decision::Run(RunReason::Forced) => "run: forced".into(),
            Decision::Run(RunReason::NeverRun) => "run: never run".into(),
            Decision::Run(RunReason::Changed { .. }) => "run: key changed".into(),
            Decision::Run(RunReason::OutputMissing) => "run: outputs missing from the store".into(),
            Decision::Run(RunReason::OutputDamaged) => {
                "run: outputs missing or changed in the store".into()
            }
            Decision::Pending { upstream } => {
                format!("pending: waits for {}", p.members[*upstream].name)
            }
            Decision::NotSelected => "not selected".into(),
        }
    }
}

/// The decision for one member given its current fingerprint. The truth table of the
/// module doc; `lock_agrees` is [`World::lock_agrees`] for the lock entry.
pub fn decide(
    fp: &str,
    forced: bool,
    stored: &Stored,
    locked: Option<&LockEntry>,
    published_ok: bool,
    lock_agrees: bool,
) -> Decision {
    if forced {
        return Decision::Run(RunReason::Forced);
    }
    match (stored, locked) {
        (Stored::Present { .. }, Some(l)) if l.fingerprint == fp => {
            if !lock_agrees {
                Decision::Restore(RestoreReason::LockDisagrees)
            } else if published_ok {
                Decision::Fresh
            } else {
                Decision::Restore(RestoreReason::PublishedStale)
            }
        }
        (Stored::Present { .. }, Some(l)) => Decision::Restore(RestoreReason::LockDiffers {
            previous: l.fingerprint.clone(),
        }),
        (Stored::Present { .. }, None) => Decision::Restore(RestoreReason::NotInLock),
        (Stored::Damaged, _) => Decision::Run(RunReason::OutputDamaged),
        (Stored::Absent, Some(l)) if l.fingerprint == fp => Decision::Run(RunReason::OutputMissing),
        (Stored::Absent, Some(l)) => Decision::Run(RunReason::Changed {
            previous: l.fingerprint.clone(),
        }),
        (Stored::Absent, None) => Decision::Run(RunReason::NeverRun),
    }
}

/// The code identity of every kind, computed once per command.
pub fn identities() -> HashMap<Kind, KindIdentity> {
    Kind::ALL
        .iter()
        .map(|&k| (k, KindIdentity::of(k)))
        .collect()
}

/// The key of member `mi`, given the output digests of its upstream members (None when
/// an upstream's digest is not known yet).
pub fn member_key(
    p: &Pipeline,
    mi: usize,
    digests: &[Option<String>],
    ids: &HashMap<Kind, KindIdentity>,
) -> Result<Key, usize> {
    let m = &p.members[mi];
    let mut inputs = BTreeMap::new();
    for (name, ups) in &m.inputs {
        let mut v = Vec::with_capacity(ups.len());
        for &u in ups {
            let Some(d) = &digests[u] else { return Err(u) };
            v.push(InputKey {
                digest: d.clone(),
                coords: p.members[u].coords.clone(),
            });
        }
        inputs.insert(name.clone(), v);
    }
    let mut key = Key::new(m.kind, &ids[&m.kind], &m.params, m.seed, &p.profile, inputs);
    key.code_files = m.code_files.clone();
    Ok(key)
}

/// One member's plan entry.
#[derive(Clone, Debug)]
pub struct Entry {
    pub decision: Decision,
    /// Known unless pending or not selected.
    pub key: Option<Key>,
    pub fingerprint: Option<String>,
    /// The output digest when it is known without running (fresh or restore).
    pub digest: Option<String>,
}

/// Decides member `mi` once the digests of its upstream members are known.
pub fn decide_member(
    p: &Pipeline,
    mi: usize,
    digests: &[Option<String>],
    ids: &HashMap<Kind, KindIdentity>,
    forced: bool,
    world: &dyn World,
) -> Entry {
    let key = match member_key(p, mi, digests, ids) {
        Ok(k) => k,
        Err(up) => {
            return Entry {
                decision: Decision::Pending { upstream: up },
                key: None,
                fingerprint: None,
                digest: None,
            }
        }
    };
    let fp = key.fingerprint();
    let m = &p.members[mi];
    let stored = world.stored(&fp);
    let locked = world.lock_entry(&m.name);
    let published_ok = match (&m.publish, &stored) {
        (Some(rel), Stored::Present { .. }) => world.published_ok(&fp, rel),
        _ => true,
    };
    let lock_agrees = match (&locked, &stored) {
        (Some(l), Stored::Present { .. }) if l.fingerprint == fp => {
            world.lock_agrees(&fp, l, m.publish.as_deref())
        }
        _ => true,
    };
    let decision = decide(
        &fp,
        forced,
        &stored,
        locked.as_ref(),
        published_ok,
        lock_agrees,
    );
    let digest = match (&decision, &stored) {
        (Decision::Fresh | Decision::Restore(_), Stored::Present { digest }) => {
            Some(digest.clone())
        }
        _ => None,
    };
    Entry {
        decision,
        key: Some(key),
        fingerprint: Some(fp),
        digest,
    }
}

/// The static plan of the selected members (what `status` and `--dry-run` show).
pub fn plan(
    p: &Pipeline,
    selected: &[bool],
    forced: &[bool],
    ids: &HashMap<Kind, KindIdentity>,
    world: &dyn World,
) -> Vec<Entry> {
    let mut digests: Vec<Option<String>> = vec![None; p.members.len()];
    let mut out = Vec::with_capacity(p.members.len());
    for mi in 0..p.members.len() {
        if !selected[mi] {
            out.push(Entry {
                decision: Decision::NotSelected,
                key: None,
                fingerprint: None,
                digest: None,
            });
            continue;
        }
        let e = decide_member(p, mi, &digests, ids, forced[mi], world);
        digests[mi] = e.digest.clone();
        out.push(e);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::{HashMap, HashSet};
    use std::path::Path;

    use crate::spec::Spec;

    pub(super) fn entry(fp: &str) -> LockEntry {
        LockEntry {
            fingerprint: fp.into(),
            digest: "d".into(),
            published: Default::default(),
        }
    }

    #[test]
    fn truth_table() {
        let present = Stored::Present { digest: "d".into() };
        let same = entry("fp");
        let other = entry("old");
        use Decision::*;
        let cases: Vec<(bool, &Stored, Option<&LockEntry>, bool, Decision)> = vec![
            (true, &present, Some(&same), true, Run(RunReason::Forced)),
            (true, &Stored::Absent, None, true, Run(RunReason::Forced)),
            (false, &present, Some(&same), true, Fresh),
            (
                false,
                &present,
                Some(&same),
                false,
                Restore(RestoreReason::PublishedStale),
            ),
            (
                false,
                &present,
                Some(&other),
                true,
                Restore(RestoreReason::LockDiffers {
                    previous: "old".into(),
                }),
            ),
            (
                false,
                &present,
                None,
                true,
                Restore(RestoreReason::NotInLock),
            ),
            (
                false,
                &Stored::Damaged,
                Some(&same),
                true,
                Run(RunReason::OutputDamaged),
            ),
            (
                false,
                &Stored::Damaged,
                None,
                true,
                Run(RunReason::OutputDamaged),
            ),
            (
                false,
                &Stored::Absent,
                Some(&same),
                true,
                Run(RunReason::OutputMissing),
            ),
            (
                false,
                &Stored::Absent,
                Some(&other),
                true,
                Run(RunReason::Changed {
                    previous: "old".into(),
                }),
            ),
            (false, &Stored::Absent, None, true, Run(RunReason::NeverRun)),
        ];
        for (forced, stored, locked, pub_ok, want) in cases {
            assert_eq!(
                decide("fp", forced, stored, locked, pub_ok, true),
                want,
                "{forced} {stored:?} {locked:?} {pub_ok}"
            );
        }
        // A lock entry that disagrees with the store is rewritten, stale copies or not.
        for pub_ok in [true, false] {
            assert_eq!(
                decide("fp", false, &present, Some(&same), pub_ok, false),
                Restore(RestoreReason::LockDisagrees)
            );
        }
        assert_eq!(
            decide("fp", true, &present, Some(&same), true, false),
            Run(RunReason::Forced)
        );
    }

    /// A store and a lock in memory.
    #[derive(Default)]
    pub(super) struct Mem {
        pub(super) runs: HashMap<String, String>,
        pub(super) lock: HashMap<String, LockEntry>,
        pub(super) damaged: HashSet<String>,
        pub(super) keys: HashMap<String, Key>,
        asked: RefCell<Vec<String>>,
    }
    impl World for Mem {
        fn stored(&self, fp: &str) -> Stored {
            self.asked.borrow_mut().push(fp.to_string());
            if self.damaged.contains(fp) {
                return Stored::Damaged;
            }
            match self.runs.get(fp) {
                Some(d) => Stored::Present { digest: d.clone() },
                None => Stored::Absent,
            }
        }
        fn lock_entry(&self, member: &str) -> Option<LockEntry> {
            self.lock.get(member).cloned()
        }
        fn published_ok(&self, _: &str, _: &str) -> bool {
            true
        }
        fn lock_agrees(&self, fp: &str, entry: &LockEntry, _: Option<&str>) -> bool {
            self.runs.get(fp) == Some(&entry.digest)
        }
        fn stored_key(&self, fp: &str) -> Option<Key> {
            self.keys.get(fp).cloned()
        }
    }

    pub(super) fn pipeline(text: &str) -> Pipeline {
        let f = Path::new("pipeline.yaml");
        Pipeline::build(&Spec::parse(text, f).unwrap(), text, f, "default").unwrap()
    }

    pub(super) const CHAIN: &str = "stages:\n  a:\n    kind: probe\n    params: { value: x }\n  b:\n    kind: probe\n    inputs: { up: a }\n  c:\n    kind: probe\n    inputs: { up: b }\n  d:\n    kind: probe\n";

    /// Commits every member of the plan as if it had run, with digest = "out-" + name.
    pub(super) fn run_all(p: &Pipeline, w: &mut Mem, ids: &HashMap<Kind, KindIdentity>) {
        let n = p.members.len();
        let mut digests = vec![None; n];
        for mi in 0..n {
            let e = decide_member(p, mi, &digests, ids, false, w);
            let fp = e.fingerprint.unwrap();
            w.keys.insert(fp.clone(), e.key.unwrap());
            let d = format!("out-{}", p.members[mi].name);
            w.runs.insert(fp.clone(), d.clone());
            w.lock.insert(
                p.members[mi].name.clone(),
                LockEntry {
                    fingerprint: fp,
                    digest: d.clone(),
                    published: Default::default(),
                },
            );
            digests[mi] = Some(d);
        }
    }

    #[test]
    fn plan_after_a_run_is_all_fresh_and_a_change_marks_downstream_pending() {
        let ids = identities();
        let p = pipeline(CHAIN);
        let mut w = Mem::default();
        let all = vec![true; p.members.len()];
        let no = vec![false; p.members.len()];
        let first = plan(&p, &all, &no, &ids, &w);
        assert!(matches!(
            first[0].decision,
            Decision::Run(RunReason::NeverRun)
        ));
        assert_eq!(first[1].decision, Decision::Pending { upstream: 0 });
        run_all(&p, &mut w, &ids);
        assert!(plan(&p, &all, &no, &ids, &w)
            .iter()
            .all(|e| e.decision == Decision::Fresh));

        let p2 = pipeline(&CHAIN.replace("value: x", "value: y"));
        let e = plan(&p2, &all, &no, &ids, &w);
        assert!(matches!(
            e[0].decision,
            Decision::Run(RunReason::Changed { .. })
        ));
        assert_eq!(e[1].decision, Decision::Pending { upstream: 0 });
        assert_eq!(e[2].decision, Decision::Pending { upstream: 1 });
        assert_eq!(
            e[3].decision,
            Decision::Fresh,
            "unrelated stage stays fresh"
        );

        // Once `a` reran with identical bytes, `b` is decided again and is fresh.
        let mut digests = vec![None; 4];
        digests[0] = Some("out-a".to_string());
        assert_eq!(
            decide_member(&p2, 1, &digests, &ids, false, &w).decision,
            Decision::Fresh
        );
        digests[0] = Some("other bytes".to_string());
        assert!(matches!(
            decide_member(&p2, 1, &digests, &ids, false, &w).decision,
            Decision::Run(_)
        ));
    }

    #[test]
    fn forced_and_unselected_members() {
        let ids = identities();
        let p = pipeline(CHAIN);
        let mut w = Mem::default();
        run_all(&p, &mut w, &ids);
        let (sel, direct) = p.select(&["b".to_string()]).unwrap();
        let e = plan(&p, &sel, &direct, &ids, &w);
        assert_eq!(e[0].decision, Decision::Fresh);
        assert_eq!(e[1].decision, Decision::Run(RunReason::Forced));
        assert_eq!(e[2].decision, Decision::NotSelected);
        assert_eq!(e[3].decision, Decision::NotSelected);
        w.damaged.insert(e[0].fingerprint.clone().unwrap());
        let e = plan(&p, &sel, &[false; 4], &ids, &w);
        assert_eq!(e[0].decision, Decision::Run(RunReason::OutputDamaged));
    }

    #[test]
    fn a_version_bump_touches_only_that_kind() {
        let ids = identities();
        let p = pipeline(CHAIN);
        let mut w = Mem::default();
        run_all(&p, &mut w, &ids);
        let all = vec![true; 4];
        let mut bumped = ids.clone();
        bumped.get_mut(&Kind::Train).unwrap().version += 1;
        assert!(plan(&p, &all, &[false; 4], &bumped, &w)
            .iter()
            .all(|e| e.decision == Decision::Fresh));
        bumped.get_mut(&Kind::Probe).unwrap().version += 1;
        assert!(plan(&p, &all, &[false; 4], &bumped, &w)
            .iter()
            .all(|e| e.decision != Decision::Fresh));
    }
}
