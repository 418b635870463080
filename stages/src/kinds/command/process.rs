//! The program's process: started in a process group of its own that never outlives the
//! stage, asked to stop with SIGINT, killed after a grace period or at once, its output
//! captured within a bound.
//!
//! - **Its own group.** The program leads a new process group, so a stop reaches everything
//!   it started (a shell script's interpreter, data-loader workers) and a terminal's Ctrl-C
//!   does not reach it behind the stage's back.
//! - **Nothing left behind.** When the program exits, what is left of its group is killed
//!   before the program is reaped (so the group's id cannot have been reused). If this
//!   process dies first, the kernel kills the program (parent-death signal SIGKILL, checked
//!   against the parent having died before it was set); what the program started is ended by
//!   this process's own parent, which learns the group's id through the hook set with
//!   [`on_program_start`] (the engine's local executor does so, and records the id with the
//!   project lock so that a later run ends what a killed run left). A process that leaves
//!   the group on purpose (`setsid`, a daemon) is not followed.
//! - **Stopping.** When the stage is asked to stop, the group receives SIGINT (Python raises
//!   `KeyboardInterrupt`); a program still running [`GRACE`] later is killed, and so is one
//!   running when [`kill_now`] is called (a second interrupt).
//! - **Output.** stdout and stderr share one pipe, so lines keep the order they were written
//!   in; a thread keeps the first and last [`KEEP`](crate::process::capture::KEEP) bytes of it in
//!   the log ([`crate::process::capture`]). It stops reading once the group is gone and the pipe has
//!   been quiet for a moment, even if an escaped process still holds the pipe open.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::process::capture::BoundedLog;
use crate::process::die_with_parent;

/// How long a program asked to stop may take to save its checkpoint and exit.
pub const GRACE: Duration = Duration::from_secs(30);

/// How often a running program is looked at.
const POLL: Duration = Duration::from_millis(50);

static ON_START: OnceLock<fn(u32)> = OnceLock::new();
static KILL: AtomicBool = AtomicBool::new(false);

/// Sets the function told the process group id of every program this process starts, as
/// soon as it has started (once per process; later calls are ignored).
pub fn on_program_start(hook: fn(u32)) {
    let _ = ON_START.set(hook);
}

/// Kills the running program's group at once, without a grace period (a second interrupt);
/// it then ends as [`Ending::Killed`].
pub fn kill_now() {
    KILL.store(true, Ordering::SeqCst);
}

/// How a program ended.
#[derive(Debug)]
pub enum Ending {
    /// It exited on its own, unasked.
    Exited(ExitStatus),
    /// It exited after being asked to stop, within the grace period.
    Stopped(ExitStatus),
    /// It was still running [`GRACE`] after being asked to stop, and was killed.
    KilledAfterGrace,
    /// It was killed at once ([`kill_now`]).
    Killed,
}

/// Starts `cmd` as the leader of a new process group that dies with this process; with a
/// `sandbox` ruleset descriptor, confined to it ([`super::sandbox::enter`]).
pub fn start(cmd: &mut Command, sandbox: Option<RawFd>) -> io::Result<Child> {
    cmd.process_group(0);
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs between fork and exec and makes system calls only.
    unsafe {
        cmd.pre_exec(move || {
            if !die_with_parent(libc::SIGKILL, parent) {
                return Err(io::Error::other("the stage process ended"));
            }
            if let Some(fd) = sandbox {
                super::sandbox::enter(fd)?;
            }
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    if let Some(hook) = ON_START.get() {
        hook(child.id());
    }
    Ok(child)
}

/// Waits for the program; when `should_stop` turns true, sends its group SIGINT, then
/// SIGKILL after [`GRACE`]. Whatever is left of the group when the program exits is killed.
pub fn supervise(mut child: Child, should_stop: impl Fn() -> bool) -> io::Result<Ending> {
    let pgid = child.id() as libc::pid_t;
    let mut asked: Option<Instant> = None;
    let mut killed: Option<Ending> = None;
    loop {
        if exited(pgid)? {
            signal_group(pgid, libc::SIGKILL);
            let status = child.wait()?;
            return Ok(match (killed, asked) {
                (Some(k), _) => k,
                (None, Some(_)) => Ending::Stopped(status),
                (None, None) => Ending::Exited(status),
            });
        }
        if killed.is_none() {
            if KILL.load(Ordering::SeqCst) {
                signal_group(pgid, libc::SIGKILL);
                killed = Some(Ending::Killed);
            } else if should_stop() {
                match asked {
                    None => {
                        signal_group(pgid, libc::SIGINT);
                        asked = Some(Instant::now());
                    }
                    Some(t) if t.elapsed() > GRACE => {
                        signal_group(pgid, libc::SIGKILL);
                        killed = Some(Ending::KilledAfterGrace);
                    }
                    Some(_) => {}
                }
            }
        }
        std::thread::sleep(POLL);
    }
}

/// Whether the child `pid` has exited, without reaping it.
fn exited(pid: libc::pid_t) -> io::Result<bool> {
    // SAFETY: an all-zero siginfo_t is valid; waitid fills it in.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waits (without blocking or reaping) for a child this process started.
    let r = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: waitid filled in the pid field (0 when the child has not exited).
    Ok(unsafe { info.si_pid() } != 0)
}

fn signal_group(pgid: libc::pid_t, sig: libc::c_int) {
    // SAFETY: signals the process group of a child this process started and has not reaped.
    unsafe {
        libc::kill(-pgid, sig);
    }
}

/// The reading end of the program's output, copied into a bounded log by a thread.
pub struct Capture {
    thread: JoinHandle<io::Result<u64>>,
    done: Arc<AtomicBool>,
}

/// A pipe for the program's stdout and stderr, whose output goes to `log` (after `first`,
/// written at its top) within the bound of [`BoundedLog`]; returns the writing end.
pub fn capture(log: File, first: &[u8], keep: usize) -> io::Result<(File, Capture)> {
    let fds = pipe()?;
    // SAFETY: both descriptors were just created and are owned by nothing else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
    let mut bounded = BoundedLog::new(log, keep, keep);
    bounded.write(first)?;
    let done = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&done);
    let thread = std::thread::spawn(move || copy(read, bounded, &flag));
    Ok((write, Capture { thread, done }))
}

/// A new pipe, both ends close-on-exec: (read, write).
fn pipe() -> io::Result<[libc::c_int; 2]> {
    let mut fds = [0 as libc::c_int; 2];
    #[cfg(target_os = "linux")]
    // SAFETY: pipe2 fills in two new descriptors.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    #[cfg(not(target_os = "linux"))]
    // SAFETY: pipe fills in two new descriptors, then each is marked close-on-exec.
    let r = unsafe {
        let r = libc::pipe(fds.as_mut_ptr());
        for fd in fds {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
        r
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fds)
}

impl Capture {
    /// Call once the program and its group are gone: reads what is left in the pipe, writes
    /// the log's end and returns how many bytes were dropped from its middle.
    pub fn finish(self) -> io::Result<u64> {
        self.done.store(true, Ordering::SeqCst);
        self.thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the log thread panicked")))
    }
}

fn copy(read: OwnedFd, mut log: BoundedLog<File>, done: &AtomicBool) -> io::Result<u64> {
    let fd = read.as_raw_fd();
    let mut file = File::from(read);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: polls one valid descriptor.
        let r = unsafe { libc::poll(&mut p, 1, 100) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if r == 0 {
            if done.load(Ordering::SeqCst) {
                break;
            }
            continue;
        }
        let n = match file.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            break;
        }
        log.write(&buf[..n])?;
    }
    log.finish().map(|(_, dropped)| dropped)
}
