//! What a `command` stage's program must leave, and what it gets: the output checks made
//! when it exits, the thread variables, the sandbox of its writes and the bound of its log.
//! Each rule runs the built `repro` binary on a temporary project whose programs are small
//! Python 3 scripts (standard library only).

mod common;

use common::{ran, Proj};

/// A project with one `command` stage `c` running `python3 prog.py` (the given program),
/// with the extra params `params` (YAML flow-mapping entries) and publishing under `out/c`.
fn one_stage(program: &str, params: &str) -> Proj {
    let p = Proj::new(&yaml(params));
    p.file("prog.py", program);
    p
}

fn yaml(params: &str) -> String {
    format!(
        "stages:\n  c:\n    kind: command\n    params: {{ run: [python3, prog.py], deps: [prog.py]{params} }}\n    publish: out/c\n"
    )
}

/// `repro run` in `p`, which must fail with exit code 1; its output.
fn run_fails(p: &Proj) -> String {
    let o = p.run(&["run"]);
    let text = format!("{}{}", common::out_text(&o), common::err_text(&o));
    assert_eq!(o.status.code(), Some(1), "{text}");
    text
}

/// Nothing of the stage is published: not in the store, the lock or the publish folder.
fn nothing_published(p: &Proj) {
    assert_eq!(p.count("runs"), 0);
    assert!(!p.dir.join("out/c").exists());
    let lock = std::fs::read_to_string(p.dir.join("pipeline.lock")).unwrap_or_default();
    assert!(!lock.contains("\"c\""), "{lock}");
}

/// Writes a metrics.json that matches the schema, for method `m`, after applying the
/// mutation named by `args.mutate` (none by default).
const METRICS: &str = r#"
import json, os
params = json.load(open(os.environ["REPRO_PARAMS"]))
m = {
    "kind": "command", "method": params["method"], "model": "prog", "profile": params["profile"],
    "device": "cpu", "seed": params["seed"], "dataset": {"name": "toy", "identity": ""},
    "noise": None, "epochs": [], "final_test_accuracy": 0.97, "final_test_error": 0.03,
}
mutate = params["args"].get("mutate")
if mutate == "percent":
    m["final_test_accuracy"] = 97
elif mutate == "typo":
    m["final_test_acuracy"] = m.pop("final_test_accuracy")
elif mutate == "other_method":
    m["method"] = "soft_bootsrap"
if mutate != "none_written":
    json.dump(m, open(os.path.join(os.environ["REPRO_OUT"], "metrics.json"), "w"))
"#;

#[test]
fn command_with_a_method_must_leave_metrics_that_match_the_schema() {
    let method = ", method: soft_bootstrap";
    let p = one_stage(METRICS, method);
    let mutated = |m: &str| format!("{method}, args: {{ mutate: {m} }}");

    p.write(&yaml(&mutated("none_written")));
    let out = run_fails(&p);
    assert!(
        out.contains("`python3 prog.py` exited 0 without writing metrics.json into REPRO_OUT: a stage with a `method` (soft_bootstrap) must leave one"),
        "{out}"
    );
    nothing_published(&p);

    p.write(&yaml(&mutated("percent")));
    let out = run_fails(&p);
    assert!(
        out.contains("stage c (kind command): the metrics.json `python3 prog.py` left in REPRO_OUT does not match docs/metrics.schema.json: field `final_test_accuracy`: 97 is outside [0, 1]"),
        "{out}"
    );
    nothing_published(&p);

    p.write(&yaml(&mutated("typo")));
    let out = run_fails(&p);
    assert!(
        out.contains("field `final_test_acuracy`: unknown field"),
        "{out}"
    );
    nothing_published(&p);

    p.write(&yaml(&mutated("other_method")));
    let out = run_fails(&p);
    assert!(
        out.contains(
            "field `method` is `soft_bootsrap`, but the stage's `method` param is `soft_bootstrap`"
        ),
        "{out}"
    );
    nothing_published(&p);

    // The same program writing a good file is published.
    p.write(&yaml(method));
    assert_eq!(ran(&p.ok(&["run"])), ["c"]);
    assert!(p.dir.join("out/c/metrics.json").is_file());
}

#[test]
fn command_that_leaves_nothing_fails_unless_it_declares_no_outputs() {
    let silent = "print('done')\n";
    let p = one_stage(silent, "");
    let out = run_fails(&p);
    assert!(
        out.contains("`python3 prog.py` exited 0 but left nothing in REPRO_OUT; nothing is published (a stage that has no outputs says `outputs: []`)"),
        "{out}"
    );
    nothing_published(&p);

    p.write(&yaml(", outputs: []"));
    assert_eq!(ran(&p.ok(&["run"])), ["c"]);
    // Its log is kept all the same.
    let log = std::fs::read_to_string(p.dir.join("out/c/log/output.txt")).unwrap();
    assert_eq!(log, "done\n");
}

#[test]
fn command_declared_outputs_must_all_be_left() {
    let some = "import os\nout = os.environ['REPRO_OUT']\nopen(os.path.join(out, 'model.bin'), 'w').write('m')\n";
    let p = one_stage(some, ", outputs: [model.bin, preds/test.csv]");
    let out = run_fails(&p);
    assert!(
        out.contains("`python3 prog.py` exited 0 without leaving `preds/test.csv` in REPRO_OUT (params field `outputs[1]`)"),
        "{out}"
    );
    nothing_published(&p);

    // `outputs` is a param: it is part of the fingerprint, and a list the program meets passes.
    p.write(&yaml(", outputs: [model.bin]"));
    assert_eq!(ran(&p.ok(&["run"])), ["c"]);
    p.write(&yaml(", outputs: [model.bin, ./model.bin]"));
    let why = p.ok(&["why", "c"]);
    assert!(why.contains("param outputs"), "{why}");
    assert_eq!(ran(&p.ok(&["run"])), ["c"]);

    // Paths outside REPRO_OUT, or in its log folder, are refused when the pipeline loads.
    for (bad, msg) in [
        (
            "../x",
            "`../x` must be a path relative to REPRO_OUT, without `..`",
        ),
        ("/etc/passwd", "must be a path relative to REPRO_OUT"),
        (
            "log/output.txt",
            "is under `log/`, which is not part of the outputs",
        ),
    ] {
        p.write(&yaml(&format!(", outputs: [model.bin, \"{bad}\"]")));
        let o = p.run(&["status"]);
        let err = common::err_text(&o);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(
            err.contains("stage `c`, field `params.outputs[1]`"),
            "{err}"
        );
        assert!(err.contains(msg), "{err}");
    }
}

/// Writes the thread variables it sees into `$REPRO_OUT/threads.json`.
const THREADS: &str = r#"
import json, os
names = ["REPRO_THREADS", "RAYON_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
         "OPENBLAS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS",
         "BLIS_NUM_THREADS", "GOTO_NUM_THREADS", "NUMBA_NUM_THREADS", "JULIA_NUM_THREADS",
         "TF_NUM_INTRAOP_THREADS", "POLARS_MAX_THREADS", "GOMAXPROCS"]
seen = {n: os.environ.get(n) for n in names}
json.dump(seen, open(os.path.join(os.environ["REPRO_OUT"], "threads.json"), "w"))
"#;

#[test]
fn command_thread_count_reaches_every_runtime_unless_the_user_set_it() {
    let p = one_stage(THREADS, "")
        .with_env("RAYON_NUM_THREADS", "2")
        .with_env("OMP_NUM_THREADS", "3");
    p.ok(&["run"]);
    let text = std::fs::read_to_string(p.dir.join("out/c/threads.json")).unwrap();
    let seen: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text).unwrap();
    for (name, value) in &seen {
        let want = if name == "OMP_NUM_THREADS" { "3" } else { "2" };
        assert_eq!(value, want, "{name}: {text}");
    }
    assert_eq!(seen.len(), 14);
}

/// Tries to write where it is told (`args.target`: `root`, `tmp`, `ours`) and reports.
const WRITER: &str = r#"
import json, os, sys, tempfile
target = json.load(open(os.environ["REPRO_PARAMS"]))["args"]["target"]
if target == "ours":
    # Its own folders: the outputs, the checkpoint and the private temporary folder.
    with tempfile.NamedTemporaryFile(dir=None) as t:
        t.write(b"scratch")
    assert tempfile.gettempdir() == os.environ["TMPDIR"], tempfile.gettempdir()
    open(os.path.join(os.environ["REPRO_CHECKPOINT"], "state.txt"), "w").write("s")
    os.makedirs(os.path.join(os.environ["REPRO_OUT"], "sub"))
    os.replace(os.path.join(os.environ["REPRO_CHECKPOINT"], "state.txt"),
               os.path.join(os.environ["REPRO_OUT"], "sub", "moved.txt"))
    open("/dev/null", "w").write("x")
    path = os.path.join(os.environ["REPRO_OUT"], "ok.txt")
else:
    path = {"root": "stray.txt", "tmp": "/tmp/repro-stray-%d.txt" % os.getpid()}[target]
    print("writing", path, flush=True)
open(path, "w").write("w")
open(os.path.join(os.environ["REPRO_OUT"], "wrote.txt"), "w").write(path)
"#;

/// Whether the program of a published run says in its log that it ran unconfined.
fn unconfined(p: &Proj) -> Option<String> {
    let log = std::fs::read_to_string(p.dir.join("out/c/log/output.txt")).ok()?;
    let first = log.lines().next()?.to_string();
    first
        .starts_with("repro: the program's writes are not confined")
        .then_some(first)
}

#[test]
fn command_write_outside_its_folders_fails_the_stage() {
    let p = one_stage(WRITER, ", args: { target: root }");
    let o = p.run(&["run"]);
    let text = format!("{}{}", common::out_text(&o), common::err_text(&o));
    if o.status.success() {
        let why = unconfined(&p)
            .unwrap_or_else(|| panic!("a write into the project root succeeded:\n{text}"));
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true and the kernel cannot confine a program: {why}"
        );
        eprintln!("SKIPPED: the kernel cannot confine a program here (set CI=true to make this a failure): {why}");
        return;
    }
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(text.contains("Permission denied"), "{text}");
    assert!(text.contains("stray.txt"), "{text}");
    assert!(!p.dir.join("stray.txt").exists());
    nothing_published(&p);

    p.write(&yaml(", args: { target: tmp }"));
    let text = run_fails(&p);
    assert!(
        text.contains("Permission denied: '/tmp/repro-stray-"),
        "{text}"
    );

    // Its own folders are writable, renames between them included.
    p.write(&yaml(", args: { target: ours }"));
    p.ok(&["run"]);
    assert!(p.dir.join("out/c/sub/moved.txt").is_file());
    assert!(p.dir.join("out/c/ok.txt").is_file());
    assert_eq!(unconfined(&p), None);

    // `sandbox: false` lets a program write anywhere, and says nothing.
    p.write(&yaml(", args: { target: root }, sandbox: false"));
    p.ok(&["run"]);
    assert_eq!(
        std::fs::read_to_string(p.dir.join("stray.txt")).unwrap(),
        "w"
    );
    assert_eq!(unconfined(&p), None);
}

/// Prints `args.lines` numbered lines of 100 bytes each.
const CHATTY: &str = r#"
import json, os, sys
n = json.load(open(os.environ["REPRO_PARAMS"]))["args"]["lines"]
out = sys.stdout
for i in range(n):
    out.write("%-99d\n" % i)
open(os.path.join(os.environ["REPRO_OUT"], "done.txt"), "w").write("d")
"#;

#[test]
fn command_log_keeps_its_first_and_last_mebibyte() {
    const MIB: usize = 1 << 20;
    let lines = 50_000; // 5,000,000 bytes
    let p = one_stage(CHATTY, &format!(", args: {{ lines: {lines} }}"));
    p.ok(&["run"]);
    let log = std::fs::read(p.dir.join("out/c/log/output.txt")).unwrap();
    let dropped = lines * 100 - 2 * MIB;
    let note = format!(
        "\n[repro: {dropped} bytes of output left out here; the log keeps the first 1 MiB and the last 1 MiB]\n"
    );
    assert_eq!(log.len(), 2 * MIB + note.len());
    let line = |i: usize| format!("{i:<99}\n");
    assert!(log.starts_with(line(0).as_bytes()));
    assert!(log.ends_with(line(lines - 1).as_bytes()));
    assert_eq!(&log[MIB..MIB + note.len()], note.as_bytes());
    // What is kept is the output's exact first and last bytes.
    let full: String = (0..lines).map(line).collect();
    assert_eq!(&log[..MIB], &full.as_bytes()[..MIB]);
    assert_eq!(
        &log[MIB + note.len()..],
        &full.as_bytes()[full.len() - MIB..]
    );

    // A log within the bound is kept whole.
    p.write(&yaml(", args: { lines: 100 }"));
    p.ok(&["run"]);
    let log = std::fs::read_to_string(p.dir.join("out/c/log/output.txt")).unwrap();
    assert_eq!(log, (0..100).map(line).collect::<String>());
}
