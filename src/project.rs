//! A project on disk: the directory holding `pipeline.yaml`, its lock, its run store, and
//! the [`World`] view of them the planner reads.
//!
//! Without `--file`, the project is found like cargo finds a package: the given directory
//! (`-C`, default the current one) or the nearest parent holding `pipeline.yaml`. The lock
//! sits beside the pipeline file with the extension `.lock`.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::error::EngineError;
use crate::lock::{LockEntry, LockFile};
use crate::plan::{Stored, World};
use crate::store::{published_ok, Store};

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
                if !f.is_file() {
                    return Err(
                        EngineError::Usage(format!("no pipeline file {}", f.display())).into(),
                    );
                }
                f
            }
            None => {
                let mut here = Some(base.as_path());
                let mut found = None;
                while let Some(d) = here {
                    if d.join(PIPELINE_FILE).is_file() {
                        found = Some(d.join(PIPELINE_FILE));
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

/// The store and the lock of a project as the planner sees them.
pub struct FsWorld<'a> {
    pub project: &'a Project,
    pub lock: &'a LockFile,
    pub profile: &'a str,
}

impl World for FsWorld<'_> {
    fn stored(&self, fp: &str) -> Stored {
        match self.project.store.manifest(fp) {
            None => Stored::Absent,
            Some(m) if self.project.store.quick_check(fp, &m) => {
                Stored::Present { digest: m.digest }
            }
            Some(_) => Stored::Damaged,
        }
    }

    fn lock_entry(&self, member: &str) -> Option<LockEntry> {
        self.lock.entry(self.profile, member).cloned()
    }

    fn published_ok(&self, fp: &str, rel: &str) -> bool {
        match self.project.store.manifest(fp) {
            Some(m) => published_ok(&self.project.dir, &m, rel),
            None => false,
        }
    }
}
