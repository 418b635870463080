//! Why a member is not fresh, in more detail than its [`Decision`] (`repro why`): the
//! differences between the key it has now and the key of its last recorded run, or what
//! prevents comparing them.
//!
//! While an upstream member must rerun, the key compared is the one the member would have if
//! the upstream reproduced the bytes recorded in the lock: a member whose own inputs did not
//! change shows no difference and is fresh again after an identical upstream rerun.

use std::collections::HashMap;

use repro_stages::Kind;

use super::{member_key, Decision, Entry, RestoreReason, RunReason, World};
use crate::fingerprint::{KeyChange, KindIdentity};
use crate::pipeline::Pipeline;

/// What `repro why` says beyond a member's decision.
#[derive(Clone, Debug, PartialEq)]
pub enum WhyReason {
    /// No run of the member is recorded in the lock.
    NoLockEntry,
    /// The outputs of the recorded run (fingerprint) are missing or damaged in the store.
    OutputsGone { run: String },
    /// The key of the recorded run (fingerprint) is no longer in the store.
    RecordedKeyGone { run: String },
    /// The key depends on the output of this upstream member, which has not run yet.
    UpstreamNotRun { upstream: usize },
    /// The key is the recorded one; the member waits for this upstream member and is fresh
    /// again if it reproduces its recorded bytes.
    UnchangedItself { upstream: usize },
    /// The key is the recorded one (e.g. a forced run).
    Unchanged,
    /// What changed in the key since the recorded run.
    KeyChanged(Vec<KeyChange>),
}

/// Why member `mi` has the decision of `entries[mi]` (the plan of every member), or `None`
/// when the decision says it all (fresh, or only its published copies need restoring).
pub fn why(
    p: &Pipeline,
    mi: usize,
    entries: &[Entry],
    ids: &HashMap<Kind, KindIdentity>,
    world: &dyn World,
) -> Option<WhyReason> {
    let decision = &entries[mi].decision;
    if matches!(
        decision,
        Decision::Fresh
            | Decision::Restore(RestoreReason::PublishedStale | RestoreReason::LockDisagrees)
    ) {
        return None;
    }
    let Some(previous) = world.lock_entry(&p.members[mi].name) else {
        return Some(WhyReason::NoLockEntry);
    };
    let run = previous.fingerprint;
    if matches!(
        decision,
        Decision::Run(RunReason::OutputMissing | RunReason::OutputDamaged)
    ) {
        return Some(WhyReason::OutputsGone { run });
    }
    let Some(old) = world.stored_key(&run) else {
        return Some(WhyReason::RecordedKeyGone { run });
    };
    let key = match &entries[mi].key {
        Some(k) => k.clone(),
        None => match member_key(p, mi, &recorded_digests(p, entries, world), ids) {
            Ok(k) => k,
            Err(upstream) => return Some(WhyReason::UpstreamNotRun { upstream }),
        },
    };
    let diff = key.diff(&old);
    Some(match (diff.is_empty(), decision) {
        (false, _) => WhyReason::KeyChanged(diff),
        (true, Decision::Pending { upstream }) => WhyReason::UnchangedItself {
            upstream: *upstream,
        },
        (true, _) => WhyReason::Unchanged,
    })
}

/// Every member's output digest: known from the plan, else the one recorded in the lock.
fn recorded_digests(p: &Pipeline, entries: &[Entry], world: &dyn World) -> Vec<Option<String>> {
    p.members
        .iter()
        .zip(entries)
        .map(|(m, e)| {
            e.digest
                .clone()
                .or_else(|| world.lock_entry(&m.name).map(|l| l.digest))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::tests::{pipeline, run_all, Mem, CHAIN};
    use super::super::{identities, plan};
    use super::*;
    use crate::fingerprint::{InputChange, KeyChange};

    /// The reason of every member of `p` in world `w`.
    fn reasons(p: &Pipeline, w: &Mem) -> Vec<Option<WhyReason>> {
        let ids = identities();
        let n = p.members.len();
        let entries = plan(p, &vec![true; n], &vec![false; n], &ids, w);
        (0..n).map(|mi| why(p, mi, &entries, &ids, w)).collect()
    }

    #[test]
    fn members_never_run_have_no_lock_entry() {
        let p = pipeline(CHAIN);
        let r = reasons(&p, &Mem::default());
        assert!(r.iter().all(|r| *r == Some(WhyReason::NoLockEntry)));
    }

    #[test]
    fn fresh_members_need_no_reason() {
        let p = pipeline(CHAIN);
        let mut w = Mem::default();
        run_all(&p, &mut w, &identities());
        assert!(reasons(&p, &w).iter().all(Option::is_none));
    }

    #[test]
    fn a_changed_param_is_named_and_downstream_is_unchanged_itself() {
        let p = pipeline(CHAIN);
        let mut w = Mem::default();
        run_all(&p, &mut w, &identities());
        let r = reasons(&pipeline(&CHAIN.replace("value: x", "value: y")), &w);
        assert_eq!(
            r[0],
            Some(WhyReason::KeyChanged(vec![KeyChange::Param {
                name: "value".into(),
                old: Some("\"x\"".into()),
                new: Some("\"y\"".into()),
            }]))
        );
        assert_eq!(r[1], Some(WhyReason::UnchangedItself { upstream: 0 }));
        assert_eq!(r[2], Some(WhyReason::UnchangedItself { upstream: 1 }));
        assert_eq!(r[3], None);
    }

    #[test]
    fn a_version_bump_is_named_on_the_members_of_that_kind_only() {
        let p = pipeline(CHAIN);
        let mut w = Mem::default();
        let ids = identities();
        run_all(&p, &mut w, &ids);
        let with_version = |kind: Kind, version: u32| {
            let mut bumped = ids.clone();
            bumped.get_mut(&kind).unwrap().version = version;
            let n = p.members.len();
            let entries = plan(&p, &vec![true; n], &vec![false; n], &bumped, &w);
            (0..n)
                .map(|mi| why(&p, mi, &entries, &bumped, &w))
                .collect::<Vec<_>>()
        };
        assert!(with_version(Kind::Train, 99).iter().all(Option::is_none));
        let old = ids[&Kind::Probe].version;
        let changed = Some(WhyReason::KeyChanged(vec![KeyChange::Version {
            kind: "probe".into(),
            old,
            new: 99,
        }]));
        assert!(with_version(Kind::Probe, 99).iter().all(|r| *r == changed));
        assert_eq!(
            KeyChange::Version {
                kind: "probe".into(),
                old,
                new: 99
            }
            .to_string(),
            format!("version of probe: {old} -> 99")
        );
    }

    #[test]
    fn a_changed_upstream_output_is_an_input_change() {
        let p = pipeline(CHAIN);
        let mut w = Mem::default();
        run_all(&p, &mut w, &identities());
        w.lock.get_mut("a").unwrap().digest = "other bytes".into();
        let a_fp = w.lock["a"].fingerprint.clone();
        w.runs.insert(a_fp, "other bytes".into());
        let r = reasons(&p, &w);
        assert_eq!(
            r[1],
            Some(WhyReason::KeyChanged(vec![KeyChange::Input {
                input: "up".into(),
                change: InputChange::Digest,
            }]))
        );
    }

    #[test]
    fn missing_outputs_and_keys_are_reported() {
        let p = pipeline(CHAIN);
        let mut w = Mem::default();
        run_all(&p, &mut w, &identities());
        let d_fp = w.lock["d"].fingerprint.clone();
        w.runs.remove(&d_fp);
        assert_eq!(
            reasons(&p, &w)[3],
            Some(WhyReason::OutputsGone { run: d_fp.clone() })
        );
        let p2 = pipeline(&CHAIN.replace("value: x", "value: y"));
        let a_fp = w.lock["a"].fingerprint.clone();
        w.keys.remove(&a_fp);
        assert_eq!(
            reasons(&p2, &w)[0],
            Some(WhyReason::RecordedKeyGone { run: a_fp })
        );
    }

    #[test]
    fn an_upstream_without_a_run_leaves_the_key_unknown() {
        let p = pipeline(CHAIN);
        let mut w = Mem::default();
        run_all(&p, &mut w, &identities());
        let a = w.lock.remove("a").unwrap();
        w.runs.remove(&a.fingerprint);
        assert_eq!(
            reasons(&p, &w)[1],
            Some(WhyReason::UpstreamNotRun { upstream: 0 })
        );
    }
}
