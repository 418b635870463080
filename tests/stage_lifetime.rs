//! How long a stage may run and what is left when it ends: per-stage time limits, what an
//! interrupt says and does, and the processes a stage's program starts, which must never
//! outlive the run (whether `repro`, the stage process or both are killed). Each rule runs
//! the built `repro` binary on a temporary project; programs are small Python 3 scripts.

mod common;

use std::process::Child;
use std::time::Duration;

use common::{drain, err_text, out_text, ran, wait_for, Proj};

fn signal(pid: u32, sig: i32) {
    // SAFETY: signalling a process this test started (or one of its descendants).
    assert_eq!(
        unsafe { libc::kill(pid as i32, sig) },
        0,
        "signal {sig} to {pid}"
    );
}

/// Whether `pid` is a running process (a zombie waiting for its parent counts as ended).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let state = s[s.rfind(')')? + 1..]
                .split_whitespace()
                .next()?
                .to_string();
            Some(state != "Z" && state != "X")
        })
        .unwrap_or(false)
}

/// A stage `c` running `python3 prog.py` with `params` (flow-mapping entries) and `extra`
/// stage fields (block lines), publishing under `out/c`.
fn yaml(params: &str, extra: &str) -> String {
    format!(
        "stages:\n  c:\n    kind: command\n    params: {{ run: [python3, prog.py], deps: [prog.py], outputs: []{params} }}\n    publish: out/c\n{extra}"
    )
}

/// Runs until interrupted; on a run that finds its own checkpoint, finishes at once.
const HANGS: &str = r#"
import os, sys, time
ck = os.environ["REPRO_CHECKPOINT"]
mark = os.path.join(ck, "started")
if os.path.exists(mark):
    open(os.path.join(os.environ["REPRO_OUT"], "resumed.txt"), "w").write("yes")
    sys.exit(0)
open(mark, "w").write("1")
try:
    while True:
        time.sleep(0.05)
except KeyboardInterrupt:
    open(os.path.join(ck, "stopped"), "w").write("1")
    sys.exit(1)
"#;

#[test]
fn stage_timeout_fails_naming_the_limit_and_keeps_its_checkpoint() {
    let p = Proj::new(&yaml("", "    timeout: 1s\n"));
    p.file("prog.py", HANGS);
    let o = p.run(&["run"]);
    let text = format!("{}{}", out_text(&o), err_text(&o));
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(
        text.contains("stage c reached its time limit (timeout: 1s) and was stopped; its checkpoint is kept, so the next run resumes from it"),
        "{text}"
    );
    assert_eq!(p.program_checkpoint("stopped").as_deref(), Some("1"));
    assert_eq!(p.count("runs"), 0);
    assert!(!p.dir.join("out/c").exists());

    // The next run resumes from the checkpoint and finishes.
    assert_eq!(ran(&p.ok(&["run"])), ["c"]);
    assert!(p.dir.join("out/c/resumed.txt").is_file());

    // A time limit is in no fingerprint: changing or removing it reruns nothing.
    p.write(&yaml("", "    timeout: 2h30m\n"));
    p.ok(&["status"]);
    p.write(&yaml("", ""));
    p.ok(&["status"]);
    assert_eq!(ran(&p.ok(&["run"])), Vec::<String>::new());
}

#[test]
fn any_stage_kind_stops_at_its_timeout_and_resumes() {
    let slow =
        "stages:\n  slow:\n    kind: probe\n    params: { value: s, steps: 40, sleep_ms: 100 }\n";
    let p = Proj::new(&format!("{slow}    timeout: 1\n"));
    let o = p.run(&["run"]);
    let text = err_text(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(
        text.contains("stage slow reached its time limit (timeout: 1s) and was stopped"),
        "{text}"
    );
    let k = p.checkpoint_step();
    assert!((1..40).contains(&k), "stopped at step {k}");
    // More time: the same fingerprint, resumed where it stopped.
    p.write(&format!("{slow}    timeout: 1h\n"));
    let s = p.ok(&["run"]);
    assert!(s.contains(&format!("slow: resumed from step {k}")), "{s}");
    // A profile's entry replaces the stage's limit.
    p.write(&format!(
        "{slow}    timeout: 1h\nprofiles:\n  hurried:\n    stages:\n      slow: {{ timeout: 1 }}\n"
    ));
    let o = p.run(&["run", "-p", "hurried"]);
    let text = err_text(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(text.contains("(timeout: 1s)"), "{text}");
}

#[test]
fn stage_timeout_is_checked_when_the_pipeline_loads() {
    let refused = |yaml: &str| {
        let p = Proj::new(yaml);
        p.file("prog.py", "");
        let o = p.run(&["status"]);
        assert_eq!(o.status.code(), Some(2), "{}", err_text(&o));
        err_text(&o)
    };
    let e = refused(&yaml("", "    timeout: 10x\n"));
    assert!(
        e.contains("pipeline.yaml:6: stage `c`, field `timeout`: `10x` is not a time limit"),
        "{e}"
    );
    let e = refused(&yaml("", "    timeout: 0\n"));
    assert!(
        e.contains("it must be between 1 second and 365 days"),
        "{e}"
    );
    // Another profile's typo is found too.
    let e = refused(&yaml(
        "",
        "profiles:\n  other:\n    stages:\n      c: { timeout: soon, publish: out/other }\n",
    ));
    assert!(
        e.contains("pipeline.yaml:9: stage `c`, field `timeout`: `soon` is not a time limit"),
        "{e}"
    );
    // Written among the params, it is pointed to its place.
    let e = refused(&yaml(", timeout: 60", ""));
    assert!(
        e.contains("`timeout` is a field of the stage, beside `params:` (`timeout: 10m`)"),
        "{e}"
    );
}

/// Starts a `sleep` (ignoring SIGINT) and records both pids in its checkpoint folder, then
/// runs until killed. On SIGINT it exits (`args.sigint: exit`), goes on (`ignore`), or goes
/// on after noting it in the file `asked` (`note`). On a run that finds those pids recorded,
/// it finishes at once.
const SPAWNS: &str = r#"
import json, os, signal, subprocess, sys, time
ck = os.environ["REPRO_CHECKPOINT"]
pids = os.path.join(ck, "pids")
if os.path.exists(pids):
    open(os.path.join(os.environ["REPRO_OUT"], "again.txt"), "w").write("a")
    sys.exit(0)
on_int = json.load(open(os.environ["REPRO_PARAMS"]))["args"]["sigint"]
if on_int == "ignore":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
elif on_int == "note":
    signal.signal(signal.SIGINT, lambda *_: open(os.path.join(ck, "asked"), "w").write("1"))
child = subprocess.Popen(["sleep", "600"],
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
open(pids + ".tmp", "w").write("%d %d" % (os.getpid(), child.pid))
os.replace(pids + ".tmp", pids)
while True:
    time.sleep(0.05)
"#;

/// The project of [`SPAWNS`], the program doing `on_sigint` on SIGINT.
fn spawner(on_sigint: &str) -> Proj {
    let p = Proj::new(&yaml(&format!(", args: {{ sigint: {on_sigint} }}"), ""));
    p.file("prog.py", SPAWNS);
    p
}

/// Waits until the program has started its `sleep`; returns (program pid, sleep pid).
fn program_pids(p: &Proj) -> (u32, u32) {
    wait_for("the program's pids", Duration::from_secs(60), || {
        p.program_checkpoint("pids").is_some()
    });
    let text = p.program_checkpoint("pids").unwrap();
    let (a, b) = text.split_once(' ').unwrap();
    (a.parse().unwrap(), b.parse().unwrap())
}

fn wait_gone(what: &str, pid: u32) {
    wait_for(what, Duration::from_secs(60), || !alive(pid));
}

/// The pid of the stage process `repro run -v` reports starting for member `name`.
fn stage_pid(lines: &std::sync::mpsc::Receiver<String>, name: &str) -> u32 {
    loop {
        let l = lines
            .recv_timeout(Duration::from_secs(60))
            .expect("a line of `repro run -v`");
        if let Some(rest) = l.strip_prefix(&format!("run      {name}  (")) {
            let pid = rest.split("pid ").nth(1).expect("a pid");
            return pid.trim_end_matches(')').parse().unwrap();
        }
    }
}

/// Lines printed until the process exits, stdout's then stderr's.
fn finish(mut child: Child, lines: &std::sync::mpsc::Receiver<String>) -> (i32, String) {
    use std::io::Read;
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let code = child.wait().unwrap().code().unwrap_or(-1);
    (code, format!("{}\n{err}", drain(lines).join("\n")))
}

#[test]
fn program_that_ignores_the_interrupt_is_killed_and_said_so() {
    let p = spawner("ignore");
    let (child, lines) = p.spawn(&["run"]);
    let (prog, sleep) = program_pids(&p);
    signal(child.id(), libc::SIGINT);
    let (code, text) = finish(child, &lines);
    assert_eq!(code, 130, "{text}");
    assert!(
        text.contains("`python3 prog.py` did not stop within 30 s of being asked to (SIGINT) and was killed; what it saved in REPRO_CHECKPOINT may be incomplete"),
        "{text}"
    );
    assert!(!text.contains("checkpoint saved"), "{text}");
    assert!(
        text.contains("interrupted; 1 stage(s) failed (see above)"),
        "{text}"
    );
    wait_gone("the program", prog);
    wait_gone("the program's child", sleep);
    assert!(!p.dir.join("out/c").exists());
}

#[test]
fn second_interrupt_kills_the_stage_at_once() {
    let p = spawner("ignore");
    let (child, lines) = p.spawn(&["run"]);
    let (prog, sleep) = program_pids(&p);
    signal(child.id(), libc::SIGINT);
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|l: &String| l.starts_with("interrupted: asking"))
    {
        let l = lines.recv_timeout(Duration::from_secs(60)).expect("a line");
        seen.push(l);
    }
    signal(child.id(), libc::SIGINT);
    let (code, rest) = finish(child, &lines);
    let text = format!("{}\n{rest}", seen.join("\n"));
    assert_eq!(code, 130, "{text}");
    assert!(
        text.contains("interrupted again: killing the running stages without a checkpoint"),
        "{text}"
    );
    assert!(text.contains("killed   c  after "), "{text}");
    assert!(
        text.contains("interrupted; 1 stage(s) killed before saving a checkpoint"),
        "{text}"
    );
    assert!(!text.contains("did not stop within"), "{text}");
    assert!(!text.contains("checkpoint saved"), "{text}");
    wait_gone("the program", prog);
    wait_gone("the program's child", sleep);
}

#[test]
fn killed_stage_process_takes_its_program_group_with_it() {
    // The stage's system temporary folder, this test's own.
    let p = spawner("ignore");
    let tmp = p.dir.with_file_name("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let p = p.with_env("TMPDIR", &tmp);
    let (child, lines) = p.spawn(&["run", "-v"]);
    let stage = stage_pid(&lines, "c");
    let (prog, sleep) = program_pids(&p);
    signal(stage, libc::SIGKILL);
    let (code, text) = finish(child, &lines);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(
            "FAILED   c: was killed by signal 9; the processes it left running were ended"
        ),
        "{text}"
    );
    wait_gone("the program", prog);
    wait_gone("the program's child", sleep);
    assert!(!p.dir.join("out/c").exists());
    // The killed stage process could not remove its program's TMPDIR; the next stage to
    // start does.
    let left = tmp.join(format!("repro-stage-{stage}-0"));
    assert!(left.is_dir(), "{}", left.display());
    p.ok(&["run"]);
    assert!(!left.exists());
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
}

#[test]
fn killed_run_takes_its_programs_with_it() {
    let p = spawner("exit");
    let (mut child, _lines) = p.spawn(&["run", "-v"]);
    let (prog, sleep) = program_pids(&p);
    signal(child.id(), libc::SIGKILL);
    child.wait().unwrap();
    // The stage process is told by its parent's death, stops the program (SIGINT) and
    // kills what is left of its group: the `sleep`, which ignores SIGINT.
    wait_gone("the program", prog);
    wait_gone("the program's child", sleep);
}

#[test]
fn next_run_ends_the_programs_a_killed_run_left() {
    let p = spawner("ignore");
    let (mut child, lines) = p.spawn(&["run", "-v"]);
    let stage = stage_pid(&lines, "c");
    let (prog, sleep) = program_pids(&p);
    let lock = p.dir.join("results/.runs/lock");
    wait_for("both groups recorded", Duration::from_secs(60), || {
        let text = std::fs::read_to_string(&lock).unwrap_or_default();
        text.lines().filter(|l| l.starts_with("group ")).count() == 2
    });
    // `repro` and its stage process die together: `repro` cannot react (stopped, then
    // killed), the stage process is killed outright. The program dies with its parent;
    // the `sleep` it started is left running.
    signal(child.id(), libc::SIGSTOP);
    signal(stage, libc::SIGKILL);
    wait_gone("the program", prog);
    signal(child.id(), libc::SIGKILL);
    child.wait().unwrap();
    assert!(alive(sleep), "the program's child outlived both");
    let s = p.ok(&["run"]);
    assert!(
        s.contains(
            "ended 1 process group(s) of stages left running by an earlier run that was killed"
        ),
        "{s}"
    );
    wait_gone("the left program's child", sleep);
    assert_eq!(ran(&s), ["c"]);
    assert!(!lock.exists());
}

#[test]
fn stage_process_interrupted_twice_kills_its_program_at_once() {
    let p = spawner("note");
    let (child, lines) = p.spawn(&["run", "-v"]);
    let stage = stage_pid(&lines, "c");
    let (prog, sleep) = program_pids(&p);
    // SIGTERM to the stage process alone (as `scancel` or a user sends it): the program is
    // asked to stop, notes it and goes on; a second SIGTERM kills it without waiting.
    signal(stage, libc::SIGTERM);
    wait_for("the program to be asked", Duration::from_secs(60), || {
        p.program_checkpoint("asked").is_some()
    });
    signal(stage, libc::SIGTERM);
    let (code, text) = finish(child, &lines);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(
            "`python3 prog.py` was killed at once, without a grace period (a second interrupt)"
        ),
        "{text}"
    );
    wait_gone("the program", prog);
    wait_gone("the program's child", sleep);
}
