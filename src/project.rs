//! A project on disk: the directory holding `pipeline.yaml`, its lock, its run store, and
//! the [`World`] view of them the planner reads.
//!
//! Without `--file`, the project is found like cargo finds a package: the given directory
//! (`-C`, default the current one) or the nearest parent holding `pipeline.yaml`. The lock
//! sits beside the pipeline file with the extension `.lock`.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::error::EngineError;
use crate::fingerprint::Key;
use crate::lock::{LockEntry, LockFile};
use crate::plan::{Stored, World};
use crate::stat_cache::StatCache;
use crate::store::{Manifest, Store};

pub const PIPELINE_FILE: &str = "pipeline.yaml";

#[derive(Clone, Debug)]
pub struct Project {
    /// Absolute project directory.
    pub dir: PathBuf,
    /// The pipeline file.
    pub file: PathBuf,
    pub store: Store,
}

impl Project {
    /// Locates the project from `-C DIR` and/or `--file FILE`.
    pub fn find(dir: Option<&Path>, file: Option<&Path>) -> Result<Project> {
        let cwd = std::env::current_dir()?;
        let base = match dir {
            Some(d) => cwd.join(d),
            None => cwd,
        };
        let file = match file {
            Some(f) => {
                let f = base.join(f);
                if std::fs::symlink_metadata(&f).is_err() {
                    return Err(
                        EngineError::Usage(format!("no pipeline file {}", f.display())).into(),
                    );
                }
                not_a_regular_file(&f)?;
                f
            }
            None => {
                let mut here = Some(base.as_path());
                let mut found = None;
                while let Some(d) = here {
                    let candidate = d.join(PIPELINE_FILE);
                    // The first entry of that name counts, whatever it is: a directory or a
                    // device there is a mistake to name, not a reason to look further up.
                    if std::fs::symlink_metadata(&candidate).is_ok() {
                        not_a_regular_file(&candidate)?;
                        found = Some(candidate);
                        break;
                    }
                    here = d.parent();
                }
                found.ok_or_else(|| {
                    EngineError::Usage(format!(
                        "no {PIPELINE_FILE} in {} or its parents (use -C DIR or --file FILE)",
                        base.display()
                    ))
                })?
            }
        };
        let file = file.canonicalize()?;
        let dir = file.parent().expect("a file has a parent").to_path_buf();
        Ok(Project {
            store: Store::new(&dir),
            dir,
            file,
        })
    }

    pub fn lock_path(&self) -> PathBuf {
        self.file.with_extension("lock")
    }

    pub fn download_dir(&self) -> PathBuf {
        self.dir.join("data").join("downloads")
    }

    /// Shortens an absolute path under the project for messages.
    pub fn rel<'a>(&self, p: &'a Path) -> &'a Path {
        p.strip_prefix(&self.dir).unwrap_or(p)
    }
}

/// Refuses a pipeline path that exists but is not a regular file (following links): a
/// directory, a device such as `/dev/zero` (whose endless bytes would be read as text), a
/// FIFO, a socket, or a link to nothing. The error says which.
fn not_a_regular_file(path: &Path) -> Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let what = match std::fs::metadata(path) {
        Ok(m) if m.is_file() => return Ok(()),
        Ok(m) => {
            let t = m.file_type();
            if t.is_dir() {
                "a directory"
            } else if t.is_char_device() {
                "a character device"
            } else if t.is_block_device() {
                "a block device"
            } else if t.is_fifo() {
                "a FIFO"
            } else if t.is_socket() {
                "a socket"
            } else {
                "not a file"
            }
        }
        Err(e) => {
            return Err(EngineError::Usage(format!(
                "the pipeline file {} cannot be read: {e}{}",
                path.display(),
                match std::fs::read_link(path) {
                    Ok(to) => format!(" (it is a link to {})", to.display()),
                    Err(_) => String::new(),
                }
            ))
            .into())
        }
    };
    let link = match std::fs::read_link(path) {
        Ok(to) => format!(" (through the link to {})", to.display()),
        Err(_) => String::new(),
    };
    Err(EngineError::Usage(format!(
        "the pipeline file {} is not a regular file: it is {what}{link}",
        path.display()
    ))
    .into())
}

/// The store and the lock of a project as the planner sees them. Files count as intact
/// when their content has the hash their manifest lists, judged through the project's
/// [`StatCache`] (a stat per file; a rehash only where the stat changed).
pub struct FsWorld<'a> {
    pub project: &'a Project,
    pub lock: &'a LockFile,
    pub profile: &'a str,
    cache: RefCell<StatCache>,
}

impl<'a> FsWorld<'a> {
    pub fn new(project: &'a Project, lock: &'a LockFile, profile: &'a str) -> FsWorld<'a> {
        FsWorld {
            project,
            lock,
            profile,
            cache: RefCell::new(StatCache::load(&project.dir, project.store.root())),
        }
    }

    /// The project-relative path of output `path` of run `fp`.
    fn store_rel(&self, fp: &str, path: &str) -> String {
        let out = self.project.store.out_dir(fp);
        format!("{}/{path}", self.project.rel(&out).to_string_lossy())
    }

    /// Records the files of run `fp` and, when published under `rel`, their copies, just
    /// written by the engine with the hashes of `m`.
    pub fn record(&self, fp: &str, m: &Manifest, rel: Option<&str>) {
        let mut c = self.cache.borrow_mut();
        for f in &m.files {
            c.record(&self.store_rel(fp, &f.path), &f.sha256);
            if let Some(r) = rel {
                if f.is_content() {
                    c.record(&format!("{r}/{}", f.path), &f.sha256);
                }
            }
        }
    }

    /// Files this command had to hash because their stat changed.
    pub fn rehashed(&self) -> usize {
        self.cache.borrow().rehashed
    }

    /// Writes the stat cache back (when it changed).
    pub fn save(&self) {
        self.cache.borrow_mut().save();
    }
}

impl World for FsWorld<'_> {
    fn stored(&self, fp: &str) -> Stored {
        let Some(m) = self.project.store.manifest(fp) else {
            return Stored::Absent;
        };
        let mut c = self.cache.borrow_mut();
        let intact = m
            .files
            .iter()
            .all(|f| c.intact(&self.store_rel(fp, &f.path), f.size, &f.sha256));
        if intact && crate::strays::in_run(&self.project.store, fp, &m).is_empty() {
            Stored::Present { digest: m.digest }
        } else {
            Stored::Damaged
        }
    }

    fn lock_agrees(&self, fp: &str, entry: &LockEntry, rel: Option<&str>) -> bool {
        let Some(m) = self.project.store.manifest(fp) else {
            return false;
        };
        let published = rel.map(|r| m.published_under(r)).unwrap_or_default();
        entry.digest == m.digest && entry.published == published
    }

    fn lock_entry(&self, member: &str) -> Option<LockEntry> {
        self.lock.entry(self.profile, member).cloned()
    }

    fn published_ok(&self, fp: &str, rel: &str) -> bool {
        let Some(m) = self.project.store.manifest(fp) else {
            return false;
        };
        let mut c = self.cache.borrow_mut();
        m.files
            .iter()
            .filter(|f| f.is_content())
            .all(|f| c.intact(&format!("{rel}/{}", f.path), f.size, &f.sha256))
    }

    fn stored_key(&self, fp: &str) -> Option<Key> {
        self.project.store.key(fp)
    }
}
