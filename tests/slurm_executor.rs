//! `repro run --executor slurm` against a real one-node Slurm cluster started by
//! `.ci/slurm/start`: the same bytes as the local executor, a no-op second run, a failing
//! job, a cancelled run and a killed job. Each runs the built `repro` binary in a temporary
//! project (on the local filesystem, which the one-node cluster shares).
//!
//! When the cluster cannot be started (not root, no apt, no Debian mirror) every test prints
//! why and passes without checking anything, except with `CI=true`, where that is a failure.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use common::{drain, slow_pipeline, wait_for, Proj};

/// `SLURM_CONF` of the test cluster, or `None` (with the reason printed) when there is none.
fn cluster() -> Option<&'static Path> {
    static CLUSTER: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let result = CLUSTER.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/slurm/start");
        let out = Command::new(&script)
            .output()
            .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        if !out.status.success() {
            return Err(format!(
                "{} failed ({}):\n{}",
                script.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        stdout
            .lines()
            .find_map(|l| l.strip_prefix("SLURM_CONF="))
            .map(PathBuf::from)
            .ok_or_else(|| format!("{} printed no SLURM_CONF line:\n{stdout}", script.display()))
    });
    match result {
        Ok(conf) => Some(conf),
        Err(why) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true and the Slurm test cluster cannot be started: {why}")
        }
        Err(why) => {
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr().lock(),
                    "SKIPPED: the Slurm executor tests need a local Slurm cluster, which cannot \
                     be started here (set CI=true to make this a failure): {why}"
                );
            });
            None
        }
    }
}

/// A project whose commands use the test cluster of `SLURM_CONF` `conf`.
fn proj(conf: &Path, yaml: &str) -> Proj {
    Proj::new(yaml).with_env("SLURM_CONF", conf)
}

/// Pids of the `repro exec-stage` processes working on project `p`.
fn stage_pids(p: &Proj) -> Vec<u32> {
    let dir = p.dir.to_string_lossy().into_owned();
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(" exec-stage ") && cmd.contains(&dir) {
            pids.push(pid);
        }
    }
    pids
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Members a `repro run` started, sorted (jobs end in any order).
fn ran(stdout: &str) -> Vec<String> {
    let mut v = common::ran(stdout);
    v.sort();
    v
}

/// Slurm job ids a run reported (`<member>: slurm job N, logs ...`).
fn job_ids(stdout: &str) -> Vec<u64> {
    stdout
        .lines()
        .filter_map(|l| l.split(": slurm job ").nth(1))
        .map(|r| r.split(',').next().unwrap().parse().unwrap())
        .collect()
}

/// Slurm's state of job `id` (`squeue -t all`).
fn job_state(conf: &Path, id: u64) -> String {
    let o = Command::new("squeue")
        .env("SLURM_CONF", conf)
        .args(["-h", "-t", "all", "-o", "%T", "-j", &id.to_string()])
        .output()
        .unwrap();
    text(&o.stdout).trim().to_string()
}

/// Every file under `dir`, relative path -> bytes.
fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Probes with a matrix, an input chain and a published stage, plus the real digits data
/// (committed in the repository) with label noise injected.
const PIPELINE: &str = "\
stages:
  digits:
    kind: download
    params: { dataset: digits }
  noisy:
    kind: inject_noise
    inputs: { data: digits }
    params: { corruption: uniform, strength: 0.4 }
    matrix: { seed: [1, 2] }
  a:
    kind: probe
    params: { value: a }
    matrix: { x_method: [m1, m2], seed: [1, 2] }
  b:
    kind: probe
    inputs: { up: a }
    params: { value: b, steps: 3 }
  all:
    kind: probe
    inputs: { ups: \"b[*]\" }
    params: { value: all }
    publish: out/all
  noisy_copy:
    kind: probe
    inputs: { up: noisy }
    publish: out/noisy
resources:
  default: { cpus: 1, mem: 500M, time: \"10:00\" }
  download: { cpus: 2 }
";

fn with_digits(p: &Proj) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/optdigits/digits.csv.gz");
    let dst = p.dir.join("data/optdigits");
    std::fs::create_dir_all(&dst).unwrap();
    std::fs::copy(src, dst.join("digits.csv.gz")).unwrap();
}

#[test]
fn slurm_run_matches_local_run_byte_for_byte() {
    let Some(conf) = cluster() else { return };
    let local = proj(conf, PIPELINE);
    let slurm = proj(conf, PIPELINE);
    with_digits(&local);
    with_digits(&slurm);
    let l = local.ok(&["run", "-j", "4"]);
    let s = slurm.ok(&["run", "--executor", "slurm", "-j", "8"]);
    assert_eq!(ran(&l), ran(&s));
    assert_eq!(ran(&s).len(), 1 + 2 + 4 + 4 + 1 + 2, "{s}");
    assert_eq!(job_ids(&s).len(), ran(&s).len(), "one job per stage: {s}");
    assert!(job_ids(&l).is_empty());
    // Same fingerprints, same output digests, same published hashes: the same lock text.
    assert_eq!(local.lock(), slurm.lock());
    // The store's outputs (not the wall times under log/) and the published copies.
    let runs = |p: &Proj| {
        tree(&p.dir.join("results/.runs/runs"))
            .into_iter()
            .filter(|(path, _)| !path.contains("/out/log/"))
            .collect::<Vec<_>>()
    };
    assert_eq!(runs(&local), runs(&slurm));
    assert_eq!(tree(&local.dir.join("out")), tree(&slurm.dir.join("out")));
    slurm.ok(&["verify"]);
    // The job files are kept for inspection, under the git-ignored run store.
    let files = tree(&slurm.dir.join("results/.runs/slurm"));
    assert!(
        files.iter().any(|(f, _)| f.ends_with(".sbatch")),
        "{files:?}"
    );
    let script = files
        .iter()
        .find(|(f, _)| f.starts_with("digits.") && f.ends_with(".sbatch"))
        .map(|(_, b)| text(b))
        .unwrap();
    assert!(script.contains("RAYON_NUM_THREADS='2'"), "{script}");
    // The local executor ignores resources; switching executors reruns nothing.
    let again = local.ok(&["run", "--executor", "slurm"]);
    assert!(ran(&again).is_empty(), "{again}");
}

const SMALL: &str = "\
stages:
  a:
    kind: probe
    params: { value: a }
    matrix: { seed: [1, 2, 3] }
  b:
    kind: probe
    inputs: { ups: \"a[*]\" }
    params: { value: b }
    publish: out/b
executor: slurm
";

#[test]
fn slurm_second_run_is_a_noop() {
    let Some(conf) = cluster() else { return };
    let p = proj(conf, SMALL);
    // `executor: slurm` in the file, no flag.
    let first = p.ok(&["run"]);
    assert_eq!(job_ids(&first).len(), 4, "{first}");
    let lock = p.lock();
    let published = tree(&p.dir.join("out"));
    let second = p.ok(&["run"]);
    assert!(ran(&second).is_empty(), "{second}");
    assert!(job_ids(&second).is_empty(), "no job submitted: {second}");
    assert!(second.contains("0 ran, 0 restored, 4 fresh"), "{second}");
    assert_eq!(p.lock(), lock, "the lock is byte-identical");
    assert_eq!(tree(&p.dir.join("out")), published);
    // `status` agrees.
    assert!(p.run(&["status"]).status.success());
}

#[test]
fn slurm_failing_job_fails_the_stage_and_shows_its_log() {
    let Some(conf) = cluster() else { return };
    let p = proj(
        conf,
        "\
stages:
  bad:
    kind: probe
    params: { value: x, steps: 2, fail_at_step: 1 }
    publish: out/bad
  after:
    kind: probe
    inputs: { up: bad }
  good:
    kind: probe
    params: { value: g, steps: 2, sleep_ms: 300 }
    publish: out/good
",
    );
    let o = p.run(&["run", "--executor", "slurm", "--keep-going"]);
    let (stdout, stderr) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(o.status.code(), Some(1), "{stdout}\n{stderr}");
    // The Slurm state and the stage's own error from its stderr log.
    assert!(stderr.contains("FAILED   bad: Slurm job "), "{stderr}");
    assert!(stderr.contains("failed: exit code 1"), "{stderr}");
    assert!(
        stderr.contains("last lines of results/.runs/slurm/bad."),
        "{stderr}"
    );
    assert!(stderr.contains("probe asked to fail at step 1"), "{stderr}");
    // --keep-going: the independent stage ran, the dependent one did not.
    assert_eq!(ran(&stdout), ["bad", "good"], "{stdout}");
    assert!(
        stdout.contains("1 ran, 0 restored, 0 fresh, 1 failed, 1 not run"),
        "{stdout}"
    );
    assert!(p.dir.join("out/good/value.txt").exists());
    assert!(!p.dir.join("out/bad").exists());
    let lock = p.lock_json();
    assert!(lock["profiles"]["default"].get("bad").is_none());
    assert_eq!(p.count("runs"), 1);
    assert_eq!(p.count("staging"), 0);
    // The checkpoint of the failed stage is kept.
    assert_eq!(p.checkpoint_step(), 1);

    // Without --keep-going the run stops after the failure (good is fresh now anyway).
    let o = p.run(&["run", "--executor", "slurm"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("probe asked to fail at step 1"));
}

/// A stage slow enough to be caught while it runs (40 steps of 100 ms), on Slurm.
fn slow() -> String {
    slow_pipeline(100) + "executor: slurm\n"
}

#[test]
fn slurm_cancelled_run_publishes_nothing() {
    let Some(conf) = cluster() else { return };
    let p = proj(conf, &slow());
    let (mut child, lines) = p.spawn(&["run"]);
    wait_for("a checkpoint", Duration::from_secs(60), || {
        p.checkpoint_step() >= 3
    });
    // SAFETY: signalling the process this test started.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let status = child.wait().unwrap();
    let stdout = drain(&lines);
    let stdout = stdout.join("\n");
    assert_eq!(status.code(), Some(130), "{stdout}");
    assert!(stdout.contains("stopped  slow"), "{stdout}");
    // Both jobs ended; the slow one was cancelled by the run.
    let ids = job_ids(&stdout);
    assert_eq!(ids.len(), 2, "{stdout}");
    assert_eq!(job_state(conf, ids[0]), "COMPLETED");
    assert_eq!(job_state(conf, ids[1]), "CANCELLED");
    wait_for("the stage process to end", Duration::from_secs(15), || {
        stage_pids(&p).is_empty()
    });
    // Nothing of the slow stage is published; its checkpoint is kept.
    let k = p.checkpoint_step();
    assert!((3..40).contains(&k), "stopped at step {k}");
    assert!(p.lock_json()["profiles"]["default"].get("slow").is_none());
    assert!(!p.dir.join("out/slow").exists());
    assert_eq!(p.count("runs"), 1);
    assert_eq!(p.count("staging"), 0);
    // The rerun resumes from the checkpoint and completes.
    let s = p.ok(&["run"]);
    assert_eq!(ran(&s), ["slow"], "{s}");
    assert!(s.contains(&format!("slow: resumed from step {k}")), "{s}");
    assert_eq!(
        std::fs::read_to_string(p.dir.join("out/slow/value.txt")).unwrap(),
        "s\nf"
    );
    p.ok(&["verify"]);
}

#[test]
fn slurm_killed_job_publishes_nothing_and_rerun_resumes() {
    let Some(conf) = cluster() else { return };
    let p = proj(conf, &slow());
    let (child, lines) = p.spawn(&["run"]);
    wait_for("a checkpoint", Duration::from_secs(60), || {
        p.checkpoint_step() >= 3
    });
    let pids = stage_pids(&p);
    assert_eq!(pids.len(), 1, "one stage process: {pids:?}");
    // SAFETY: killing the stage process this test's run started.
    assert_eq!(unsafe { libc::kill(pids[0] as i32, libc::SIGKILL) }, 0);
    let out = child.wait_with_output().unwrap();
    let stdout = drain(&lines);
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}\n{stderr}",
        stdout.join("\n")
    );
    assert!(
        stderr.contains("FAILED   slow: Slurm job ") && stderr.contains("SIGKILL"),
        "{stderr}"
    );
    assert!(p.lock_json()["profiles"]["default"].get("slow").is_none());
    assert!(!p.dir.join("out/slow").exists());
    assert_eq!(p.count("runs"), 1);
    assert_eq!(p.count("staging"), 0);
    let k = p.checkpoint_step();
    assert!((3..40).contains(&k), "killed at step {k}");
    let s = p.ok(&["run"]);
    assert_eq!(ran(&s), ["slow"], "{s}");
    assert!(s.contains(&format!("slow: resumed from step {k}")), "{s}");
    p.ok(&["verify"]);
}

#[test]
fn slurm_job_cancelled_by_someone_else_fails_the_stage() {
    let Some(conf) = cluster() else { return };
    let p = proj(conf, &slow());
    let (child, lines) = p.spawn(&["run"]);
    wait_for("a checkpoint", Duration::from_secs(60), || {
        p.checkpoint_step() >= 2
    });
    // The slow stage's job id, from the run's output so far.
    let mut seen = String::new();
    wait_for("the slow stage's job id", Duration::from_secs(10), || {
        seen.extend(lines.try_iter().map(|l| l + "\n"));
        seen.contains("slow: slurm job ")
    });
    let id = *job_ids(&seen).last().unwrap();
    let o = Command::new("scancel")
        .env("SLURM_CONF", conf)
        .arg(id.to_string())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = child.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("FAILED   slow: Slurm job {id} was cancelled")),
        "{stderr}"
    );
    assert!(stderr.contains("outside this run"), "{stderr}");
    assert!(!p.dir.join("out/slow").exists());
    assert_eq!(p.count("staging"), 0);
}

#[test]
fn slurm_killed_run_cancels_its_jobs_on_the_next_run() {
    let Some(conf) = cluster() else { return };
    let p = proj(conf, &slow());
    let (mut child, _lines) = p.spawn(&["run"]);
    wait_for("a checkpoint", Duration::from_secs(60), || {
        p.checkpoint_step() >= 2
    });
    // `repro run` dies; its job runs on.
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(stage_pids(&p).len(), 1, "the job outlives the run");
    let s = p.ok(&["run"]);
    assert!(
        s.contains("cancelled 1 Slurm job(s) left running by an earlier run"),
        "{s}"
    );
    assert!(stage_pids(&p).is_empty(), "the old job ended first");
    assert_eq!(ran(&s), ["slow"], "{s}");
    assert!(s.contains("slow: resumed from step"), "{s}");
    assert!(!p.dir.join("results/.runs/slurm/jobs").exists());
    p.ok(&["verify"]);
    assert_eq!(
        std::fs::read_to_string(p.dir.join("out/slow/value.txt")).unwrap(),
        "s\nf"
    );
}

#[test]
fn slurm_stage_timeout_fails_naming_the_limit_and_resumes() {
    let Some(conf) = cluster() else { return };
    let slow =
        "stages:\n  slow:\n    kind: probe\n    params: { value: s, steps: 40, sleep_ms: 100 }\n";
    let p = proj(conf, &format!("{slow}    timeout: 1s\n"));
    let o = p.run(&["run", "--executor", "slurm"]);
    let (stdout, stderr) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(o.status.code(), Some(1), "{stdout}\n{stderr}");
    // The limit is the stage's own, enforced inside the job, not Slurm's `time`.
    assert!(
        stderr.contains("stage slow reached its time limit (timeout: 1s) and was stopped"),
        "{stderr}"
    );
    let k = p.checkpoint_step();
    assert!((1..40).contains(&k), "stopped at step {k}");
    p.write(slow);
    let s = p.ok(&["run", "--executor", "slurm"]);
    assert!(s.contains(&format!("slow: resumed from step {k}")), "{s}");
}
