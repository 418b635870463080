//! The `tables` kind end to end: params → tables and figures under the stage's out_dir,
//! from runs and noise inputs written as the other kinds write them; same inputs, same
//! bytes; bad params named; typos in `methods` and groups no table shows refused.

mod tables_common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use repro_stages::noise::{Matrix, NoiseMeta, NoisyLabels};
use repro_stages::report::matrix_file::{self, CLASS_SIMILARITY_FILE, T_FINAL_FILE};
use repro_stages::{InputRef, Kind, NoProgress, StageContext};
use serde_json::{json, Value};
use tables_common::{metrics, write_run, Spec};

const K: usize = 4;

fn flip_c(k: usize, s: f64) -> Matrix {
    let mut c = Matrix::zeros(k);
    for i in 0..k {
        c.set(i, i, 1.0 - s);
        c.set(i, (i + 1) % k, s);
    }
    c
}

fn write_noise(root: &Path, strength: f64, seed: u64) -> InputRef {
    let dir = root.join(format!("noise_{strength}_{seed}"));
    std::fs::create_dir_all(&dir).unwrap();
    let m = metrics(&Spec::noisy(
        "ce", "digits", "flip", strength, 0.05, seed, 0.1,
    ));
    let nl = NoisyLabels {
        meta: NoiseMeta {
            corruption: "flip".into(),
            strength,
            trusted_fraction: 0.05,
            seed,
            num_classes: K,
            actual_noise_rate: strength,
            num_trusted: 1,
            num_untrusted: 3,
            dataset: "digits".into(),
            dataset_identity: m.dataset.identity.clone(),
            trusted_split: Default::default(),
        },
        noisy: vec![0, 2, 2, 3],
        clean: vec![0, 1, 2, 3],
        trusted: vec![0],
        true_c: flip_c(K, strength),
        realized_c: flip_c(K, strength),
    };
    nl.save(&dir).unwrap();
    InputRef {
        dir,
        member: format!("noise[flip,{strength},seed={seed}]"),
        coords: BTreeMap::new(),
    }
}

/// Runs for every table and figure: digits, flip, strengths 0…1 by 0.25, methods ce, glc,
/// mlc (with t_final.json), soft_labels (with class_similarity.json), seeds 1–2.
fn fixture(root: &Path) -> (Vec<InputRef>, Vec<InputRef>) {
    let mut runs = Vec::new();
    let mut noise = Vec::new();
    for seed in [1u64, 2] {
        for i in 0..=4 {
            let x = i as f64 / 4.0;
            noise.push(write_noise(root, x, seed));
            let e = |base: f64, slope: f64| base + slope * x + 0.005 * seed as f64;
            runs.push(write_run(
                root,
                &Spec::noisy("ce", "digits", "flip", x, 0.05, seed, e(0.05, 0.6))
                    .with("identity_frobenius_to_true_c", x * 2f64.sqrt() * 2.0)
                    .with("identity_mean_row_l1_to_true_c", 2.0 * x),
            ));
            runs.push(write_run(
                root,
                &Spec::noisy("glc", "digits", "flip", x, 0.05, seed, e(0.05, 0.1))
                    .with("c_hat_frobenius_to_true_c", 0.3)
                    .with("c_hat_mean_row_l1_to_true_c", 0.2),
            ));
            let mlc = write_run(
                root,
                &Spec::noisy("mlc", "digits", "flip", x, 0.05, seed, e(0.05, 0.15))
                    .with("t_frobenius_to_true_c", 0.4)
                    .with("t_mean_row_l1_to_true_c", 0.25),
            );
            let mut t = flip_c(K, x * 0.8);
            t.set(0, 3, 0.05);
            matrix_file::save(&t, &mlc.dir, T_FINAL_FILE).unwrap();
            runs.push(mlc);
            let sl = write_run(
                root,
                &Spec::noisy("soft_labels", "digits", "flip", x, 0.05, seed, e(0.04, 0.2))
                    .with("label_correction_rate", 0.5),
            );
            matrix_file::save(&flip_c(K, 0.1), &sl.dir, CLASS_SIMILARITY_FILE).unwrap();
            runs.push(sl);
        }
    }
    (runs, noise)
}

fn run_stage(
    params: Value,
    runs: &[InputRef],
    noise: &[InputRef],
    out: &Path,
) -> anyhow::Result<()> {
    let inputs = BTreeMap::from([
        ("runs".to_string(), runs.to_vec()),
        ("noise".to_string(), noise.to_vec()),
    ]);
    run_with_inputs(params, inputs, out)
}

fn run_with_inputs(
    params: Value,
    inputs: BTreeMap<String, Vec<InputRef>>,
    out: &Path,
) -> anyhow::Result<()> {
    let stop = AtomicBool::new(false);
    std::fs::create_dir_all(out).unwrap();
    let ctx = StageContext {
        member: "tables[main]".into(),
        profile: "test".into(),
        seed: 0,
        coords: BTreeMap::new(),
        inputs,
        out_dir: out.to_path_buf(),
        checkpoint_dir: out.join("../ckpt"),
        project_dir: out.to_path_buf(),
        download_dir: out.join("../dl"),
        threads: 1,
        progress: &NoProgress,
        stop: &stop,
    };
    Kind::Tables.validate(&params).map_err(anyhow::Error::msg)?;
    Kind::Tables.run(&params, &ctx)
}

fn params() -> Value {
    json!({
        "tables": [
            {"table": "glc_table1", "name": "glc_table1"},
            {"table": "noisy"},
            {"table": "t_estimation", "name": "t_est"}
        ],
        "figures": [
            {"figure": "error_curves", "name": "error_curves"},
            {"figure": "t_vs_true_c", "name": "t_vs_c", "select": {"strength": 0.5, "seed": 1}},
            {"figure": "class_similarity", "select": {"strength": 0.5}, "max_runs": 1}
        ]
    })
}

fn all_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for sub in ["tables", "figures"] {
        for e in std::fs::read_dir(dir.join(sub)).unwrap() {
            let e = e.unwrap();
            out.insert(
                format!("{sub}/{}", e.file_name().to_string_lossy()),
                std::fs::read(e.path()).unwrap(),
            );
        }
    }
    out
}

#[test]
fn writes_every_table_and_figure_deterministically() {
    let tmp = tempfile::tempdir().unwrap();
    let (runs, noise) = fixture(tmp.path());
    let out = tmp.path().join("out");
    run_stage(params(), &runs, &noise, &out).unwrap();
    let files = all_files(&out);
    let names: Vec<&str> = files.keys().map(|s| s.as_str()).collect();
    assert_eq!(
        names,
        [
            "figures/class_similarity.png",
            "figures/class_similarity.svg",
            "figures/error_curves.png",
            "figures/error_curves.svg",
            "figures/t_vs_c.png",
            "figures/t_vs_c.svg",
            "tables/glc_table1.csv",
            "tables/glc_table1.md",
            "tables/glc_table1.tex",
            "tables/noisy.csv",
            "tables/noisy.md",
            "tables/noisy.tex",
            "tables/t_est.csv",
            "tables/t_est.md",
            "tables/t_est.tex",
        ]
    );
    for (name, bytes) in &files {
        assert!(
            bytes.len() > 300,
            "{name} is nearly empty ({} bytes)",
            bytes.len()
        );
        if name.ends_with(".png") {
            assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{name}");
        }
        if name.ends_with(".svg") {
            let s = String::from_utf8(bytes.clone()).unwrap();
            assert!(
                s.trim_start().starts_with("<svg") && s.trim_end().ends_with("</svg>"),
                "{name}"
            );
            assert!(s.contains("<text"), "{name} has no text");
            assert!(s.contains("<rect"), "{name} has no rectangles");
            assert_eq!(s.matches("<svg").count(), 1);
        }
    }
    let curves = String::from_utf8(files["figures/error_curves.svg"].clone()).unwrap();
    assert!(curves.contains("<polyline"), "the error curves have lines");
    for label in [
        "GLC",
        "MLC",
        "Soft labels",
        "corruption strength",
        "Digits (UCI optdigits), Flip, 5% trusted",
    ] {
        assert!(curves.contains(label), "error_curves.svg lacks {label}");
    }
    let tvc = String::from_utf8(files["figures/t_vs_c.svg"].clone()).unwrap();
    assert!(tvc.contains("learned T") && tvc.contains("true C"));
    // 2 panels × 16 cells + 100 colour-bar steps + backgrounds.
    assert!(tvc.matches("<rect").count() >= 2 * K * K + 100);

    // Every number in the CSVs is finite; the GLC table has its 5 strengths in the caption.
    for (name, bytes) in files.iter().filter(|(n, _)| n.ends_with(".csv")) {
        let text = String::from_utf8(bytes.clone()).unwrap();
        let mut rdr = csv::ReaderBuilder::new()
            .comment(Some(b'#'))
            .from_reader(text.as_bytes());
        let mut nums = 0;
        for rec in rdr.records() {
            for v in rec.unwrap().iter() {
                if let Ok(x) = v.parse::<f64>() {
                    assert!(x.is_finite(), "{name}: {v}");
                    nums += 1;
                }
            }
        }
        assert!(nums > 0, "{name} has no numbers");
    }
    let glc_md = String::from_utf8(files["tables/glc_table1.md"].clone()).unwrap();
    assert!(glc_md.contains("0, 0.25, 0.5, 0.75, 1"), "{glc_md}");

    // Same inputs, same bytes.
    let out2 = tmp.path().join("out2");
    run_stage(params(), &runs, &noise, &out2).unwrap();
    assert_eq!(files, all_files(&out2));

    // A changed metric changes the fingerprint in the provenance.
    let fp = |f: &BTreeMap<String, Vec<u8>>| {
        String::from_utf8(f["tables/noisy.tex"].clone())
            .unwrap()
            .lines()
            .find(|l| l.contains("fingerprint"))
            .unwrap()
            .to_string()
    };
    let mut m = repro_stages::metrics::Metrics::load(&runs[0].dir).unwrap();
    m.final_test_error += 0.01;
    m.save(&runs[0].dir).unwrap();
    let out3 = tmp.path().join("out3");
    run_stage(params(), &runs, &noise, &out3).unwrap();
    assert_ne!(fp(&files), fp(&all_files(&out3)));
}

#[test]
fn bad_params_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let (runs, noise) = fixture(tmp.path());
    let e = run_stage(
        json!({"tables": [{"table": "glc_table2"}]}),
        &runs,
        &noise,
        &tmp.path().join("o1"),
    )
    .unwrap_err();
    assert!(e.to_string().contains("glc_table2"), "{e}");
    let e = run_stage(
        json!({"tables": [{"table": "noisy", "colour": 1}]}),
        &runs,
        &noise,
        &tmp.path().join("o2"),
    )
    .unwrap_err();
    assert!(e.to_string().contains("colour"), "{e}");
    let e = run_stage(
        json!({"tables": [{"table": "noisy", "name": "../x"}]}),
        &runs,
        &noise,
        &tmp.path().join("o3"),
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("../x"), "{e:#}");
    let e = run_stage(json!({}), &runs, &noise, &tmp.path().join("o4")).unwrap_err();
    assert!(format!("{e:#}").contains("both empty"), "{e:#}");
    // A figure needing the true C without the noise input says which input is missing.
    let e = run_stage(
        json!({"figures": [{"figure": "t_vs_true_c"}]}),
        &runs,
        &[],
        &tmp.path().join("o5"),
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("`noise`"), "{e:#}");
}

#[test]
fn a_recipe_note_ends_the_caption_in_every_format_and_must_be_one_sentence() {
    let tmp = tempfile::tempdir().unwrap();
    let (runs, noise) = fixture(tmp.path());
    let note = "MLC's recipe is borrowed from GLC (docs/protocols.md, section 5).";
    let out = tmp.path().join("noted");
    run_stage(
        json!({"tables": [{"table": "noisy", "notes": [note]}, {"table": "t_estimation"}]}),
        &runs,
        &noise,
        &out,
    )
    .unwrap();
    let read = |f: &str| std::fs::read_to_string(out.join("tables").join(f)).unwrap();
    for f in ["noisy.md", "noisy.csv"] {
        assert!(read(f).contains(note), "{f} lacks the note:\n{}", read(f));
    }
    // LaTeX escapes special characters; the words are there.
    assert!(
        read("noisy.tex").contains("borrowed from GLC"),
        "{}",
        read("noisy.tex")
    );
    // Only the table that declares it carries it.
    assert!(!read("t_estimation.md").contains("borrowed from GLC"));

    for bad in ["", "two\nlines.", "no full stop"] {
        let e = run_stage(
            json!({"tables": [{"table": "noisy", "notes": [bad]}]}),
            &runs,
            &noise,
            &tmp.path().join("bad"),
        )
        .unwrap_err();
        assert!(
            format!("{e:#}").contains("tables[0].notes[0]"),
            "{bad:?}: {e:#}"
        );
    }
}

#[test]
fn a_report_restricted_to_a_dataset_and_trusted_share_refuses_other_runs() {
    // A report stage whose matrix axes `dataset` and `trusted_fraction` select its inputs
    // gets them as params: runs that match are tabulated, any other run is an error naming
    // it and the param.
    let tmp = tempfile::tempdir().unwrap();
    let (runs, noise) = fixture(tmp.path());
    let with = |extra: Value| {
        let mut p = json!({"tables": [{"table": "glc_table1"}]});
        for (k, v) in extra.as_object().unwrap() {
            p[k] = v.clone();
        }
        p
    };
    let out = tmp.path().join("ok");
    run_stage(
        with(json!({"dataset": "digits", "trusted_fraction": 0.05})),
        &runs,
        &noise,
        &out,
    )
    .unwrap();
    assert!(out.join("tables/glc_table1.md").is_file());
    for (extra, needle) in [
        (json!({"dataset": "fashion_mnist"}), "params: dataset"),
        (
            json!({"trusted_fraction": 0.01}),
            "params: trusted_fraction",
        ),
    ] {
        let e = format!(
            "{:#}",
            run_stage(with(extra), &runs, &noise, &tmp.path().join("bad")).unwrap_err()
        );
        assert!(e.contains(needle) && e.contains("input run"), "{e}");
    }
}

#[test]
fn a_typo_in_methods_or_a_group_no_table_shows_fails_the_stage() {
    let tmp = tempfile::tempdir().unwrap();
    let (runs, noise) = fixture(tmp.path());
    let err = |params: Value, inputs: BTreeMap<String, Vec<InputRef>>, out: &str| {
        let out = tmp.path().join(out);
        let e = format!("{:#}", run_with_inputs(params, inputs, &out).unwrap_err());
        assert!(!out.join("tables").exists(), "a table was written: {e}");
        e
    };
    let both = || {
        BTreeMap::from([
            ("runs".to_string(), runs.clone()),
            ("noise".to_string(), noise.clone()),
        ])
    };
    let e = err(
        json!({"tables": [{"table": "noisy"}, {"table": "glc_table1", "methods": ["ce", "glcc"]}]}),
        both(),
        "typo",
    );
    assert!(
        e.contains("params: field `tables[1].methods`: `glcc` is the method of no input run (theirs: ce, glc, mlc, soft_labels)"),
        "{e}"
    );
    let e = err(
        json!({"figures": [{"figure": "error_curves", "methods": ["ce", "mlcc"]}]}),
        both(),
        "figure_typo",
    );
    assert!(e.contains("field `figures[0].methods`: `mlcc`"), "{e}");
    // Noisy runs in a table of clean runs only: the group would be dropped.
    let e = err(
        json!({"tables": [{"table": "clean", "methods": ["ce"]}]}),
        both(),
        "unshown",
    );
    assert!(
        e.contains("params: input `runs`: no table or figure shows its 40 run(s) (method(s): ce, glc, mlc, soft_labels)"),
        "{e}"
    );
    // A group of inject_noise outputs under any name is read for the true C, not as runs.
    let out = tmp.path().join("renamed");
    let inputs = BTreeMap::from([
        ("runs".to_string(), runs.clone()),
        ("true_c".to_string(), noise.clone()),
    ]);
    run_with_inputs(
        json!({"figures": [{"figure": "t_vs_true_c", "select": {"strength": 0.5, "seed": 1}}]}),
        inputs,
        &out,
    )
    .unwrap();
    assert!(out.join("figures/t_vs_true_c.svg").is_file());
}
