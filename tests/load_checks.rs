//! What can be known when the pipeline loads is refused then, before any stage runs, with
//! the file, the line, the stage and the field: a method that needs trusted examples fed
//! by a noise stage that draws none, sizes of zero, a program that is not there, names
//! that are no folder name, inputs a kind does not read or lacks, a table's method that
//! names no input run and a group of runs no table shows. Each rule runs the built `repro`
//! binary on a pipeline in a temporary project.

mod common;

use common::{err_text, Proj};

/// Digits, noise with a trusted share of `trusted`, and `extra` stages after them.
fn digits(trusted: &str, extra: &str) -> String {
    format!(
        "\
stages:
  digits:
    kind: download
    params: {{ dataset: digits }}
  noisy:
    kind: inject_noise
    inputs: {{ data: digits }}
    params: {{ trusted_fraction: {trusted} }}
    matrix: {{ corruption: [flip], strength: [0.0, 0.6], seed: [1] }}
{extra}"
    )
}

/// `repro status`'s stderr in a project holding `yaml`, asserting it refused the file
/// (exit code 2) and ran nothing.
fn refused(yaml: &str) -> String {
    let p = Proj::new(yaml);
    refused_in(&p)
}

fn refused_in(p: &Proj) -> String {
    let o = p.run(&["status"]);
    let err = err_text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(!p.dir.join("results").exists(), "something ran: {err}");
    err
}

#[test]
fn a_method_that_needs_trusted_examples_is_refused_when_its_noise_draws_none() {
    let glc = "  glc:\n    kind: train\n    inputs: { data: digits, noise: noisy }\n    params: { method: glc }\n";
    let e = refused(&digits("0.0", glc));
    assert!(
        e.contains("pipeline.yaml:13: stage `glc`, field `params.method`: member `glc[flip,0.0,seed=1]`: method glc needs trusted examples, but its `noise` input `noisy[flip,0.0,seed=1]` draws none: its trusted_fraction is 0"),
        "{e}"
    );
    // The same stage loads with trusted examples.
    let p = Proj::new(&digits("0.05", glc));
    assert_eq!(p.run(&["status"]).status.code(), Some(1));
    // Every kind and method that needs them.
    for (stage, field) in [
        (
            "  t:\n    kind: train\n    inputs: { data: digits, noise: noisy }\n    matrix: { method: [ce, trusted_only] }\n",
            "pipeline.yaml:13: stage `t`, field `params.method`: member `t[trusted_only,flip,0.0,seed=1]`: method trusted_only needs",
        ),
        (
            "  t:\n    kind: train_mlc\n    inputs: { data: digits, noise: noisy }\n",
            "pipeline.yaml:12: stage `t`, field `inputs.noise`: member `t[flip,0.0,seed=1]`: MLC needs a trusted (meta) set",
        ),
        (
            "  t:\n    kind: train_soft_labels\n    inputs: { data: digits, noise: noisy }\n    params: { meta_set: trusted }\n",
            "pipeline.yaml:13: stage `t`, field `params.meta_set`: member `t[flip,0.0,seed=1]`: `trusted`, but the `noise` input",
        ),
    ] {
        let e = refused(&digits("0.0", stage));
        assert!(e.contains(field), "{stage}: {e}");
    }
    // A share of 1 leaves no untrusted example to train a first phase on.
    let e = refused(&digits("1.0", glc));
    assert!(
        e.contains("trains its first phase on untrusted examples, but its `noise` input `noisy[flip,0.0,seed=1]` trusts every example: its trusted_fraction is 1"),
        "{e}"
    );
}

#[test]
fn sizes_of_zero_are_refused_at_load() {
    for (params, field) in [
        ("{ method: ce, batch_size: 0 }", "params.batch_size"),
        ("{ method: ce, epochs: 0 }", "params.epochs"),
        (
            "{ method: ce, eval_batch_size: 0 }",
            "params.eval_batch_size",
        ),
    ] {
        let stage = format!(
            "  t:\n    kind: train\n    inputs: {{ data: digits, noise: noisy }}\n    params: {params}\n"
        );
        let e = refused(&digits("0.05", &stage));
        assert!(
            e.contains(&format!("pipeline.yaml:13: stage `t`, field `{field}`:"))
                && e.contains(": must be at least 1"),
            "{params}: {e}"
        );
    }
    let e = refused(&digits(
        "0.05",
        "  t:\n    kind: train_soft_labels\n    inputs: { data: digits, noise: noisy }\n    params: { meta_batch_size: 0 }\n",
    ));
    assert!(e.contains("field `params.meta_batch_size`"), "{e}");
}

#[test]
fn a_program_that_is_not_there_is_refused_at_load() {
    let stage = |run: &str| {
        format!("stages:\n  mine:\n    kind: command\n    params:\n      run: {run}\n      method: mine\n")
    };
    let e = refused(&stage("[no-such-program-anywhere, x.py]"));
    assert!(
        e.contains("pipeline.yaml:5: stage `mine`, field `params.run[0]`:")
            && e.contains("`no-such-program-anywhere` is no program on PATH"),
        "{e}"
    );
    let e = refused(&stage("[scripts/missing.sh]"));
    assert!(
        e.contains("`scripts/missing.sh` does not exist in the project"),
        "{e}"
    );
    let p = Proj::new(&stage("[./train.py]"));
    p.file("train.py", "print('no execute bit')\n");
    let e = refused_in(&p);
    assert!(
        e.contains("`./train.py` is not executable") && e.contains("run: [python3, ./train.py]"),
        "{e}"
    );
    // On PATH, or a project file with an execute bit: loads.
    let p = Proj::new(&stage("[sh, -c, 'true']"));
    assert_eq!(p.run(&["status"]).status.code(), Some(1));
}

#[test]
fn stage_names_that_are_no_path_component_are_refused() {
    for name in ["a/b", "..", "../../evil", "."] {
        let e = refused(&format!("stages:\n  {name}:\n    kind: probe\n"));
        assert!(
            e.contains(&format!("pipeline.yaml:2: stage `{name}`:"))
                && e.contains("one plain path component"),
            "{name}: {e}"
        );
    }
    // A control character, written as an escape.
    let e = refused("stages:\n  \"a\\u0007b\":\n    kind: probe\n");
    assert!(e.contains("one plain path component"), "{e}");
    // Dots inside a name are fine.
    let p = Proj::new("stages:\n  a.b..c:\n    kind: probe\n");
    assert_eq!(p.run(&["status"]).status.code(), Some(1));
}

#[test]
fn matrix_values_that_are_no_folder_name_are_refused_where_they_publish() {
    for value in ["../../evil", "a/b", ".."] {
        let yaml = format!(
            "stages:\n  a:\n    kind: probe\n    publish: out/a\n    matrix:\n      x_tag: [ok, \"{value}\"]\n"
        );
        let e = refused(&yaml);
        assert!(
            e.contains("pipeline.yaml:6: stage `a`, field `matrix.x_tag`:")
                && e.contains("which is no plain folder name"),
            "{value}: {e}"
        );
        // Without a publish directory the value names no folder.
        let p = Proj::new(&yaml.replace("    publish: out/a\n", ""));
        assert_eq!(p.run(&["status"]).status.code(), Some(1), "{value}");
    }
}

#[test]
fn inputs_a_kind_does_not_read_or_lacks_are_refused_at_load() {
    // A misspelt input would be bound and never read: ce would train on clean labels.
    let e = refused(&digits(
        "0.05",
        "  t:\n    kind: train\n    inputs: { data: digits, nosie: noisy }\n    params: { method: ce }\n",
    ));
    assert!(
        e.contains("pipeline.yaml:12: stage `t`, field `inputs.nosie`: member `t[flip,0.0,seed=1]`: a `train` stage reads no input of that name (it reads `data`, `noise`)"),
        "{e}"
    );
    let e = refused(&digits(
        "0.05",
        "  t:\n    kind: train\n    inputs: { noise: noisy }\n    params: { method: ce }\n",
    ));
    assert!(
        e.contains("field `inputs.data`") && e.contains("a `train` stage needs `data`"),
        "{e}"
    );
    let e = refused(&digits(
        "0.05",
        "  t:\n    kind: train\n    inputs: { data: digits }\n    params: { method: glc }\n",
    ));
    assert!(
        e.contains("field `params.method`: method glc needs a `noise` input"),
        "{e}"
    );
    let e = refused(&digits(
        "0.05",
        "  t:\n    kind: train\n    inputs: { data: noisy }\n    params: { method: ce }\n",
    ));
    assert!(
        e.contains("input `data` reads `noisy[flip,0.0,seed=1]`, a `inject_noise` stage; it must be `download` or `command`"),
        "{e}"
    );
    let e = refused(&digits(
        "0.05",
        "  t:\n    kind: distill\n    inputs: { data: digits }\n",
    ));
    assert!(e.contains("a `distill` stage needs `teacher`"), "{e}");
}

/// Digits, 5 % trusted flip noise, CE and GLC, and a tables stage with `tables` and
/// `inputs` as given.
fn report(inputs: &str, tables: &str) -> String {
    digits(
        "0.05",
        &format!(
            "  base:
    kind: train
    inputs: {{ data: digits, noise: noisy }}
    matrix: {{ method: [ce, glc] }}
  clean:
    kind: train
    inputs: {{ data: digits }}
    params: {{ method: ce }}
  report:
    kind: tables
    inputs: {inputs}
    params:
      tables:
{tables}"
        ),
    )
}

#[test]
fn table_method_that_names_no_input_run_is_refused_at_load() {
    let yaml = report(
        "{ base: \"base[*]\", noise: \"noisy[*]\" }",
        "        - { table: noisy, name: t4 }\n        - table: glc_table1\n          methods: [ce, soft_bootsrap]\n",
    );
    let e = refused(&yaml);
    assert!(
        e.contains("pipeline.yaml:24: stage `report`, field `params.tables[1].methods`: `soft_bootsrap` is the method of no input run (theirs: ce, glc)"),
        "{e}"
    );
    // A distillation table's entries are teachers' methods.
    let yaml = report(
        "{ students: \"student[*]\" }",
        "        - { table: distill, methods: [ce, label_smoothing] }\n",
    )
    .replace(
        "  report:\n",
        "  student:\n    kind: distill\n    inputs: { data: digits, teacher: clean }\n  report:\n",
    );
    let e = refused(&yaml);
    assert!(
        e.contains("field `params.tables[0].methods`: `label_smoothing` is the teacher of no distilled input run (theirs: ce)"),
        "{e}"
    );
}

#[test]
fn input_group_no_table_shows_is_refused_at_load() {
    // Clean runs in a table of noisy labels only.
    let yaml = report(
        "{ base: \"base[*]\", clean: \"clean[*]\" }",
        "        - { table: glc_table1, methods: [ce, glc] }\n",
    );
    let e = refused(&yaml);
    assert!(
        e.contains("pipeline.yaml:20: stage `report`, field `inputs.clean`: no table or figure shows its 1 run(s) (method(s): ce); list the method in a table's `methods`, or drop the input"),
        "{e}"
    );
    // Shown by a table of clean runs, it loads.
    let p = Proj::new(&yaml.replace(
        "methods: [ce, glc] }\n",
        "methods: [ce, glc] }\n        - { table: clean, methods: [ce] }\n",
    ));
    assert_eq!(
        p.run(&["status"]).status.code(),
        Some(1),
        "{}",
        err_text(&p.run(&["status"]))
    );
    // A stage that writes no metrics is no group of runs.
    let yaml = report(
        "{ base: \"base[*]\", data: \"digits[*]\" }",
        "        - { table: noisy }\n",
    );
    let e = refused(&yaml);
    assert!(
        e.contains("field `inputs.data`: input `data` reads `digits`, a `download` stage, which writes no metrics.json"),
        "{e}"
    );
}

#[test]
fn table_typo_knowable_only_from_the_metrics_is_refused_when_the_stage_runs() {
    // A program's runs may be on clean or noisy labels: its metrics say which. These are on
    // clean labels, so a table of noisy labels shows none of them.
    let metrics = r#"{"kind": "command", "method": "mine", "dataset": {"name": "digits", "identity": "x"}, "noise": null, "model": "none", "profile": "default", "device": "cpu", "seed": 0, "epochs": [], "final_test_accuracy": 0.5, "final_test_error": 0.5}"#;
    let yaml = "\
stages:
  mine:
    kind: command
    params: { run: [sh, write.sh], deps: [write.sh], method: mine }
  report:
    kind: tables
    inputs: { mine: \"mine[*]\" }
    publish: out/report
    params:
      tables:
        - { table: glc_table1, methods: [mine] }
";
    let p = Proj::new(yaml);
    p.file(
        "write.sh",
        &format!("cat > \"$REPRO_OUT/metrics.json\" <<'EOF'\n{metrics}\nEOF\n"),
    );
    let o = p.run(&["run"]);
    let err = err_text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("FAILED   report: ")
            && err.contains(
                "params: input `mine`: no table or figure shows its 1 run(s) (method(s): mine)"
            ),
        "{err}"
    );
    assert!(!p.dir.join("out/report").exists(), "a table was published");
}
