//! Computes each stage kind's code hash, the part of every fingerprint that says "this
//! code": SHA-256 over every source file the kind's code can reach, each keyed by its path
//! relative to `src/`. The engine puts it into every key, so editing a kind's code, or
//! shared code it reaches, reruns that kind's stages and no others.
//!
//! The set of files is derived from the code, not kept by hand: `src/code_graph.rs` (also
//! a module of the crate, so tests check the very function used here) reads the module
//! graph from `kinds/<kind>.rs` and `lib.rs` (`use crate::...`, paths, `mod`, `super::`,
//! impl blocks, `include_bytes!`) and closes it; its header says what is followed and why
//! the result can only err towards a needless rerun.
//!
//! Cargo reruns this script when anything under `src/` changes (any file can change what
//! a kind reaches, e.g. a new `impl` block) or when `Cargo.lock` does (the dfdx version).

#[path = "src/code_graph.rs"]
#[allow(dead_code)]
mod code_graph;

use std::fs;
use std::path::{Path, PathBuf};

/// Makes `KINDS` from the list of kinds: every kind's name, as `Kind::name` spells it; its
/// module is `src/kinds/<name>.rs`.
macro_rules! kind_names {
    ($($(#[$doc:meta])* $variant:ident => $module:ident,)*) => {
        const KINDS: &[&str] = &[$(stringify!($module)),*];
    };
}

// The one list of kinds, the crate's own (`src/kind_list.rs` holds nothing else).
#[macro_use]
#[path = "src/kind_list.rs"]
mod kind_list;

kind_list!(kind_names);

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
    println!("cargo:rerun-if-changed={}", src.display());
    let mut arms = String::new();
    for kind in KINDS {
        let files = code_graph::kind_sources(&src, kind, KINDS)
            .unwrap_or_else(|e| panic!("build.rs: the sources of kind `{kind}`: {e}"));
        let hash = code_graph::code_hash(&src, &files)
            .unwrap_or_else(|e| panic!("build.rs: hashing the sources of kind `{kind}`: {e}"));
        arms.push_str(&format!("        {kind:?} => {hash:?},\n"));
    }
    let code = format!(
        "pub const DFDX_VERSION: &str = {:?};\n\
         pub fn code_hash(kind: &str) -> &'static str {{\n    match kind {{\n{arms}        _ => \"\",\n    }}\n}}\n",
        dfdx_version(&manifest_dir)
    );
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("code_hashes.rs");
    fs::write(out, code).unwrap();
}
