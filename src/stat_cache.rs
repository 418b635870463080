//! The stat cache, `results/.runs/stat-cache.json` (git-ignored): what the engine last
//! saw of each store entry and published copy, so freshness can rest on content without
//! rehashing every file on every command.
//!
//! A file counts as intact when its content has the SHA-256 its manifest lists. Checking
//! that by hashing would make a no-op `repro run` read every output; checking sizes only
//! would let a same-size change pass for fresh. So, as git's index does, each file
//! is recorded with what `stat` says of it (size, mtime and ctime in ns, inode, device)
//! beside the hash its content had at that moment. A later check `stat`s the file: the
//! same stat and the same expected hash mean the same content, anything else is rehashed
//! (and recorded again when the hash matches). Copying or moving the project changes
//! inodes and ctimes, so the first command after it rehashes once.
//!
//! **Racy entries.** A file modified again within the file system's timestamp granularity
//! of the moment it was hashed could keep its mtime while its content changed. So an
//! entry is only recorded when the file's mtime is at least [`RACY_NS`] older than the
//! clock read just before its `stat` (a clock tick is ≤ 10 ms on ext4, xfs and btrfs;
//! 2 s covers FAT and HFS+ and a little clock skew on NFS). A file written in the last
//! two seconds is rehashed at each check until it is older: in practice the command after
//! a run rehashes that run's new outputs once.
//!
//! The cache is only ever a shortcut: a missing, unreadable or stale file means rehashing,
//! never a wrong answer. Keys are project-relative paths, so a moved project keeps it.
//! It is written through a temporary file and a rename, and only when something changed;
//! `status` writes it too (without the project lock: two writers can only lose each
//! other's new entries, which costs a rehash later).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::store::{hash_file, write_file};

/// A file whose mtime is this close to the moment it was seen is not recorded (ns).
pub const RACY_NS: i64 = 2_000_000_000;

const VERSION: u32 = 1;

/// What `stat` said of a file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Stat {
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    ino: u64,
    dev: u64,
}

impl Stat {
    fn of(path: &Path) -> Option<Stat> {
        let m = fs::metadata(path).ok()?;
        if !m.is_file() {
            return None;
        }
        Some(Stat {
            size: m.len(),
            mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
            ctime_ns: m.ctime() * 1_000_000_000 + m.ctime_nsec(),
            ino: m.ino(),
            dev: m.dev(),
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    stat: Stat,
    sha256: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    /// Project-relative path -> entry.
    files: BTreeMap<String, Entry>,
}

/// The cache of one project, loaded once per command.
#[derive(Debug)]
pub struct StatCache {
    project: PathBuf,
    path: PathBuf,
    files: BTreeMap<String, Entry>,
    dirty: bool,
    /// Files hashed by this command (for tests and `-v`).
    pub rehashed: usize,
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

impl StatCache {
    /// The cache of the project at `project` whose store root is `store_root`.
    pub fn load(project: &Path, store_root: &Path) -> StatCache {
        let path = store_root.join("stat-cache.json");
        let files = fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<CacheFile>(&b).ok())
            .filter(|c| c.version == VERSION)
            .map(|c| c.files)
            .unwrap_or_default();
        StatCache {
            project: project.to_path_buf(),
            path,
            files,
            dirty: false,
            rehashed: 0,
        }
    }

    /// Whether the file at project-relative `rel` has `size` bytes with SHA-256 `sha256`:
    /// from the cache when its stat is unchanged, else by hashing it (and recording it).
    pub fn intact(&mut self, rel: &str, size: u64, sha256: &str) -> bool {
        let full = self.project.join(rel);
        let seen_at = now_ns();
        let Some(before) = Stat::of(&full) else {
            self.forget(rel);
            return false;
        };
        if before.size != size {
            self.forget(rel);
            return false;
        }
        if let Some(e) = self.files.get(rel) {
            if e.stat == before {
                return e.sha256 == sha256;
            }
        }
        self.rehashed += 1;
        let Ok((n, h)) = hash_file(&full) else {
            self.forget(rel);
            return false;
        };
        // Record only what was stable while it was read and is not racily recent.
        if Stat::of(&full).as_ref() == Some(&before) && n == before.size {
            self.put(rel, before, seen_at, h.clone());
        } else {
            self.forget(rel);
        }
        h == sha256
    }

    /// Records a file the engine just wrote or copied, whose content hash is known.
    pub fn record(&mut self, rel: &str, sha256: &str) {
        let seen_at = now_ns();
        match Stat::of(&self.project.join(rel)) {
            Some(st) => self.put(rel, st, seen_at, sha256.to_string()),
            None => self.forget(rel),
        }
    }

    fn put(&mut self, rel: &str, stat: Stat, seen_at: i64, sha256: String) {
        if stat.mtime_ns + RACY_NS > seen_at {
            self.forget(rel);
            return;
        }
        let e = Entry { stat, sha256 };
        if self.files.get(rel) != Some(&e) {
            self.files.insert(rel.to_string(), e);
            self.dirty = true;
        }
    }

    fn forget(&mut self, rel: &str) {
        if self.files.remove(rel).is_some() {
            self.dirty = true;
        }
    }

    /// Drops the entries whose key starts with `prefix` (a removed run).
    pub fn forget_under(&mut self, prefix: &str) {
        let before = self.files.len();
        self.files.retain(|k, _| !k.starts_with(prefix));
        self.dirty |= self.files.len() != before;
    }

    /// Writes the cache when it changed and its directory exists (a command never
    /// creates the store just to cache stats). Errors are ignored: it is a cache.
    pub fn save(&mut self) {
        if !self.dirty || !self.path.parent().is_some_and(Path::is_dir) {
            return;
        }
        let file = CacheFile {
            version: VERSION,
            files: std::mem::take(&mut self.files),
        };
        if let Ok(text) = serde_json::to_vec(&file) {
            if write_file(&self.path, &text).is_ok() {
                self.dirty = false;
            }
        }
        self.files = file.files;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn age(path: &Path, secs: u64) {
        let t = SystemTime::now() - std::time::Duration::from_secs(secs);
        fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }

    #[test]
    fn same_stat_is_trusted_and_a_changed_one_is_rehashed() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("results/.runs");
        fs::create_dir_all(&store).unwrap();
        let f = dir.path().join("a.txt");
        fs::write(&f, b"abc").unwrap();
        let sha = hash_file(&f).unwrap().1;
        let mut c = StatCache::load(dir.path(), &store);
        // Just written: racy, so rehashed each time and not recorded.
        assert!(c.intact("a.txt", 3, &sha));
        assert!(c.intact("a.txt", 3, &sha));
        assert_eq!(c.rehashed, 2);
        age(&f, 10);
        assert!(c.intact("a.txt", 3, &sha));
        assert!(c.intact("a.txt", 3, &sha));
        assert_eq!(
            c.rehashed, 3,
            "an old file with the same stat is not rehashed"
        );
        assert!(
            !c.intact("a.txt", 3, "other"),
            "the cached hash is compared"
        );
        c.save();
        let mut c = StatCache::load(dir.path(), &store);
        assert!(c.intact("a.txt", 3, &sha));
        assert_eq!(c.rehashed, 0, "the cache survives the command");
        // Same size, other bytes, same mtime: the ctime moved, so it is rehashed.
        let m = fs::metadata(&f).unwrap().modified().unwrap();
        fs::write(&f, b"abd").unwrap();
        fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(m)
            .unwrap();
        assert!(!c.intact("a.txt", 3, &sha));
        assert!(!c.intact("missing.txt", 3, &sha));
        assert!(!c.intact("a.txt", 4, &sha));
    }
}
