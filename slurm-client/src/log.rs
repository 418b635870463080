//! Reading a job's log files while it runs (progress lines) and after it failed (the tail).
//!
//! On a shared filesystem a job's files may appear, grow or be truncated (a resubmitted job)
//! at any time, so both readers tolerate a missing file and never keep it open.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::SlurmError;

/// At most this many bytes from the end of a log are read by [`log_tail`].
const TAIL_BYTES: u64 = 64 * 1024;

/// The last `max_lines` lines of a job's log (its stderr file: error messages, and Slurm's
/// "*** JOB 12 ON node CANCELLED AT ... ***" lines), read from at most its last 64 KiB, invalid
/// UTF-8 replaced. `Ok(None)` if the file does not exist (the job never started, or the shared
/// filesystem has not shown it yet).
pub fn log_tail(path: &Path, max_lines: usize) -> Result<Option<String>, SlurmError> {
    let io = |source| SlurmError::Io {
        action: "read job log",
        path: path.to_path_buf(),
        source,
    };
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    let len = file.metadata().map_err(io)?.len();
    let start = len.saturating_sub(TAIL_BYTES);
    file.seek(SeekFrom::Start(start)).map_err(io)?;
    let mut bytes = Vec::with_capacity((len - start) as usize);
    file.read_to_end(&mut bytes).map_err(io)?;
    let text = String::from_utf8_lossy(&bytes);
    let mut lines: Vec<&str> = text.lines().collect();
    if start > 0 && !lines.is_empty() {
        lines.remove(0); // the first line is cut
    }
    let keep = lines.len().saturating_sub(max_lines);
    Ok(Some(lines[keep..].join("\n")))
}

/// Follows a growing log file and returns the complete lines added since the last call: how
/// the engine reads the progress lines a stage writes on stdout while it runs under Slurm.
#[derive(Debug)]
pub struct LogFollower {
    path: PathBuf,
    offset: u64,
    partial: Vec<u8>,
}

impl LogFollower {
    pub fn new(path: impl Into<PathBuf>) -> LogFollower {
        LogFollower {
            path: path.into(),
            offset: 0,
            partial: Vec::new(),
        }
    }

    /// New complete lines (without the newline, invalid UTF-8 replaced). A last line without
    /// newline is held back until it is complete. A missing file gives no lines; a file that
    /// shrank (rewritten) is read again from its start.
    pub fn read_lines(&mut self) -> Result<Vec<String>, SlurmError> {
        let io = |source| SlurmError::Io {
            action: "read job log",
            path: self.path.clone(),
            source,
        };
        let mut file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(e)),
        };
        let len = file.metadata().map_err(io)?.len();
        if len < self.offset {
            self.offset = 0;
            self.partial.clear();
        }
        if len == self.offset {
            return Ok(Vec::new());
        }
        file.seek(SeekFrom::Start(self.offset)).map_err(io)?;
        let mut bytes = Vec::new();
        file.take(len - self.offset)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        self.offset += bytes.len() as u64;
        self.partial.extend_from_slice(&bytes);
        let Some(last_newline) = self.partial.iter().rposition(|&b| b == b'\n') else {
            return Ok(Vec::new());
        };
        let rest = self.partial.split_off(last_newline + 1);
        let complete = std::mem::replace(&mut self.partial, rest);
        Ok(complete[..complete.len() - 1]
            .split(|&b| b == b'\n')
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

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
    fn follower_returns_each_complete_line_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.out");
        let mut f = LogFollower::new(&path);
        assert!(f.read_lines().unwrap().is_empty());
        let mut file = std::fs::File::create(&path).unwrap();
        file.write_all(b"{\"step\":1}\n{\"st").unwrap();
        assert_eq!(f.read_lines().unwrap(), ["{\"step\":1}"]);
        assert!(f.read_lines().unwrap().is_empty());
        file.write_all(b"ep\":2}\n\n{\"step\":3}\n").unwrap();
        assert_eq!(
            f.read_lines().unwrap(),
            ["{\"step\":2}", "", "{\"step\":3}"]
        );
        // Rewritten from scratch (e.g. a resubmitted job): read from the start again.
        std::fs::write(&path, "x\n").unwrap();
        assert_eq!(f.read_lines().unwrap(), ["x"]);
    }
}
