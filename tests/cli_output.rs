//! What every command does with its output and its arguments when they are not what it
//! expects: a full disk on stdout, a stage asked for in a profile that lacks it, a pipeline
//! path that is not a file; each rule runs the built `repro` binary in a temporary project.

mod common;

use std::fs::File;
use std::process::Stdio;

use common::{err_text, out_text, Proj};

const TWO_PROFILES: &str = "\
stages:
  a:
    kind: probe
    params: { value: x }
  mine:
    kind: probe
    inputs: { up: a }
    profiles: [other, third]
profiles:
  other: {}
  third: {}
";

/// Runs `args` with stdout on `/dev/full`: (exit code, stderr).
fn on_full_disk(p: &Proj, args: &[&str]) -> (Option<i32>, String) {
    let o = p
        .cmd(args)
        .stdout(File::options().write(true).open("/dev/full").unwrap())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    (o.status.code(), err_text(&o))
}

#[test]
fn full_disk_on_stdout_ends_every_command_with_one_line_and_exit_1() {
    let p = Proj::new(TWO_PROFILES);
    p.ok(&["run"]);
    p.file(
        "reference.lock",
        &String::from_utf8(p.lock()).expect("the lock is text"),
    );
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["dag"],
        &["dag", "--dot"],
        &["verify"],
        &["why", "a"],
        &["gc", "-n"],
        &["gc"],
        &["run", "--dry-run"],
        &["check", "--against", "reference.lock"],
        &["run"],
    ] {
        let (code, err) = on_full_disk(&p, args);
        assert_eq!(code, Some(1), "repro {args:?}: {err}");
        assert!(!err.contains("panicked"), "repro {args:?}: {err}");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "repro {args:?}: {err}");
        assert!(
            lines[0].starts_with("error: writing the output: No space left on device"),
            "repro {args:?}: {err}"
        );
    }
    // A run finishes its work first, then says so.
    p.write(&TWO_PROFILES.replace("value: x", "value: y"));
    let (code, err) = on_full_disk(&p, &["run"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("(the run itself finished: 1 ran, 0 restored, 0 fresh)"),
        "{err}"
    );
    assert_eq!(p.run(&["status"]).status.code(), Some(0));
}

#[test]
fn a_stage_of_another_profile_is_named_with_its_profiles() {
    let p = Proj::new(TWO_PROFILES);
    for args in [
        &["why", "mine"][..],
        &["status", "mine"],
        &["run", "mine"],
        &["why", "mine[seed=1]"],
    ] {
        let o = p.run(args);
        let err = err_text(&o);
        assert_eq!(o.status.code(), Some(2), "repro {args:?}: {err}");
        assert!(
            err.contains("in profile `default`; profiles `other`, `third` have stage `mine`: add `-p` and one of them"),
            "repro {args:?}: {err}"
        );
    }
    let o = p.run(&["why", "-p", "third", "mine"]);
    assert!(o.status.success(), "{}", err_text(&o));
    // A stage no profile has lists the stages of the active one.
    let err = err_text(&p.run(&["why", "nothing"]));
    assert!(
        err.contains("no stage or member named `nothing` in profile `default` (stages: a)"),
        "{err}"
    );
    // A member the stage does not have lists the stage's members.
    let err = err_text(&p.run(&["why", "a[seed=4]"]));
    assert!(err.contains("(stage `a` has 1 member(s): a)"), "{err}");
}

#[test]
fn gc_dry_run_says_what_it_would_remove_and_removes_nothing() {
    let p = Proj::new(TWO_PROFILES);
    p.ok(&["run"]);
    p.write(&TWO_PROFILES.replace("value: x", "value: y"));
    p.ok(&["run"]);
    let before = p.count("runs");
    let s = p.ok(&["gc", "-n"]);
    assert!(s.contains("would remove run "), "{s}");
    assert!(
        s.contains("would remove 1 unreferenced run(s), 0 staging dir(s), 0 stale checkpoint(s)"),
        "{s}"
    );
    assert!(!s.contains("removed"), "{s}");
    assert_eq!(p.count("runs"), before);
    let s = p.ok(&["gc"]);
    assert!(s.contains("removed 1 unreferenced run(s)"), "{s}");
    assert_eq!(p.count("runs"), before - 1);
}

#[test]
fn pipeline_path_that_is_not_a_regular_file_is_named() {
    let p = Proj::new(TWO_PROFILES);
    let file = p.dir.join("pipeline.yaml");
    std::fs::remove_file(&file).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &file).unwrap();
    let o = p.run(&["status"]);
    let err = err_text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("pipeline.yaml is not a regular file: it is a character device (through the link to /dev/zero)"),
        "{err}"
    );
    std::fs::remove_file(&file).unwrap();
    std::fs::create_dir(&file).unwrap();
    let err = err_text(&p.run(&["dag"]));
    assert!(
        err.contains("is not a regular file: it is a directory"),
        "{err}"
    );
    std::fs::remove_dir(&file).unwrap();
    std::os::unix::fs::symlink("nowhere.yaml", &file).unwrap();
    let err = err_text(&p.run(&["dag"]));
    assert!(
        err.contains("cannot be read") && err.contains("(it is a link to nowhere.yaml)"),
        "{err}"
    );
    let o = p.run(&["--file", "/dev/zero", "status"]);
    let err = err_text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("the pipeline file /dev/zero is not a regular file: it is a character device"),
        "{err}"
    );
    assert!(out_text(&o).is_empty());
}

#[test]
fn why_verbose_prints_each_members_merged_params_and_seed() {
    let p = Proj::new(
        "\
stages:
  a:
    kind: probe
    params: { value: x, steps: 2 }
    matrix: { note: [n1, n2], seed: [3] }
    when:
      - { if: { note: n2 }, params: { steps: 5 } }
",
    );
    let out = p.ok(&["why", "-v", "a"]);
    assert!(
        out.contains("a[n1,seed=3]: ") && out.contains("a[n2,seed=3]: "),
        "{out}"
    );
    assert!(
        out.contains("  params: {\"note\":\"n1\",\"steps\":2,\"value\":\"x\"}\n  seed: 3\n"),
        "{out}"
    );
    assert!(
        out.contains("  params: {\"note\":\"n2\",\"steps\":5,\"value\":\"x\"}\n  seed: 3\n"),
        "{out}"
    );
    // without -v, no params
    assert!(!p.ok(&["why", "a"]).contains("params:"));
}
