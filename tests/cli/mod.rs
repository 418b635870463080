//! Running the `repro` binary from integration tests.

use std::path::Path;
use std::process::Command;

/// Runs `repro -C dir args...`; returns the exit code and stdout followed by stderr.
pub fn repro(dir: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_repro"))
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}
