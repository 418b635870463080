//! A program's output kept within a bound: its first and its last [`KEEP`] bytes, and a
//! line in between saying how much was left out.
//!
//! A stage's log is published with its outputs and stays in the run store for as long as
//! the run does, so a program that prints 50 MB (a progress line per batch, a warning in a
//! loop) must not cost 50 MB per run. The head says how it started (arguments, versions,
//! the first error), the tail how it ended (the traceback): those are kept; the middle is
//! counted and dropped. The engine bounds the error text it keeps of every stage process
//! with the same type.

use std::collections::VecDeque;
use std::io::{self, Write};

/// Bytes kept at each end of a log: 1 MiB.
pub const KEEP: usize = 1 << 20;

/// Writes the first `head` bytes it is given through to `out` at once, keeps the last `tail`
/// in memory, and counts the rest; [`BoundedLog::finish`] writes the count and the tail.
pub struct BoundedLog<W: Write> {
    out: W,
    /// Bytes kept at the start.
    head: usize,
    /// Bytes that may still go straight to `out`.
    head_left: usize,
    tail: VecDeque<u8>,
    tail_cap: usize,
    dropped: u64,
}

impl<W: Write> BoundedLog<W> {
    pub fn new(out: W, head: usize, tail: usize) -> BoundedLog<W> {
        BoundedLog {
            out,
            head,
            head_left: head,
            tail: VecDeque::new(),
            tail_cap: tail,
            dropped: 0,
        }
    }

    /// Takes the next bytes of the output.
    pub fn write(&mut self, mut buf: &[u8]) -> io::Result<()> {
        if self.head_left > 0 {
            let n = self.head_left.min(buf.len());
            self.out.write_all(&buf[..n])?;
            self.head_left -= n;
            buf = &buf[n..];
        }
        if buf.len() >= self.tail_cap {
            self.dropped += (self.tail.len() + buf.len() - self.tail_cap) as u64;
            self.tail.clear();
            self.tail.extend(&buf[buf.len() - self.tail_cap..]);
            return Ok(());
        }
        let over = (self.tail.len() + buf.len()).saturating_sub(self.tail_cap);
        self.tail.drain(..over);
        self.dropped += over as u64;
        self.tail.extend(buf);
        Ok(())
    }

    /// Bytes dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Writes what was dropped (when anything was) and the tail; returns the writer and the
    /// number of bytes dropped.
    pub fn finish(mut self) -> io::Result<(W, u64)> {
        if self.dropped > 0 {
            let note = format!(
                "\n[repro: {} bytes of output left out here; the log keeps the first {} and \
                 the last {}]\n",
                self.dropped,
                size(self.head),
                size(self.tail_cap)
            );
            self.out.write_all(note.as_bytes())?;
        }
        let (a, b) = self.tail.as_slices();
        self.out.write_all(a)?;
        self.out.write_all(b)?;
        self.out.flush()?;
        Ok((self.out, self.dropped))
    }
}

/// `1 MiB`, `64 KiB`, `100 bytes`.
fn size(n: usize) -> String {
    if n >= 1 << 20 && n % (1 << 20) == 0 {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n % (1 << 10) == 0 {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(head: usize, tail: usize, writes: &[&[u8]]) -> (String, u64) {
        let mut log = BoundedLog::new(Vec::new(), head, tail);
        for w in writes {
            log.write(w).unwrap();
        }
        let (out, dropped) = log.finish().unwrap();
        (String::from_utf8(out).unwrap(), dropped)
    }

    #[test]
    fn short_output_is_kept_whole() {
        assert_eq!(run(8, 8, &[b"abc", b"def"]), ("abcdef".into(), 0));
        assert_eq!(run(4, 4, &[b"abcdefgh"]), ("abcdefgh".into(), 0));
    }

    #[test]
    fn long_output_keeps_both_ends_and_counts_the_middle() {
        let (text, dropped) = run(4, 4, &[b"0123", b"45", b"6789", b"ab"]);
        assert_eq!(dropped, 4);
        assert!(text.starts_with("0123\n[repro: 4 bytes of output left out here"));
        assert!(text.ends_with("]\n89ab"), "{text}");
        // One large write.
        let (text, dropped) = run(2, 3, &[b"abcdefghij"]);
        assert_eq!(dropped, 5);
        assert!(text.starts_with("ab\n[repro: 5 bytes"), "{text}");
        assert!(text.ends_with("hij"), "{text}");
    }
}
