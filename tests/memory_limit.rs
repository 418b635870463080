//! A network too large for the memory the stage process may take fails before anything is
//! allocated, naming the limit: here the address space `ulimit -v` gives the run, far below
//! the machine's memory. Runs the built `repro` binary on the embedded digits.

mod common;

use std::os::unix::process::CommandExt;
use std::os::unix::process::ExitStatusExt;

use common::{err_text, project_copy, Proj};

/// 4 GiB of address space for the run and the stages it starts.
const LIMIT: u64 = 4 << 30;

#[test]
fn network_beyond_the_process_memory_limit_fails_before_allocating() {
    let (tmp, dir) = project_copy();
    let p = Proj::at(&dir, tmp);
    // 64 features in, 280 M parameters: about 4.5 GiB to train (weights, gradients and
    // two moments), under the parameter limit and the memory of the machines here, above
    // the limit.
    p.write(
        "\
stages:
  digits:
    kind: download
    params: { dataset: digits }
  wide:
    kind: train
    inputs: { data: digits }
    params: { method: ce, epochs: 1, model: { arch: mlp, hidden: [20000, 14000] } }
",
    );
    let mut cmd = p.cmd(&["run"]);
    // SAFETY: setrlimit only changes this child's own limit before it execs.
    unsafe {
        cmd.pre_exec(|| {
            let rl = libc::rlimit {
                rlim_cur: LIMIT,
                rlim_max: LIMIT,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &rl) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let o = cmd.output().unwrap();
    let err = err_text(&o);
    assert_eq!(o.status.signal(), None, "{err}");
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("FAILED   wide: ") && err.contains("params field `model`: network mlp"),
        "{err}"
    );
    assert!(
        err.contains("of memory is available: this process's address space (RLIMIT_AS, `ulimit -v`) limit of 4.0 GiB"),
        "{err}"
    );
    assert!(!err.contains("memory allocation of"), "{err}");
    assert_eq!(p.count("runs"), 1, "only the download ran");
}
