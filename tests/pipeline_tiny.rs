//! The project's own `pipeline.yaml`, run end to end with the `tiny` profile: every stage
//! kind on the embedded digits, two epochs each. Checks the tables' shape, that every number
//! in them is finite, that a second run does nothing, that the lock does not change, and
//! that it publishes beside the default profile's committed results, never over them.

mod common;

use common::{copy_dir, project_copy as project, repro};
use std::path::{Path, PathBuf};

/// Cells of a CSV table (header excluded) that parse as numbers.
fn numbers(csv_text: &str) -> Vec<f64> {
    let mut r = csv::ReaderBuilder::new()
        .comment(Some(b'#'))
        .from_reader(csv_text.as_bytes());
    let mut v = Vec::new();
    for rec in r.records() {
        for cell in rec.unwrap().iter() {
            for part in cell.split(['±', ' ', '(', ')', '=']) {
                if let Ok(x) = part.trim().parse::<f64>() {
                    v.push(x);
                }
            }
        }
    }
    v
}

#[test]
fn tiny_profile_runs_every_stage_kind_and_writes_finite_tables() {
    let (_tmp, dir) = project();
    let (code, out) = repro(&dir, &["run", "--profile", "tiny"]);
    assert_eq!(code, 0, "{out}");
    for kind in [
        "download",
        "inject_noise",
        "train",
        "train_mlc",
        "train_soft_labels",
        "distill",
        "tables",
    ] {
        let (_, dag) = repro(&dir, &["dag"]);
        assert!(
            dag.contains(&format!("({kind}")),
            "the pipeline has no {kind} stage:\n{dag}"
        );
    }
    let tables = dir.join("results/tiny/tables");
    for name in [
        "t1_glc_table1",
        "t2_mlc_code",
        "t3_clean",
        "t4_noisy",
        "t5_distillation",
        "t6_t_estimation",
    ] {
        for ext in ["csv", "tex", "md"] {
            let f = tables.join(format!("{name}.{ext}"));
            assert!(f.is_file(), "missing {}", f.display());
        }
        let text = std::fs::read_to_string(tables.join(format!("{name}.csv"))).unwrap();
        let mut r = csv::ReaderBuilder::new()
            .comment(Some(b'#'))
            .from_reader(text.as_bytes());
        let width = r.headers().unwrap().len();
        let rows: Vec<csv::StringRecord> = r.records().map(|x| x.unwrap()).collect();
        assert!(
            width >= 2 && !rows.is_empty(),
            "{name}: {width} columns, {} rows:\n{text}",
            rows.len()
        );
        assert!(
            rows.iter().all(|row| row.len() == width),
            "{name}: ragged rows:\n{text}"
        );
        let nums = numbers(&text);
        assert!(!nums.is_empty(), "{name} holds no number:\n{text}");
        assert!(
            nums.iter().all(|x| x.is_finite()),
            "{name} holds a non-finite number:\n{text}"
        );
    }
    for fig in ["error_curves", "mlc_t_vs_true_c", "class_similarity"] {
        for ext in ["svg", "png"] {
            let f = dir.join(format!("results/tiny/figures/{fig}.{ext}"));
            assert!(
                std::fs::metadata(&f).map(|m| m.len() > 0).unwrap_or(false),
                "missing {}",
                f.display()
            );
        }
    }
    let lock = std::fs::read(dir.join("pipeline.lock")).unwrap();
    let (code, out) = repro(&dir, &["run", "--profile", "tiny"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("0 ran, 0 restored")),
        "second run was not a no-op:\n{out}"
    );
    assert_eq!(
        std::fs::read(dir.join("pipeline.lock")).unwrap(),
        lock,
        "a no-op run changed the lock"
    );
}

/// Every file under `dir` (relative path -> bytes), `.runs` left out.
fn tree(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, d: &Path, out: &mut std::collections::BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.file_name().is_some_and(|n| n == ".runs") {
                continue;
            }
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(
                    p.strip_prefix(root).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

#[test]
fn tiny_profile_leaves_default_results_alone() {
    let (_tmp, dir) = project();
    // The committed results and lock of the default profile, as in a clone.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for sub in ["tables", "figures"] {
        copy_dir(
            &root.join("results").join(sub),
            &dir.join("results").join(sub),
        );
    }
    std::fs::copy(root.join("pipeline.lock"), dir.join("pipeline.lock")).unwrap();
    let before = tree(&dir.join("results"));
    assert!(!before.is_empty());
    let lock_before: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("pipeline.lock")).unwrap()).unwrap();
    let (code, out) = repro(&dir, &["run", "--profile", "tiny"]);
    assert_eq!(code, 0, "{out}");
    let after = tree(&dir.join("results"));
    for (path, bytes) in &before {
        assert!(
            after.get(path) == Some(bytes),
            "the tiny profile changed or removed results/{}",
            path.display()
        );
    }
    let tiny: Vec<&PathBuf> = after.keys().filter(|p| !before.contains_key(*p)).collect();
    assert!(!tiny.is_empty(), "the tiny profile published nothing");
    assert!(
        tiny.iter().all(|p| p.starts_with("tiny")),
        "the tiny profile published outside results/tiny: {tiny:?}"
    );
    let lock_after: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("pipeline.lock")).unwrap()).unwrap();
    assert_eq!(
        lock_after["profiles"]["default"], lock_before["profiles"]["default"],
        "the tiny profile changed the default profile's lock entries"
    );
}

#[test]
fn every_profile_of_the_project_plans_with_its_own_stage_groups() {
    let (_tmp, dir) = project();
    // Each profile: a stage it must have, a stage it must not have, a dataset it reads.
    let cases = [
        ("default", "report", "cpu_report", "digits"),
        ("cpu", "cpu_report", "report", "fashion_mnist"),
        ("paper", "paper_report", "digits", "cifar100"),
    ];
    for (profile, has, lacks, dataset) in cases {
        let (code, dag) = repro(&dir, &["dag", "-p", profile]);
        assert_eq!(code, 0, "profile {profile}:\n{dag}");
        let stages: Vec<&str> = dag
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert!(stages.contains(&has), "{profile} lacks {has}:\n{dag}");
        assert!(!stages.contains(&lacks), "{profile} has {lacks}:\n{dag}");
        // Exit 1: stages to run (nothing has run in this fresh copy).
        let (code, status) = repro(&dir, &["status", "-p", profile]);
        assert_eq!(code, 1, "profile {profile}:\n{status}");
        assert!(status.contains(dataset), "{profile} never reads {dataset}");
    }
}
