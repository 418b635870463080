//! `pipeline.lock`: what the last runs produced, per profile and member. Users commit it.
//!
//! JSON, keys sorted (BTreeMaps), two-space indentation, a final newline, no timestamps:
//! a run that changes nothing leaves it byte-identical (it is not even rewritten), and a
//! diff of it in review shows exactly which members changed.
//!
//! ```json
//! {
//!   "profiles": {
//!     "default": {
//!       "train[flip,0.5,seed=1]": { "digest": "…", "fingerprint": "…" },
//!       "table1": { "digest": "…", "fingerprint": "…",
//!                   "published": { "results/tables/t1.csv": "<sha256>" } }
//!     }
//!   },
//!   "version": 1
//! }
//! ```
//!
//! `fingerprint` names the run in the store (`results/.runs/runs/<fingerprint>`), whose
//! `key.json` is what `repro why` compares the current key with; `digest` is the output
//! content digest; `published` lists the published copies (outside `log/`).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

pub const LOCK_VERSION: u32 = 1;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockEntry {
    pub fingerprint: String,
    pub digest: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub published: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockFile {
    /// profile -> member name -> entry.
    pub profiles: BTreeMap<String, BTreeMap<String, LockEntry>>,
    pub version: u32,
}

impl Default for LockFile {
    fn default() -> Self {
        LockFile {
            profiles: BTreeMap::new(),
            version: LOCK_VERSION,
        }
    }
}

impl LockFile {
    /// Reads the lock; a missing file is an empty lock.
    pub fn load(path: &Path) -> Result<LockFile> {
        match fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| {
                format!(
                    "{} is not a valid lock file (delete it to start over)",
                    path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(LockFile::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    pub fn to_text(&self) -> String {
        serde_json::to_string_pretty(self).expect("the lock serializes") + "\n"
    }

    /// Writes the lock when its text differs from the file's. Returns whether it wrote.
    pub fn save(&self, path: &Path) -> Result<bool> {
        let text = self.to_text();
        if fs::read(path).is_ok_and(|old| old == text.as_bytes()) {
            return Ok(false);
        }
        crate::store::write_file(path, text.as_bytes())?;
        Ok(true)
    }

    pub fn entry(&self, profile: &str, member: &str) -> Option<&LockEntry> {
        self.profiles.get(profile)?.get(member)
    }

    pub fn profile_mut(&mut self, profile: &str) -> &mut BTreeMap<String, LockEntry> {
        self.profiles.entry(profile.to_string()).or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_sorted_and_round_trips() {
        let mut l = LockFile::default();
        let p = l.profile_mut("default");
        p.insert(
            "b".into(),
            LockEntry {
                fingerprint: "f2".into(),
                digest: "d2".into(),
                published: BTreeMap::new(),
            },
        );
        p.insert(
            "a".into(),
            LockEntry {
                fingerprint: "f1".into(),
                digest: "d1".into(),
                published: BTreeMap::new(),
            },
        );
        let t = l.to_text();
        assert!(t.find("\"a\"").unwrap() < t.find("\"b\"").unwrap());
        assert!(t.ends_with("}\n"));
        let back: LockFile = serde_json::from_str(&t).unwrap();
        assert_eq!(back, l);
        assert_eq!(back.to_text(), t);
    }

    #[test]
    fn save_does_not_rewrite_identical_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pipeline.lock");
        let l = LockFile::default();
        assert!(l.save(&path).unwrap());
        assert!(!l.save(&path).unwrap());
        assert_eq!(LockFile::load(&path).unwrap(), l);
    }
}
