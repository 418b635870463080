//! The table layouts on fake-but-structurally-real runs: aggregation values (literal
//! expected means and stds), shape, bold best entries, empty cells for missing data,
//! quotes only where the papers give a number, and the three writers.

mod tables_common;

use repro_stages::report::layouts::{self, Options, TableKind};
use repro_stages::report::run::load_runs;
use repro_stages::report::table::{Cell, ColumnKind, Table};
use repro_stages::report::{writers, Provenance, Stat};
use tables_common::{write_run, Spec};

fn build(kind: TableKind, refs: &[repro_stages::InputRef], opts: Options) -> Table {
    let runs = load_runs(refs).unwrap();
    let prov = Provenance::new("test", &runs, None);
    layouts::build(kind, &runs, &opts, prov).unwrap()
}

/// [`build`] with every option at its default but the table's name.
fn build_named(kind: TableKind, refs: &[repro_stages::InputRef], name: &str) -> Table {
    let opts = Options {
        name: name.into(),
        ..Default::default()
    };
    build(kind, refs, opts)
}

fn col(t: &Table, group: &str, header: &str) -> usize {
    t.columns
        .iter()
        .position(|c| c.group == group && c.header == header)
        .unwrap_or_else(|| {
            panic!(
                "no column {group}/{header} in {:?}",
                t.columns
                    .iter()
                    .map(|c| (&c.group, &c.header))
                    .collect::<Vec<_>>()
            )
        })
}

fn stat(c: &Cell) -> Stat {
    match c {
        Cell::Stat(s) => *s,
        other => panic!("expected a mean ± std cell, got {other:?}"),
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

/// GLC-layout fixture: MNIST flip 1% trusted, strengths 0 / 0.5 / 1, seeds 1–3.
/// glc: error = 0.02 + 0.01·seed + 0.1·strength → per-seed means 8, 9, 10 (%) → 9 ± 1.
/// ce:  error = 0.20 + 0.02·seed + 0.2·strength → per-seed means 32, 34, 36 (%) → 34 ± 2.
/// forward: seed 1 only, strengths 0 and 0.5 (1.0 missing) → empty cell.
/// trusted_only: strength 0 only, seeds 1–2: 40 and 44 % → 42 ± 2.828 (needs no sweep).
fn glc_fixture(root: &std::path::Path) -> Vec<repro_stages::InputRef> {
    let mut refs = Vec::new();
    for seed in 1..=3u64 {
        for x in [0.0, 0.5, 1.0] {
            refs.push(write_run(
                root,
                &Spec::noisy(
                    "glc",
                    "mnist",
                    "flip",
                    x,
                    0.01,
                    seed,
                    0.02 + 0.01 * seed as f64 + 0.1 * x,
                ),
            ));
            refs.push(write_run(
                root,
                &Spec::noisy(
                    "ce",
                    "mnist",
                    "flip",
                    x,
                    0.01,
                    seed,
                    0.20 + 0.02 * seed as f64 + 0.2 * x,
                ),
            ));
        }
    }
    for x in [0.0, 0.5] {
        refs.push(write_run(
            root,
            &Spec::noisy("forward", "mnist", "flip", x, 0.01, 1, 0.3),
        ));
    }
    refs.push(write_run(
        root,
        &Spec::noisy("trusted_only", "mnist", "flip", 0.0, 0.01, 1, 0.40),
    ));
    refs.push(write_run(
        root,
        &Spec::noisy("trusted_only", "mnist", "flip", 0.0, 0.01, 2, 0.44),
    ));
    refs
}

#[test]
fn glc_table1_aggregates_over_strengths_then_seeds() {
    let tmp = tempfile::tempdir().unwrap();
    let refs = glc_fixture(tmp.path());
    let t = build_named(TableKind::GlcTable1, &refs, "t1");

    // Shape: 3 key columns + 8 methods + 6 paper columns; one data row + one mean row.
    assert_eq!(t.columns.len(), 3 + 8 + 6);
    assert_eq!(t.rows.len(), 2);
    assert!(!t.rows[0].summary && t.rows[1].summary);

    let row = &t.rows[0].cells;
    let glc = stat(&row[col(&t, "GLC", "ours")]);
    assert_eq!(glc.n, 3);
    assert!(
        close(glc.mean, 9.0) && close(glc.std.unwrap(), 1.0),
        "{glc:?}"
    );
    let ce = stat(&row[col(&t, "No correction (CE)", "ours")]);
    assert!(
        close(ce.mean, 34.0) && close(ce.std.unwrap(), 2.0),
        "{ce:?}"
    );
    let to = stat(&row[col(&t, "Trusted only", "ours")]);
    assert_eq!(to.n, 2);
    assert!(
        close(to.mean, 42.0) && close(to.std.unwrap(), 8f64.sqrt()),
        "{to:?}"
    );

    // Missing strength or method: empty, never filled in.
    assert_eq!(row[col(&t, "Forward", "ours")], Cell::Empty);
    assert_eq!(row[col(&t, "MLC", "ours")], Cell::Empty);
    assert_eq!(row[col(&t, "Soft labels", "ours")], Cell::Empty);
    // Paper quotes: GLC Table 1, MNIST flip, row printed "10" (= 1% trusted).
    assert_eq!(row[col(&t, "GLC", "paper")], Cell::Value(2.9));
    assert_eq!(
        row[col(&t, "No correction (CE)", "paper")],
        Cell::Value(51.1)
    );
    assert!(!t
        .columns
        .iter()
        .any(|c| c.group == "MLC" && c.kind == ColumnKind::Paper));
    // The mean row covers one of GLC's six MNIST rows: no paper mean.
    let mean = &t.rows[1].cells;
    assert!(matches!(mean[col(&t, "GLC", "ours")], Cell::Value(v) if close(v, 9.0)));
    assert_eq!(mean[col(&t, "GLC", "paper")], Cell::Empty);

    // Bold: GLC is the lowest error of the row, and only ours are compared.
    let best = t.best();
    assert!(best[0][col(&t, "GLC", "ours")]);
    assert!(!best[0][col(&t, "No correction (CE)", "ours")]);
    assert!(!best[0][col(&t, "GLC", "paper")]);
    assert!(t.caption.contains("0, 0.5, 1"), "{}", t.caption);
    assert!(t.numbers().iter().all(|x| x.is_finite()));
}

#[test]
fn glc_table1_strength_param_restricts_the_sweep() {
    let tmp = tempfile::tempdir().unwrap();
    let refs = glc_fixture(tmp.path());
    let t = build(
        TableKind::GlcTable1,
        &refs,
        Options {
            name: "t1".into(),
            strengths: vec![0.0, 0.5],
            ..Default::default()
        },
    );
    let row = &t.rows[0].cells;
    // forward now has every strength for seed 1: 30 %, n = 1, no std.
    let f = stat(&row[col(&t, "Forward", "ours")]);
    assert_eq!((f.n, f.std), (1, None));
    assert!(close(f.mean, 30.0));
    // glc: per-seed means over {0, 0.5}: 5.5, 6.5, 7.5 → 6.5 ± 1.
    let g = stat(&row[col(&t, "GLC", "ours")]);
    assert!(close(g.mean, 6.5) && close(g.std.unwrap(), 1.0), "{g:?}");
    assert!(t.caption.contains("not GLC's 11 points"));
}

#[test]
fn writers_escape_bold_and_leave_empty_cells_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let refs = glc_fixture(tmp.path());
    let t = build_named(TableKind::GlcTable1, &refs, "glc_t1");
    let out = tmp.path().join("tables");
    writers::write_all(&t, &out).unwrap();

    let tex = std::fs::read_to_string(out.join("glc_t1.tex")).unwrap();
    assert!(tex.starts_with("% generated by repro"));
    assert!(tex.contains("% profile: test"));
    assert!(tex.contains("% pipeline fingerprint: sha256:"));
    assert!(tex.contains("\\toprule") && tex.contains("\\midrule") && tex.contains("\\bottomrule"));
    assert!(tex.contains("\\textbf{9.0}"), "{tex}");
    assert!(!tex.contains("\\textbf{34.0}"));
    assert!(tex.contains("\\label{tab:glc\\_t1}"));
    // Escaped: the caption's "%" signs.
    assert!(tex.contains("Test error (\\%)"));
    // One row line per table row, each with the same number of cells.
    let body: Vec<&str> = tex.lines().filter(|l| l.starts_with("MNIST")).collect();
    assert_eq!(body.len(), 2);
    for l in &body {
        assert_eq!(l.matches(" & ").count(), t.columns.len() - 1, "{l}");
    }

    let md = std::fs::read_to_string(out.join("glc_t1.md")).unwrap();
    assert!(md.starts_with("<!--\ngenerated by repro"));
    assert!(md.contains("**9.0 ± 1.0 (n=3)**"), "{md}");
    assert!(md.contains("| 34.0 ± 2.0 (n=3) |"));

    let csv_text = std::fs::read_to_string(out.join("glc_t1.csv")).unwrap();
    let mut rdr = csv::ReaderBuilder::new()
        .comment(Some(b'#'))
        .from_reader(csv_text.as_bytes());
    let header: Vec<String> = rdr.headers().unwrap().iter().map(String::from).collect();
    let i = header.iter().position(|h| h == "GLC: ours mean").unwrap();
    assert_eq!(header[i + 1], "GLC: ours std");
    assert_eq!(header[i + 2], "GLC: ours n");
    let recs: Vec<csv::StringRecord> = rdr.records().map(|r| r.unwrap()).collect();
    assert_eq!(recs.len(), 2);
    assert!(close(recs[0][i].parse::<f64>().unwrap(), 9.0));
    assert_eq!(&recs[0][i + 2], "3");
    let f = header
        .iter()
        .position(|h| h == "Forward: ours mean")
        .unwrap();
    assert_eq!(&recs[0][f], "");
    // Every number in the CSV is finite.
    for r in &recs {
        for v in r.iter() {
            if let Ok(x) = v.parse::<f64>() {
                assert!(x.is_finite());
            }
        }
    }
}

#[test]
fn mlc_code_table_shows_accuracy_per_corruption_and_rate() {
    let tmp = tempfile::tempdir().unwrap();
    let mut refs = Vec::new();
    for (c, r) in [
        ("mlc_uniform", 0.1),
        ("mlc_uniform", 0.4),
        ("mlc_symmetric", 0.2),
    ] {
        for seed in [1u64, 2] {
            refs.push(write_run(
                tmp.path(),
                &Spec::noisy("ce", "cifar10", c, r, 0.01, seed, 0.30 + 0.01 * seed as f64),
            ));
            refs.push(write_run(
                tmp.path(),
                &Spec::noisy("mlc", "cifar10", c, r, 0.01, seed, 0.20)
                    .with("best_test_accuracy", 0.85),
            ));
        }
    }
    let t = build_named(TableKind::MlcCode, &refs, "t2");
    assert_eq!(t.rows.len(), 3);
    assert_eq!(t.columns.len(), 4 + 2);
    let names: Vec<&Cell> = t.rows.iter().map(|r| &r.cells[1]).collect();
    assert_eq!(
        names,
        [
            &Cell::Text("Uniform (MLC code)".into()),
            &Cell::Text("Uniform (MLC code)".into()),
            &Cell::Text("Symmetric (MLC code)".into())
        ]
    );
    let ce = stat(&t.rows[0].cells[4]);
    assert!(
        close(ce.mean, 68.5) && close(ce.std.unwrap(), 0.5f64.sqrt()),
        "{ce:?}"
    );
    let best = t.best();
    assert!(
        best.iter().all(|r| r[5] && !r[4]),
        "MLC (80 %) beats CE (68.5 %) in every row"
    );
    let tb = build(
        TableKind::MlcCode,
        &refs,
        Options {
            name: "t2".into(),
            best_accuracy: true,
            ..Default::default()
        },
    );
    assert!(close(stat(&tb.rows[0].cells[5]).mean, 85.0));
    assert_eq!(
        tb.rows[0].cells[4],
        Cell::Empty,
        "ce has no best_test_accuracy"
    );
}

#[test]
fn clean_table_quotes_only_the_published_gain() {
    let tmp = tempfile::tempdir().unwrap();
    let mut refs = Vec::new();
    for (ds, model) in [("cifar100", "resnet18"), ("digits", "mlp")] {
        for seed in [1u64, 2, 3] {
            refs.push(write_run(
                tmp.path(),
                &Spec::clean("ce", ds, model, seed, 0.30),
            ));
            refs.push(write_run(
                tmp.path(),
                &Spec::clean("label_smoothing", ds, model, seed, 0.29),
            ));
            refs.push(write_run(
                tmp.path(),
                &Spec::clean("soft_labels", ds, model, seed, 0.27 + 0.01 * seed as f64),
            ));
        }
    }
    let t = build_named(TableKind::Clean, &refs, "t3");
    assert_eq!(t.rows.len(), 2);
    let gain = col(&t, "Soft labels − one-hot (points)", "ours");
    let paper = col(&t, "Soft labels − one-hot (points)", "paper");
    // cifar100 sorts first.
    assert!(matches!(t.rows[0].cells[gain], Cell::Value(v) if close(v, 1.0)));
    assert_eq!(t.rows[0].cells[paper], Cell::Value(2.1));
    assert_eq!(t.rows[1].cells[paper], Cell::Empty);
    let sl = stat(&t.rows[0].cells[col(&t, "Test accuracy (%)", "Soft labels")]);
    assert!(close(sl.mean, 71.0) && close(sl.std.unwrap(), 1.0));
    assert!(t.best()[0][col(&t, "Test accuracy (%)", "Soft labels")]);
}

#[test]
fn noisy_table_has_label_correction_rate() {
    let tmp = tempfile::tempdir().unwrap();
    let mut refs = Vec::new();
    for seed in [1u64, 2] {
        refs.push(write_run(
            tmp.path(),
            &Spec::noisy("ce", "digits", "uniform", 0.4, 0.05, seed, 0.3),
        ));
        refs.push(write_run(
            tmp.path(),
            &Spec::noisy("soft_labels", "digits", "uniform", 0.4, 0.05, seed, 0.2)
                .with("label_correction_rate", 0.5 + 0.1 * seed as f64),
        ));
    }
    let t = build_named(TableKind::Noisy, &refs, "t4");
    let lcr = stat(&t.rows[0].cells[col(&t, "Label-correction rate (%)", "Soft labels")]);
    assert!(
        close(lcr.mean, 65.0) && close(lcr.std.unwrap(), 50f64.sqrt()),
        "{lcr:?}"
    );
    assert!(!t
        .columns
        .iter()
        .any(|c| c.group == "Label-correction rate (%)" && c.header != "Soft labels"));
    assert!(t.best()[0][col(&t, "Test accuracy (%)", "Soft labels")]);
}

#[test]
fn distill_table_groups_students_by_teacher() {
    let tmp = tempfile::tempdir().unwrap();
    let mut refs = Vec::new();
    for (teacher, err) in [("ce", 0.10), ("soft_labels", 0.08)] {
        for seed in [1u64, 2] {
            let mut r = write_run(
                tmp.path(),
                &Spec {
                    method: "distill",
                    dataset: "digits",
                    model: "mlp_small",
                    noise: None,
                    seed,
                    error: err,
                    extra: vec![("teacher_test_accuracy", 0.95)],
                },
            );
            // The two teachers' students would collide on disk: keep them apart.
            let dir = r.dir.with_file_name(format!(
                "{}_{teacher}",
                r.dir.file_name().unwrap().to_string_lossy()
            ));
            std::fs::rename(&r.dir, &dir).unwrap();
            r.dir = dir;
            r.member = format!("{}/{teacher}", r.member);
            repro_stages::report::TeacherInfo {
                method: teacher.into(),
                model: "mlp".into(),
            }
            .save(&r.dir)
            .unwrap();
            refs.push(r);
        }
    }
    let t = build_named(TableKind::Distill, &refs, "t5");
    assert_eq!(t.rows.len(), 1);
    let a = stat(&t.rows[0].cells[col(&t, "One-hot labels", "student")]);
    let b = stat(&t.rows[0].cells[col(&t, "Soft labels", "student")]);
    assert!(close(a.mean, 90.0) && close(b.mean, 92.0));
    let best = t.best();
    assert!(
        best[0][col(&t, "Soft labels", "student")]
            && !best[0][col(&t, "One-hot labels", "student")]
    );
    assert!(!best[0][col(&t, "Soft labels", "teacher")]);
}

#[test]
fn t_estimation_compares_estimators_per_distance() {
    let tmp = tempfile::tempdir().unwrap();
    let mut refs = Vec::new();
    for seed in [1u64, 2] {
        let s = seed as f64;
        refs.push(write_run(
            tmp.path(),
            &Spec::noisy("mlc", "digits", "flip", 0.6, 0.05, seed, 0.1)
                .with("t_frobenius_to_true_c", 0.5 + 0.1 * s)
                .with("t_mean_row_l1_to_true_c", 0.4)
                .with("identity_frobenius_to_true_c", 2.0)
                .with("identity_mean_row_l1_to_true_c", 1.2),
        ));
        refs.push(write_run(
            tmp.path(),
            &Spec::noisy("glc", "digits", "flip", 0.6, 0.05, seed, 0.1)
                .with("c_hat_frobenius_to_true_c", 0.3)
                .with("c_hat_mean_row_l1_to_true_c", 0.6)
                .with("identity_frobenius_to_true_c", 2.0)
                .with("identity_mean_row_l1_to_true_c", 1.2),
        ));
    }
    let t = build_named(TableKind::TEstimation, &refs, "t6");
    assert_eq!(t.rows.len(), 1);
    assert_eq!(
        t.columns.len(),
        4 + 2 * 3,
        "mlc, glc, identity × two distances"
    );
    let fro = "Frobenius ‖T − C‖";
    let mlc = stat(&t.rows[0].cells[col(&t, fro, "MLC")]);
    assert!(close(mlc.mean, 0.65) && close(mlc.std.unwrap(), 0.005f64.sqrt()));
    // Identity counted once per seed, not once per run.
    assert_eq!(stat(&t.rows[0].cells[col(&t, fro, "Identity")]).n, 2);
    let best = t.best();
    assert!(best[0][col(&t, fro, "GLC")] && !best[0][col(&t, fro, "MLC")]);
    assert!(best[0][col(&t, "Mean row L1", "MLC")] && !best[0][col(&t, "Mean row L1", "GLC")]);
}

#[test]
fn duplicate_runs_are_an_error_not_two_seeds() {
    let tmp = tempfile::tempdir().unwrap();
    let a = write_run(
        tmp.path(),
        &Spec::noisy("glc", "digits", "flip", 0.5, 0.05, 1, 0.1),
    );
    let mut b = a.clone();
    b.member = "copy".into();
    let runs = load_runs(&[a, b]).unwrap();
    let err = layouts::build(
        TableKind::Noisy,
        &runs,
        &Options::default(),
        Provenance::new("t", &runs, None),
    )
    .unwrap_err();
    assert!(err.to_string().contains("same setting"), "{err}");
}
