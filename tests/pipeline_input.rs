//! Inputs nobody means are refused when the pipeline is loaded, before any stage runs,
//! and the error says where: each rule runs the built `repro status` on a pipeline file
//! in a temporary project and reads its error (exit code 2).

use std::path::PathBuf;
use std::process::Command;

struct Proj {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Proj {
    fn new(bytes: impl AsRef<[u8]>) -> Proj {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("project");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("pipeline.yaml"), bytes).unwrap();
        Proj { _tmp: tmp, dir }
    }

    /// `repro status`'s stderr, asserting it refused the file (exit code 2).
    fn refused(&self) -> String {
        let o = Command::new(env!("CARGO_BIN_EXE_repro"))
            .current_dir(&self.dir)
            .arg("status")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(2), "{err}");
        err
    }
}

const TRAIN: &str = "stages:\n  data:\n    kind: download\n    params: { dataset: digits }\n  t:\n    kind: train\n    inputs: { data: data }\n    params:\n      method: ce\n";

#[test]
fn absurd_layer_width_is_refused_at_load() {
    let p = Proj::new(format!(
        "{TRAIN}      model:\n        arch: mlp\n        hidden: [128, 1000000000000000]\n"
    ));
    let e = p.refused();
    assert!(
        e.contains("pipeline.yaml:12: stage `t`, field `params.model.hidden`:"),
        "{e}"
    );
    assert!(e.contains("1000000000000000 units cannot be meant"), "{e}");
}

#[test]
fn absurd_epoch_count_is_refused_at_load() {
    let p = Proj::new(format!("{TRAIN}      epochs: 18446744073709551615\n"));
    let e = p.refused();
    assert!(
        e.contains("pipeline.yaml:10: stage `t`, field `params.epochs`:"),
        "{e}"
    );
    assert!(
        e.contains("18446744073709551615 epochs cannot be meant"),
        "{e}"
    );
}

#[test]
fn network_too_large_for_memory_is_refused_at_load() {
    // Each width is allowed; together they make 10^12 weights.
    let p = Proj::new(format!(
        "{TRAIN}      model: {{ arch: mlp, hidden: [1000000, 1000000] }}\n"
    ));
    let e = p.refused();
    assert!(
        e.contains("pipeline.yaml:10: stage `t`, field `params.model.hidden`:"),
        "{e}"
    );
    assert!(e.contains("more than the limit of 1073741824"), "{e}");
}

#[test]
fn deep_nesting_is_refused_quickly() {
    // 200 KB of `[`: libyaml alone would take tens of seconds on it.
    let p = Proj::new(format!(
        "stages:\n  a:\n    kind: probe\n    params: {{ value: {} }}\n",
        "[".repeat(200_000)
    ));
    let e = p.refused();
    assert!(e.contains("pipeline.yaml:4:"), "{e}");
    assert!(e.contains("nest deeper than 64 levels"), "{e}");
}

#[test]
fn type_error_names_the_field() {
    let p = Proj::new(format!("{TRAIN}      epochs: \"two\"\n"));
    let e = p.refused();
    assert!(
        e.contains("pipeline.yaml:10: stage `t`, field `params.epochs`:"),
        "{e}"
    );
    assert!(e.contains("invalid type: string \"two\""), "{e}");
    // Nested: inside the optimizer's mapping.
    let p = Proj::new(format!(
        "{TRAIN}      optimizer:\n        kind: sgd\n        lr: 0.1\n        momentum: lots\n"
    ));
    let e = p.refused();
    assert!(e.contains("stage `t`, field `params.optimizer"), "{e}");
    assert!(
        e.contains("pipeline.yaml:10:") || e.contains("pipeline.yaml:13:"),
        "{e}"
    );
    // A value set by the defaults points at the defaults.
    let p = Proj::new(format!(
        "defaults:\n  train:\n    batch_size: many\n{TRAIN}"
    ));
    let e = p.refused();
    assert!(
        e.contains("pipeline.yaml:3: stage `t`, field `params.batch_size`:"),
        "{e}"
    );
}

#[test]
fn matrix_value_error_points_at_matrix_line() {
    let p = Proj::new(format!("{TRAIN}    matrix:\n      epochs: [2, two]\n"));
    let e = p.refused();
    assert!(
        e.contains("pipeline.yaml:11: stage `t`, field `params.epochs`:"),
        "{e}"
    );
    // A value the matrix sets wins over the stage's params: the matrix line is named.
    let p = Proj::new(format!(
        "{TRAIN}      epochs: 3\n    matrix:\n      epochs: [2, 1000000000]\n"
    ));
    let e = p.refused();
    assert!(
        e.contains("pipeline.yaml:12: stage `t`, field `params.epochs`:"),
        "{e}"
    );
}

#[test]
fn non_utf8_pipeline_names_the_file() {
    let mut bytes = b"stages:\n  a:\n    kind: probe\n    params: { value: caf".to_vec();
    bytes.extend_from_slice(&[0xe9]); // Latin-1 e-acute
    bytes.extend_from_slice(b" }\n");
    let p = Proj::new(bytes);
    let e = p.refused();
    assert!(e.contains("pipeline.yaml:4:"), "{e}");
    assert!(
        e.contains("not UTF-8") && e.contains("byte 0xe9 at column 25"),
        "{e}"
    );
}

#[test]
fn alias_bomb_is_refused() {
    let mut text =
        "defaults:\n  probe:\n    x_0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
            .to_string();
    for i in 1..10 {
        let refs = vec![format!("*l{}", i - 1); 10].join(", ");
        text += &format!("    x_{i}: &l{i} [{refs}]\n");
    }
    text += "stages:\n  a:\n    kind: probe\n";
    let p = Proj::new(text);
    let e = p.refused();
    assert!(e.contains("pipeline.yaml:"), "{e}");
    assert!(e.contains("aliases (`*name`) expand the file"), "{e}");
}
