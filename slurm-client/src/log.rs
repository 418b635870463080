//! Reading a job's log files while it runs (progress lines); the tail of a failed job's
//! log is read as any failed process's (`repro_stages::process::log_tail`).
//!
//! On a shared filesystem a job's files may appear, grow or be truncated (a resubmitted job)
//! at any time, so the reader tolerates a missing file and never keeps it open.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use crate::SlurmError;

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
