//! The run store, `<project>/results/.runs/` (git-ignored):
//!
//! ```text
//! runs/<fp>/out/...          the stage's output files
//! runs/<fp>/key.json         the fingerprint key (what `repro why` compares)
//! runs/<fp>/manifest.json    (relative path, size, sha256) of every output + content digest
//! stat-cache.json            what `stat` said of each checked file (see crate::stat_cache)
//! staging/<fp>.<pid>/        a running stage: out/ + job.json; renamed to runs/<fp> on success
//! checkpoints/<fp>/          a stage's checkpoints: survive a crash, removed on success
//! lock                       pid of the `repro run` working in this project
//! ```
//!
//! **Atomic commit.** A stage writes into `staging/<fp>.<pid>/out`. On success the engine
//! hashes the outputs, writes `key.json`, writes `manifest.json` last and renames the
//! staging dir to `runs/<fp>` (one `rename(2)` on the same file system). A run without a
//! manifest does not exist for the engine; a failed or killed stage leaves at most a
//! staging dir, which the next run (holding the project lock, so no other run can own it)
//! or `gc` removes.
//!
//! **Content digest.** SHA-256 over the sorted `(path, sha256)` list of the outputs,
//! leaving out everything under `log/` (wall times): two runs that compute the same bytes
//! have the same digest, which is what downstream keys contain (early cutoff).
//!
//! **Freshness from content.** A run counts as present when its manifest parses and every
//! listed file has the listed size and SHA-256, and a published copy counts when it has
//! its run's hash. Planning does not rehash every file for this: the stat cache
//! ([`crate::stat_cache`]) vouches for files whose `stat` did not change since they were
//! last hashed, so a no-op run costs a `stat` per file, and a same-size change (a flipped
//! byte in a table or in teacher weights) is seen: the copy is restored, the run is rerun,
//! never read as an input. `repro verify` rehashes everything regardless. No absolute
//! path is stored anywhere, so a copied or moved project keeps its store valid (the
//! first command after the move rehashes, as inodes and ctimes changed).

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::fingerprint::Key;

/// Output sub-directory excluded from the content digest.
pub const LOG_DIR: &str = repro_stages::metrics::LOG_DIR;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Relative to the output dir, `/`-separated.
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

impl FileEntry {
    /// Whether the file counts towards the content digest (not under `log/`).
    pub fn is_content(&self) -> bool {
        !(self.path == LOG_DIR || self.path.starts_with(&format!("{LOG_DIR}/")))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Content digest of the outputs (see the module doc).
    pub digest: String,
    /// Sorted by path.
    pub files: Vec<FileEntry>,
}

impl Manifest {
    /// What the lock records for these outputs published under `rel` (project-relative):
    /// each content file's path there and its hash (`log/` left out).
    pub fn published_under(&self, rel: &str) -> BTreeMap<String, String> {
        self.files
            .iter()
            .filter(|f| f.is_content())
            .map(|f| (format!("{rel}/{}", f.path), f.sha256.clone()))
            .collect()
    }

    pub fn from_files(mut files: Vec<FileEntry>) -> Manifest {
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Manifest {
            digest: content_digest(&files),
            files,
        }
    }
}

/// SHA-256 over `path \0 sha256 \n` of every content file, in path order.
pub fn content_digest(files: &[FileEntry]) -> String {
    entries_digest(files.iter().filter(|f| f.is_content()))
}

/// SHA-256 over `path \0 sha256 \n` of `files`, in the order given: the one digest of a
/// list of files, for outputs ([`content_digest`]) and code folders
/// ([`crate::code_files::digest`]).
pub fn entries_digest<'a>(files: impl IntoIterator<Item = &'a FileEntry>) -> String {
    let mut h = Sha256::new();
    for f in files {
        h.update(f.path.as_bytes());
        h.update([0u8]);
        h.update(f.sha256.as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

/// Size and SHA-256 of a file, read in 1 MiB blocks.
pub fn hash_file(path: &Path) -> io::Result<(u64, String)> {
    let mut f = fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut h = Sha256::new();
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((n, hex::encode(h.finalize())))
}

/// Every file under `dir`, hashed, with `/`-separated relative paths, sorted.
pub fn scan_dir(dir: &Path) -> Result<Vec<FileEntry>> {
    scan_dir_where(dir, &|_| true)
}

/// [`scan_dir`] over the files and folders whose name passes `keep` (a skipped folder is
/// skipped with everything under it).
pub fn scan_dir_where(dir: &Path, keep: &dyn Fn(&str) -> bool) -> Result<Vec<FileEntry>> {
    fn walk(
        root: &Path,
        rel: &str,
        keep: &dyn Fn(&str) -> bool,
        out: &mut Vec<FileEntry>,
    ) -> Result<()> {
        let here = if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(rel)
        };
        let mut names: Vec<_> = fs::read_dir(&here)
            .with_context(|| format!("listing {}", here.display()))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        names.sort();
        for name in names {
            let name = name.to_string_lossy().into_owned();
            if !keep(&name) {
                continue;
            }
            let r = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let p = root.join(&r);
            let meta = fs::metadata(&p).with_context(|| format!("reading {}", p.display()))?;
            if meta.is_dir() {
                walk(root, &r, keep, out)?;
            } else {
                let (size, sha256) =
                    hash_file(&p).with_context(|| format!("hashing {}", p.display()))?;
                out.push(FileEntry {
                    path: r,
                    size,
                    sha256,
                });
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, "", keep, &mut out)?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// The run store of one project.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// The store of the project at `project` (`<project>/results/.runs`).
    pub fn new(project: &Path) -> Store {
        Store {
            root: project.join("results").join(".runs"),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn run_dir(&self, fp: &str) -> PathBuf {
        self.root.join("runs").join(fp)
    }

    /// Where a committed run's outputs are (what downstream stages read).
    pub fn out_dir(&self, fp: &str) -> PathBuf {
        self.run_dir(fp).join("out")
    }

    pub fn checkpoint_dir(&self, fp: &str) -> PathBuf {
        self.root.join("checkpoints").join(fp)
    }

    /// Creates a fresh staging dir for `fp` (with an empty `out/`) and returns it.
    pub fn new_staging(&self, fp: &str) -> Result<PathBuf> {
        let dir = self
            .root
            .join("staging")
            .join(format!("{fp}.{}", std::process::id()));
        if dir.exists() {
            fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        fs::create_dir_all(dir.join("out"))
            .with_context(|| format!("creating {}", dir.display()))?;
        Ok(dir)
    }

    /// Removes every staging dir (only call while holding the project lock). Returns how
    /// many there were.
    pub fn clean_staging(&self) -> Result<usize> {
        let dir = self.root.join("staging");
        let mut n = 0;
        if let Ok(rd) = fs::read_dir(&dir) {
            for e in rd.flatten() {
                fs::remove_dir_all(e.path())
                    .with_context(|| format!("removing {}", e.path().display()))?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// How many staging dirs there are (what [`Store::clean_staging`] would remove).
    pub fn staging_count(&self) -> usize {
        fs::read_dir(self.root.join("staging")).map_or(0, |rd| rd.count())
    }

    /// The manifest of a committed run, if there is one.
    pub fn manifest(&self, fp: &str) -> Option<Manifest> {
        let bytes = fs::read(self.run_dir(fp).join("manifest.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// The key a committed run was made with.
    pub fn key(&self, fp: &str) -> Option<Key> {
        let bytes = fs::read(self.run_dir(fp).join("key.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Hashes the staged outputs, writes the key and (last) the manifest, and renames the
    /// staging dir to `runs/<fp>`.
    pub fn commit(&self, fp: &str, staging: &Path, key: &Key) -> Result<Manifest> {
        let files = scan_dir(&staging.join("out"))?;
        let manifest = Manifest::from_files(files);
        let _ = fs::remove_file(staging.join("job.json"));
        write_file(
            &staging.join("key.json"),
            (serde_json::to_string_pretty(key)? + "\n").as_bytes(),
        )?;
        write_file(
            &staging.join("manifest.json"),
            (serde_json::to_string_pretty(&manifest)? + "\n").as_bytes(),
        )?;
        let dest = self.run_dir(fp);
        fs::create_dir_all(dest.parent().unwrap())?;
        if dest.exists() {
            // A forced rerun replaces the old run: move it aside first, then drop it.
            let trash = staging.with_extension("old");
            fs::rename(&dest, &trash)
                .with_context(|| format!("moving aside {}", dest.display()))?;
            fs::rename(staging, &dest).with_context(|| format!("publishing {}", dest.display()))?;
            let _ = fs::remove_dir_all(&trash);
        } else {
            fs::rename(staging, &dest).with_context(|| format!("publishing {}", dest.display()))?;
        }
        Ok(manifest)
    }

    /// Rehashes a committed run. Returns the problems found (empty when intact).
    pub fn verify(&self, fp: &str) -> Vec<String> {
        let Some(m) = self.manifest(fp) else {
            return vec![format!("run {fp}: manifest missing or unreadable")];
        };
        let mut problems = Vec::new();
        let out = self.out_dir(fp);
        for f in &m.files {
            let p = out.join(&f.path);
            match hash_file(&p) {
                Ok((size, sha)) if size == f.size && sha == f.sha256 => {}
                Ok(_) => problems.push(format!(
                    "{}: content differs from the manifest",
                    p.display()
                )),
                Err(e) => problems.push(format!("{}: {e}", p.display())),
            }
        }
        if content_digest(&m.files) != m.digest {
            problems.push(format!(
                "run {fp}: manifest digest does not match its file list"
            ));
        }
        for f in crate::strays::in_run(self, fp, &m) {
            problems.push(format!(
                "{}: not in the run's manifest (a file added after the run)",
                out.join(f).display()
            ));
        }
        problems
    }

    /// Fingerprints of all committed runs.
    pub fn runs(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.root.join("runs"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    pub fn remove_run(&self, fp: &str) -> Result<()> {
        let d = self.run_dir(fp);
        fs::remove_dir_all(&d).with_context(|| format!("removing {}", d.display()))
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

fn tmp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Copies the outputs of a run to `dest` (project-relative `rel`), each file through a
/// temporary file and a rename, so readers never see half a file. Files recorded in
/// `previous` that the new outputs lack are removed. Returns the published content
/// files (project-relative path -> sha256; `log/` left out).
pub fn publish(
    project: &Path,
    out_dir: &Path,
    manifest: &Manifest,
    rel: &str,
    previous: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>> {
    let mut published = BTreeMap::new();
    for f in &manifest.files {
        let rel_path = format!("{rel}/{}", f.path);
        let dest = project.join(&rel_path);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        let tmp = tmp_path(&dest);
        fs::copy(out_dir.join(&f.path), &tmp)
            .with_context(|| format!("copying to {}", tmp.display()))?;
        fs::rename(&tmp, &dest).with_context(|| format!("renaming to {}", dest.display()))?;
        if f.is_content() {
            published.insert(rel_path, f.sha256.clone());
        }
    }
    for old in previous.keys() {
        if !published.contains_key(old) {
            let _ = fs::remove_file(project.join(old));
        }
    }
    Ok(published)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_files_do_not_change_the_digest() {
        let a = vec![FileEntry {
            path: "m.json".into(),
            size: 1,
            sha256: "aa".into(),
        }];
        let mut b = a.clone();
        b.push(FileEntry {
            path: "log/timings.json".into(),
            size: 3,
            sha256: "bb".into(),
        });
        assert_eq!(content_digest(&a), content_digest(&b));
        let c = vec![FileEntry {
            path: "m.json".into(),
            size: 1,
            sha256: "ab".into(),
        }];
        assert_ne!(content_digest(&a), content_digest(&c));
        let d = vec![FileEntry {
            path: "logs.json".into(),
            size: 1,
            sha256: "aa".into(),
        }];
        assert_ne!(
            content_digest(&a),
            content_digest(&d),
            "only the log/ dir is excluded"
        );
    }

    #[test]
    fn hash_file_matches_known_digest() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("abc");
        fs::write(&p, b"abc").unwrap();
        let (n, h) = hash_file(&p).unwrap();
        assert_eq!(n, 3);
        assert_eq!(
            h,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
