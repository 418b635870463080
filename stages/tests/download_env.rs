//! `REPRO_MIRROR` is tried before the built-in mirrors (its own test binary: it sets a
//! process-wide environment variable).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use repro_stages::data::dataset::Dataset;
use repro_stages::{Kind, NoProgress, StageContext};

#[test]
fn repro_mirror_directory_serves_the_default_digits_file() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mirror = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(mirror.path().join("digits")).unwrap();
    std::fs::copy(
        repo.join("data/optdigits/digits.csv.gz"),
        mirror.path().join("digits/digits.csv.gz"),
    )
    .unwrap();
    // The project dir is empty, so the built-in `file://data/optdigits/...` mirror fails:
    // only the REPRO_MIRROR copy can satisfy the stage.
    let (proj, dl, out) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let stop = AtomicBool::new(false);
    let ctx = |out: &Path| StageContext {
        member: "download[digits]".into(),
        profile: "test".into(),
        seed: 0,
        coords: BTreeMap::new(),
        inputs: BTreeMap::new(),
        out_dir: out.to_path_buf(),
        checkpoint_dir: out.join("ckpt"),
        project_dir: proj.path().to_path_buf(),
        download_dir: dl.path().to_path_buf(),
        threads: 1,
        progress: &NoProgress,
        stop: &stop,
    };
    let params = serde_json::json!({"dataset": "digits", "retries": 0});
    let err = format!(
        "{:#}",
        Kind::Download.run(&params, &ctx(out.path())).unwrap_err()
    );
    assert!(
        err.contains("Place the file by hand at") && err.contains("digits/digits.csv.gz"),
        "{err}"
    );
    std::env::set_var("REPRO_MIRROR", mirror.path());
    Kind::Download.run(&params, &ctx(out.path())).unwrap();
    std::env::remove_var("REPRO_MIRROR");
    let ds = Dataset::load(out.path()).unwrap();
    assert_eq!(ds.meta.identity, repro_stages::data::digits::RAW_SHA256);
}
