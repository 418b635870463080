//! The `command` stage kind: a program of the user's run as a stage. Each rule runs the
//! built `repro` binary on a temporary project whose programs are small Python 3 scripts
//! (standard library only), or the worked example `examples/nearest_centroid.py`.

mod common;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::{copy_dir, ran, repro, wait_for, Proj};
use serde_json::Value;

/// A temporary project: `pipeline.yaml` and the given files.
fn project(yaml: &str, files: &[(&str, &str)]) -> Proj {
    let p = Proj::new(yaml);
    for (name, text) in files {
        p.file(name, text);
    }
    p
}

/// A project with the digits data and the worked examples.
fn digits_project(yaml: &str) -> Proj {
    let p = Proj::new(yaml);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    copy_dir(&root.join("data/optdigits"), &p.dir.join("data/optdigits"));
    copy_dir(&root.join("examples"), &p.dir.join("examples"));
    p
}

/// A project whose one stage `name` runs `python3 <name>.py` (that file holding `program`,
/// its dep) and publishes under `out/<name>`; and its pipeline text.
fn one_program(name: &str, program: &str) -> (Proj, String) {
    let yaml = format!(
        "stages:\n  {name}:\n    kind: command\n    params: {{ run: [python3, {name}.py], deps: [{name}.py] }}\n    publish: out/{name}\n"
    );
    (project(&yaml, &[(&format!("{name}.py"), program)]), yaml)
}

/// What `repro args` prints (stdout, then stderr) in `p`, which must exit with `code`.
fn fails(p: &Proj, args: &[&str], code: i32) -> String {
    let (got, out) = repro(&p.dir, args);
    assert_eq!(got, code, "{out}");
    out
}

/// Members a `repro run` started, from its plain output, by name.
fn started(out: &str) -> Vec<String> {
    let mut v = ran(out);
    v.sort();
    v
}

fn read_json(p: &Path) -> Value {
    let bytes = std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_slice(&bytes).unwrap()
}

/// Writes what the program is given into `$REPRO_OUT/seen.json`, and prints a line.
const SHOW_ENV: &str = r#"
import json, os
env = {k: v for k, v in os.environ.items() if k.startswith("REPRO_")}
with open(env["REPRO_PARAMS"]) as f:
    params = json.load(f)
with open(os.path.join(env["REPRO_INPUT_UP_STREAM"], "value.txt")) as f:
    upstream = f.read()
seen = {"env": sorted(env), "params": params, "upstream": upstream, "cwd": os.getcwd(),
        "seed": env["REPRO_SEED"], "threads": env["REPRO_THREADS"],
        "checkpoint_is_dir": os.path.isdir(env["REPRO_CHECKPOINT"])}
with open(os.path.join(env["REPRO_OUT"], "seen.json"), "w") as f:
    json.dump(seen, f)
print("hello from the program")
"#;

#[test]
fn command_gets_inputs_params_and_seed() {
    let yaml = "\
stages:
  up:
    kind: probe
    params: { value: upstream-bytes }
  show:
    kind: command
    inputs: { up_stream: up }
    matrix: { seed: [7] }
    params:
      run: [python3, show.py]
      deps: [show.py]
      args: { shrink: 0.25, nested: { a: [1, 2] } }
    publish: out/show
";
    let p = project(yaml, &[("show.py", SHOW_ENV)]);
    p.ok(&["run"]);
    let out = p.dir.join("out/show");
    let seen = read_json(&out.join("seen.json"));
    let env: Vec<&str> = seen["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        env,
        [
            "REPRO_CHECKPOINT",
            "REPRO_INPUT_UP_STREAM",
            "REPRO_OUT",
            "REPRO_PARAMS",
            "REPRO_SEED",
            "REPRO_THREADS"
        ]
    );
    assert_eq!(seen["upstream"], "upstream-bytes");
    assert_eq!(seen["seed"], "7");
    assert!(seen["threads"].as_str().unwrap().parse::<usize>().unwrap() >= 1);
    assert_eq!(seen["checkpoint_is_dir"], true);
    assert_eq!(
        Path::new(seen["cwd"].as_str().unwrap())
            .canonicalize()
            .unwrap(),
        p.dir.canonicalize().unwrap()
    );
    let params = &seen["params"];
    // A stage that is no method (no `method` param) gets none.
    assert_eq!(params["method"], Value::Null);
    assert_eq!(
        params["args"],
        serde_json::json!({"shrink": 0.25, "nested": {"a": [1, 2]}})
    );
    assert_eq!(params["seed"], 7);
    assert_eq!(params["coords"], serde_json::json!({"seed": 7}));
    assert_eq!(params["profile"], "default");
    assert_eq!(params["member"], "show[seed=7]");
    assert_eq!(params["inputs"]["up_stream"].as_array().unwrap().len(), 1);
    // Its output is the program's log beside what it wrote: no params file, no checkpoint.
    let log = std::fs::read_to_string(out.join("log/output.txt")).unwrap();
    assert_eq!(log, "hello from the program\n");
    assert!(out.join("log/timings.json").is_file());
    let mut files: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["log", "seen.json"]);
    p.ok(&["verify"]);
}

const TWO_PROGRAMS: &str = "\
stages:
  a:
    kind: command
    params: { run: [python3, a.py], deps: [a.py] }
  b:
    kind: command
    params: { run: [python3, b.py], deps: [lib], version: 0 }
  after_b:
    kind: probe
    inputs: { up: b }
    params: { value: x }
";

const WRITE_VALUE: &str =
    "import os\nopen(os.path.join(os.environ['REPRO_OUT'], 'value.txt'), 'w').write('v')\n";

#[test]
fn command_dep_edit_reruns_only_its_stages() {
    let files = [
        ("a.py", WRITE_VALUE),
        ("b.py", WRITE_VALUE),
        ("lib/util.py", "X = 1\n"),
    ];
    let p = project(TWO_PROGRAMS, &files);
    assert_eq!(started(&p.ok(&["run"])), ["a", "after_b", "b"]);
    assert_eq!(started(&p.ok(&["run"])), Vec::<String>::new());

    p.file("a.py", &format!("{WRITE_VALUE}# edited\n"));
    let why = p.ok(&["why", "a"]);
    assert!(why.contains("code file a.py changed"), "{why}");
    assert_eq!(started(&p.ok(&["run"])), ["a"]);

    // A file in a folder dep: `b` reruns; its output is the same, so `after_b` stays fresh.
    p.file("lib/util.py", "X = 2\n");
    assert_eq!(started(&p.ok(&["run"])), ["b"]);
    p.file("lib/new.py", "Y = 1\n");
    assert_eq!(started(&p.ok(&["run"])), ["b"]);
    // Interpreter caches are not code.
    p.file("lib/__pycache__/util.cpython-311.pyc", "cache");
    assert_eq!(started(&p.ok(&["run"])), Vec::<String>::new());
    // `version` reruns without an edit.
    p.write(&TWO_PROGRAMS.replace("version: 0 }", "version: 1 }"));
    assert_eq!(started(&p.ok(&["run"])), ["b"]);
}

#[test]
fn command_failure_publishes_nothing_and_shows_log_tail() {
    let fail = "import os, sys\nopen(os.path.join(os.environ['REPRO_OUT'], 'partial.txt'), 'w').write('p')\nfor i in range(1, 31):\n    print('line %d' % i, file=sys.stderr if i % 2 else sys.stdout, flush=True)\nsys.exit(3)\n";
    let (p, yaml) = one_program("fail", fail);
    let out = fails(&p, &["run"], 1);
    assert!(
        out.contains("`python3 fail.py` exited with code 3"),
        "{out}"
    );
    // The last 20 lines, stdout and stderr interleaved as written.
    assert!(out.contains("line 11\nline 12\n"), "{out}");
    assert!(out.contains("line 30"), "{out}");
    assert!(!out.contains("line 10\n"), "{out}");
    assert!(!p.dir.join("out/fail").exists());
    assert_eq!(p.count("runs"), 0);

    // A program that does not exist is refused when the pipeline loads.
    let yaml = yaml.replace("[python3, fail.py]", "[./no-such-program]");
    p.write(&yaml);
    let out = fails(&p, &["run"], 2);
    assert!(
        out.contains("stage `fail`, field `params.run[0]`")
            && out.contains("`./no-such-program` does not exist in the project"),
        "{out}"
    );

    // Killed by a signal.
    let yaml = "\
stages:
  killed:
    kind: command
    params: { run: [python3, -c, 'import os, signal; os.kill(os.getpid(), signal.SIGKILL)'], method: k }
";
    p.write(yaml);
    let out = fails(&p, &["run"], 1);
    assert!(out.contains("was killed by signal 9"), "{out}");
}

/// Counts to 200 in its checkpoint, a step every 20 ms; on SIGINT it notes it and exits.
const COUNTER: &str = r#"
import os, sys, time
ck = os.environ["REPRO_CHECKPOINT"]
step_file = os.path.join(ck, "step")
start = int(open(step_file).read()) if os.path.exists(step_file) else 0
saved = start
try:
    while saved < 200:
        time.sleep(0.02)
        with open(step_file + ".tmp", "w") as f:
            f.write(str(saved + 1))
        os.replace(step_file + ".tmp", step_file)
        saved += 1
except KeyboardInterrupt:
    open(os.path.join(ck, "interrupted"), "w").write(open(step_file).read())
    sys.exit(1)
open(os.path.join(os.environ["REPRO_OUT"], "resumed_from.txt"), "w").write(str(start))
"#;

#[test]
fn command_interrupt_resumes_from_its_checkpoint() {
    let (p, _) = one_program("counter", COUNTER);
    // A terminal's Ctrl-C: SIGINT to the whole foreground process group.
    let mut child = p
        .cmd(&["run"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    wait_for("10 steps", Duration::from_secs(60), || {
        p.program_checkpoint("step")
            .is_some_and(|s| s.parse::<u32>().unwrap_or(0) >= 10)
    });
    // SAFETY: signalling the process group of a child this test started.
    assert_eq!(unsafe { libc::kill(-(child.id() as i32), libc::SIGINT) }, 0);
    assert_eq!(child.wait().unwrap().code(), Some(130));
    let stopped: u32 = p
        .program_checkpoint("interrupted")
        .expect("the program was signalled")
        .parse()
        .unwrap();
    assert!((10..200).contains(&stopped), "stopped at {stopped}");
    assert!(!p.dir.join("out/counter").exists());

    let out = p.ok(&["run"]);
    assert_eq!(ran(&out), ["counter"]);
    let resumed: u32 = std::fs::read_to_string(p.dir.join("out/counter/resumed_from.txt"))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(resumed, stopped);
    assert_eq!(p.count("checkpoints"), 0, "checkpoint removed on success");
}

/// Digits, GLC's flip noise at two strengths, CE and GLC for two epochs, and the worked
/// example.
const DIGITS: &str = "\
stages:
  digits:
    kind: download
    params: { dataset: digits }
  noisy:
    kind: inject_noise
    inputs: { data: digits }
    matrix: { corruption: [flip], strength: [0.0, 0.6], trusted_fraction: [0.05], seed: [1] }
  base:
    kind: train
    inputs: { data: digits, noise: noisy }
    params: { epochs: 2, min_updates: 20 }
    matrix: { method: [ce, glc] }
  centroid:
    kind: command
    inputs: { data: digits, noise: noisy }
    params:
      run: [python3, examples/nearest_centroid.py]
      deps: [examples/nearest_centroid.py, examples/repro_io.py]
      method: nearest_centroid
      args: { iterations: 1 }
";

const REPORT: &str = "
  report:
    kind: tables
    inputs: { base: \"base[*]\", centroid: \"centroid[*]\", noise: \"noisy[*]\" }
    publish: out/report
    params:
      tables:
        - { table: glc_table1, name: t1, methods: [ce, glc, nearest_centroid] }
        - { table: noisy, name: t4, methods: [ce, glc, nearest_centroid] }
        - { table: t_estimation, name: t6, methods: [glc, identity, nearest_centroid] }
";

#[test]
fn command_metrics_join_the_tables() {
    let p = digits_project(&format!("{DIGITS}{REPORT}"));
    p.ok(&["run", "-j2"]);
    for t in ["t1", "t4", "t6"] {
        let md = std::fs::read_to_string(p.dir.join(format!("out/report/tables/{t}.md"))).unwrap();
        let cells =
            |l: &str| -> Vec<String> { l.split('|').map(|c| c.trim().to_string()).collect() };
        let header = cells(md.lines().find(|l| l.starts_with('|')).unwrap());
        assert!(header.iter().any(|h| h.contains("GLC")), "{t}: {header:?}");
        let row = cells(md.lines().find(|l| l.contains("Flip")).unwrap());
        let ours: Vec<&String> = header
            .iter()
            .zip(&row)
            .filter(|(h, _)| h.contains("nearest\\_centroid"))
            .map(|(_, c)| c)
            .collect();
        assert!(
            !ours.is_empty() && ours.iter().all(|c| c.contains('.')),
            "{t}: {header:?} {row:?}"
        );
    }

    // A file that breaks the schema fails its own stage, naming the file and the field.
    let broken = "import json, os\np = os.path.join(os.environ['REPRO_OUT'], 'metrics.json')\nm = json.load(open(os.environ['REPRO_PARAMS']))\nsrc = os.environ['REPRO_INPUT_LIKE']\nd = json.load(open(os.path.join(src, 'metrics.json')))\nd['method'] = 'broken'\nd['final_test_error'] = 'low'\njson.dump(d, open(p, 'w'))\n";
    p.file("broken.py", broken);
    let yaml = format!(
        "{DIGITS}  broken:\n    kind: command\n    inputs: {{ like: centroid }}\n    params: {{ run: [python3, broken.py], method: broken }}\n{}",
        REPORT.replace(
            "centroid: \"centroid[*]\",",
            "centroid: \"centroid[*]\", broken: \"broken[*]\","
        )
    );
    assert!(yaml.contains("broken: \"broken[*]\""));
    p.write(&yaml);
    let out = fails(&p, &["run"], 1);
    assert!(
        out.contains("the metrics.json `python3 broken.py` left in REPRO_OUT does not match docs/metrics.schema.json: field `final_test_error`: must be a number"),
        "{out}"
    );
    // It fails as it exits: nothing of it is stored, and the tables never read it.
    assert!(out.contains("FAILED   broken["), "{out}");
    assert!(!out.contains("input broken["), "{out}");
}

#[test]
fn command_metrics_must_match_the_schema() {
    let yaml = format!(
        "{DIGITS}
  mlc:
    kind: train_mlc
    inputs: {{ data: digits, noise: noisy }}
    params: {{ epochs: 1 }}
  soft:
    kind: train_soft_labels
    inputs: {{ data: digits, noise: noisy }}
    params: {{ warmup_epochs: 1, epochs: 1 }}
  clean:
    kind: train
    inputs: {{ data: digits }}
    params: {{ method: ce, epochs: 2, min_updates: 20 }}
  student:
    kind: distill
    inputs: {{ data: digits, teacher: clean }}
    params: {{ epochs: 1 }}
"
    );
    let p = digits_project(&yaml);
    p.ok(&["run", "-j2"]);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let schema = read_json(&root.join("docs/metrics.schema.json"));
    let validator = jsonschema::validator_for(&schema).unwrap();
    let mut kinds = std::collections::BTreeSet::new();
    for e in std::fs::read_dir(p.runs_dir()).unwrap() {
        let path = e.unwrap().path().join("out/metrics.json");
        if !path.exists() {
            continue;
        }
        let m = read_json(&path);
        let errors: Vec<String> = validator
            .iter_errors(&m)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
        assert_eq!(
            repro_stages::metrics_schema::check(&m),
            Ok(()),
            "{}",
            path.display()
        );
        kinds.insert(m["kind"].as_str().unwrap().to_string());
    }
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        [
            "command",
            "distill",
            "train",
            "train_mlc",
            "train_soft_labels"
        ]
    );

    // The schema and the check `tables` makes refuse the same mistakes.
    let good = read_json(
        &std::fs::read_dir(p.runs_dir())
            .unwrap()
            .map(|e| e.unwrap().path().join("out/metrics.json"))
            .find(|p| p.exists() && read_json(p)["kind"] == "command")
            .unwrap(),
    );
    let mutations: [(&str, fn(&mut Value)); 7] = [
        ("final_test_error", |m| m["final_test_error"] = "x".into()),
        ("final_test_accuracy", |m| {
            m["final_test_accuracy"] = 1.5.into()
        }),
        ("method", |m| m["method"] = "".into()),
        ("seed", |m| m["seed"] = (-1).into()),
        ("epochs[0].phase", |m| {
            m["epochs"][0].as_object_mut().unwrap().remove("phase");
        }),
        ("noise.strength", |m| m["noise"]["strength"] = "high".into()),
        ("colour", |m| m["colour"] = "blue".into()),
    ];
    for (field, mutate) in mutations {
        let mut m = good.clone();
        mutate(&mut m);
        assert!(!validator.is_valid(&m), "the schema accepts a bad {field}");
        let e = repro_stages::metrics_schema::check(&m).unwrap_err();
        assert_eq!(e.0, field, "{e:?}");
    }
}

/// `repro status`'s stderr on a project whose pipeline it must refuse (exit code 2).
fn refused(yaml: &str, files: &[(&str, &str)]) -> String {
    fails(&project(yaml, files), &["status"], 2)
}

const PROGRAM: &str = "stages:\n  c:\n    kind: command\n    params:\n      method: m\n";

#[test]
fn command_empty_run_is_refused_at_load() {
    let e = refused(&format!("{PROGRAM}      run: []\n"), &[]);
    assert!(
        e.contains("pipeline.yaml:6: stage `c`, field `params.run`: invalid params for member `c`: must name a program"),
        "{e}"
    );
}

#[test]
fn command_missing_dep_is_refused_at_load() {
    let yaml = format!("{PROGRAM}      run: [python3, p.py]\n      deps: [p.py, gone.py]\n");
    let e = refused(&yaml, &[("p.py", "")]);
    assert!(
        e.contains("pipeline.yaml:7: stage `c`, field `params.deps[1]`: invalid params for member `c`: `gone.py` does not exist"),
        "{e}"
    );
    let yaml = format!("{PROGRAM}      run: [python3, p.py]\n      deps: [../p.py]\n");
    let e = refused(&yaml, &[("p.py", "")]);
    assert!(e.contains("field `params.deps[0]`: invalid params for member `c`: `../p.py` must be a path relative to the project root"), "{e}");
}

#[test]
fn command_args_not_a_map_is_refused_at_load() {
    let yaml = format!("{PROGRAM}      run: [python3, p.py]\n      args: [1, 2]\n");
    let e = refused(&yaml, &[]);
    assert!(
        e.contains("pipeline.yaml:7: stage `c`, field `params.args`: invalid params for member `c`: invalid type: sequence, expected a map"),
        "{e}"
    );
}
