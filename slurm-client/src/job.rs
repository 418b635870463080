//! One stage job as submitted to Slurm: the batch script and the `sbatch` command line.
//!
//! The batch script only sets the environment, changes to the working directory and `exec`s
//! the command, so the job's exit status *is* the command's: exit code 0, 1 or 130, or the
//! signal that killed it. Slurm reports it unchanged (see [`crate::JobState`]).

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::{SlurmError, SlurmResources};

/// A Slurm job id as printed by `sbatch --parsable`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobId(pub u64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl JobId {
    /// Reads the stdout of `sbatch --parsable`: `<id>` or `<id>;<cluster>`, plus a newline.
    pub fn from_sbatch_parsable(stdout: &str) -> Option<JobId> {
        let line = stdout.lines().map(str::trim).rfind(|l| !l.is_empty())?;
        let id = line.split(';').next()?.trim();
        id.parse().ok().map(JobId)
    }
}

/// Everything needed to run one command as a Slurm batch job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    /// Job name (`--job-name`), shown by `squeue`; e.g. `repro:<stage>`. No newline.
    pub name: String,
    /// The command: program and arguments (for a stage: the `repro` binary's absolute path,
    /// `exec-stage`, the job file). The program must exist at that path on the compute node.
    pub argv: Vec<OsString>,
    /// Working directory of the job (`--chdir`), absolute, on the shared filesystem.
    pub workdir: PathBuf,
    /// Environment variables set in the job on top of the submitting environment, which
    /// `sbatch` exports by default (including `SLURM_CONF` and `PATH`). Names must be
    /// `[A-Za-z_][A-Za-z0-9_]*`.
    pub env: Vec<(String, OsString)>,
    /// File receiving the command's stdout (`--output`), absolute. A stage writes its
    /// progress lines there; see [`crate::LogFollower`].
    pub stdout: PathBuf,
    /// File receiving the command's stderr (`--error`), absolute; may equal `stdout`. Slurm's
    /// own messages about the job ("*** JOB 12 ON node CANCELLED AT ... ***") land here too;
    /// the engine reads the tail of this file when a job fails.
    pub stderr: PathBuf,
    /// Where the batch script is written before submission, absolute. Kept for debugging: it
    /// can be resubmitted by hand with the same `sbatch` options.
    pub script: PathBuf,
    /// Resources asked from Slurm.
    pub resources: SlurmResources,
}

impl JobSpec {
    /// The job of one stage: `<exe> exec-stage <job_file>` run in `project_dir`, named
    /// `repro:<stage>`, with its batch script and logs in `files_dir` as `<stage>.sbatch`,
    /// `<stage>.out` (stdout: progress lines) and `<stage>.err` (stderr: errors). `exe` (usually
    /// `std::env::current_exe()`) and every path must be visible from the compute nodes at the
    /// same place (a shared filesystem).
    pub fn exec_stage(
        stage: &str,
        exe: &Path,
        job_file: &Path,
        project_dir: &Path,
        files_dir: &Path,
        resources: SlurmResources,
    ) -> JobSpec {
        let file = |ext: &str| files_dir.join(format!("{stage}.{ext}"));
        JobSpec {
            name: format!("repro:{stage}"),
            argv: vec![exe.into(), "exec-stage".into(), job_file.into()],
            workdir: project_dir.to_path_buf(),
            env: Vec::new(),
            stdout: file("out"),
            stderr: file("err"),
            script: file("sbatch"),
            resources,
        }
    }

    fn invalid(&self, detail: impl Into<String>) -> SlurmError {
        SlurmError::Spec {
            name: self.name.clone(),
            detail: detail.into(),
        }
    }

    /// Checks the spec without touching the filesystem or Slurm.
    pub fn validate(&self) -> Result<(), SlurmError> {
        if self.name.is_empty() || self.name.chars().any(char::is_control) {
            return Err(self.invalid("the job name is empty or contains a control character"));
        }
        if self.argv.is_empty() || self.argv[0].is_empty() {
            return Err(self.invalid("the command is empty"));
        }
        for (what, path) in [
            ("working directory", &self.workdir),
            ("stdout file", &self.stdout),
            ("stderr file", &self.stderr),
            ("batch script", &self.script),
        ] {
            if !path.is_absolute() {
                return Err(self.invalid(format!("the {what} {} is not absolute", path.display())));
            }
        }
        for path in [&self.stdout, &self.stderr] {
            // sbatch expands %j, %x, %u, ... in file names; a literal % would be rewritten.
            if path.as_os_str().as_bytes().contains(&b'%') {
                return Err(self.invalid(format!(
                    "the log file {} contains '%', which sbatch would expand",
                    path.display()
                )));
            }
        }
        for (key, _) in &self.env {
            let mut chars = key.chars();
            let first_ok = chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
            if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(self.invalid(format!("{key:?} is not an environment variable name")));
            }
        }
        self.resources.validate()
    }

    /// The batch script: a POSIX shell script that exports `env`, enters `workdir` and `exec`s
    /// `argv`. Every value is single-quoted, so any byte except NUL is passed through unchanged.
    pub fn batch_script(&self) -> Vec<u8> {
        let mut s = Vec::new();
        s.extend_from_slice(b"#!/bin/sh\n");
        s.extend_from_slice(b"# Slurm batch job written by repro: ");
        s.extend_from_slice(self.name.as_bytes());
        s.extend_from_slice(b"\n");
        for (key, value) in &self.env {
            s.extend_from_slice(b"export ");
            s.extend_from_slice(key.as_bytes());
            s.push(b'=');
            shell_quote(value, &mut s);
            s.push(b'\n');
        }
        s.extend_from_slice(b"cd ");
        shell_quote(self.workdir.as_os_str(), &mut s);
        s.extend_from_slice(b" || exit 1\n");
        // exec: the job's exit status is the command's own, signals included.
        s.extend_from_slice(b"exec");
        for arg in &self.argv {
            s.push(b' ');
            shell_quote(arg, &mut s);
        }
        s.push(b'\n');
        s
    }

    /// The `sbatch` arguments, the script path last. `--no-requeue`: if a node fails, the job
    /// ends as NODE_FAIL and the engine decides what to rerun, instead of Slurm silently
    /// starting the stage again.
    pub fn sbatch_args(&self) -> Result<Vec<OsString>, SlurmError> {
        self.validate()?;
        let mut args: Vec<OsString> = vec![
            "--parsable".into(),
            "--no-requeue".into(),
            format!("--job-name={}", self.name).into(),
            with_prefix("--chdir=", &self.workdir),
            with_prefix("--output=", &self.stdout),
            with_prefix("--error=", &self.stderr),
        ];
        args.extend(
            self.resources
                .sbatch_args()?
                .into_iter()
                .map(OsString::from),
        );
        args.push(self.script.clone().into_os_string());
        Ok(args)
    }

    /// Writes the batch script (mode 0755), creating its directory and those of the logs.
    pub fn write_script(&self) -> Result<(), SlurmError> {
        use std::os::unix::fs::PermissionsExt;
        for path in [&self.script, &self.stdout, &self.stderr] {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|source| SlurmError::Io {
                    action: "create directory",
                    path: dir.to_path_buf(),
                    source,
                })?;
            }
        }
        let io = |action, source| SlurmError::Io {
            action,
            path: self.script.clone(),
            source,
        };
        std::fs::write(&self.script, self.batch_script())
            .map_err(|e| io("write batch script", e))?;
        std::fs::set_permissions(&self.script, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| io("make executable", e))
    }
}

fn with_prefix(prefix: &str, path: &Path) -> OsString {
    let mut s = OsString::from(prefix);
    s.push(path.as_os_str());
    s
}

/// Appends `value` single-quoted for sh: `'` becomes `'\''`.
fn shell_quote(value: &OsStr, out: &mut Vec<u8>) {
    out.push(b'\'');
    for &b in value.as_bytes() {
        if b == b'\'' {
            out.extend_from_slice(b"'\\''");
        } else {
            out.push(b);
        }
    }
    out.push(b'\'');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> JobSpec {
        JobSpec {
            name: "repro:train-mlc".into(),
            argv: vec![
                "/opt/repro/bin/repro".into(),
                "exec-stage".into(),
                "/p/job's.json".into(),
            ],
            workdir: "/p".into(),
            env: vec![("REPRO_LOG".into(), "a b".into())],
            stdout: "/p/.runs/7/train.out".into(),
            stderr: "/p/.runs/7/train.err".into(),
            script: "/p/.runs/7/train.sbatch".into(),
            resources: SlurmResources {
                cpus: Some(2),
                ..Default::default()
            },
        }
    }

    #[test]
    fn stage_job() {
        let s = JobSpec::exec_stage(
            "train-mlc",
            Path::new("/opt/repro/bin/repro"),
            Path::new("/p/.runs/7/train-mlc.json"),
            Path::new("/p"),
            Path::new("/p/.runs/7/slurm"),
            SlurmResources {
                cpus: Some(4),
                ..Default::default()
            },
        );
        assert_eq!(s.name, "repro:train-mlc");
        assert_eq!(
            s.argv,
            [
                "/opt/repro/bin/repro",
                "exec-stage",
                "/p/.runs/7/train-mlc.json"
            ]
        );
        assert_eq!(s.stdout, Path::new("/p/.runs/7/slurm/train-mlc.out"));
        assert_eq!(s.stderr, Path::new("/p/.runs/7/slurm/train-mlc.err"));
        assert_eq!(s.script, Path::new("/p/.runs/7/slurm/train-mlc.sbatch"));
        s.validate().unwrap();
    }

    #[test]
    fn parsable_job_ids() {
        // `sbatch --parsable --wrap true` on the test cluster printed "3\n".
        assert_eq!(JobId::from_sbatch_parsable("3\n"), Some(JobId(3)));
        // With a federation or a cluster name, sbatch prints "<id>;<cluster>".
        assert_eq!(
            JobId::from_sbatch_parsable("123456;mycluster\n"),
            Some(JobId(123456))
        );
        assert_eq!(JobId::from_sbatch_parsable(""), None);
        assert_eq!(JobId::from_sbatch_parsable("Submitted batch job 5\n"), None);
    }

    #[test]
    fn batch_script_quotes_everything_and_execs() {
        let script = String::from_utf8(spec().batch_script()).unwrap();
        assert_eq!(
            script,
            "#!/bin/sh\n\
             # Slurm batch job written by repro: repro:train-mlc\n\
             export REPRO_LOG='a b'\n\
             cd '/p' || exit 1\n\
             exec '/opt/repro/bin/repro' 'exec-stage' '/p/job'\\''s.json'\n"
        );
    }

    #[test]
    fn sbatch_arguments() {
        let args = spec().sbatch_args().unwrap();
        let args: Vec<_> = args.iter().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(
            args,
            [
                "--parsable",
                "--no-requeue",
                "--job-name=repro:train-mlc",
                "--chdir=/p",
                "--output=/p/.runs/7/train.out",
                "--error=/p/.runs/7/train.err",
                "--cpus-per-task=2",
                "/p/.runs/7/train.sbatch"
            ]
        );
    }

    #[test]
    fn invalid_specs_are_rejected_with_the_reason() {
        let cases: Vec<(fn(&mut JobSpec), &str)> = vec![
            (|s| s.argv.clear(), "command is empty"),
            (
                |s| s.workdir = "rel".into(),
                "working directory rel is not absolute",
            ),
            (|s| s.stdout = "/p/%j.out".into(), "contains '%'"),
            (
                |s| s.env.push(("1X".into(), "".into())),
                "not an environment variable name",
            ),
            (|s| s.name = "a\nb".into(), "control character"),
            (|s| s.resources.mem = Some("lots".into()), "mem"),
        ];
        for (edit, expected) in cases {
            let mut s = spec();
            edit(&mut s);
            let err = s.sbatch_args().unwrap_err().to_string();
            assert!(err.contains(expected), "{err} should contain {expected}");
            let names_the_job = err.contains("repro:train-mlc") || err.contains("a\nb");
            assert!(names_the_job || expected == "mem", "{err}");
        }
    }
}
