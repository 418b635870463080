//! `repro check`: each rule makes a temporary project a git repository whose commit holds a
//! run's lock and published files (the reference), runs the built `repro` binary again, and
//! reads what `repro check` says and its exit code.

mod common;

use std::path::Path;
use std::process::Command;

use common::{err_text, out_text, ran, Proj};
use serde_json::Value;

const CHAIN: &str = "\
stages:
  a:
    kind: probe
    params: { value: x }
  b:
    kind: probe
    inputs: { up: a }
    params: { value: b }
  c:
    kind: probe
    params: { value: c }
    publish: out/c
";

/// `git args` in `dir`, with a fixed identity and no user or system configuration; returns
/// stdout.
fn git(dir: &Path, args: &[&str]) -> String {
    let o = Command::new("git")
        .args([
            "-c",
            "user.name=repro test",
            "-c",
            "user.email=test@example.invalid",
        ])
        .args([
            "-c",
            "commit.gpgsign=false",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    assert!(o.status.success(), "git {args:?}: {}", err_text(&o));
    out_text(&o)
}

/// Commits everything in the project (the run store is git-ignored).
fn commit(p: &Proj, message: &str) {
    git(&p.dir, &["add", "-A"]);
    git(&p.dir, &["commit", "-q", "-m", message]);
}

/// A project of `yaml` and `files`, run once, in a git repository whose first commit holds
/// its pipeline, lock and published files: the reference.
fn committed(yaml: &str, files: &[(&str, &str)]) -> Proj {
    let p = Proj::new(yaml);
    p.file(".gitignore", "results/.runs/\n");
    for (name, text) in files {
        p.file(name, text);
    }
    p.ok(&["run"]);
    git(&p.dir, &["init", "-q"]);
    commit(&p, "the reference run");
    p
}

/// `repro args` in `p`: exit code, stdout, stderr.
fn repro(p: &Proj, args: &[&str]) -> (i32, String, String) {
    let o = p.run(args);
    (o.status.code().unwrap_or(-1), out_text(&o), err_text(&o))
}

/// Writes `lock` as `<dir>/pipeline.lock`.
fn write_lock(dir: &Path, lock: &Value) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("pipeline.lock"),
        serde_json::to_string_pretty(lock).unwrap(),
    )
    .unwrap();
}

#[test]
fn check_passes_right_after_a_run_that_matches_head() {
    let theirs = committed(CHAIN, &[]);
    // A reviewer's clone: nothing run yet, then one `repro run`.
    let tmp = tempfile::tempdir().unwrap();
    let clone = tmp.path().join("clone");
    git(
        tmp.path(),
        &["clone", "-q", theirs.dir.to_str().unwrap(), "clone"],
    );
    let p = Proj::at(&clone, tmp);
    let (code, out, _) = repro(&p, &["check"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with(
            "check: 0 of 3 members reproduced bit for bit, 3 not run\n\
             against HEAD:pipeline.lock, profile default\n"
        ),
        "{out}"
    );
    assert!(
        out.contains("not run         a  (no outputs for its current key in this store)\n"),
        "{out}"
    );
    assert!(out.contains("not run         b  (waits for a)\n"), "{out}");
    assert!(out.contains("nothing to compare"), "{out}");

    assert_eq!(ran(&p.ok(&["run"])).len(), 3);
    assert_eq!(
        git(&p.dir, &["status", "--porcelain"]),
        "",
        "the run rewrote the committed lock and files byte for byte"
    );
    let (code, out, err) = repro(&p, &["check"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out,
        "check: 3 of 3 members reproduced bit for bit\nagainst HEAD:pipeline.lock, profile default\n"
    );
    assert_eq!(err, "");
    let (code, out, _) = repro(&p, &["check", "-v"]);
    assert_eq!(code, 0);
    assert!(out.contains("reproduced      a\n"), "{out}");
    let (code, out, _) = repro(&p, &["check", "-q"]);
    assert_eq!((code, out.as_str()), (0, ""));
}

#[test]
fn check_names_a_member_whose_digest_changed() {
    let p = committed(CHAIN, &[]);
    // Their c: the same fingerprint, other bytes.
    let mut lock = p.lock_json();
    let c = &mut lock["profiles"]["default"]["c"];
    let fp = c["fingerprint"].as_str().unwrap().to_string();
    let ours = c["digest"].as_str().unwrap().to_string();
    c["digest"] = Value::from("f".repeat(64));
    let tmp = tempfile::tempdir().unwrap();
    write_lock(&tmp.path().join("theirs"), &lock);
    let file = tmp.path().join("theirs/pipeline.lock");

    let (code, out, err) = repro(&p, &["check", "--against", file.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.starts_with("check: 2 of 3 members reproduced bit for bit, 1 differs\n"),
        "{out}"
    );
    let line = format!(
        "DIFFERS         c  (same fingerprint {}, output digest {} here, ffffffffffff in the reference)\n",
        &fp[..12],
        &ours[..12]
    );
    assert!(out.contains(&line), "{out}");
    assert_eq!(
        err,
        "error: check failed: 1 member(s) differ from the reference\n"
    );
    // Only the differing member is printed with -q.
    let (code, out, _) = repro(&p, &["check", "-q", "--against", file.to_str().unwrap()]);
    assert_eq!((code, out.as_str()), (1, line.as_str()));

    // The same lock committed: HEAD differs, the commit before it does not.
    write_lock(&p.dir, &lock);
    commit(&p, "their lock");
    let (code, out, _) = repro(&p, &["check"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&line), "{out}");
    let (code, out, _) = repro(&p, &["check", "--against", "HEAD~1"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with(
            "check: 3 of 3 members reproduced bit for bit\nagainst HEAD~1:pipeline.lock"
        ),
        "{out}"
    );
}

#[test]
fn check_says_when_a_changed_key_kept_the_reference_bytes() {
    // `note` enters the fingerprint but not the output: the key changes, the bytes not.
    let p = committed(CHAIN, &[]);
    p.write(&CHAIN.replace("value: x", "value: x, note: relabelled"));
    p.ok(&["run"]);
    let (code, out, err) = repro(&p, &["check"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with(
            "check: 2 of 3 members reproduced bit for bit, 1 not comparable (1 of them with the \
             reference's bytes under a changed key)\n"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "not comparable  a  (its own key changed: param note: (unset) -> \"relabelled\"; its \
             outputs are the reference's bytes all the same)\n"
        ),
        "{out}"
    );
}

#[test]
fn check_lists_changed_params_as_not_comparable() {
    let p = committed(CHAIN, &[]);
    let changed = CHAIN.replace("value: x", "value: y");
    p.write(&changed);
    p.ok(&["run"]);
    let (code, out, err) = repro(&p, &["check"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with("check: 1 of 3 members reproduced bit for bit, 2 not comparable\n"),
        "{out}"
    );
    assert!(
        out.contains(
            "not comparable  a  (its own key changed: param value: \"x\" -> \"y\"; other \
             output bytes than the reference's)\n"
        ),
        "{out}"
    );
    assert!(
        out.contains("not comparable  b  (its input a differs from the reference's)\n"),
        "{out}"
    );
    assert!(!out.contains("  c  "), "{out}");

    // A stage the reference lacks, and one not run here.
    p.write(&format!(
        "{changed}  d:\n    kind: probe\n    params: {{ value: d }}\n  e:\n    kind: probe\n"
    ));
    p.ok(&["run", "d"]);
    let (code, out, _) = repro(&p, &["check"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with(
            "check: 1 of 5 members reproduced bit for bit, 3 not comparable, 1 not run\n"
        ),
        "{out}"
    );
    assert!(
        out.contains("not comparable  d  (not in the reference)\n"),
        "{out}"
    );
    assert!(
        out.contains("not run         e  (never run here)\n"),
        "{out}"
    );

    // A stage removed from the pipeline is counted.
    p.write(&changed.replace(
        "  c:\n    kind: probe\n    params: { value: c }\n    publish: out/c\n",
        "",
    ));
    let (code, out, _) = repro(&p, &["check", "-v"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("1 member(s) of the reference are not in this pipeline\n  c\n"),
        "{out}"
    );
}

#[test]
fn check_refuses_a_missing_reference() {
    let p = Proj::new(CHAIN);
    p.file(".gitignore", "results/.runs/\n");
    p.ok(&["run"]);
    let one_line_error = |args: &[&str], wants: &[&str]| {
        let (code, out, err) = repro(&p, args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert_eq!(out, "", "{args:?}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        for want in wants {
            assert!(err.contains(want), "{args:?}: wanted {want:?} in {err}");
        }
    };
    // Not a git repository.
    one_line_error(
        &["check"],
        &["error: reference HEAD:pipeline.lock: git cannot read it: not a git repository"],
    );
    // A repository whose HEAD has no lock.
    git(&p.dir, &["init", "-q"]);
    git(&p.dir, &["add", "pipeline.yaml"]);
    git(&p.dir, &["commit", "-q", "-m", "the pipeline alone"]);
    one_line_error(
        &["check"],
        &[
            "error: reference HEAD:pipeline.lock: git cannot read it: ",
            "pipeline.lock",
        ],
    );
    // Neither a file nor a revision.
    one_line_error(
        &["check", "--against", "theirs.lock"],
        &["error: reference theirs.lock:pipeline.lock: no file `theirs.lock`, and git cannot read the lock at revision `theirs.lock`"],
    );
    // A reference without the profile.
    commit(&p, "the run");
    one_line_error(
        &["check", "-p", "nope"],
        &["no profile `nope`", "pipeline.yaml"],
    );
    p.write(&format!("{CHAIN}profiles:\n  small:\n    disable: [c]\n"));
    one_line_error(
        &["check", "-p", "small"],
        &["error: reference HEAD:pipeline.lock has no entries for profile `small` (profiles there: default)"],
    );
}

#[test]
fn check_refuses_a_malformed_reference() {
    let p = committed(CHAIN, &[]);
    let refused = |args: &[&str], want: &str| {
        let (code, out, err) = repro(&p, args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with(want), "wanted {want:?}, got {err}");
    };
    p.file("bad/not-json.lock", "<<<<<<< HEAD\n");
    refused(
        &["check", "--against", "bad/not-json.lock"],
        "error: reference bad/not-json.lock is not a lock file: ",
    );
    p.file(
        "bad/shape.lock",
        r#"{"profiles": {"default": {"a": {"fingerprint": 7}}}, "version": 1}"#,
    );
    refused(
        &["check", "--against", "bad/shape.lock"],
        "error: reference bad/shape.lock is not a lock file: invalid type: integer `7`",
    );
    // A malformed lock committed at HEAD.
    std::fs::write(p.dir.join("pipeline.lock"), "[]\n").unwrap();
    commit(&p, "a broken lock");
    refused(
        &["check"],
        "error: reference HEAD:pipeline.lock is not a lock file: ",
    );
}

/// A `command` stage writing a small results table, published under `results/report`.
const TABLE_STAGE: &str = "\
stages:
  report:
    kind: command
    params: { run: [sh, table.sh], deps: [table.sh], outputs: [tables/t1.csv] }
    publish: results/report
";

const TABLE_SH: &str = "\
mkdir -p \"$REPRO_OUT/tables\"
cat > \"$REPRO_OUT/tables/t1.csv\" <<'END'
# generated by table.sh
Dataset,Corruption,GLC mean,MLC mean
Digits,Uniform,9.799999999999999,9.9
Digits,Flip,**3.5 ± 1.2**,6.2
END
";

#[test]
fn check_prints_moved_table_cells() {
    let p = committed(TABLE_STAGE, &[("table.sh", TABLE_SH)]);
    let csv = "results/report/tables/t1.csv";
    assert!(p.dir.join(csv).exists());
    // Their lock and tables, beside each other as in a project; and their lock alone.
    let tmp = tempfile::tempdir().unwrap();
    git(
        tmp.path(),
        &["clone", "-q", p.dir.to_str().unwrap(), "theirs"],
    );
    std::fs::create_dir(tmp.path().join("lock-only")).unwrap();
    std::fs::copy(
        p.dir.join("pipeline.lock"),
        tmp.path().join("lock-only/pipeline.lock"),
    )
    .unwrap();

    p.file(
        "table.sh",
        &TABLE_SH
            .replace("9.799999999999999,9.9", "9.9,9.9")
            .replace("**3.5 ± 1.2**", "3.6 ± 1.1†"),
    );
    assert_eq!(ran(&p.ok(&["run"])), ["report"]);
    let moved = format!(
        "table {csv} (report): 2 cell(s) moved\n\
         \x20 row `Digits, Uniform`, column `GLC mean`: 9.799999999999999 -> 9.9 (+0.1)\n\
         \x20 row `Digits, Flip`, column `GLC mean`: **3.5 ± 1.2** -> 3.6 ± 1.1† (+0.1)\n"
    );
    let (code, out, err) = repro(&p, &["check"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out,
        format!(
            "check: 0 of 1 members reproduced bit for bit, 1 not comparable\n\
             against HEAD:pipeline.lock, profile default\n\
             not comparable  report  (its own key changed: code file table.sh changed; other \
             output bytes than the reference's)\n\
             {moved}"
        )
    );
    let theirs = tmp.path().join("theirs/pipeline.lock");
    let (code, out, _) = repro(&p, &["check", "--against", theirs.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(out.ends_with(&moved), "{out}");
    let alone = tmp.path().join("lock-only/pipeline.lock");
    let (code, out, _) = repro(&p, &["check", "--against", alone.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(
        out.contains(&format!(
            "table {csv} (report): differs; the reference's table is not available: no copy at "
        )),
        "{out}"
    );
}
