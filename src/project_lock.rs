//! The project lock, `results/.runs/lock`: one `repro run` (or `gc`) per project at a time,
//! and the process groups its stages run in.
//!
//! Created with `O_EXCL` holding the owner's pid on its first line. When it exists, the pid
//! is probed with `kill(pid, 0)`: a live process means the project is busy (the command is
//! refused with the pid); a dead one means the lock was left by a killed run, and it is
//! taken over. (A recycled pid that happens to be alive makes the lock look busy; the
//! message names the file to delete in that rare case.) Dropping the guard removes it.
//!
//! While a run works, each further line records a process group one of its stages runs in,
//! `group <pgid> <staging dir>` ([`ProcessGroups`], written by the local executor; see
//! [`crate::process_groups`]); the file is rewritten whole and renamed into place, so a
//! reader never sees half of it. A run that takes over the lock of a killed one keeps that
//! run's groups recorded until [`ProjectLock::end_left_over`] ends them (the guard of a
//! command that did not, such as `gc -n`, leaves them in a lock with pid 0 for the next).

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};

use crate::error::EngineError;

#[derive(Debug)]
pub struct ProjectLock {
    groups: ProcessGroups,
    /// Groups a killed run recorded, not yet ended.
    left_over: Vec<u32>,
}

/// The process groups recorded in a held lock; cheap to clone, shared with the executor.
#[derive(Clone, Debug)]
pub struct ProcessGroups {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    pid: u32,
    /// pgid -> the staging dir of the stage it belongs to.
    groups: Mutex<BTreeMap<u32, PathBuf>>,
}

/// What a lock file says: its owner and the groups it recorded.
fn parse(text: &str) -> (Option<u32>, BTreeMap<u32, PathBuf>) {
    let mut lines = text.lines();
    let pid = lines.next().and_then(|l| l.trim().parse().ok());
    let groups = lines
        .filter_map(|l| {
            let (pgid, dir) = l.strip_prefix("group ")?.split_once(' ')?;
            Some((pgid.parse().ok()?, PathBuf::from(dir)))
        })
        .collect();
    (pid, groups)
}

impl ProjectLock {
    /// Takes the lock of the store at `store_root`, taking over one left by a dead process
    /// (and the process groups it recorded).
    pub fn acquire(store_root: &Path, project: &Path) -> Result<ProjectLock> {
        fs::create_dir_all(store_root)
            .with_context(|| format!("creating {}", store_root.display()))?;
        let path = store_root.join("lock");
        let mut inherited = BTreeMap::new();
        for _ in 0..3 {
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    let pid = std::process::id();
                    writeln!(f, "{pid}")?;
                    let left_over = inherited.keys().copied().collect();
                    let groups = ProcessGroups {
                        inner: Arc::new(Inner {
                            path,
                            pid,
                            groups: Mutex::new(inherited),
                        }),
                    };
                    groups.save();
                    return Ok(ProjectLock { groups, left_over });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let text = fs::read_to_string(&path).unwrap_or_default();
                    match parse(&text) {
                        (Some(pid), _) if pid_alive(pid) => {
                            return Err(EngineError::Busy {
                                pid,
                                project: project.to_path_buf(),
                                lock: path,
                            }
                            .into());
                        }
                        (Some(_), groups) => {
                            // Left by a process that no longer exists.
                            inherited.extend(groups);
                            let _ = fs::remove_file(&path);
                        }
                        (None, _) => {
                            // Being written right now, or garbage: give a writer a moment.
                            std::thread::sleep(std::time::Duration::from_millis(50));
                            let again = fs::read_to_string(&path).unwrap_or_default();
                            if parse(&again).0.is_none() {
                                let _ = fs::remove_file(&path);
                            }
                        }
                    }
                }
                Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
            }
        }
        anyhow::bail!("could not take the project lock {}", path.display())
    }

    /// The record of this run's process groups, for the executor.
    pub fn groups(&self) -> ProcessGroups {
        self.groups.clone()
    }

    /// How many process groups a killed run left recorded and this lock has not ended.
    pub fn left_over(&self) -> usize {
        self.left_over.len()
    }

    /// Ends the process groups a killed run left (those still holding one of its stages'
    /// processes) and forgets them; returns how many were running.
    pub fn end_left_over(&mut self) -> usize {
        let mut ended = 0;
        for pgid in std::mem::take(&mut self.left_over) {
            if let Some(staging) = self.groups.remove(pgid) {
                ended += usize::from(crate::process_groups::end(pgid, &staging));
            }
        }
        ended
    }
}

impl ProcessGroups {
    /// Records that a stage whose staging dir is `staging` runs in process group `pgid`.
    pub fn add(&self, pgid: u32, staging: &Path) {
        self.inner
            .groups
            .lock()
            .unwrap()
            .insert(pgid, staging.to_path_buf());
        self.save();
    }

    /// Forgets group `pgid`; returns the staging dir it was recorded with.
    pub fn remove(&self, pgid: u32) -> Option<PathBuf> {
        let dir = self.inner.groups.lock().unwrap().remove(&pgid);
        if dir.is_some() {
            self.save();
        }
        dir
    }

    /// Rewrites the lock file (best effort: the record only serves to end the groups of a
    /// run that is killed).
    fn save(&self) {
        self.write(self.inner.pid);
    }

    fn write(&self, pid: u32) {
        let groups = self.inner.groups.lock().unwrap();
        let mut text = format!("{pid}\n");
        for (pgid, dir) in groups.iter() {
            // A path with a line break cannot be written on one line; its group is not
            // recorded (it still ends with its run in the normal course).
            if let Some(d) = dir.to_str().filter(|d| !d.contains('\n')) {
                text.push_str(&format!("group {pgid} {d}\n"));
            }
        }
        let tmp = self.inner.path.with_extension(format!("{pid}.tmp"));
        if fs::write(&tmp, text).is_ok() {
            let _ = fs::rename(&tmp, &self.inner.path);
        }
    }
}

impl Drop for ProjectLock {
    fn drop(&mut self) {
        if self.left_over.is_empty() {
            let _ = fs::remove_file(&self.groups.inner.path);
        } else {
            // Keep the groups of the killed run for the next command; pid 0 is no owner.
            self.groups.write(0);
        }
    }
}

/// Whether a process with this pid exists (signal 0 probes without sending anything).
pub fn pid_alive(pid: u32) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks for the process's existence.
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_acquire_is_refused_and_dead_pid_is_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let a = ProjectLock::acquire(dir.path(), dir.path()).unwrap();
        let e = ProjectLock::acquire(dir.path(), dir.path()).unwrap_err();
        assert!(e.to_string().contains("another `repro run`"), "{e}");
        drop(a);
        assert!(!dir.path().join("lock").exists());
        // A pid that cannot exist.
        fs::write(dir.path().join("lock"), format!("{}\n", i32::MAX - 1)).unwrap();
        let _b = ProjectLock::acquire(dir.path(), dir.path()).unwrap();
    }

    #[test]
    fn groups_are_recorded_and_a_dead_runs_groups_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let lock = ProjectLock::acquire(dir.path(), dir.path()).unwrap();
        let groups = lock.groups();
        groups.add(4242, Path::new("/p/results/.runs/staging/fp.1"));
        groups.add(77, Path::new("/p/with space/staging/fp.1"));
        let text = fs::read_to_string(dir.path().join("lock")).unwrap();
        assert_eq!(
            text,
            format!(
                "{}\ngroup 77 /p/with space/staging/fp.1\ngroup 4242 /p/results/.runs/staging/fp.1\n",
                std::process::id()
            )
        );
        // Still busy for others while held.
        assert!(ProjectLock::acquire(dir.path(), dir.path()).is_err());
        assert_eq!(
            groups.remove(77),
            Some(PathBuf::from("/p/with space/staging/fp.1"))
        );
        drop(lock);

        // A killed run's lock: its groups pass to the next owner until ended.
        let dead = format!("{}\ngroup 4242 /gone/staging/x.1\n", i32::MAX - 1);
        fs::write(dir.path().join("lock"), dead).unwrap();
        let lock = ProjectLock::acquire(dir.path(), dir.path()).unwrap();
        assert_eq!(lock.left_over(), 1);
        let text = fs::read_to_string(dir.path().join("lock")).unwrap();
        assert!(text.ends_with("group 4242 /gone/staging/x.1\n"), "{text}");
        drop(lock);
        // Not ended: kept for the next command, under no owner.
        let text = fs::read_to_string(dir.path().join("lock")).unwrap();
        assert_eq!(text, "0\ngroup 4242 /gone/staging/x.1\n");
        let mut lock = ProjectLock::acquire(dir.path(), dir.path()).unwrap();
        // No process carries that staging dir: nothing to end, and the record is gone.
        assert_eq!(lock.end_left_over(), 0);
        assert_eq!(lock.left_over(), 0);
        drop(lock);
        assert!(!dir.path().join("lock").exists());
    }
}
