//! The stage launcher (`repro run --launcher`, `REPRO_LAUNCHER`): each rule runs the built
//! `repro` binary on a small pipeline of `probe` stages in a temporary project, with a
//! shell-script launcher that records its arguments and then starts the stage.

mod common;

use std::path::{Path, PathBuf};

use common::{err_text, out_text, ran, Proj};

const CHAIN: &str = "\
stages:
  a:
    kind: probe
    params: { value: x }
  b:
    kind: probe
    inputs: { up: a }
    params: { value: b }
    publish: out/b
  c:
    kind: probe
    params: { value: c }
";

/// Writes the launcher `tools/record.sh` into the project: it appends its other arguments as
/// one line to the file its first argument names, then `exec`s them. Returns its path.
fn recorder(p: &Proj) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    p.file(
        "tools/record.sh",
        "#!/bin/sh\nlog=$1\nshift\necho \"$*\" >> \"$log\"\nexec \"$@\"\n",
    );
    let script = p.dir.join("tools/record.sh");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

/// The lines a recorder wrote to `log` (none when it never ran).
fn calls(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .map(|t| t.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn launcher_runs_every_stage_through_it() {
    let p = Proj::new(CHAIN);
    let script = recorder(&p);
    let log = p.dir.join("launched.txt");
    let launcher = format!("{} {}", script.display(), log.display());
    let out = p.ok(&["run", "-j", "1", "--launcher", &launcher]);
    assert_eq!(sorted(ran(&out)), ["a", "b", "c"], "{out}");
    assert!(
        out.contains(&format!(
            "stages start through `{launcher}` (from --launcher)"
        )),
        "{out}"
    );
    // Each stage process was `<launcher> <repro> exec-stage <job file>`.
    let repro = Path::new(env!("CARGO_BIN_EXE_repro"))
        .canonicalize()
        .unwrap();
    let lines = calls(&log);
    assert_eq!(lines.len(), 3, "{lines:?}");
    for line in &lines {
        let argv: Vec<&str> = line.split(' ').collect();
        assert_eq!(argv.len(), 3, "{line}");
        assert_eq!(Path::new(argv[0]).canonicalize().unwrap(), repro, "{line}");
        assert_eq!(argv[1], "exec-stage", "{line}");
        assert!(
            argv[2].starts_with(p.dir.join("results/.runs/staging").to_str().unwrap())
                && argv[2].ends_with("/job.json"),
            "{line}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(p.dir.join("out/b/value.txt")).unwrap(),
        "b\nx"
    );
    // The launcher is no part of any fingerprint: without it everything is fresh.
    let out = p.ok(&["run"]);
    assert!(out.contains("0 ran, 0 restored, 3 fresh"), "{out}");
    assert_eq!(calls(&log).len(), 3);
}

#[test]
fn the_launcher_flag_wins_over_the_environment() {
    let p = Proj::new(CHAIN);
    let script = recorder(&p);
    let (env_log, flag_log) = (p.dir.join("env.txt"), p.dir.join("flag.txt"));
    let from_env = format!("{} {}", script.display(), env_log.display());
    let run = |args: &[&str]| {
        let o = p
            .cmd(args)
            .env("REPRO_LAUNCHER", &from_env)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}{}", out_text(&o), err_text(&o));
        out_text(&o)
    };
    let out = run(&["run"]);
    assert!(out.contains("(from REPRO_LAUNCHER)"), "{out}");
    assert_eq!(calls(&env_log).len(), 3);
    let from_flag = format!("{} {}", script.display(), flag_log.display());
    run(&["run", "--force", "--launcher", &from_flag]);
    assert_eq!(calls(&flag_log).len(), 3);
    assert_eq!(calls(&env_log).len(), 3, "the flag replaced the variable");
    // An empty flag runs without a launcher.
    let out = run(&["run", "--force", "--launcher", ""]);
    assert_eq!(ran(&out).len(), 3, "{out}");
    assert!(!out.contains("stages start through"), "{out}");
    assert_eq!((calls(&env_log).len(), calls(&flag_log).len()), (3, 3));
}

#[test]
fn missing_launcher_fails_with_its_name() {
    let p = Proj::new(CHAIN);
    let o = p
        .cmd(&["run"])
        .env("REPRO_LAUNCHER", "no-such-launcher-7f3a -cpu Nehalem")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", err_text(&o));
    assert_eq!(
        err_text(&o),
        "error: launcher `no-such-launcher-7f3a` (from REPRO_LAUNCHER) not found: no such \
         program on PATH\n"
    );
    let o = p
        .cmd(&["run", "--launcher", "./tools/missing.sh -v"])
        .env("REPRO_LAUNCHER", "nice")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", err_text(&o));
    let e = err_text(&o);
    assert!(
        e.starts_with("error: launcher `./tools/missing.sh` (from --launcher) not found: no file ")
            && e.trim_end().ends_with("tools/missing.sh")
            && e.lines().count() == 1,
        "{e}"
    );
    // Refused before any stage started: nothing ran, nothing is published or locked.
    assert!(ran(&out_text(&o)).is_empty());
    assert_eq!(p.count("runs"), 0);
    assert!(!p.dir.join("pipeline.lock").exists());
    assert!(!p.dir.join("out/b").exists());
}

#[test]
fn a_failing_launcher_fails_its_stages_and_publishes_nothing() {
    let p = Proj::new(CHAIN);
    let o = p.run(&["run", "-j", "1", "--launcher", "false"]);
    assert_eq!(o.status.code(), Some(1));
    let e = err_text(&o);
    assert!(
        e.contains("FAILED   ") && e.contains("exited with code 1"),
        "{e}"
    );
    assert_eq!(p.count("runs"), 0);
    assert_eq!(p.count("staging"), 0);
    assert!(!p.dir.join("out/b").exists());
    // The same stages run without it.
    assert_eq!(sorted(ran(&p.ok(&["run"]))), ["a", "b", "c"]);
}

#[test]
fn stage_error_text_keeps_its_first_and_last_mebibyte() {
    use std::os::unix::fs::PermissionsExt;
    // A launcher that writes 3,000,000 bytes of `x` lines to stderr, then starts a stage
    // that fails: the error text the run keeps is bounded like a program's log.
    let p = Proj::new(
        "stages:\n  bad:\n    kind: probe\n    params: { value: x, steps: 2, fail_at_step: 1 }\n",
    );
    p.file(
        "tools/noisy.sh",
        "#!/bin/sh\nyes xxxxxxxxx | head -c 3000000 >&2\nexec \"$@\"\n",
    );
    let script = p.dir.join("tools/noisy.sh");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = p.run(&["run", "--launcher", script.to_str().unwrap()]);
    let err = err_text(&o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        &err[err.len().saturating_sub(2000)..]
    );
    assert!(err.len() < 2 * (1 << 20) + 4096, "{} bytes", err.len());
    assert!(
        err.contains(
            "bytes of output left out here; the log keeps the first 1 MiB and the last 1 MiB]"
        ),
        "{}",
        err.get((1 << 20) - 200..(1 << 20) + 300).unwrap_or(&err)
    );
    // The stage's own message, at the end, is kept.
    assert!(
        err.contains("probe asked to fail at step 1"),
        "{}",
        &err[err.len().saturating_sub(500)..]
    );
}

#[test]
fn stage_process_with_other_code_than_the_run_refuses_to_run() {
    use std::os::unix::fs::PermissionsExt;
    // What a binary rebuilt during a run looks like to the stage process it starts: the
    // job names the code the run planned with, and the process has other code. A launcher
    // stands in for the rebuild by rewriting the job file's `code` before the stage starts.
    let p = Proj::new(CHAIN);
    p.file(
        "tools/rebuilt.sh",
        "#!/bin/sh\nfor last; do :; done\n\
         sed -i 's/\"code\": *\"[^\"]*\"/\"code\": \"older build\"/' \"$last\"\nexec \"$@\"\n",
    );
    let script = p.dir.join("tools/rebuilt.sh");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = p.run(&["run", "-j", "1", "--launcher", script.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", err_text(&o));
    let e = err_text(&o);
    assert!(
        e.contains("this stage process has other `probe` code than the run that started it")
            && e.contains("older build")
            && e.contains("Nothing was run"),
        "{e}"
    );
    assert_eq!(p.count("runs"), 0);
    assert!(!p.dir.join("out/b").exists());
    // The same binary, started directly, runs them.
    assert_eq!(sorted(ran(&p.ok(&["run"]))), ["a", "b", "c"]);
}
