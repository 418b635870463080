//! The process groups a run's stages run in, so that none outlives the run that started it.
//!
//! Each local stage process (`repro exec-stage`, or the launcher that starts it) leads a
//! process group of its own, and so does each program a `command` stage starts. They end
//! with the run in the normal course: a stage ends its program's group when the program
//! exits, and dies with `repro` (parent-death signal). What no process can do for itself is
//! handled by the one above it: when a stage process dies (`kill -9` included), the local
//! executor ends its groups at once; when `repro` and its stages die together, the next run
//! does. For that, every group is recorded with the project lock while it runs
//! ([`crate::project_lock`]), as `group <pgid> <staging dir>`.
//!
//! A process group id is a process id, and ids are reused: a recorded group is only ended
//! when one of its processes still carries the stage's staging directory in its command line
//! (`exec-stage <staging>/job.json`) or its environment (`REPRO_OUT=<staging>/out`), read
//! from `/proc`. So an unrelated process that inherited the number is never touched, and on
//! systems without `/proc` nothing is ended this way.

use std::path::Path;

/// Kills process group `pgid` if a process of it is a stage's or its program's: one whose
/// command line or environment contains the path `staging`. Returns whether it did.
pub fn end(pgid: u32, staging: &Path) -> bool {
    if pgid <= 1 || pgid > i32::MAX as u32 || !has_stage_process(pgid, staging) {
        return false;
    }
    // SAFETY: signals a process group verified above to belong to one of this project's stages.
    unsafe { libc::kill(-(pgid as libc::pid_t), libc::SIGKILL) == 0 }
}

#[cfg(target_os = "linux")]
fn has_stage_process(pgid: u32, staging: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let marker = staging.as_os_str().as_bytes();
    if marker.is_empty() {
        return false;
    }
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return false;
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| group_of(pid) == Some(pgid))
        .any(|pid| {
            ["cmdline", "environ"].iter().any(|f| {
                std::fs::read(format!("/proc/{pid}/{f}"))
                    .is_ok_and(|bytes| bytes.windows(marker.len()).any(|w| w == marker))
            })
        })
}

#[cfg(not(target_os = "linux"))]
fn has_stage_process(_pgid: u32, _staging: &Path) -> bool {
    false
}

/// The process group of `pid`, from `/proc/<pid>/stat` (`pid (comm) state ppid pgrp ...`;
/// the name may hold spaces and parentheses, so fields are counted after its last `)`).
#[cfg(target_os = "linux")]
fn group_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(2)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::process::Command;

    #[test]
    #[cfg(target_os = "linux")]
    fn only_a_group_carrying_the_staging_path_is_ended() {
        let dir = tempfile::tempdir().unwrap();
        let staging = dir.path().join("staging/abc.1");
        let start = |env: &Path| {
            Command::new("sleep")
                .arg("600")
                .env("REPRO_OUT", env)
                .process_group(0)
                .spawn()
                .unwrap()
        };
        let mut ours = start(&staging.join("out"));
        let mut other = start(&dir.path().join("staging/abc.2/out"));
        assert_eq!(group_of(ours.id()), Some(ours.id()));
        assert!(!end(other.id(), &staging), "another stage's group");
        assert!(end(ours.id(), &staging));
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(ours.wait().unwrap().signal(), Some(libc::SIGKILL));
        assert!(!end(ours.id(), &staging), "a group that is gone");
        other.kill().unwrap();
        other.wait().unwrap();
    }
}
