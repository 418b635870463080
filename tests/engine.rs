//! Cache and CLI rules, each checked by running the built `repro` binary on a small
//! pipeline of `probe` stages in a temporary project.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{err_text, out_text, ran, restored, slow_pipeline, wait_for, Proj};

fn signal(pid: u32, sig: i32) {
    // SAFETY: signalling a process this test started.
    assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0);
}

const CHAIN: &str = "\
stages:
  a:
    kind: probe
    params: { value: x, note: n1 }
  b:
    kind: probe
    inputs: { up: a }
    params: { value: b }
  c:
    kind: probe
    params: { value: c }
";

#[test]
fn params_change_invalidates_stage() {
    let p = Proj::new(CHAIN);
    let mut first = ran(&p.ok(&["run", "-j", "1"]));
    first.sort();
    assert_eq!(first, ["a", "b", "c"]);
    p.write(&CHAIN.replace("value: x", "value: y"));
    assert_eq!(p.run(&["status"]).status.code(), Some(1));
    let why = p.ok(&["why", "a"]);
    assert!(why.contains("param value: \"x\" -> \"y\""), "{why}");
    assert_eq!(ran(&p.ok(&["run"])), ["a", "b"]);
    assert_eq!(p.run(&["status"]).status.code(), Some(0));
}

#[test]
fn unrelated_stage_stays_fresh() {
    let p = Proj::new(CHAIN);
    p.ok(&["run"]);
    p.write(&CHAIN.replace("value: c", "value: c2"));
    assert_eq!(ran(&p.ok(&["run"])), ["c"]);
}

#[test]
fn identical_upstream_output_keeps_downstream_fresh() {
    let p = Proj::new(CHAIN);
    p.ok(&["run"]);
    // `note` changes a's fingerprint but not its output bytes.
    p.write(&CHAIN.replace("note: n1", "note: n2"));
    let s = p.ok(&["run"]);
    assert_eq!(ran(&s), ["a"], "{s}");
    assert!(s.contains("0 restored, 2 fresh"), "{s}");
}

#[test]
fn reverting_params_restores_previous_run_without_running() {
    let yaml = format!("{CHAIN}    publish: out/c\n");
    let p = Proj::new(&yaml);
    p.ok(&["run"]);
    let lock_x = p.lock();
    p.write(&yaml.replace("value: c", "value: c2"));
    p.ok(&["run"]);
    assert_eq!(
        std::fs::read_to_string(p.dir.join("out/c/value.txt")).unwrap(),
        "c2"
    );
    p.write(&yaml);
    let s = p.ok(&["run"]);
    assert!(ran(&s).is_empty(), "{s}");
    assert_eq!(restored(&s), ["c"]);
    assert_eq!(
        std::fs::read_to_string(p.dir.join("out/c/value.txt")).unwrap(),
        "c"
    );
    assert_eq!(p.lock(), lock_x, "the lock is back to the first run's");
}

#[test]
fn missing_output_invalidates_stage() {
    let yaml = format!("{CHAIN}    publish: out/c\n");
    let p = Proj::new(&yaml);
    p.ok(&["run"]);
    let lock = p.lock_json();
    let fp = lock["profiles"]["default"]["a"]["fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::remove_file(p.runs_dir().join(&fp).join("out/value.txt")).unwrap();
    let o = p.run(&["status"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        out_text(&o).contains("run      a  (run: outputs missing or changed in the store)"),
        "{}",
        out_text(&o)
    );
    assert_eq!(ran(&p.ok(&["run"])), ["a"]);
    // A deleted published copy is restored from the store, without running.
    std::fs::remove_file(p.dir.join("out/c/value.txt")).unwrap();
    let s = p.ok(&["run"]);
    assert!(ran(&s).is_empty() && restored(&s) == ["c"], "{s}");
    assert!(p.dir.join("out/c/value.txt").exists());
}

#[test]
fn verify_detects_corrupted_output() {
    let yaml = format!("{CHAIN}    publish: out/c\n");
    let p = Proj::new(&yaml);
    p.ok(&["run"]);
    p.ok(&["verify"]);
    let fp = p.lock_json()["profiles"]["default"]["b"]["fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    let f = p.runs_dir().join(&fp).join("out/value.txt");
    let mut bytes = std::fs::read(&f).unwrap();
    bytes[0] ^= 1; // same size, other content
    std::fs::write(&f, &bytes).unwrap();
    let o = p.run(&["verify"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err_text(&o).contains(&fp), "{}", err_text(&o));
    // Corrupt a published copy too.
    let p2 = Proj::new(&yaml);
    p2.ok(&["run"]);
    std::fs::write(p2.dir.join("out/c/value.txt"), "C").unwrap();
    let o = p2.run(&["verify"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err_text(&o).contains("out/c/value.txt"), "{}", err_text(&o));
}

/// The slow pipeline of these tests: 40 steps of 50 ms.
fn slow() -> String {
    slow_pipeline(50)
}

#[test]
fn crash_publishes_nothing() {
    let p = Proj::new(&slow());
    let (mut child, lines) = p.spawn(&["run", "-v"]);
    // Find the pid of the slow stage's process.
    let mut pid = None;
    let t = Instant::now();
    while pid.is_none() {
        let l = lines.recv_timeout(Duration::from_secs(20)).expect("a line");
        if let Some(rest) = l.strip_prefix("run      slow  (") {
            pid = rest
                .split("pid ")
                .nth(1)
                .map(|s| s.trim_end_matches(')').parse::<u32>().unwrap());
        }
        assert!(t.elapsed() < Duration::from_secs(20));
    }
    wait_for("a checkpoint", Duration::from_secs(20), || {
        p.checkpoint_step() >= 2
    });
    signal(pid.unwrap(), libc::SIGKILL);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1));
    // Nothing of the killed stage is published: not in the store, not in the lock, not copied.
    let lock = p.lock_json();
    assert!(lock["profiles"]["default"].get("slow").is_none());
    assert!(lock["profiles"]["default"].get("fast").is_some());
    assert_eq!(p.count("runs"), 1);
    assert_eq!(p.count("staging"), 0);
    assert!(!p.dir.join("out/slow").exists());
    let s = p.ok(&["run"]);
    assert_eq!(ran(&s), ["slow"]);
    assert!(s.contains("resumed from step"), "{s}");
    p.ok(&["verify"]);
    assert_eq!(
        std::fs::read_to_string(p.dir.join("out/slow/value.txt")).unwrap(),
        "s\nf"
    );
    assert_eq!(p.count("checkpoints"), 0, "checkpoint removed on success");
}

#[test]
fn interrupted_stage_resumes_from_checkpoint() {
    let p = Proj::new(&slow());
    let (mut child, _lines) = p.spawn(&["run"]);
    wait_for("a checkpoint", Duration::from_secs(20), || {
        p.checkpoint_step() >= 3
    });
    signal(child.id(), libc::SIGINT);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let k = p.checkpoint_step();
    assert!((3..40).contains(&k), "stopped at step {k}");
    assert!(p.lock_json()["profiles"]["default"].get("slow").is_none());
    assert!(!p.dir.join("out/slow").exists());
    assert_eq!(p.count("staging"), 0);
    assert!(
        !p.dir.join("results/.runs/lock").exists(),
        "the project lock is released"
    );
    let s = p.ok(&["run"]);
    assert!(s.contains(&format!("slow: resumed from step {k}")), "{s}");
    assert_eq!(ran(&s), ["slow"]);
}

#[test]
fn second_run_leaves_lock_byte_identical() {
    let p = Proj::new(&format!("{CHAIN}    publish: out/c\n"));
    p.ok(&["run"]);
    let lock = p.lock();
    let mtime = std::fs::metadata(p.dir.join("pipeline.lock"))
        .unwrap()
        .modified()
        .unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let s = p.ok(&["run"]);
    assert!(s.contains("0 ran, 0 restored, 3 fresh"), "{s}");
    assert_eq!(p.lock(), lock);
    assert_eq!(
        std::fs::metadata(p.dir.join("pipeline.lock"))
            .unwrap()
            .modified()
            .unwrap(),
        mtime,
        "not rewritten"
    );
    let text = String::from_utf8(lock).unwrap();
    assert!(
        !text.contains(p.dir.to_str().unwrap()),
        "no absolute paths in the lock"
    );
}

#[test]
fn concurrent_run_is_refused() {
    let p = Proj::new(&slow());
    let (mut first, _lines) = p.spawn(&["run"]);
    wait_for("the first run to start", Duration::from_secs(20), || {
        p.checkpoint_step() >= 1
    });
    let o = p.run(&["run"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err_text(&o).contains(&format!("another `repro run` (pid {})", first.id())),
        "{}",
        err_text(&o)
    );
    assert!(first.wait().unwrap().success());
    p.ok(&["run"]);
}

#[test]
fn stale_lock_from_killed_process_is_cleared() {
    let p = Proj::new(CHAIN);
    let mut dead = Command::new("true").spawn().unwrap();
    let pid = dead.id();
    dead.wait().unwrap();
    std::fs::create_dir_all(p.dir.join("results/.runs/staging/leftover.1/out")).unwrap();
    std::fs::write(p.dir.join("results/.runs/lock"), format!("{pid}\n")).unwrap();
    assert_eq!(ran(&p.ok(&["run"])).len(), 3);
    assert!(!p.dir.join("results/.runs/lock").exists());
    assert_eq!(p.count("staging"), 0, "leftover staging dirs are removed");
}

#[test]
fn cycle_error_names_the_cycle() {
    let p = Proj::new(
        "stages:\n  a:\n    kind: probe\n    inputs: { x: b }\n  b:\n    kind: probe\n    inputs:\n      x: a\n",
    );
    let o = p.run(&["run"]);
    assert_eq!(o.status.code(), Some(2));
    let e = err_text(&o);
    assert!(e.contains("cycle: a -> b -> a"), "{e}");
    assert!(
        e.contains("pipeline.yaml:4: stage `a`, field `inputs.x`"),
        "{e}"
    );
}

#[test]
fn unknown_field_error_names_line_and_stage() {
    let p = Proj::new("stages:\n  a:\n    kind: probe\n  b:\n    kind: probe\n    colour: red\n");
    let o = p.run(&["status"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err_text(&o).contains("pipeline.yaml:6: stage `b`, field `colour`: unknown field `colour`"),
        "{}",
        err_text(&o)
    );
    // Inside a kind's params.
    p.write("stages:\n  a:\n    kind: probe\n    params:\n      value: x\n      colour: red\n");
    let o = p.run(&["run"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err_text(&o).contains("pipeline.yaml:6: stage `a`, field `params.colour`"),
        "{}",
        err_text(&o)
    );
    // Unknown kind, unknown input, empty axis.
    p.write("stages:\n  a:\n    kind: probe\n  b:\n    kind: probe\n    inputs: { x: zz }\n");
    let o = p.run(&["run"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err_text(&o).contains(
            "pipeline.yaml:6: stage `b`, field `inputs.x`: input `x` names unknown stage `zz`"
        ),
        "{}",
        err_text(&o)
    );
}

#[test]
fn keep_going_skips_only_dependents() {
    let yaml = "\
stages:
  bad:
    kind: probe
    params: { fail_at_step: 0 }
  child:
    kind: probe
    inputs: { up: bad }
  other:
    kind: probe
    params: { value: o }
";
    let p = Proj::new(yaml);
    let o = p.run(&["run", "-j", "1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err_text(&o).contains("FAILED   bad: ")
            && err_text(&o).contains("probe asked to fail at step 0"),
        "{}",
        err_text(&o)
    );
    assert_eq!(
        ran(&out_text(&o)),
        ["bad"],
        "without --keep-going nothing new starts"
    );
    let o = p.run(&["run", "-j", "1", "--keep-going"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(ran(&out_text(&o)), ["bad", "other"]);
    assert!(
        out_text(&o).contains("1 failed, 1 not run"),
        "{}",
        out_text(&o)
    );
    assert_eq!(p.count("staging"), 0);
}

#[test]
fn adding_a_seed_runs_only_that_seed() {
    let yaml = "\
stages:
  data:
    kind: probe
  train:
    kind: probe
    inputs: { data: data }
    matrix: { value: [u, f], seed: [1, 2] }
  table:
    kind: probe
    inputs: { runs: \"train[*]\" }
";
    let p = Proj::new(yaml);
    assert_eq!(ran(&p.ok(&["run"])).len(), 6);
    p.write(&yaml.replace("seed: [1, 2]", "seed: [1, 2, 3]"));
    let mut r = ran(&p.ok(&["run"]));
    r.sort();
    assert_eq!(r, ["table", "train[f,seed=3]", "train[u,seed=3]"]);
    // Running one member by name runs it with its upstream only.
    p.write(&yaml.replace("value: [u, f]", "value: [u, f, g]"));
    let r = ran(&p.ok(&["run", "train[g,seed=2]"]));
    assert_eq!(r, ["train[g,seed=2]"]);
}

#[test]
fn moving_the_project_keeps_everything_fresh() {
    let p = Proj::new(&format!("{CHAIN}    publish: out/c\n"));
    p.ok(&["run"]);
    let tmp = tempfile::tempdir().unwrap();
    let moved = tmp.path().join("elsewhere");
    let st = Command::new("cp")
        .arg("-a")
        .arg(&p.dir)
        .arg(&moved)
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::remove_dir_all(&p.dir).unwrap();
    let q = Proj::at(&moved, tmp);
    let o = q.run(&["status"]);
    assert_eq!(o.status.code(), Some(0), "{}", out_text(&o));
    let s = q.ok(&["run"]);
    assert!(s.contains("0 ran, 0 restored, 3 fresh"), "{s}");
    q.ok(&["verify"]);
}

#[test]
fn profiles_dry_run_dag_and_gc() {
    let yaml = format!(
        "{CHAIN}profiles:\n  small:\n    stages:\n      a: {{ params: {{ value: z }} }}\n    disable: [c]\n"
    );
    let p = Proj::new(&yaml);
    let s = p.ok(&["run", "--dry-run"]);
    assert!(
        s.contains("run      a  (run: never run)") && s.contains("pending  b"),
        "{s}"
    );
    assert!(
        !p.dir.join("pipeline.lock").exists(),
        "a dry run writes nothing"
    );
    p.ok(&["run"]);
    let s = p.ok(&["run", "--profile", "small"]);
    assert_eq!(ran(&s), ["a", "b"]);
    let lock = p.lock_json();
    assert_eq!(lock["profiles"]["small"].as_object().unwrap().len(), 2);
    assert!(p.ok(&["dag", "--dot"]).contains("\"a\" -> \"b\";"));
    // gc keeps what any profile of the lock uses.
    assert_eq!(p.count("runs"), 5);
    p.ok(&["gc"]);
    assert_eq!(p.count("runs"), 5);
    p.write(&CHAIN.replace("value: c", "value: c2"));
    p.ok(&["run"]);
    assert_eq!(p.count("runs"), 6);
    p.ok(&["gc"]);
    assert_eq!(p.count("runs"), 5);
    assert_eq!(p.run(&["status"]).status.code(), Some(0));
    let o = p.run(&["run", "--profile", "nope"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn two_stages_with_the_same_key_run_once() {
    // `a` and `b` compute the same thing: one runs, the other is restored from it.
    let p = Proj::new(
        "stages:\n  a:\n    kind: probe\n    params: { value: same, steps: 3, sleep_ms: 20 }\n  b:\n    kind: probe\n    params: { value: same, steps: 3, sleep_ms: 20 }\n",
    );
    let s = p.ok(&["run", "-j", "2"]);
    assert_eq!(ran(&s).len(), 1, "{s}");
    assert_eq!(restored(&s).len(), 1, "{s}");
    assert_eq!(p.count("runs"), 1);
    assert_eq!(p.run(&["status"]).status.code(), Some(0));
}

#[test]
fn killed_scheduler_leaves_nothing_half_published() {
    let p = Proj::new(&slow());
    let (mut child, lines) = p.spawn(&["run", "-v"]);
    let mut stage_pid = None;
    while stage_pid.is_none() {
        let l = lines.recv_timeout(Duration::from_secs(20)).expect("a line");
        if let Some(rest) = l.strip_prefix("run      slow  (") {
            stage_pid = rest
                .split("pid ")
                .nth(1)
                .map(|s| s.trim_end_matches(')').parse::<u32>().unwrap());
        }
    }
    wait_for("a checkpoint", Duration::from_secs(20), || {
        p.checkpoint_step() >= 2
    });
    signal(child.id(), libc::SIGKILL);
    child.wait().unwrap();
    // The orphaned stage is told to stop (parent-death signal) and saves its checkpoint.
    let pid = stage_pid.unwrap() as i32;
    wait_for("the stage process to stop", Duration::from_secs(10), || {
        // SAFETY: probing a pid with signal 0.
        unsafe { libc::kill(pid, 0) != 0 }
    });
    assert!(!p.dir.join("out/slow").exists());
    assert!(
        p.dir.join("results/.runs/lock").exists(),
        "the killed run's lock is left behind"
    );
    let s = p.ok(&["run"]);
    assert!(
        s.contains("restore  fast"),
        "fast was committed but not locked: restored for free\n{s}"
    );
    assert!(s.contains("slow: resumed from step"), "{s}");
    assert_eq!(p.count("staging"), 0);
    p.ok(&["verify"]);
}

#[test]
fn closed_stdout_pipe_exits_quietly() {
    use std::os::unix::process::ExitStatusExt;
    // Enough members that the output outgrows a pipe's buffer: the writer meets the
    // closed end whenever the reader goes away.
    let values: Vec<String> = (0..1500).map(|i| format!("v{i}")).collect();
    let p = Proj::new(&format!(
        "stages:\n  a:\n    kind: probe\n    matrix: {{ value: [{}] }}\n",
        values.join(", ")
    ));
    let quiet = |args: &[&str]| {
        let mut child = p
            .cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let o = child.wait_with_output().unwrap();
        assert!(
            err_text(&o).is_empty(),
            "repro {args:?} wrote to stderr:\n{}",
            err_text(&o)
        );
        assert!(
            matches!(o.status.code(), Some(0 | 1)) || o.status.signal() == Some(libc::SIGPIPE),
            "repro {args:?}: {:?}",
            o.status
        );
    };
    quiet(&["status", "--json"]);
    quiet(&["status", "-v"]);
    quiet(&["run", "--dry-run", "-v"]);
    // A real run goes on without its reader and records what it ran.
    let small = Proj::new(CHAIN);
    let mut child = small
        .cmd(&["run", "-v"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", err_text(&o));
    assert!(err_text(&o).is_empty(), "{}", err_text(&o));
    assert_eq!(small.run(&["status"]).status.code(), Some(0));
}

/// Sets the mtime of every file under `dir` to `secs` seconds ago: the files are then old
/// enough for the stat cache to vouch for them (it never trusts a just-written file).
fn age_files(dir: &Path, secs: u64) {
    let t = std::time::SystemTime::now() - Duration::from_secs(secs);
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            age_files(&p, secs);
        } else {
            std::fs::File::options()
                .write(true)
                .open(&p)
                .unwrap()
                .set_modified(t)
                .unwrap();
        }
    }
}

/// Flips one bit of `path`, keeping its size and mtime.
fn tamper(path: &Path) {
    let mtime = std::fs::metadata(path).unwrap().modified().unwrap();
    let mut bytes = std::fs::read(path).unwrap();
    bytes[0] ^= 1;
    std::fs::write(path, &bytes).unwrap();
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
}

#[test]
fn same_size_tampering_is_restored() {
    let p = Proj::new(&format!("{CHAIN}    publish: out/c\n"));
    p.ok(&["run"]);
    age_files(&p.dir, 10);
    // The cache now vouches for every file by its stat.
    assert_eq!(p.run(&["status"]).status.code(), Some(0));
    let published = p.dir.join("out/c/value.txt");
    tamper(&published);
    assert_eq!(std::fs::read_to_string(&published).unwrap(), "b");
    let o = p.run(&["status"]);
    assert_eq!(o.status.code(), Some(1), "{}", out_text(&o));
    assert!(
        out_text(&o).contains("restore  c  (restore: published copies missing or changed)"),
        "{}",
        out_text(&o)
    );
    let s = p.ok(&["run"]);
    assert!(ran(&s).is_empty() && restored(&s) == ["c"], "{s}");
    assert_eq!(std::fs::read_to_string(&published).unwrap(), "c");
    assert_eq!(p.run(&["status"]).status.code(), Some(0));
    p.ok(&["verify"]);
}

#[test]
fn corrupted_store_entry_is_rerun_not_read() {
    let p = Proj::new(CHAIN);
    p.ok(&["run"]);
    age_files(&p.dir, 10);
    assert_eq!(p.run(&["status"]).status.code(), Some(0));
    let fp_a = p.lock_json()["profiles"]["default"]["a"]["fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    let stored_a = p.runs_dir().join(&fp_a).join("out/value.txt");
    tamper(&stored_a);
    assert_eq!(std::fs::read_to_string(&stored_a).unwrap(), "y");
    let o = p.run(&["status"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        out_text(&o).contains("run      a  (run: outputs missing or changed in the store)"),
        "{}",
        out_text(&o)
    );
    // Forcing `b` alone must not feed it the corrupted output of `a`: `a` reruns first.
    let s = p.ok(&["run", "--force", "b"]);
    assert_eq!(ran(&s), ["a", "b"], "{s}");
    assert_eq!(std::fs::read_to_string(&stored_a).unwrap(), "x");
    let fp_b = p.lock_json()["profiles"]["default"]["b"]["fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        std::fs::read_to_string(p.runs_dir().join(fp_b).join("out/value.txt")).unwrap(),
        "b\nx"
    );
    assert_eq!(p.run(&["status"]).status.code(), Some(0));
    p.ok(&["verify"]);
}

#[test]
fn verify_reports_members_not_built_here() {
    let yaml = format!(
        "{CHAIN}    publish: out/c\nprofiles:\n  small:\n    stages:\n      a: {{ params: {{ value: z }} }}\n      c: {{ publish: out/small }}\n"
    );
    // One checkout runs both profiles and commits the lock and the published files ...
    let elsewhere = Proj::new(&yaml);
    elsewhere.ok(&["run"]);
    elsewhere.ok(&["run", "-p", "small"]);
    // ... a clone of it runs the default profile only.
    let p = Proj::new(&yaml);
    std::fs::copy(
        elsewhere.dir.join("pipeline.lock"),
        p.dir.join("pipeline.lock"),
    )
    .unwrap();
    std::fs::create_dir_all(p.dir.join("out/small")).unwrap();
    std::fs::copy(
        elsewhere.dir.join("out/small/value.txt"),
        p.dir.join("out/small/value.txt"),
    )
    .unwrap();
    p.ok(&["run"]);
    let s = p.ok(&["verify"]);
    assert!(
        s.contains("not built here: 3 member(s) of profile `small`"),
        "{s}"
    );
    assert!(
        s.contains("ok: 3 runs and 2 published files verified"),
        "{s}"
    );
    let s = p.ok(&["verify", "-v", "-p", "small"]);
    assert!(
        s.contains("  a\n") && s.contains("  b\n") && s.contains("  c\n"),
        "{s}"
    );
    assert!(
        s.contains("ok: 0 runs and 1 published files verified"),
        "{s}"
    );
    let s = p.ok(&["verify", "-p", "default"]);
    assert!(!s.contains("not built here"), "{s}");
    let o = p.run(&["verify", "-p", "nope"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err_text(&o).contains("profile `nope` has no entries"),
        "{}",
        err_text(&o)
    );
    // A real mismatch is named, and only it.
    std::fs::write(p.dir.join("out/small/value.txt"), "Z").unwrap();
    let o = p.run(&["verify"]);
    assert_eq!(o.status.code(), Some(1));
    let e = err_text(&o);
    assert!(
        e.contains("MISMATCH out/small/value.txt: published copy differs"),
        "{e}"
    );
    assert_eq!(e.matches("MISMATCH").count(), 1, "{e}");
    assert_eq!(p.run(&["verify", "-p", "default"]).status.code(), Some(0));
}
