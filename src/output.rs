//! The command's standard output, written so that a failure to write it is an error the
//! command reports, never a panic.
//!
//! `println!` panics when stdout cannot take a line (`repro status > /dev/full`: "failed
//! printing to stdout", exit 101). Lines written through [`write`] return the I/O error
//! instead, and the command ends with one line on stderr and exit code 1 (see
//! [`crate::cli`]). Two other cases need nothing here: a reader that goes away (`repro
//! status | head`) ends the command through SIGPIPE, as it ends `cat` (see
//! [`crate::cli`]), and a descriptor closed before the start (`repro status >&-`) is
//! replaced by `/dev/null` by Rust's runtime, so the output is discarded as with
//! `> /dev/null` and no file the command opens can take its place.

use std::fmt;
use std::io::{self, Write};

/// Writes `args` to stdout; the I/O error when the write fails.
pub fn write(args: fmt::Arguments) -> io::Result<()> {
    io::stdout().lock().write_fmt(args)
}

/// Flushes stdout (what [`write`] left in its buffer). A reader that went away is no
/// error here: only `run` gets this far after one, and it goes on without its reader.
pub fn flush() -> io::Result<()> {
    match io::stdout().flush() {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Writes a line to stderr, ignoring failure: there is nowhere left to report it.
pub fn error_line(args: fmt::Arguments) {
    let mut e = io::stderr().lock();
    let _ = e.write_fmt(args);
    let _ = e.write_all(b"\n");
}
