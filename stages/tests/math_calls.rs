//! The stage code calls no function whose bits depend on the machine: the platform's math
//! library (`f64::exp`, `f32::ln`, `cos`, …, and dfdx's `exp`/`ln`-based tensor ops, which
//! call it) is reached only through `src/math.rs` (pure Rust) or on the portable path
//! (`src/nn/portable.rs`, `src/nn/ops.rs`'s portable branches: the `cuda` build, which
//! makes no such promise); run-time CPU dispatch appears only where each variant is shown
//! to give the same bits (`src/nn/kernels.rs`, `src/nn/optim.rs`).

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `(file, line number, line)` of every code line (comments dropped) in `stages/src`
/// outside `allowed` that contains one of `needles`.
fn uses(needles: &[&str], allowed: &[&str]) -> Vec<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut found = Vec::new();
    for f in files {
        let rel = f
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        if allowed.contains(&rel.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        for (i, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap();
            if needles.iter().any(|n| code.contains(n)) {
                found.push(format!("src/{rel}:{}: {}", i + 1, line.trim()));
            }
        }
    }
    found
}

#[test]
fn stage_code_calls_no_platform_math() {
    let mut needles = Vec::new();
    for f in [
        "exp",
        "exp2",
        "exp_m1",
        "ln",
        "ln_1p",
        "log",
        "log2",
        "log10",
        "sin",
        "cos",
        "tan",
        "asin",
        "acos",
        "atan",
        "atan2",
        "sinh",
        "cosh",
        "tanh",
        "asinh",
        "acosh",
        "atanh",
        "powf",
        "cbrt",
        "hypot",
        "mul_add",
        "sigmoid",
        "softmax",
        "log_softmax",
        "logsumexp",
        "gelu",
        "fast_gelu",
        "accurate_gelu",
        "sin_cos",
    ] {
        needles.push(format!(".{f}("));
        needles.push(format!(".{f}::<"));
        needles.push(format!("f32::{f}("));
        needles.push(format!("f64::{f}("));
    }
    let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
    let found = uses(&needles, &["math.rs", "nn/portable.rs", "nn/ops.rs"]);
    assert!(
        found.is_empty(),
        "call these through repro_stages::math (or nn::ops for tensors):\n{}",
        found.join("\n")
    );
}

#[test]
fn cpu_dispatch_only_where_every_variant_has_the_same_bits() {
    let found = uses(
        &["is_x86_feature_detected", "target_feature"],
        &["nn/kernels.rs", "nn/optim.rs"],
    );
    assert!(found.is_empty(), "{}", found.join("\n"));
}
