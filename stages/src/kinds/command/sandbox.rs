//! The `command` stage's sandbox: on Linux, the program may write only into the stage's own
//! folders, enforced by the kernel with [Landlock](https://docs.kernel.org/userspace-api/landlock.html).
//!
//! A program that writes into the project root, `/tmp` or an input's folder in the run
//! store changes what no fingerprint covers and what `verify` cannot see; a cached result
//! must come from its inputs alone. So the program runs under a Landlock ruleset that handles
//! every kind of filesystem write (writing or truncating a file, creating, removing, linking
//! or renaming entries) and allows them only beneath:
//!
//! - `REPRO_OUT`, `REPRO_CHECKPOINT` and the stage's private temporary folder (`TMPDIR`);
//! - `/dev`: device files (`/dev/null`, a GPU's device nodes) and POSIX shared memory
//!   (`/dev/shm`, which Python's `multiprocessing` and data loaders use).
//!
//! Reading and executing stay allowed everywhere, and the network is not touched. A refused
//! write fails as the system call's `EACCES` ("Permission denied") in the program. The
//! ruleset is built in this process ([`Sandbox::new`]) and entered by the child between
//! `fork` and `exec` ([`enter`]), so it binds the program and everything it starts; the
//! program also gets `no_new_privs` (Landlock requires it: set-user-id programs such as
//! `sudo` no longer raise privileges).
//!
//! The rules use the highest Landlock ABI the kernel offers up to 3 (file truncation); from
//! ABI 2 on, files may be renamed or linked between the allowed folders (ABI 1 refuses any
//! rename across folders). A kernel without Landlock (older than 5.13, or with Landlock not
//! among its enabled security modules), or a container whose seccomp filter refuses its
//! system calls, gives [`Unavailable`]: the stage then runs the program unconfined and says
//! so in its log.

use std::fmt;
#[cfg(not(target_os = "linux"))]
use std::path::Path;

/// Why the kernel cannot confine the program: a sentence for the stage's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable(pub String);

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(target_os = "linux")]
pub use linux::{enter, Sandbox};

#[cfg(target_os = "linux")]
mod linux {
    use std::ffi::CString;
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;

    use super::Unavailable;

    const CREATE_RULESET_VERSION: libc::c_uint = 1;
    const RULE_PATH_BENEATH: libc::c_int = 1;

    const WRITE_FILE: u64 = 1 << 1;
    const REMOVE_DIR: u64 = 1 << 4;
    const REMOVE_FILE: u64 = 1 << 5;
    const MAKE_CHAR: u64 = 1 << 6;
    const MAKE_DIR: u64 = 1 << 7;
    const MAKE_REG: u64 = 1 << 8;
    const MAKE_SOCK: u64 = 1 << 9;
    const MAKE_FIFO: u64 = 1 << 10;
    const MAKE_BLOCK: u64 = 1 << 11;
    const MAKE_SYM: u64 = 1 << 12;
    /// ABI 2.
    const REFER: u64 = 1 << 13;
    /// ABI 3.
    const TRUNCATE: u64 = 1 << 14;

    /// `struct landlock_ruleset_attr`, first field only (the kernel takes a shorter struct).
    #[repr(C)]
    struct RulesetAttr {
        handled_access_fs: u64,
    }

    /// `struct landlock_path_beneath_attr` (packed in the kernel's header).
    #[repr(C, packed)]
    struct PathBeneath {
        allowed_access: u64,
        parent_fd: i32,
    }

    /// A Landlock ruleset allowing writes beneath a few folders only, ready to be entered.
    #[derive(Debug)]
    pub struct Sandbox {
        ruleset: OwnedFd,
        /// The Landlock ABI version the rules use.
        pub abi: i64,
    }

    /// Every write access the kernel's ABI `abi` can refuse.
    fn write_access(abi: i64) -> u64 {
        let mut a = WRITE_FILE
            | REMOVE_DIR
            | REMOVE_FILE
            | MAKE_CHAR
            | MAKE_DIR
            | MAKE_REG
            | MAKE_SOCK
            | MAKE_FIFO
            | MAKE_BLOCK
            | MAKE_SYM;
        if abi >= 2 {
            a |= REFER;
        }
        if abi >= 3 {
            a |= TRUNCATE;
        }
        a
    }

    impl Sandbox {
        /// A ruleset that refuses every write outside `writable` (folders that must exist)
        /// and `/dev`. `Err(Ok(_))`: the kernel has no Landlock; `Err(Err(_))`: it has, but a
        /// folder could not be added.
        pub fn new(writable: &[&Path]) -> Result<Sandbox, Result<Unavailable, io::Error>> {
            // SAFETY: with a null attribute and size 0, the call only returns the ABI version.
            let abi = unsafe {
                libc::syscall(
                    libc::SYS_landlock_create_ruleset,
                    std::ptr::null::<RulesetAttr>(),
                    0usize,
                    CREATE_RULESET_VERSION,
                )
            };
            if abi < 1 {
                let e = io::Error::last_os_error();
                let why = match e.raw_os_error() {
                    Some(libc::ENOSYS) => {
                        "this kernel has no Landlock (Linux 5.13 or later has it)"
                    }
                    Some(libc::EOPNOTSUPP) => {
                        "Landlock is not enabled in this kernel (boot option lsm=...,landlock)"
                    }
                    _ => "the landlock_create_ruleset system call is refused here",
                };
                return Err(Ok(Unavailable(format!("{why}: {e}"))));
            }
            let abi = abi.min(3);
            let access = write_access(abi);
            let attr = RulesetAttr {
                handled_access_fs: access,
            };
            // SAFETY: `attr` is a valid ruleset attribute of the given size.
            let fd = unsafe {
                libc::syscall(
                    libc::SYS_landlock_create_ruleset,
                    &attr as *const RulesetAttr,
                    std::mem::size_of::<RulesetAttr>(),
                    0 as libc::c_uint,
                )
            };
            if fd < 0 {
                return Err(Err(io::Error::last_os_error()));
            }
            // SAFETY: the kernel returned a new file descriptor (close-on-exec) we now own.
            let ruleset = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
            let dev = Path::new("/dev");
            let extra: &[&Path] = if dev.is_dir() { &[dev] } else { &[] };
            for dir in writable.iter().chain(extra) {
                allow_beneath(&ruleset, dir, access).map_err(|e| {
                    Err(io::Error::new(
                        e.kind(),
                        format!("allowing writes beneath {}: {e}", dir.display()),
                    ))
                })?;
            }
            Ok(Sandbox { ruleset, abi })
        }

        /// The ruleset's descriptor, for [`enter`] in the child.
        pub fn fd(&self) -> RawFd {
            self.ruleset.as_raw_fd()
        }
    }

    fn allow_beneath(ruleset: &OwnedFd, dir: &Path, access: u64) -> io::Result<()> {
        let c = CString::new(dir.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in the path"))?;
        // SAFETY: opening a path by a valid C string; the result is checked.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a descriptor just opened and owned here.
        let dir_fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let rule = PathBeneath {
            allowed_access: access,
            parent_fd: dir_fd.as_raw_fd(),
        };
        // SAFETY: a valid ruleset descriptor and rule attribute.
        let r = unsafe {
            libc::syscall(
                libc::SYS_landlock_add_rule,
                ruleset.as_raw_fd(),
                RULE_PATH_BENEATH,
                &rule as *const PathBeneath,
                0 as libc::c_uint,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Confines the calling process (and what it starts) to the ruleset `fd`. Called in the
    /// child between `fork` and `exec`: only system calls, no allocation.
    pub fn enter(fd: RawFd) -> io::Result<()> {
        // SAFETY: prctl and the Landlock call only change this process's own restrictions.
        unsafe {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::syscall(libc::SYS_landlock_restrict_self, fd, 0 as libc::c_uint) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// Outside Linux there is no Landlock: every sandbox is [`Unavailable`].
#[cfg(not(target_os = "linux"))]
#[derive(Debug)]
pub struct Sandbox {
    pub abi: i64,
}

#[cfg(not(target_os = "linux"))]
impl Sandbox {
    pub fn new(_writable: &[&Path]) -> Result<Sandbox, Result<Unavailable, std::io::Error>> {
        Err(Ok(Unavailable("Landlock exists on Linux only".into())))
    }
    pub fn fd(&self) -> i32 {
        -1
    }
}

#[cfg(not(target_os = "linux"))]
pub fn enter(_fd: i32) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// A child process confined to `allowed` tries to create `target`.
    #[cfg(target_os = "linux")]
    fn child_can_create(allowed: &Path, target: &Path) -> Option<bool> {
        use std::os::unix::process::CommandExt;
        let sb = match Sandbox::new(&[allowed]) {
            Ok(sb) => sb,
            Err(Ok(why)) if std::env::var("CI").as_deref() == Ok("true") => {
                panic!("CI=true and the kernel cannot confine a program: {why}")
            }
            Err(Ok(why)) => {
                eprintln!("SKIPPED: the kernel cannot confine a program: {why}");
                return None;
            }
            Err(Err(e)) => panic!("{e}"),
        };
        let fd = sb.fd();
        let mut cmd = std::process::Command::new("sh");
        cmd.arg("-c").arg(format!(": > '{}'", target.display()));
        // SAFETY: `enter` makes system calls only.
        unsafe {
            cmd.pre_exec(move || enter(fd));
        }
        Some(cmd.status().unwrap().success())
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn writes_are_allowed_beneath_the_folders_only() {
        let dir = tempfile::tempdir().unwrap();
        let inside = dir.path().join("inside");
        std::fs::create_dir(&inside).unwrap();
        let Some(ok) = child_can_create(&inside, &inside.join("b.txt")) else {
            return;
        };
        assert!(ok, "a write inside the allowed folder");
        assert!(inside.join("b.txt").exists());
        assert_eq!(
            child_can_create(&inside, &dir.path().join("outside.txt")),
            Some(false)
        );
        assert!(!dir.path().join("outside.txt").exists());
        assert_eq!(
            child_can_create(&inside, Path::new("/dev/null")),
            Some(true)
        );
    }
}
