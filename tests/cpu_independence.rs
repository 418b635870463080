//! Same bytes on every CPU: the project's `tiny` profile run natively and through the
//! stage launcher as other CPUs and thread counts must give every member the same output
//! digest.
//!
//! The whole profile (39 members: every stage kind, every training method, the tables)
//! runs natively with 1 and with 3 threads per stage. The other CPUs come from QEMU's
//! user-mode emulator (Debian package `qemu-user`), which runs each stage process as an
//! older x86-64 model: `-cpu Nehalem` has SSE4.2 only (128-bit vectors and no FMA, so the
//! products take their software FMA), `-cpu Haswell` AVX2 and FMA, run when this CPU has
//! AVX-512 so that three vector widths are compared. QEMU emulates floating point in
//! software, about a thousand times slower than the CPU: there the test runs the targets
//! `report_mlc_code` and `distill_soft_labels` (10 members: download, noise, CE and
//! Forward, both MLC loops, soft labels, a clean teacher and its distilled student, a
//! tables stage), which reach every stage kind. Outside CI the emulated runs are skipped
//! when `qemu-x86_64` is missing; with `CI=true` that fails instead (`.ci/run` installs
//! it).

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::project_copy as project;

/// The targets run under the emulator (see the module docs).
const EMULATED_TARGETS: [&str; 2] = ["report_mlc_code", "distill_soft_labels"];

/// Runs `targets` of the `tiny` profile (all when empty) with `launcher` (if any) and
/// returns each member's output digest from the lock.
fn tiny_digests(launcher: Option<&str>, targets: &[&str]) -> BTreeMap<String, String> {
    let (_tmp, dir) = project();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_repro"));
    cmd.current_dir(&dir)
        .args(["run", "--profile", "tiny", "-j", "2"])
        .args(targets)
        .env_remove("REPRO_LAUNCHER");
    if let Some(l) = launcher {
        cmd.env("REPRO_LAUNCHER", l);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "tiny profile with launcher {launcher:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let lock: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("pipeline.lock")).unwrap()).unwrap();
    lock["profiles"]["tiny"]
        .as_object()
        .expect("the lock has the tiny profile")
        .iter()
        .map(|(m, e)| (m.clone(), e["digest"].as_str().unwrap().to_string()))
        .collect()
}

/// Whether `qemu-x86_64` can be started; with `CI=true` its absence is a failure.
fn qemu_available() -> bool {
    let ok = Command::new("qemu-x86_64")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("CI").is_err(),
            "qemu-x86_64 is missing (Debian package qemu-user; .ci/run installs it)"
        );
        eprintln!("skipped: qemu-x86_64 is missing (Debian package qemu-user)");
    }
    ok
}

#[test]
fn tiny_profile_has_the_same_bytes_on_every_cpu_and_thread_count() {
    let mut variants: Vec<(&str, &str, &[&str])> =
        vec![("3 threads", "env RAYON_NUM_THREADS=3", &[])];
    if qemu_available() {
        variants.push(("Nehalem", "qemu-x86_64 -cpu Nehalem", &EMULATED_TARGETS));
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            variants.push(("Haswell", "qemu-x86_64 -cpu Haswell", &EMULATED_TARGETS));
        }
    }
    // Every run on its own thread: the emulated ones take most of the time.
    let (native, results) = std::thread::scope(|s| {
        let handles: Vec<_> = variants
            .iter()
            .map(|&(name, l, t)| s.spawn(move || (name, tiny_digests(Some(l), t))))
            .collect();
        let native = tiny_digests(Some("env RAYON_NUM_THREADS=1"), &[]);
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        (native, results)
    });
    assert_eq!(
        native.len(),
        39,
        "the tiny profile's members: {:?}",
        native.keys()
    );
    for (name, digests) in &results {
        assert!(
            digests.len() >= 10 || *name == "3 threads",
            "{name} ran {digests:?}"
        );
        // Every member the variant ran, against the native run's.
        let diff: Vec<&String> = digests
            .keys()
            .filter(|m| native.get(*m) != digests.get(*m))
            .collect();
        assert!(
            diff.is_empty(),
            "{} of {} members differ between the native 1-thread run and {name}: {diff:?}",
            diff.len(),
            digests.len()
        );
    }
    assert_eq!(results[0].1, native, "3 threads ran other members");
}
