//! A stage launcher: a program that starts every stage process, as cargo's `target.runner`
//! starts test binaries.
//!
//! `repro run --launcher "CMD ARGS"`, or the environment variable `REPRO_LAUNCHER` (the flag
//! wins when both are set), makes the executors start `CMD ARGS <repro> exec-stage <job.json>`
//! instead of `<repro> exec-stage <job.json>`: locally as the child process, on Slurm as the
//! command the batch script `exec`s. It serves QEMU's user-mode emulator
//! (`qemu-x86_64 -cpu Nehalem` runs the stages as an older CPU) and running stages under
//! `nice`, `taskset`, `perf` or a container.
//!
//! The string is split on whitespace, without a shell: no quoting, no variables, no globs, so
//! neither the program nor an argument can contain a space (a wrapper script can). An empty
//! `--launcher ""` runs without one even when `REPRO_LAUNCHER` is set; a blank
//! `REPRO_LAUNCHER` counts as unset.
//!
//! The program is looked up before any stage starts ([`Launcher::resolve`]): one that does not
//! exist, or is not executable, is refused with its name and where it came from, and the run
//! starts nothing. A program path with a `/` is made absolute against the current directory
//! (so a job on another node finds it); a bare name stays a name, looked up on `PATH` here to
//! check it and again where the stage starts.
//!
//! A launcher is how stages run, not what they compute: like the executor and the thread
//! count, it enters no fingerprint, and a stage run under one is the same cached result as
//! without. It must hand the stage's exit status back, and should let SIGTERM reach the stage
//! (`exec` the rest, as `nice`, `taskset` and `qemu-*` do): a launcher that dies of it instead
//! (`perf stat`) makes an interrupted stage report a failure, although the stage, told by its
//! parent's death, still saves its checkpoint.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};

/// The environment variable naming the launcher when `--launcher` is not given.
pub const LAUNCHER_ENV: &str = "REPRO_LAUNCHER";

/// Where a launcher was named.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LauncherOrigin {
    /// `repro run --launcher`.
    Flag,
    /// [`LAUNCHER_ENV`].
    Env,
}

impl fmt::Display for LauncherOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LauncherOrigin::Flag => f.write_str("--launcher"),
            LauncherOrigin::Env => f.write_str(LAUNCHER_ENV),
        }
    }
}

/// Why a launcher cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LauncherError {
    #[error("launcher `{program}` (from {origin}) not found: no such program on PATH")]
    NotOnPath {
        program: String,
        origin: LauncherOrigin,
    },
    #[error("launcher `{program}` (from {origin}) not found: no file {}", path.display())]
    NoFile {
        program: String,
        origin: LauncherOrigin,
        path: PathBuf,
    },
    #[error("launcher `{program}` (from {origin}): {} is not an executable file", path.display())]
    NotExecutable {
        program: String,
        origin: LauncherOrigin,
        path: PathBuf,
    },
    #[error("{LAUNCHER_ENV} is not valid UTF-8")]
    NotUnicode,
}

/// The program and arguments every stage process is started through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Launcher {
    /// The program, then its arguments; never empty.
    pub argv: Vec<String>,
    pub origin: LauncherOrigin,
}

impl Launcher {
    /// The launcher of a run from the flag's value and the environment variable's: the flag's
    /// when given (empty: none), else the variable's (unset or blank: none).
    pub fn choose(flag: Option<&str>, env: Option<&str>) -> Option<Launcher> {
        let (text, origin) = match (flag, env) {
            (Some(f), _) => (f, LauncherOrigin::Flag),
            (None, Some(e)) => (e, LauncherOrigin::Env),
            (None, None) => return None,
        };
        let argv: Vec<String> = text.split_whitespace().map(str::to_string).collect();
        (!argv.is_empty()).then_some(Launcher { argv, origin })
    }

    /// [`Launcher::choose`] with the value of [`LAUNCHER_ENV`] in this process's environment.
    pub fn from_flag_or_env(flag: Option<&str>) -> Result<Option<Launcher>, LauncherError> {
        let env = match std::env::var(LAUNCHER_ENV) {
            Ok(v) => Some(v),
            Err(std::env::VarError::NotPresent) => None,
            // A flag replaces the variable, so its encoding does not matter then.
            Err(std::env::VarError::NotUnicode(_)) if flag.is_some() => None,
            Err(std::env::VarError::NotUnicode(_)) => return Err(LauncherError::NotUnicode),
        };
        Ok(Launcher::choose(flag, env.as_deref()))
    }

    /// The program, made absolute against `cwd` when it is a path, after checking that it is
    /// an executable file (a bare name: somewhere on `path_var`, the value of `PATH`).
    pub fn resolve(
        mut self,
        cwd: &Path,
        path_var: Option<&OsStr>,
    ) -> Result<Launcher, LauncherError> {
        let program = self.argv[0].clone();
        let origin = self.origin;
        if program.contains('/') {
            let rel: PathBuf = Path::new(&program)
                .components()
                .filter(|c| *c != std::path::Component::CurDir)
                .collect();
            let path = cwd.join(rel);
            match std::fs::metadata(&path) {
                Err(_) => {
                    return Err(LauncherError::NoFile {
                        program,
                        origin,
                        path,
                    })
                }
                Ok(m) if !crate::programs::runnable(&m) => {
                    return Err(LauncherError::NotExecutable {
                        program,
                        origin,
                        path,
                    })
                }
                Ok(_) => {}
            }
            self.argv[0] = path.to_string_lossy().into_owned();
            return Ok(self);
        }
        if crate::programs::on_path(&program, path_var, cwd).is_some() {
            Ok(self)
        } else {
            Err(LauncherError::NotOnPath { program, origin })
        }
    }

    /// The command line that starts `rest` (the stage process's own argv) through the
    /// launcher.
    pub fn wrap(&self, rest: Vec<OsString>) -> Vec<OsString> {
        self.argv.iter().map(OsString::from).chain(rest).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_wins_and_blank_means_none() {
        let l = Launcher::choose(Some("nice -n 19"), Some("qemu-x86_64 -cpu Nehalem")).unwrap();
        assert_eq!(l.argv, ["nice", "-n", "19"]);
        assert_eq!(l.origin, LauncherOrigin::Flag);
        let l = Launcher::choose(None, Some("  qemu-x86_64\t-cpu  Nehalem ")).unwrap();
        assert_eq!(l.argv, ["qemu-x86_64", "-cpu", "Nehalem"]);
        assert_eq!(l.origin, LauncherOrigin::Env);
        assert_eq!(Launcher::choose(Some(""), Some("nice")), None);
        assert_eq!(Launcher::choose(None, Some("   ")), None);
        assert_eq!(Launcher::choose(None, None), None);
    }

    #[test]
    fn wrap_puts_the_launcher_first() {
        let l = Launcher::choose(Some("taskset -c 0"), None).unwrap();
        let argv = l.wrap(vec![
            "/bin/repro".into(),
            "exec-stage".into(),
            "/s/job.json".into(),
        ]);
        assert_eq!(
            argv,
            [
                "taskset",
                "-c",
                "0",
                "/bin/repro",
                "exec-stage",
                "/s/job.json"
            ]
        );
    }

    #[test]
    fn resolve_finds_programs_and_names_what_is_missing() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let run = bin.join("wrap.sh");
        std::fs::write(&run, "#!/bin/sh\nexec \"$@\"\n").unwrap();
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o755)).unwrap();
        let plain = bin.join("plain.txt");
        std::fs::write(&plain, "").unwrap();
        let path = std::env::join_paths([&bin]).unwrap();
        let env = |s: &str| Launcher::choose(None, Some(s)).unwrap();

        let l = env("wrap.sh -x").resolve(dir.path(), Some(&path)).unwrap();
        assert_eq!(l.argv, ["wrap.sh", "-x"], "a bare name stays a name");
        let l = env("bin/wrap.sh").resolve(dir.path(), None).unwrap();
        assert_eq!(l.argv, [run.to_string_lossy()], "a path becomes absolute");

        let e = env("nowhere-to-be-found")
            .resolve(dir.path(), Some(&path))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "launcher `nowhere-to-be-found` (from REPRO_LAUNCHER) not found: no such program on PATH"
        );
        let flag = Launcher::choose(Some("./missing -v"), None).unwrap();
        let e = flag.resolve(dir.path(), Some(&path)).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("launcher `./missing` (from --launcher) not found: no file "),
            "{e}"
        );
        let e = env("bin/plain.txt").resolve(dir.path(), None).unwrap_err();
        assert!(matches!(e, LauncherError::NotExecutable { .. }), "{e}");
        let e = env("plain.txt")
            .resolve(dir.path(), Some(&path))
            .unwrap_err();
        assert!(matches!(e, LauncherError::NotOnPath { .. }), "{e}");
    }
}
