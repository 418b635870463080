//! Process plumbing shared by the engine's executor (a stage's own process) and the
//! `command` kind (a program of the user's), so that both bound a log, quote its end and
//! word an exit status the same way, and die with their parent the same way:
//!
//! - [`capture`]: a process's output kept within a bound (its first and last bytes);
//! - [`log_tail`]: the last lines of a log, quoted in the error of a failed process;
//! - [`exit_wording`]: how an exit status reads in that error;
//! - [`die_with_parent`]: the signal a child process gets when its parent dies.

pub mod capture;

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::process::ExitStatus;

/// Lines of a failed process's log quoted in its error.
pub const TAIL_LINES: usize = 20;

/// At most this many bytes from the end of a log are read by [`log_tail`].
const TAIL_BYTES: u64 = 64 * 1024;

/// The last `max_lines` lines of the log at `path`, read from at most its last 64 KiB
/// (a line cut there is left out), invalid UTF-8 replaced. `Ok(None)` if the file does not
/// exist (a process that never started, a shared filesystem that has not shown it yet).
pub fn log_tail(path: &Path, max_lines: usize) -> io::Result<Option<String>> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    let start = len.saturating_sub(TAIL_BYTES);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::with_capacity((len - start) as usize);
    file.read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let mut lines: Vec<&str> = text.lines().collect();
    if start > 0 && !lines.is_empty() {
        lines.remove(0); // the first line is cut
    }
    let keep = lines.len().saturating_sub(max_lines);
    Ok(Some(lines[keep..].join("\n")))
}

/// How a process that did not succeed ended, as the error of its stage says it:
/// `exited with code 3`, `was killed by signal 9`.
pub fn exit_wording(status: &ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exited with code {c}"),
        (None, Some(s)) => format!("was killed by signal {s}"),
        _ => "ended abnormally".to_string(),
    }
}

/// Asks the kernel to send `signal` to the calling process when its parent dies (Linux;
/// elsewhere nothing is set), and says whether `parent`, the parent it had before, is still
/// its parent: `false` means the parent died before this was set, so the signal will never
/// come. Makes system calls only, so it may run between `fork` and `exec`.
pub fn die_with_parent(signal: libc::c_int, parent: libc::pid_t) -> bool {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with PR_SET_PDEATHSIG only sets a signal to receive; getppid has no
    // preconditions.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, signal);
        libc::getppid() == parent
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (signal, parent);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_of_missing_short_and_long_logs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.err");
        assert_eq!(log_tail(&path, 5).unwrap(), None);
        std::fs::write(&path, "a\nb\nc\n").unwrap();
        assert_eq!(log_tail(&path, 2).unwrap().unwrap(), "b\nc");
        assert_eq!(log_tail(&path, 10).unwrap().unwrap(), "a\nb\nc");
        let long: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&path, long + "error: boom\n").unwrap();
        assert_eq!(
            log_tail(&path, 2).unwrap().unwrap(),
            "line 19999\nerror: boom"
        );
        let all = log_tail(&path, usize::MAX).unwrap().unwrap();
        assert!(all.len() <= TAIL_BYTES as usize);
        assert!(
            all.starts_with("line "),
            "no cut line first: {:?}",
            &all[..20]
        );
    }

    #[test]
    fn exit_statuses_read_as_code_or_signal() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            exit_wording(&ExitStatus::from_raw(3 << 8)),
            "exited with code 3"
        );
        assert_eq!(
            exit_wording(&ExitStatus::from_raw(9)),
            "was killed by signal 9"
        );
    }
}
