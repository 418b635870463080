//! Generates the lazily bound CUDA entry points of the `cuda` build (part of `build.rs`).
//!
//! cudarc 0.9 declares the driver, NVRTC and cuBLAS functions as plain `extern "C"`
//! symbols and its build script links `libcuda`, `libnvrtc` and `libcublas` directly; a
//! binary linked that way does not even start where the driver is missing (the loader
//! refuses it before `main`). The `cuda` feature turns cudarc's linking off (its
//! `ci-check` feature) and this generator defines every such symbol instead: for each
//! name in `cuda/symbols.txt` a small x86-64 entry point that jumps through a slot, and
//! on its first call fills the slot with the real function, found with `dlopen`/`dlsym`
//! in the library the list names (`src/cuda_shim.rs`). The binary then has no NVIDIA
//! library among its load-time dependencies: it starts on any Linux machine and binds
//! the real driver, NVRTC and cuBLAS the first time it uses them. This plays the part of
//! the toolkit's stub `libcuda.so` (something to link against), without tying the binary
//! to a file that must be present when it is loaded.
//!
//! The entry points of [`WRAPPED`] jump to a Rust function instead (NVRTC's compile call,
//! which gets the include path of a copied binary's headers), and an anchor symbol that
//! `src/cuda_shim.rs` refers to keeps the object with all of them in the link.
//!
//! Output: `$OUT_DIR/cuda_shim.rs` with `LIBS` (each library's sonames, tried in order),
//! `SYMBOLS` (name, library index), `WRAPPED`, `SLOTS` and the entry points' assembly. Only
//! for the `cuda` feature on x86-64 Linux; elsewhere the build falls back to linking the
//! libraries by name, as cudarc would.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

/// Symbols whose entry point jumps to a function of `src/cuda_shim.rs` (which adds to what
/// the real one does) instead of binding the library's: (symbol, Rust function).
const WRAPPED: &[(&str, &str)] = &[("nvrtcCompileProgram", "nvrtc_compile")];

pub fn generate(manifest_dir: &Path) {
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let list_path = manifest_dir.join("cuda").join("symbols.txt");
    println!("cargo:rerun-if-changed={}", list_path.display());
    let list = fs::read_to_string(&list_path).unwrap();
    let mut libs: Vec<Vec<String>> = Vec::new();
    let mut symbols: Vec<(String, usize)> = Vec::new();
    let mut wrapped: Vec<(String, usize)> = Vec::new();
    for line in list.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(names) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            libs.push(names.split_whitespace().map(String::from).collect());
        } else {
            assert!(
                !libs.is_empty(),
                "{}: symbol {line} before any [library] line",
                list_path.display()
            );
            if WRAPPED.iter().any(|(w, _)| *w == line) {
                wrapped.push((line.to_string(), libs.len() - 1));
            } else {
                symbols.push((line.to_string(), libs.len() - 1));
            }
        }
    }
    let target_ok = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("x86_64");
    let mut out = String::new();
    out.push_str("/// Each library's sonames, tried in order.\npub const LIBS: &[&[&str]] = &[\n");
    for sonames in &libs {
        writeln!(out, "    &{sonames:?},").unwrap();
    }
    out.push_str("];\n");
    if !target_ok {
        // no entry points for this target: link the libraries themselves
        for sonames in &libs {
            let stem = sonames[0].trim_start_matches("lib");
            let stem = stem.split(".so").next().unwrap();
            println!("cargo:rustc-link-lib=dylib={stem}");
        }
        symbols.clear();
    }
    out.push_str("/// Every entry point: its name (NUL-terminated) and its library.\n");
    out.push_str("pub const SYMBOLS: &[(&str, usize)] = &[\n");
    for (name, lib) in &symbols {
        writeln!(out, "    (\"{name}\\0\", {lib}),").unwrap();
    }
    out.push_str("];\n/// The wrapped symbols (NUL-terminated) and their libraries.\n");
    out.push_str("pub const WRAPPED: &[(&str, usize)] = &[\n");
    for (name, lib) in &wrapped {
        writeln!(out, "    (\"{name}\\0\", {lib}),").unwrap();
    }
    out.push_str("];\n");
    writeln!(
        out,
        "/// The bound address of each entry point (0 until its first call).\n\
         pub static SLOTS: [std::sync::atomic::AtomicUsize; {n}] =\n    \
         [const {{ std::sync::atomic::AtomicUsize::new(0) }}; {n}];",
        n = symbols.len()
    )
    .unwrap();
    if target_ok {
        write_entry_points(&mut out, &symbols);
    }
    let dest = Path::new(&std::env::var("OUT_DIR").unwrap()).join("cuda_shim.rs");
    fs::write(dest, out).unwrap();
}

/// Appends the assembly of the entry points of `symbols` (in `SLOTS` order) to `out`.
fn write_entry_points(out: &mut String, symbols: &[(String, usize)]) {
    // The anchor: `cuda_shim::preflight` refers to it, so the object holding these entry
    // points is linked in even though the code that calls them (cudarc's) comes later on
    // the linker's command line than this crate.
    // Entry point i: jump through SLOTS[i] when bound, else call the binder with i in r11.
    // The binder saves every argument register (and rax, the vector count of variadic
    // calls) around the call into Rust, then jumps to the bound function with the
    // caller's arguments and return address untouched.
    let mut asm = String::from(
        ".pushsection .text.repro_cuda_shim,\"ax\",@progbits\n\
         .globl repro_cuda_shim_anchor\n.p2align 4\nrepro_cuda_shim_anchor:\n\tret\n",
    );
    let mut operands = String::new();
    for (name, wrapper) in WRAPPED {
        writeln!(
            asm,
            ".globl {name}\n.type {name},@function\n.p2align 4\n{name}:\n\
             \tjmp {{{wrapper}}}\n.size {name}, .-{name}"
        )
        .unwrap();
        writeln!(operands, "    {wrapper} = sym super::{wrapper},").unwrap();
    }
    for (i, (name, _)) in symbols.iter().enumerate() {
        writeln!(
            asm,
            ".globl {name}\n.type {name},@function\n.p2align 4\n{name}:\n\
             \tmovq {{slots}}+{off}(%rip), %r11\n\ttestq %r11, %r11\n\
             \tje .Lrepro_cuda_bind_{i}\n\tjmpq *%r11\n\
             .Lrepro_cuda_bind_{i}:\n\tmovl ${i}, %r11d\n\tjmp .Lrepro_cuda_bind\n\
             .size {name}, .-{name}",
            off = 8 * i
        )
        .unwrap();
    }
    asm.push_str(
        ".p2align 4\n.Lrepro_cuda_bind:\n\
         \tpushq %rbp\n\tmovq %rsp, %rbp\n\
         \tpushq %rdi\n\tpushq %rsi\n\tpushq %rdx\n\tpushq %rcx\n\
         \tpushq %r8\n\tpushq %r9\n\tpushq %rax\n\tpushq %r10\n\
         \tsubq $128, %rsp\n",
    );
    for k in 0..8 {
        writeln!(asm, "\tmovdqu %xmm{k}, {}(%rsp)", 16 * k).unwrap();
    }
    asm.push_str("\tmovq %r11, %rdi\n\tcall {bind}\n\tmovq %rax, %r11\n");
    for k in 0..8 {
        writeln!(asm, "\tmovdqu {}(%rsp), %xmm{k}", 16 * k).unwrap();
    }
    asm.push_str(
        "\taddq $128, %rsp\n\
         \tpopq %r10\n\tpopq %rax\n\tpopq %r9\n\tpopq %r8\n\
         \tpopq %rcx\n\tpopq %rdx\n\tpopq %rsi\n\tpopq %rdi\n\
         \tpopq %rbp\n\tjmpq *%r11\n.popsection\n",
    );
    writeln!(
        out,
        "core::arch::global_asm!(\n    {asm:?},\n    slots = sym SLOTS,\n    \
         bind = sym super::bind,\n{operands}    options(att_syntax)\n);"
    )
    .unwrap();
}
