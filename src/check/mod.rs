//! `repro check`: did the runs of this project reproduce a reference's, bit for bit?
//!
//! The reference is another run's `pipeline.lock` ([`reference`]): by default the one
//! committed at git `HEAD`, which a `repro run` leaves as it was while it rewrites the working
//! lock, so `repro run && repro check` tells a reviewer whether their run gave the committed
//! bytes. [`compare`] sets, for every member of the current plan of one profile, what this
//! project holds ([`Here`]: its current fingerprint and the digest of its stored outputs)
//! beside the reference's entry of the same name. No I/O here: the command line gathers both
//! sides and prints the [`Report`].
//!
//! | here | reference entry | verdict |
//! |---|---|---|
//! | no stored outputs for its current key | any | **not run** |
//! | ran | none | **not comparable**: not in the reference |
//! | ran | same fingerprint, same digest | **reproduced** bit for bit |
//! | ran | same fingerprint, other digest | **differs**: the same code, params, seed and input bytes gave other bytes |
//! | ran | other fingerprint; an input's bytes differ from the reference's | **not comparable**: downstream of a difference |
//! | ran | other fingerprint; every input as in the reference | **not comparable**: its own key changed (code, params, seed, kind version, numeric library or backend); said with it: whether its output bytes are still the reference's |
//!
//! Only **differs** fails a check. A changed key is another experiment, which the reference
//! can neither confirm nor refute; but when its outputs are the reference's bytes anyway
//! (code that changed without changing what this member computes, as a new option left at
//! its default), the check says so, so that a lock made by older code still tells a
//! reviewer whether the results moved; a member not run here has nothing to compare (so a run of
//! one target can be checked for what it ran), and is counted apart, never as reproduced.
//!
//! Published tables ([`changed_tables`]): every CSV under a `tables/` folder that a member
//! publishes, whose content hash here differs from the reference's (whatever the member's
//! verdict: a table downstream of a difference is where the difference shows), is compared
//! cell by cell by [`table::diff`].

pub mod reference;
pub mod table;

use std::collections::{BTreeMap, BTreeSet};

use crate::lock::LockEntry;

/// What this project holds for one member of the plan.
#[derive(Clone, Debug, PartialEq)]
pub enum Here {
    /// The store holds the outputs of its current key.
    Ran {
        fingerprint: String,
        /// The outputs' content digest.
        digest: String,
        /// Project-relative path -> SHA-256 of each content file the member publishes.
        published: BTreeMap<String, String>,
    },
    /// The store holds no outputs for its current key (or the key is not known yet, an
    /// upstream member not having run); `reason` as the planner says it.
    NotRun { reason: String },
}

/// One member of the plan, in plan order.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    pub name: String,
    /// Indices of the members it reads, into the same list.
    pub upstream: Vec<usize>,
    pub here: Here,
}

/// Why a member that ran cannot be compared with the reference.
#[derive(Clone, Debug, PartialEq)]
pub enum NotComparable {
    /// The reference has no entry of that name.
    NotInReference,
    /// The outputs of this upstream member (an index) differ from the reference's, so this
    /// member's key does too.
    InputDiffers { upstream: usize },
    /// Its inputs are the reference's, so its own key changed; `reference` is the
    /// reference's fingerprint, `same_bytes` whether the outputs' digest is the reference's
    /// all the same.
    KeyChanged { reference: String, same_bytes: bool },
}

/// The outcome for one member.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    Reproduced,
    /// Same fingerprint, other output digest.
    Differs {
        fingerprint: String,
        here: String,
        reference: String,
    },
    NotComparable(NotComparable),
    NotRun {
        reason: String,
    },
}

/// The verdict of every member (parallel to the members compared), and the members of the
/// reference's profile that the plan does not have.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub verdicts: Vec<Verdict>,
    pub only_in_reference: Vec<String>,
}

/// How many members got each verdict.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub members: usize,
    pub reproduced: usize,
    pub differ: usize,
    pub not_comparable: usize,
    /// Of the not comparable members, those whose key changed but whose output bytes are
    /// the reference's.
    pub same_bytes: usize,
    pub not_run: usize,
}

impl Counts {
    /// `check: 959 of 963 members reproduced bit for bit, 2 differ, 2 not comparable`
    /// (the counts that are zero left out, but the first).
    pub fn line(&self) -> String {
        let mut s = format!(
            "check: {} of {} members reproduced bit for bit",
            self.reproduced, self.members
        );
        if self.differ > 0 {
            let verb = if self.differ == 1 {
                "differs"
            } else {
                "differ"
            };
            s.push_str(&format!(", {} {verb}", self.differ));
        }
        if self.not_comparable > 0 {
            s.push_str(&format!(", {} not comparable", self.not_comparable));
            if self.same_bytes > 0 {
                s.push_str(&format!(
                    " ({} of them with the reference's bytes under a changed key)",
                    self.same_bytes
                ));
            }
        }
        if self.not_run > 0 {
            s.push_str(&format!(", {} not run", self.not_run));
        }
        s
    }
}

impl Report {
    pub fn counts(&self) -> Counts {
        let mut c = Counts {
            members: self.verdicts.len(),
            ..Counts::default()
        };
        for v in &self.verdicts {
            match v {
                Verdict::Reproduced => c.reproduced += 1,
                Verdict::Differs { .. } => c.differ += 1,
                Verdict::NotComparable(why) => {
                    c.not_comparable += 1;
                    if matches!(
                        why,
                        NotComparable::KeyChanged {
                            same_bytes: true,
                            ..
                        }
                    ) {
                        c.same_bytes += 1;
                    }
                }
                Verdict::NotRun { .. } => c.not_run += 1,
            }
        }
        c
    }

    /// Whether every member that can be compared agrees with the reference.
    pub fn passed(&self) -> bool {
        self.counts().differ == 0
    }
}

/// The verdict of every member against `reference` (the reference lock's entries of the
/// profile): the truth table of the module doc.
pub fn compare(members: &[Member], reference: &BTreeMap<String, LockEntry>) -> Report {
    let verdicts = members
        .iter()
        .map(|m| verdict(members, m, reference))
        .collect();
    let names: BTreeSet<&str> = members.iter().map(|m| m.name.as_str()).collect();
    let only_in_reference = reference
        .keys()
        .filter(|k| !names.contains(k.as_str()))
        .cloned()
        .collect();
    Report {
        verdicts,
        only_in_reference,
    }
}

fn verdict(members: &[Member], m: &Member, reference: &BTreeMap<String, LockEntry>) -> Verdict {
    let (fingerprint, digest) = match &m.here {
        Here::NotRun { reason } => {
            return Verdict::NotRun {
                reason: reason.clone(),
            }
        }
        Here::Ran {
            fingerprint,
            digest,
            ..
        } => (fingerprint, digest),
    };
    let Some(theirs) = reference.get(&m.name) else {
        return Verdict::NotComparable(NotComparable::NotInReference);
    };
    if &theirs.fingerprint == fingerprint {
        return if &theirs.digest == digest {
            Verdict::Reproduced
        } else {
            Verdict::Differs {
                fingerprint: fingerprint.clone(),
                here: digest.clone(),
                reference: theirs.digest.clone(),
            }
        };
    }
    let input_differs = m.upstream.iter().copied().find(|&u| {
        let up = &members[u];
        match (&up.here, reference.get(&up.name)) {
            (Here::Ran { digest, .. }, Some(e)) => digest != &e.digest,
            _ => true,
        }
    });
    Verdict::NotComparable(match input_differs {
        Some(upstream) => NotComparable::InputDiffers { upstream },
        None => NotComparable::KeyChanged {
            reference: theirs.fingerprint.clone(),
            same_bytes: &theirs.digest == digest,
        },
    })
}

/// Whether a published path is a table `check` compares cell by cell: a CSV file under a
/// `tables/` folder.
pub fn is_table(path: &str) -> bool {
    path.ends_with(".csv") && path.split('/').rev().skip(1).any(|dir| dir == "tables")
}

/// How a published table differs between the reference and here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TableChange {
    /// Both publish it, with other bytes.
    Changed,
    /// Only this project's run publishes it.
    OnlyHere,
    /// Only the reference lists it.
    OnlyInReference,
}

/// A published table of member `member` (an index) at project-relative `path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangedTable {
    pub member: usize,
    pub path: String,
    pub change: TableChange,
}

/// The published tables ([`is_table`]) whose bytes differ between the reference and here,
/// for the members that ran here and have a reference entry, in plan then path order.
pub fn changed_tables(
    members: &[Member],
    reference: &BTreeMap<String, LockEntry>,
) -> Vec<ChangedTable> {
    let mut out = Vec::new();
    for (mi, m) in members.iter().enumerate() {
        let (Here::Ran { published, .. }, Some(theirs)) = (&m.here, reference.get(&m.name)) else {
            continue;
        };
        let paths: BTreeSet<&String> = published
            .keys()
            .chain(theirs.published.keys())
            .filter(|p| is_table(p))
            .collect();
        for path in paths {
            let change = match (published.get(path), theirs.published.get(path)) {
                (Some(a), Some(b)) if a == b => continue,
                (Some(_), Some(_)) => TableChange::Changed,
                (Some(_), None) => TableChange::OnlyHere,
                (None, _) => TableChange::OnlyInReference,
            };
            out.push(ChangedTable {
                member: mi,
                path: path.clone(),
                change,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ran(fp: &str, digest: &str) -> Here {
        Here::Ran {
            fingerprint: fp.into(),
            digest: digest.into(),
            published: BTreeMap::new(),
        }
    }

    fn member(name: &str, upstream: &[usize], here: Here) -> Member {
        Member {
            name: name.into(),
            upstream: upstream.to_vec(),
            here,
        }
    }

    fn entry(fp: &str, digest: &str) -> LockEntry {
        LockEntry {
            fingerprint: fp.into(),
            digest: digest.into(),
            published: BTreeMap::new(),
        }
    }

    #[test]
    fn truth_table() {
        // a -> b -> c; a -> d; e alone; f not run; g new.
        let members = vec![
            member("a", &[], ran("fa", "da")),
            member("b", &[0], ran("fb", "db")),
            member("c", &[1], ran("fc2", "dc")),
            member("d", &[0], ran("fd2", "dd")),
            member("e", &[], ran("fe", "de-here")),
            member(
                "f",
                &[],
                Here::NotRun {
                    reason: "run: never run".into(),
                },
            ),
            member("g", &[], ran("fg", "dg")),
        ];
        let reference: BTreeMap<String, LockEntry> = [
            ("a", entry("fa", "da")),
            ("b", entry("fb", "db-theirs")),
            ("c", entry("fc", "dc")),
            ("d", entry("fd", "dd")),
            ("e", entry("fe", "de-theirs")),
            ("f", entry("ff", "df")),
            ("gone", entry("fx", "dx")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let r = compare(&members, &reference);
        use Verdict::*;
        assert_eq!(
            r.verdicts,
            vec![
                Reproduced,
                Differs {
                    fingerprint: "fb".into(),
                    here: "db".into(),
                    reference: "db-theirs".into()
                },
                // b's bytes differ, so c's key does: downstream of the difference.
                NotComparable(super::NotComparable::InputDiffers { upstream: 1 }),
                // a is the reference's, so d's own key changed; its bytes did not.
                NotComparable(super::NotComparable::KeyChanged {
                    reference: "fd".into(),
                    same_bytes: true,
                }),
                Differs {
                    fingerprint: "fe".into(),
                    here: "de-here".into(),
                    reference: "de-theirs".into()
                },
                NotRun {
                    reason: "run: never run".into()
                },
                NotComparable(super::NotComparable::NotInReference),
            ]
        );
        assert_eq!(r.only_in_reference, ["gone"]);
        let c = r.counts();
        assert_eq!(
            c,
            Counts {
                members: 7,
                reproduced: 1,
                differ: 2,
                not_comparable: 3,
                same_bytes: 1,
                not_run: 1
            }
        );
        assert!(!r.passed());
        assert_eq!(
            c.line(),
            "check: 1 of 7 members reproduced bit for bit, 2 differ, 3 not comparable (1 of them \
             with the reference's bytes under a changed key), 1 not run"
        );
    }

    #[test]
    fn an_input_that_changed_key_but_kept_its_bytes_is_no_difference() {
        // a's params changed (other fingerprint) but its output bytes are the reference's:
        // b's key changed only if b itself changed.
        let members = vec![
            member("a", &[], ran("fa2", "da")),
            member("b", &[0], ran("fb", "db")),
        ];
        let reference: BTreeMap<String, LockEntry> = [
            ("a".to_string(), entry("fa", "da")),
            ("b".to_string(), entry("fb", "db")),
        ]
        .into();
        let r = compare(&members, &reference);
        assert_eq!(
            r.verdicts,
            vec![
                Verdict::NotComparable(NotComparable::KeyChanged {
                    reference: "fa".into(),
                    same_bytes: true,
                }),
                Verdict::Reproduced
            ]
        );
        assert!(r.passed());
        assert_eq!(
            r.counts().line(),
            "check: 1 of 2 members reproduced bit for bit, 1 not comparable (1 of them with the \
             reference's bytes under a changed key)"
        );
        // a changed key with other bytes is said as such, and still no failure
        let members = vec![member("a", &[], ran("fa2", "da2"))];
        let reference: BTreeMap<String, LockEntry> = [("a".to_string(), entry("fa", "da"))].into();
        let r = compare(&members, &reference);
        assert_eq!(
            r.verdicts,
            vec![Verdict::NotComparable(NotComparable::KeyChanged {
                reference: "fa".into(),
                same_bytes: false,
            })]
        );
        assert!(r.passed());
        assert_eq!(r.counts().same_bytes, 0);
    }

    #[test]
    fn one_difference_is_singular() {
        let c = Counts {
            members: 3,
            reproduced: 2,
            differ: 1,
            ..Counts::default()
        };
        assert_eq!(
            c.line(),
            "check: 2 of 3 members reproduced bit for bit, 1 differs"
        );
    }

    #[test]
    fn tables_are_csv_files_under_a_tables_folder() {
        assert!(is_table("results/tables/t1_glc_table1.csv"));
        assert!(is_table("results/cpu/tables/t4.csv"));
        assert!(!is_table("results/tables/t1_glc_table1.md"));
        assert!(!is_table("results/figures/curves.csv"));
        assert!(!is_table("tables.csv"));
        assert!(!is_table("results/tables"));
    }

    #[test]
    fn changed_tables_lists_only_differing_table_files() {
        let published = |items: &[(&str, &str)]| -> BTreeMap<String, String> {
            items
                .iter()
                .map(|(p, h)| (p.to_string(), h.to_string()))
                .collect()
        };
        let here = Here::Ran {
            fingerprint: "f".into(),
            digest: "d".into(),
            published: published(&[
                ("r/tables/same.csv", "1"),
                ("r/tables/moved.csv", "2"),
                ("r/tables/new.csv", "3"),
                ("r/tables/moved.md", "4"),
            ]),
        };
        let mut theirs = entry("f0", "d0");
        theirs.published = published(&[
            ("r/tables/same.csv", "1"),
            ("r/tables/moved.csv", "2-theirs"),
            ("r/tables/dropped.csv", "5"),
            ("r/tables/moved.md", "4-theirs"),
        ]);
        let members = vec![
            member("report", &[], here),
            member("later", &[], Here::NotRun { reason: "r".into() }),
        ];
        let reference: BTreeMap<String, LockEntry> = [("report".to_string(), theirs)].into();
        let got = changed_tables(&members, &reference);
        let want = [
            ("r/tables/dropped.csv", TableChange::OnlyInReference),
            ("r/tables/moved.csv", TableChange::Changed),
            ("r/tables/new.csv", TableChange::OnlyHere),
        ];
        assert_eq!(got.len(), want.len(), "{got:?}");
        for (g, (path, change)) in got.iter().zip(want) {
            assert_eq!((g.member, g.path.as_str(), &g.change), (0, path, &change));
        }
    }
}
