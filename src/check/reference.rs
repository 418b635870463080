//! The reference `repro check` compares with: a lock committed at a git revision, or a lock
//! file on disk, and the published tables that go with it.
//!
//! - No `--against`: the project's lock as committed at `HEAD` (`git show HEAD:./pipeline.lock`,
//!   run in the project directory), which a run leaves as it was while it rewrites the
//!   working lock.
//! - `--against X`: the lock file `X` when a file exists there (relative to `-C DIR`, like
//!   `--file`); otherwise `X` is a git revision and the reference is the project's lock at it.
//!
//! A reference table's bytes come from the same place: `git show REV:./<path>` for a
//! revision; for a lock file, the file at the same relative path beside it (the lock file's
//! folder stands for the reference project's root), when there is one.
//!
//! A reference that cannot be read (no git, not a repository, no such revision, no lock at
//! it, no such file) or is no lock (not JSON, another shape, another lock version) is a
//! [`ReferenceError`] naming it in one line.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::lock::{LockEntry, LockFile, LOCK_VERSION};

/// Where the reference lock was read.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Source {
    /// A git revision of the repository holding the project directory.
    Git { rev: String, project_dir: PathBuf },
    /// A lock file; its folder is the reference project's root.
    File { root: PathBuf },
}

/// A reference lock, and where its tables are.
#[derive(Clone, Debug)]
pub struct Reference {
    /// How messages name it: `HEAD:pipeline.lock`, or the file as given.
    pub label: String,
    pub lock: LockFile,
    source: Source,
}

/// A reference that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error("reference {label}: cannot run git ({source}); name a lock file with --against FILE")]
    NoGit {
        label: String,
        source: std::io::Error,
    },
    #[error("reference {label}: {message}")]
    Unreadable { label: String, message: String },
    #[error("reference {label} is not a lock file: {message}")]
    Malformed { label: String, message: String },
    #[error("reference {label} has no entries for profile `{profile}` (profiles there: {known})")]
    NoProfile {
        label: String,
        profile: String,
        known: String,
    },
}

impl Reference {
    /// Loads the reference of `repro check --against <against>` for the project in
    /// `project_dir`, whose lock is `lock_rel` (relative to it); a file path in `against` is
    /// relative to `base` (the `-C` directory).
    pub fn load(
        project_dir: &Path,
        lock_rel: &Path,
        base: &Path,
        against: Option<&str>,
    ) -> Result<Reference, ReferenceError> {
        if let Some(given) = against {
            let path = base.join(given);
            if path.is_file() {
                let label = given.to_string();
                let bytes = std::fs::read(&path).map_err(|e| ReferenceError::Unreadable {
                    label: label.clone(),
                    message: e.to_string(),
                })?;
                let root = path
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| base.to_path_buf());
                return Ok(Reference {
                    lock: parse(&label, &bytes)?,
                    label,
                    source: Source::File { root },
                });
            }
        }
        let rev = against.unwrap_or("HEAD").to_string();
        let label = format!("{rev}:{}", lock_rel.display());
        let bytes = git_show(project_dir, &rev, lock_rel).map_err(|e| match e {
            GitError::Spawn(source) => ReferenceError::NoGit {
                label: label.clone(),
                source,
            },
            GitError::Failed(message) => ReferenceError::Unreadable {
                label: label.clone(),
                message: match against {
                    Some(given) => format!(
                        "no file `{given}`, and git cannot read the lock at revision `{given}`: \
                         {message}"
                    ),
                    None => format!("git cannot read it: {message}"),
                },
            },
        })?;
        Ok(Reference {
            lock: parse(&label, &bytes)?,
            label,
            source: Source::Git {
                rev,
                project_dir: project_dir.to_path_buf(),
            },
        })
    }

    /// The reference's entries of `profile`.
    pub fn profile(
        &self,
        profile: &str,
    ) -> Result<&std::collections::BTreeMap<String, LockEntry>, ReferenceError> {
        self.lock
            .profiles
            .get(profile)
            .ok_or_else(|| ReferenceError::NoProfile {
                label: self.label.clone(),
                profile: profile.to_string(),
                known: if self.lock.profiles.is_empty() {
                    "none".to_string()
                } else {
                    self.lock
                        .profiles
                        .keys()
                        .map(String::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            })
    }

    /// The bytes of the reference's published file `rel` (project-relative), or why they are
    /// not available.
    pub fn file(&self, rel: &str) -> Result<Vec<u8>, String> {
        match &self.source {
            Source::Git { rev, project_dir } => {
                git_show(project_dir, rev, Path::new(rel)).map_err(|e| match e {
                    GitError::Spawn(e) => format!("cannot run git ({e})"),
                    GitError::Failed(m) => format!("not in git at `{rev}` ({m})"),
                })
            }
            Source::File { root } => {
                let path = root.join(rel);
                std::fs::read(&path).map_err(|e| format!("no copy at {} ({e})", path.display()))
            }
        }
    }
}

/// Why `git show` gave no bytes.
enum GitError {
    Spawn(std::io::Error),
    /// git's first line of complaint, without its `fatal: `.
    Failed(String),
}

/// `git show <rev>:./<rel>` in `dir`: the file `rel` (relative to `dir`) at revision `rev`.
fn git_show(dir: &Path, rev: &str, rel: &Path) -> Result<Vec<u8>, GitError> {
    let out = Command::new("git")
        .arg("show")
        .arg(format!("{rev}:./{}", rel.display()))
        .current_dir(dir)
        .output()
        .map_err(GitError::Spawn)?;
    if out.status.success() {
        return Ok(out.stdout);
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("git show failed")
        .trim_start_matches("fatal: ")
        .to_string();
    Err(GitError::Failed(line))
}

/// A lock file's bytes, checked as one.
fn parse(label: &str, bytes: &[u8]) -> Result<LockFile, ReferenceError> {
    let malformed = |message: String| ReferenceError::Malformed {
        label: label.to_string(),
        message,
    };
    let lock: LockFile = serde_json::from_slice(bytes).map_err(|e| malformed(e.to_string()))?;
    if lock.version != LOCK_VERSION {
        return Err(malformed(format!(
            "lock version {}, where this repro reads version {LOCK_VERSION}",
            lock.version
        )));
    }
    Ok(lock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_file_is_read_and_its_folder_holds_the_tables() {
        let dir = tempfile::tempdir().unwrap();
        let theirs = dir.path().join("theirs");
        std::fs::create_dir_all(theirs.join("results/tables")).unwrap();
        std::fs::write(
            theirs.join("pipeline.lock"),
            r#"{"profiles": {"default": {"a": {"fingerprint": "f", "digest": "d"}}}, "version": 1}"#,
        )
        .unwrap();
        std::fs::write(theirs.join("results/tables/t.csv"), "a,b\n1,2\n").unwrap();
        let r = Reference::load(
            Path::new("/nonexistent"),
            Path::new("pipeline.lock"),
            dir.path(),
            Some("theirs/pipeline.lock"),
        )
        .unwrap();
        assert_eq!(r.label, "theirs/pipeline.lock");
        assert_eq!(r.profile("default").unwrap()["a"].digest, "d");
        assert_eq!(r.file("results/tables/t.csv").unwrap(), b"a,b\n1,2\n");
        assert!(r
            .file("results/tables/u.csv")
            .unwrap_err()
            .starts_with("no copy at "));
        let e = r.profile("cpu").unwrap_err().to_string();
        assert_eq!(
            e,
            "reference theirs/pipeline.lock has no entries for profile `cpu` (profiles there: default)"
        );
    }

    #[test]
    fn a_malformed_lock_is_named() {
        let cases: [(&str, &str); 3] = [
            ("not json", "reference x.lock is not a lock file: expected ident at line 1 column 2"),
            (
                r#"{"profiles": 3, "version": 1}"#,
                "reference x.lock is not a lock file: invalid type: integer `3`, expected a map at line 1 column 14",
            ),
            (
                r#"{"profiles": {}, "version": 9}"#,
                "reference x.lock is not a lock file: lock version 9, where this repro reads version 1",
            ),
        ];
        for (text, want) in cases {
            let e = parse("x.lock", text.as_bytes()).unwrap_err();
            assert_eq!(e.to_string(), want);
        }
    }
}
