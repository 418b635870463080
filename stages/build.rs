//! Computes each stage kind's code hash: SHA-256 over the kind's own source file and the
//! shared source files it uses (listed below, directories taken recursively in sorted
//! order, each file keyed by its path relative to `src/`). The engine puts this hash into
//! every fingerprint, so editing a kind's code, or shared code it depends on, reruns that
//! kind's stages and no others.
//!
//! Keep `SOURCES` in step with the `use` lines of each kind: a shared module a kind uses
//! but does not list here would let a change slip past the cache.

use sha2::{Digest, Sha256};
use std::fs;
use std::path::{Path, PathBuf};

/// kind name -> source paths under `src/` (files or directories).
const SOURCES: &[(&str, &[&str])] = &[
    ("download", &["kinds/download.rs", "data"]),
    (
        "inject_noise",
        &[
            "kinds/inject_noise.rs",
            "noise.rs",
            "data/dataset.rs",
            "data/split.rs",
        ],
    ),
    (
        "train",
        &[
            "kinds/train.rs",
            "kinds/inputs.rs",
            "nn",
            "data/dataset.rs",
            "data/images.rs",
            "noise.rs",
            "data/split.rs",
            "metrics.rs",
        ],
    ),
    (
        "train_mlc",
        &[
            "kinds/train_mlc.rs",
            "kinds/train.rs",
            "kinds/inputs.rs",
            "nn",
            "data/dataset.rs",
            "data/images.rs",
            "noise.rs",
            "data/split.rs",
            "metrics.rs",
        ],
    ),
    (
        "train_soft_labels",
        &[
            "kinds/train_soft_labels.rs",
            "kinds/train.rs",
            "kinds/inputs.rs",
            "nn",
            "data/dataset.rs",
            "data/images.rs",
            "noise.rs",
            "data/split.rs",
            "metrics.rs",
        ],
    ),
    (
        "distill",
        &[
            "kinds/distill.rs",
            "kinds/train.rs",
            "kinds/inputs.rs",
            "report/teacher.rs",
            "nn",
            "data/dataset.rs",
            "data/images.rs",
            "noise.rs",
            "data/split.rs",
            "metrics.rs",
        ],
    ),
    ("tables", &["kinds/tables.rs", "report"]),
    ("probe", &["kinds/probe.rs"]),
];

fn collect(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
    let p = root.join(rel);
    if p.is_dir() {
        let mut entries: Vec<_> = fs::read_dir(&p)
            .unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
            .map(|e| e.unwrap().file_name())
            .collect();
        entries.sort();
        for name in entries {
            collect(root, &rel.join(name), out);
        }
    } else if p.extension().is_some_and(|e| e == "rs") {
        out.push(rel.to_path_buf());
    } else if !p.exists() {
        panic!(
            "build.rs: source {} listed for a kind does not exist",
            p.display()
        );
    }
}

fn dfdx_version(manifest_dir: &Path) -> String {
    for lock in [
        manifest_dir.join("../Cargo.lock"),
        manifest_dir.join("Cargo.lock"),
    ] {
        if let Ok(text) = fs::read_to_string(&lock) {
            println!("cargo:rerun-if-changed={}", lock.display());
            let mut lines = text.lines();
            while let Some(l) = lines.next() {
                if l.trim() == "name = \"dfdx\"" {
                    if let Some(v) = lines.next() {
                        return v
                            .trim()
                            .trim_start_matches("version = ")
                            .trim_matches('"')
                            .to_string();
                    }
                }
            }
        }
    }
    "unknown".to_string()
}

#[path = "build_cuda_shim.rs"]
mod cuda_shim;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    cuda_shim::generate(&manifest_dir);
    let src = manifest_dir.join("src");
    let mut arms = String::new();
    for (kind, paths) in SOURCES {
        let mut files = Vec::new();
        for p in *paths {
            collect(&src, Path::new(p), &mut files);
        }
        files.sort();
        files.dedup();
        let mut h = Sha256::new();
        for f in &files {
            let full = src.join(f);
            println!("cargo:rerun-if-changed={}", full.display());
            let bytes = fs::read(&full).unwrap();
            let key = f.to_string_lossy().replace('\\', "/");
            h.update((key.len() as u64).to_le_bytes());
            h.update(key.as_bytes());
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(&bytes);
        }
        arms.push_str(&format!(
            "        {kind:?} => {:?},\n",
            hex::encode(h.finalize())
        ));
    }
    for p in ["kinds", "data", "nn", "report"] {
        println!("cargo:rerun-if-changed={}", src.join(p).display());
    }
    let code = format!(
        "pub const DFDX_VERSION: &str = {:?};\n\
         pub fn code_hash(kind: &str) -> &'static str {{\n    match kind {{\n{arms}        _ => \"\",\n    }}\n}}\n",
        dfdx_version(&manifest_dir)
    );
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("code_hashes.rs");
    fs::write(out, code).unwrap();
}
