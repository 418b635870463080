//! Code fingerprints cover what each kind's code reaches, and only that: the function
//! `build.rs` uses ([`repro_stages::code_graph`]) run on the real source tree and on a
//! temporary copy in which files are edited one at a time.

use std::path::{Path, PathBuf};

use repro_stages::code_graph::{code_hash, kind_sources};
use repro_stages::Kind;

fn kinds() -> Vec<&'static str> {
    Kind::ALL.iter().map(|k| k.name()).collect()
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn sources(src: &Path, kind: &str) -> Vec<String> {
    kind_sources(src, kind, &kinds()).unwrap()
}

fn hash(src: &Path, kind: &str) -> String {
    code_hash(src, &sources(src, kind)).unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.path().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Every file under `dir`, relative, `/`-separated.
fn all_files(dir: &Path, rel: &str, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir.join(rel)).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        let r = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        if e.path().is_dir() {
            all_files(dir, &r, out);
        } else {
            out.push(r);
        }
    }
}

#[test]
fn compiled_code_hashes_are_the_reached_files_hashes() {
    for k in Kind::ALL {
        assert_eq!(
            k.code_hash(),
            hash(&src(), k.name()),
            "build.rs and code_graph disagree for {} (is it in kind_list.rs?)",
            k.name()
        );
    }
}

#[test]
fn tables_code_hash_covers_noise_module() {
    let s = sources(&src(), "tables");
    for f in [
        "noise/mod.rs",
        "noise/matrix.rs",
        "metrics.rs",
        "lib.rs",
        "report/fonts/DejaVuSans.ttf",
        "report/writers/latex.rs",
    ] {
        assert!(s.iter().any(|x| x == f), "tables does not reach {f}: {s:?}");
    }
    // Every stage runs in the float environment the dispatch sets (`nn/float_env.rs`); no
    // other numeric code is the tables' code.
    let numeric = |x: &str| x.starts_with("nn/") && x != "nn/mod.rs" && x != "nn/float_env.rs";
    assert!(
        !s.iter().any(|x| numeric(x) || x == "kinds/train.rs"),
        "{s:?}"
    );
}

#[test]
fn training_kinds_reach_raw_data_through_init() {
    for kind in ["train", "train_mlc", "train_soft_labels", "distill"] {
        let s = sources(&src(), kind);
        for f in ["data/raw.rs", "nn/init.rs", "lib.rs", "training/mod.rs"] {
            assert!(s.iter().any(|x| x == f), "{kind} does not reach {f}: {s:?}");
        }
    }
    let d = sources(&src(), "distill");
    assert!(d.iter().any(|x| x == "report/teacher.rs"), "{d:?}");
}

#[test]
fn the_dispatch_in_lib_does_not_join_the_kinds() {
    let probe = sources(&src(), "probe");
    assert!(probe.iter().any(|x| x == "lib.rs"));
    assert!(
        !probe
            .iter()
            .any(|x| x.starts_with("kinds/") && x != "kinds/probe.rs" && x != "kinds/mod.rs"),
        "probe reaches another kind: {probe:?}"
    );
    let train = sources(&src(), "train");
    assert!(
        !train
            .iter()
            .any(|x| x == "kinds/tables.rs" || x == "kinds/train_mlc.rs"),
        "{train:?}"
    );
}

#[test]
fn editing_the_train_kind_does_not_rerun_the_other_training_kinds() {
    for kind in ["train_mlc", "train_soft_labels", "distill"] {
        let s = sources(&src(), kind);
        assert!(!s.iter().any(|x| x == "kinds/train.rs"), "{kind}: {s:?}");
    }
}

/// Editing any file a kind reaches changes its hash; editing any other file does not.
#[test]
fn every_reached_file_changes_the_hash_and_no_other_does() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    copy_dir(&crate::src(), &src);
    let mut files = Vec::new();
    all_files(&src, "", &mut files);
    files.sort();
    for kind in kinds() {
        let reached = sources(&src, kind);
        let before = hash(&src, kind);
        for f in &files {
            let p = src.join(f);
            let original = std::fs::read(&p).unwrap();
            let mut edited = original.clone();
            // A comment for source files (the module graph stays the same), a byte for others.
            edited.extend_from_slice(if f.ends_with(".rs") {
                b"\n// edited\n"
            } else {
                b"\0"
            });
            std::fs::write(&p, &edited).unwrap();
            let after = hash(&src, kind);
            std::fs::write(&p, &original).unwrap();
            if reached.contains(f) {
                assert_ne!(
                    before, after,
                    "editing {f} left the hash of {kind} unchanged"
                );
            } else {
                assert_eq!(
                    before, after,
                    "editing {f}, which {kind} cannot reach, changed its hash"
                );
            }
        }
        assert_eq!(hash(&src, kind), before);
    }
}

/// A new `impl` block in a file the kind does not name reaches it through the type.
#[test]
fn an_impl_block_elsewhere_joins_the_kind_of_its_type() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    copy_dir(&crate::src(), &src);
    assert!(!sources(&src, "tables")
        .iter()
        .any(|x| x == "data/twitter.rs"));
    let p = src.join("data/twitter.rs");
    let mut text = std::fs::read_to_string(&p).unwrap();
    text.push_str("\nimpl crate::noise::Matrix {\n    pub fn extra(&self) {}\n}\n");
    std::fs::write(&p, text).unwrap();
    assert!(sources(&src, "tables")
        .iter()
        .any(|x| x == "data/twitter.rs"));
}

/// A `command` stage's code and the schema check of `tables` are no training kind's code:
/// editing them reruns no training.
#[test]
fn command_and_schema_check_join_no_training_kind() {
    for kind in ["train", "train_mlc", "train_soft_labels", "distill"] {
        let s = sources(&src(), kind);
        for f in [
            "kinds/command.rs",
            "metrics_schema.rs",
            "report/layouts/t_estimation.rs",
        ] {
            assert!(!s.iter().any(|x| x == f), "{kind} reaches {f}: {s:?}");
        }
    }
    assert!(sources(&src(), "tables")
        .iter()
        .any(|x| x == "metrics_schema.rs"));
}

/// The `command` kind's own modules (its program's process, sandbox and log, and the
/// process plumbing it shares with the engine) are code of that kind alone: editing them
/// reruns `command` stages and no others.
#[test]
fn command_modules_join_no_other_kind() {
    let own = [
        "process/mod.rs",
        "process/capture.rs",
        "kinds/command/process.rs",
        "kinds/command/sandbox.rs",
    ];
    for kind in kinds() {
        let s = sources(&src(), kind);
        for f in own {
            let reached = s.iter().any(|x| x == f);
            assert_eq!(reached, kind == "command", "{kind} and {f}: {s:?}");
        }
    }
}
