//! The project lock, `results/.runs/lock`: one `repro run` (or `gc`) per project at a time.
//!
//! Created with `O_EXCL` holding the owner's pid. When it exists, the pid is probed with
//! `kill(pid, 0)`: a live process means the project is busy (the command is refused with
//! the pid); a dead one means the lock was left by a killed run, and it is removed and
//! taken over. (A recycled pid that happens to be alive makes the lock look busy; the
//! message names the file to delete in that rare case.) Dropping the guard removes it.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::error::EngineError;

#[derive(Debug)]
pub struct ProjectLock {
    path: PathBuf,
}

impl ProjectLock {
    /// Takes the lock of the store at `store_root`, clearing one left by a dead process.
    pub fn acquire(store_root: &Path, project: &Path) -> Result<ProjectLock> {
        fs::create_dir_all(store_root)
            .with_context(|| format!("creating {}", store_root.display()))?;
        let path = store_root.join("lock");
        for _ in 0..3 {
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    writeln!(f, "{}", std::process::id())?;
                    return Ok(ProjectLock { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let text = fs::read_to_string(&path).unwrap_or_default();
                    match text.trim().parse::<u32>() {
                        Ok(pid) if pid_alive(pid) => {
                            return Err(EngineError::Busy {
                                pid,
                                project: project.to_path_buf(),
                                lock: path,
                            }
                            .into());
                        }
                        Ok(_) => {
                            // Left by a process that no longer exists.
                            let _ = fs::remove_file(&path);
                        }
                        Err(_) => {
                            // Being written right now, or garbage: give a writer a moment.
                            std::thread::sleep(std::time::Duration::from_millis(50));
                            let again = fs::read_to_string(&path).unwrap_or_default();
                            if again.trim().parse::<u32>().is_err() {
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
}

impl Drop for ProjectLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
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
        // A pid that cannot exist.
        fs::write(dir.path().join("lock"), format!("{}\n", i32::MAX - 1)).unwrap();
        let _b = ProjectLock::acquire(dir.path(), dir.path()).unwrap();
    }
}
