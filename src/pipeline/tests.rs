//! The rules of [`Pipeline::build`](super::Pipeline::build), each a test on a small file.

use super::*;

fn build(text: &str, profile: &str) -> Result<Pipeline, SpecError> {
    let file = Path::new("pipeline.yaml");
    let spec = Spec::parse(text, file)?;
    Pipeline::build(&spec, text, file, profile)
}

const GRID: &str = "\
stages:
  data:
    kind: probe
    params: { value: d }
  noisy:
    kind: probe
    inputs: { data: data }
    matrix: { value: [u, f], seed: [1, 2] }
  train:
    kind: probe
    inputs: { data: data, noise: noisy }
    params: { steps: 2 }
    matrix: { value: [u, f], note: [a, b], seed: [1, 2] }
  table:
    kind: probe
    inputs: { runs: \"train[*]\" }
profiles:
  tiny:
    stages:
      train: { params: { steps: 1 }, matrix: { seed: [1] } }
";

#[test]
fn matrix_members_are_named_in_axis_order() {
    let p = build(GRID, "default").unwrap();
    let names: Vec<&str> = p.members.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names[0], "data");
    assert_eq!(
        names[1..5],
        [
            "noisy[u,seed=1]",
            "noisy[u,seed=2]",
            "noisy[f,seed=1]",
            "noisy[f,seed=2]"
        ]
    );
    assert_eq!(names[5], "train[u,a,seed=1]");
    assert_eq!(names.len(), 1 + 4 + 8 + 1);
    let m = &p.members[p.member_index("train[f,b,seed=2]").unwrap()];
    assert_eq!(m.seed, 2);
    assert_eq!(m.params["value"], "f");
    assert_eq!(m.params["note"], "b");
    assert_eq!(m.params["steps"], 2);
    assert!(m.params.get("seed").is_none(), "seed is not a param");
}

#[test]
fn inputs_bind_on_shared_axes() {
    let p = build(GRID, "default").unwrap();
    let m = &p.members[p.member_index("train[f,b,seed=2]").unwrap()];
    let noise: Vec<&str> = m.inputs["noise"]
        .iter()
        .map(|&i| p.members[i].name.as_str())
        .collect();
    assert_eq!(noise, ["noisy[f,seed=2]"]);
    assert_eq!(m.inputs["data"], vec![0]);
    let t = &p.members[p.member_index("table").unwrap()];
    assert_eq!(t.inputs["runs"].len(), 8);
    // Topological: every input comes earlier.
    for (i, m) in p.members.iter().enumerate() {
        assert!(m.upstream().iter().all(|&u| u < i));
    }
}

#[test]
fn profile_replaces_axis_and_merges_params() {
    let p = build(GRID, "tiny").unwrap();
    let train: Vec<&Member> = p
        .members
        .iter()
        .filter(|m| m.name.starts_with("train["))
        .collect();
    assert_eq!(train.len(), 4);
    assert!(train.iter().all(|m| m.seed == 1 && m.params["steps"] == 1));
}

#[test]
fn single_input_inherits_the_upstream_axes() {
    let text = "stages:\n  a:\n    kind: probe\n    matrix: { seed: [1, 2], x_c: [u, f] }\n  b:\n    kind: probe\n    inputs:\n      up: a\n    matrix: { x_m: [p, q] }\n";
    let p = build(text, "default").unwrap();
    let names: Vec<&str> = p
        .members
        .iter()
        .filter(|m| m.name.starts_with("b["))
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "b[p,u,seed=1]",
            "b[p,u,seed=2]",
            "b[p,f,seed=1]",
            "b[p,f,seed=2]",
            "b[q,u,seed=1]",
            "b[q,u,seed=2]",
            "b[q,f,seed=1]",
            "b[q,f,seed=2]"
        ]
    );
    let m = &p.members[p.member_index("b[q,f,seed=2]").unwrap()];
    assert_eq!(m.seed, 2);
    assert_eq!(m.params["x_m"], "q");
    assert!(
        m.params.get("x_c").is_none(),
        "an inherited axis is not a param"
    );
    let up: Vec<&str> = m.inputs["up"]
        .iter()
        .map(|&i| p.members[i].name.as_str())
        .collect();
    assert_eq!(up, ["a[f,seed=2]"]);
}

#[test]
fn cycle_is_named_in_full() {
    let text = "stages:\n  a:\n    kind: probe\n    inputs: { x: c }\n  b:\n    kind: probe\n    inputs: { x: a }\n  c:\n    kind: probe\n    inputs: { x: b }\n";
    let e = build(text, "default").unwrap_err();
    assert!(e.message.contains("cycle: a -> c -> b -> a"), "{e}");
}

#[test]
fn unknown_kind_and_input_and_empty_axis() {
    let e = build("stages:\n  a:\n    kind: nope\n", "default").unwrap_err();
    assert_eq!((e.line, e.field.as_deref()), (Some(3), Some("kind")));
    let e = build(
        "stages:\n  a:\n    kind: probe\n    inputs:\n      d: zz\n",
        "default",
    )
    .unwrap_err();
    assert_eq!((e.line, e.field.as_deref()), (Some(5), Some("inputs.d")));
    let e = build(
        "stages:\n  a:\n    kind: probe\n    matrix:\n      seed: []\n",
        "default",
    )
    .unwrap_err();
    assert_eq!((e.line, e.field.as_deref()), (Some(5), Some("matrix.seed")));
}

#[test]
fn kind_params_are_validated_with_line() {
    let text = "stages:\n  a:\n    kind: probe\n    params:\n      value: x\n      colour: red\n";
    let e = build(text, "default").unwrap_err();
    assert_eq!(e.line, Some(6), "{e}");
    assert_eq!(e.field.as_deref(), Some("params.colour"));
    let text = "stages:\n  a:\n    kind: probe\n    params:\n      steps: many\n";
    let e = build(text, "default").unwrap_err();
    assert_eq!(e.stage.as_deref(), Some("a"));
    assert!(e.line == Some(5) || e.line == Some(4), "{e}");
}

#[test]
fn defaults_are_per_kind_and_profiles_can_disable() {
    let text = "defaults:\n  probe: { steps: 3 }\nstages:\n  a:\n    kind: probe\n  b:\n    kind: probe\n    params: { steps: 4 }\nprofiles:\n  small:\n    disable: [b]\n";
    let p = build(text, "default").unwrap();
    assert_eq!(p.members[0].params["steps"], 3);
    assert_eq!(p.members[1].params["steps"], 4);
    let p = build(text, "small").unwrap();
    assert_eq!(p.members.len(), 1);
    let e = build(text, "nope").unwrap_err();
    assert!(e.message.contains("no profile `nope`"), "{e}");
}

#[test]
fn stages_can_belong_to_some_profiles_only() {
    let text = "stages:\n  a:\n    kind: probe\n    profiles: [default, small]\n  b:\n    kind: probe\n    profiles: [big]\n  c:\n    kind: probe\n    inputs: { x: b }\n    profiles: [big]\nprofiles:\n  small: {}\n  big: {}\n";
    let names = |p: &Pipeline| p.members.iter().map(|m| m.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&build(text, "default").unwrap()), ["a"]);
    assert_eq!(names(&build(text, "small").unwrap()), ["a"]);
    assert_eq!(names(&build(text, "big").unwrap()), ["b", "c"]);

    let bad = text.replace("profiles: [big]\n  c:", "profiles: [bgi]\n  c:");
    let e = build(&bad, "default").unwrap_err();
    assert!(e.message.contains("unknown profile `bgi`"), "{e}");
    assert_eq!((e.stage.as_deref(), e.line), (Some("b"), Some(7)), "{e}");

    let bad = text.replace("inputs: { x: b }\n    profiles: [big]", "inputs: { x: b }");
    let e = build(&bad, "default").unwrap_err();
    assert!(e.message.contains("which only profiles [big] have"), "{e}");
    assert_eq!(e.stage.as_deref(), Some("c"));
}

#[test]
fn an_input_can_pin_one_member() {
    let text = "stages:\n  d:\n    kind: probe\n    matrix: { steps: [1, 2] }\n  n:\n    kind: probe\n    inputs: { x: \"d[2]\" }\n    matrix: { seed: [1, 2] }\n";
    let p = build(text, "default").unwrap();
    let names: Vec<&str> = p.members.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["d[1]", "d[2]", "n[seed=1]", "n[seed=2]"]);
    for m in &p.members[2..] {
        assert_eq!(m.inputs["x"], vec![1], "{}", m.name);
    }
    let e = build(&text.replace("d[2]", "d[3]"), "default").unwrap_err();
    assert!(e.message.contains("members: d[1], d[2]"), "{e}");
    assert_eq!(e.field.as_deref(), Some("inputs.x"));
}

#[test]
fn profiles_may_not_publish_into_one_directory() {
    let base = "stages:\n  a:\n    kind: probe\n    publish: out\n  b:\n    kind: probe\n    publish: out\nprofiles:\n  small:\n    stages:\n      a: { params: { value: z } }\n";
    let e = build(base, "default").unwrap_err();
    assert_eq!(
        (e.line, e.stage.as_deref(), e.field.as_deref()),
        (Some(4), Some("a"), Some("publish")),
        "{e}"
    );
    assert!(
        e.message.contains(
            "profiles `default` (stage `a`) and `small` publish into the same directory `out`"
        ),
        "{e}"
    );
    // Moved by the profile: fine, and each profile publishes where it says.
    let ok = base.replace(
        "value: z } }",
        "value: z }, publish: out/small }\n      b: { publish: out/small }",
    );
    assert_eq!(
        build(&ok, "default").unwrap().members[0].publish.as_deref(),
        Some("out")
    );
    assert_eq!(
        build(&ok, "small").unwrap().members[0].publish.as_deref(),
        Some("out/small")
    );
    // A stage only one profile has, or one a profile disables, clashes with nothing.
    let only = "stages:\n  a:\n    kind: probe\n    publish: out\n    profiles: [default]\n  b:\n    kind: probe\nprofiles:\n  small: {}\n";
    assert!(build(only, "small").is_ok());
    assert!(build(&format!("{base}    disable: [a, b]\n"), "small").is_ok());
    // A bad override is located at the profile's line.
    let bad = ok.replace("publish: out/small }\n", "publish: /tmp/x }\n");
    let e = build(&bad, "small").unwrap_err();
    assert_eq!(
        (e.line, e.field.as_deref()),
        (Some(11), Some("publish")),
        "{e}"
    );
}

#[test]
fn publish_must_stay_inside_the_project() {
    for dir in [
        "/tmp/x",
        "../x",
        "results/.runs/x",
        "./results/.runs/x",
        "a/../../b",
        ".",
        "./",
    ] {
        let text = format!("stages:\n  a:\n    kind: probe\n    publish: {dir}\n");
        let e = build(&text, "default").unwrap_err();
        assert_eq!(
            (e.line, e.field.as_deref()),
            (Some(4), Some("publish")),
            "{dir}: {e}"
        );
    }
    let p = build(
        "stages:\n  a:\n    kind: probe\n    publish: ./out/a/\n",
        "default",
    )
    .unwrap();
    assert_eq!(p.members[0].publish.as_deref(), Some("out/a"));
}

#[test]
fn targets_select_upstream() {
    let p = build(GRID, "default").unwrap();
    let (sel, direct) = p.select(&["train[u,a,seed=1]".to_string()]).unwrap();
    let chosen: Vec<&str> = p
        .members
        .iter()
        .zip(&sel)
        .filter(|(_, s)| **s)
        .map(|(m, _)| m.name.as_str())
        .collect();
    assert_eq!(chosen, ["data", "noisy[u,seed=1]", "train[u,a,seed=1]"]);
    assert_eq!(direct.iter().filter(|d| **d).count(), 1);
    assert!(p.select(&["zz".into()]).is_err());
}

const WHEN: &str = "\
stages:
  data:
    kind: probe
    matrix: { value: [d1, d2] }
  train:
    kind: probe
    inputs: { data: data }
    params: { steps: 2 }
    matrix: { note: [a, b, c], seed: [1, 2] }
    when:
      - { if: { note: [a, c] }, params: { steps: 3 } }
      - { if: { note: c, value: d2, seed: 2 }, params: { steps: 4, x_tag: last } }
";

#[test]
fn when_entries_give_params_to_the_members_they_match_last() {
    let p = build(WHEN, "default").unwrap();
    let params = |name: &str| p.members[p.member_index(name).unwrap()].params.clone();
    assert_eq!(params("train[b,d1,seed=1]")["steps"], 2);
    assert_eq!(params("train[a,d1,seed=1]")["steps"], 3);
    assert_eq!(params("train[c,d2,seed=1]")["steps"], 3);
    // every axis of `if` must match: own (`note`), inherited (`value`) and `seed`
    assert_eq!(params("train[c,d2,seed=2]")["steps"], 4);
    assert_eq!(params("train[c,d2,seed=2]")["x_tag"], "last");
    assert!(params("train[c,d1,seed=2]").get("x_tag").is_none());
    // the when layer is merged after the profile's stage params too
    let text =
        format!("{WHEN}profiles:\n  p:\n    stages:\n      train: {{ params: {{ steps: 9 }} }}\n");
    let p = build(&text, "p").unwrap();
    let steps = |name: &str| p.members[p.member_index(name).unwrap()].params["steps"].clone();
    assert_eq!(steps("train[b,d1,seed=1]"), 9);
    assert_eq!(steps("train[a,d1,seed=1]"), 3);
}

#[test]
fn a_when_axis_the_stage_lacks_or_an_undeclared_value_is_refused_at_its_line() {
    let text = WHEN.replace("{ note: [a, c] }", "{ colour: red }");
    let e = build(&text, "default").unwrap_err();
    assert_eq!(e.line, Some(11), "{e}");
    assert_eq!(e.stage.as_deref(), Some("train"));
    assert_eq!(e.field.as_deref(), Some("when[0].if.colour"));
    assert!(e.message.contains("note, value, seed"), "{e}");
    let text = WHEN.replace("{ note: [a, c] }", "{ note: [a, e] }");
    let e = build(&text, "default").unwrap_err();
    assert_eq!(e.field.as_deref(), Some("when[0].if.note"), "{e}");
    assert!(
        e.message.contains("e is none of") && e.message.contains("a, b, c"),
        "{e}"
    );
    // a profile that narrows the matrix leaves the entry nothing to match: no error
    let text =
        format!("{WHEN}profiles:\n  p:\n    stages:\n      train: {{ matrix: {{ note: [b] }} }}\n");
    let p = build(&text, "p").unwrap();
    assert!(p.members.iter().all(|m| m.params.get("x_tag").is_none()));
}

#[test]
fn a_when_param_the_kind_refuses_is_located_at_its_entry() {
    let text = WHEN.replace(
        "params: { steps: 4, x_tag: last }",
        "params: { steps: many }",
    );
    let e = build(&text, "default").unwrap_err();
    assert_eq!(e.line, Some(12), "{e}");
    assert_eq!(e.field.as_deref(), Some("params.steps"), "{e}");
    assert!(e.message.contains("train[c,d2,seed=2]"), "{e}");
}

#[test]
fn profile_kind_params_override_the_stages_own_under_the_profiles_stage_entries() {
    let text = format!(
        "{WHEN}defaults:\n  probe: {{ x_d: 1 }}\nprofiles:\n  p:\n    defaults:\n      probe: {{ steps: 7 }}\n    \
         params:\n      probe: {{ steps: 5, x_k: k }}\n    stages:\n      data: {{ params: {{ steps: 6 }} }}\n"
    );
    let p = build(&text, "p").unwrap();
    let params = |name: &str| p.members[p.member_index(name).unwrap()].params.clone();
    // over the stage's params (2) and the profile's defaults (7) ...
    assert_eq!(params("train[b,d1,seed=1]")["steps"], 5);
    assert_eq!(params("train[b,d1,seed=1]")["x_k"], "k");
    assert_eq!(params("train[b,d1,seed=1]")["x_d"], 1);
    // ... under the profile's entry for a stage and the `when` entries
    assert_eq!(params("data[d1]")["steps"], 6);
    assert_eq!(params("train[a,d1,seed=1]")["steps"], 3);
    // other profiles see none of it
    let d = build(&text, "default").unwrap();
    let m = &d.members[d.member_index("train[b,d1,seed=1]").unwrap()];
    assert_eq!(m.params["steps"], 2);
    // an unknown kind is refused at its line; a refused value is located in the layer
    let bad = text.replace("    params:\n      probe:", "    params:\n      prob:");
    let e = build(&bad, "default").unwrap_err();
    assert!(e.message.contains("params for unknown kind `prob`"), "{e}");
    assert_eq!(e.line, Some(20), "{e}");
    let bad = text.replace("steps: 5, x_k: k", "steps: many");
    let e = build(&bad, "p").unwrap_err();
    assert_eq!(e.line, Some(20), "{e}");
    assert_eq!(e.field.as_deref(), Some("params.steps"), "{e}");
}

#[test]
fn profile_when_entries_apply_after_the_stages_own() {
    let text = format!(
        "{WHEN}profiles:\n  p:\n    stages:\n      train:\n        params: {{ steps: 9 }}\n        when:\n          \
         - {{ if: {{ note: c }}, params: {{ steps: 8 }} }}\n          - {{ if: {{ value: d1 }}, params: {{ x_p: 1 }} }}\n"
    );
    let p = build(&text, "p").unwrap();
    let params = |name: &str| p.members[p.member_index(name).unwrap()].params.clone();
    assert_eq!(params("train[b,d1,seed=1]")["steps"], 9);
    assert_eq!(params("train[a,d1,seed=1]")["steps"], 3);
    // after the stage's entries, including its last (steps: 4)
    assert_eq!(params("train[c,d2,seed=2]")["steps"], 8);
    assert_eq!(params("train[c,d2,seed=2]")["x_tag"], "last");
    assert_eq!(params("train[a,d1,seed=2]")["x_p"], 1);
    assert!(params("train[a,d2,seed=2]").get("x_p").is_none());
    // the default profile has none of them
    let d = build(&text, "default").unwrap();
    let m = &d.members[d.member_index("train[c,d2,seed=2]").unwrap()];
    assert_eq!(m.params["steps"], 4);
    // checked as the stage's are, and located in the profile
    let bad = text.replace(
        "{ note: c }, params: { steps: 8 }",
        "{ colour: c }, params: { steps: 8 }",
    );
    let e = build(&bad, "p").unwrap_err();
    assert_eq!(e.field.as_deref(), Some("when[0].if.colour"), "{e}");
    assert_eq!(e.line, Some(19), "{e}");
    let bad = text.replace("params: { steps: 8 }", "params: { steps: many }");
    let e = build(&bad, "p").unwrap_err();
    assert_eq!(e.line, Some(19), "{e}");
    assert_eq!(e.field.as_deref(), Some("params.steps"), "{e}");
}
