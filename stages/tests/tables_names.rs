//! Every built-in method and every corruption through every table layout: each table
//! builds, and shows each name it shows by the display name its enum owns, never by the
//! name in `metrics.json` (a name missing from an enum would not compile; one shown raw
//! would be a name the report does not know).

mod tables_common;

use repro_stages::noise::Corruption;
use repro_stages::report::layouts::{self, Options, TableKind};
use repro_stages::report::run::load_runs;
use repro_stages::report::writers::markdown;
use repro_stages::report::{Provenance, TeacherInfo};
use repro_stages::Method;
use tables_common::{write_run, Spec};

const LAYOUTS: [TableKind; 6] = [
    TableKind::GlcTable1,
    TableKind::MlcCode,
    TableKind::Clean,
    TableKind::Noisy,
    TableKind::Distill,
    TableKind::TEstimation,
];

/// Fails to compile when a layout is added without being walked.
#[allow(dead_code)]
fn walked(k: TableKind) {
    match k {
        TableKind::GlcTable1
        | TableKind::MlcCode
        | TableKind::Clean
        | TableKind::Noisy
        | TableKind::Distill
        | TableKind::TEstimation => {}
    }
}

#[test]
fn every_method_and_corruption_shows_by_its_display_name_in_every_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let mut refs = Vec::new();
    for m in Method::ALL {
        for seed in [1u64, 2] {
            for c in Corruption::ALL {
                let spec = Spec::noisy(m.name(), "digits", c.name(), 0.5, 0.05, seed, 0.1)
                    .with("best_test_accuracy", 0.9)
                    .with("c_hat_frobenius_to_true_c", 0.3)
                    .with("c_hat_mean_row_l1_to_true_c", 0.3)
                    .with("t_frobenius_to_true_c", 0.3)
                    .with("t_mean_row_l1_to_true_c", 0.3)
                    .with("identity_frobenius_to_true_c", 1.0)
                    .with("identity_mean_row_l1_to_true_c", 1.0);
                let mut r = write_run(tmp.path(), &spec);
                // Runs of one member name would share a folder: keep them apart.
                let dir = r
                    .dir
                    .with_file_name(format!("{}_{}_{seed}", m.name(), c.name()));
                std::fs::rename(&r.dir, &dir).unwrap();
                r.dir = dir;
                r.member = format!("{}/{}/{seed}", m.name(), c.name());
                refs.push(r);
            }
            let mut r = write_run(
                tmp.path(),
                &Spec::clean(m.name(), "digits", "mlp", seed, 0.1),
            );
            let dir = r.dir.with_file_name(format!("{}_clean_{seed}", m.name()));
            std::fs::rename(&r.dir, &dir).unwrap();
            r.dir = dir;
            refs.push(r);
        }
    }
    for r in refs.iter().filter(|r| r.member.starts_with("distill")) {
        let teacher = TeacherInfo {
            method: "glc".into(),
            model: "mlp".into(),
        };
        teacher.save(&r.dir).unwrap();
    }
    let runs = load_runs(&refs).unwrap();
    for kind in LAYOUTS {
        let opts = Options {
            name: "walk".into(),
            methods: Method::ALL.iter().map(|m| m.name().to_string()).collect(),
            ..Default::default()
        };
        let prov = Provenance::new("test", &runs, None);
        let t =
            layouts::build(kind, &runs, &opts, prov).unwrap_or_else(|e| panic!("{kind:?}: {e:#}"));
        let text = markdown::render(&t);
        for m in Method::ALL {
            // Markdown escapes `_`: a raw name would read `soft\_labels`.
            let raw = m.name().replace('_', r"\_");
            let shown_raw = text.contains(&format!("| {raw} |"))
                || text.contains(&format!(": {raw} |"))
                || text.contains(&format!("| {raw} ("));
            assert!(
                !shown_raw,
                "{kind:?} shows method {} raw:\n{text}",
                m.name()
            );
        }
        for c in Corruption::ALL {
            let raw = c.name().replace('_', r"\_");
            assert!(
                !text.contains(&format!("| {raw} |")),
                "{kind:?} shows corruption {} raw:\n{text}",
                c.name()
            );
        }
    }
}

#[test]
fn the_noisy_table_lists_every_corruption_and_method_it_is_given() {
    let tmp = tempfile::tempdir().unwrap();
    let mut refs = Vec::new();
    for m in Method::ALL {
        for c in Corruption::ALL {
            let mut r = write_run(
                tmp.path(),
                &Spec::noisy(m.name(), "digits", c.name(), 0.5, 0.05, 1, 0.1),
            );
            let dir = r.dir.with_file_name(format!("{}_{}", m.name(), c.name()));
            std::fs::rename(&r.dir, &dir).unwrap();
            r.dir = dir;
            refs.push(r);
        }
    }
    let runs = load_runs(&refs).unwrap();
    let t = layouts::build(
        TableKind::Noisy,
        &runs,
        &Options::default(),
        Provenance::new("test", &runs, None),
    )
    .unwrap();
    let text = markdown::render(&t);
    for c in Corruption::ALL {
        assert!(
            text.contains(c.display()),
            "{} missing:\n{text}",
            c.display()
        );
    }
    // Distilled students are not noisy-label runs; identity is no run's method.
    for m in Method::ALL {
        let shown = text.contains(&markdown_escaped(m.display()));
        let expected = !matches!(m, Method::Distill);
        assert_eq!(shown, expected, "{}:\n{text}", m.display());
    }
}

fn markdown_escaped(s: &str) -> String {
    let mut out = String::new();
    for ch in s.chars() {
        if matches!(ch, '|' | '*' | '_' | '`' | '\\' | '<' | '>') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}
