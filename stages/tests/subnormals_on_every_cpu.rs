#![cfg(target_arch = "x86_64")]
//! Products whose terms fall below the smallest normal number have the same bits on an
//! older CPU: this test runs itself again under QEMU's user-mode emulator as an
//! SSE4.2-only CPU without FMA (`qemu-x86_64 -cpu Nehalem`), where the product takes the
//! baseline kernel and the software fused multiply-add, and compares the digests.
//!
//! Without the emulator the comparison is skipped (CI installs it and sets `CI=true`,
//! which turns the skip into a failure).

use std::process::Command;

use repro_stages::nn::float_env;
use repro_stages::nn::kernels::{matmul, Operand, Par};
use sha2::{Digest, Sha256};

/// The child's marker for the digest line in its output.
const MARK: &str = "flushed-products-digest ";

/// SHA-256 of products of operands of magnitude 2⁻⁷⁰ … 2⁻⁵⁶ (their terms 2⁻¹⁴⁰ … 2⁻¹¹²,
/// about half of them below 2⁻¹²⁶), computed in the stages' floating-point environment on
/// a thread of its own, for shapes that meet every block edge.
fn flushed_products_digest() -> String {
    std::thread::spawn(|| {
        float_env::enter();
        // A fixed-point generator keeps the operands the same on every CPU.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut draw = |len: usize| -> Vec<f32> {
            (0..len)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let bits = (state >> 33) as u32;
                    let mant = (bits & 0xFFFF) as f32 / 65536.0 - 0.5;
                    let exp = -70 + (bits >> 16) as i32 % 15;
                    mant * 2f32.powi(exp)
                })
                .collect()
        };
        let mut hash = Sha256::new();
        for (m, n, k) in [
            (1, 1, 1),
            (3, 5, 2),
            (9, 33, 17),
            (13, 40, 300),
            (32, 10, 128),
        ] {
            let (a, b) = (draw(m * k), draw(k * n));
            for (ta, tb) in [(false, false), (true, false), (false, true)] {
                let ao = if ta {
                    Operand::t(&a, k, m)
                } else {
                    Operand::n(&a, m, k)
                };
                let bo = if tb {
                    Operand::t(&b, n, k)
                } else {
                    Operand::n(&b, k, n)
                };
                let mut c = vec![0.0f32; m * n];
                matmul(ao, bo, &mut c, false, Par::Seq);
                for v in &c {
                    hash.update(v.to_bits().to_le_bytes());
                }
            }
        }
        hex::encode(hash.finalize())
    })
    .join()
    .unwrap()
}

/// Run by the parent under the emulator: prints the digest.
#[test]
#[ignore = "run by flushed_products_agree_with_an_older_cpu under QEMU"]
fn print_flushed_products_digest() {
    println!("{MARK}{}", flushed_products_digest());
}

#[test]
fn flushed_products_agree_with_an_older_cpu() {
    let here = flushed_products_digest();
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("qemu-x86_64")
        .args(["-cpu", "Nehalem"])
        .arg(&exe)
        .args([
            "--exact",
            "print_flushed_products_digest",
            "--ignored",
            "--nocapture",
        ])
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("skipped: qemu-x86_64 not runnable ({e}); install qemu-user");
            return;
        }
        Err(e) => panic!("qemu-x86_64 not runnable in CI: {e}"),
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the emulated run failed: {}\n{}",
        text,
        String::from_utf8_lossy(&out.stderr)
    );
    let there = text
        .lines()
        .find_map(|l| l.strip_prefix(MARK))
        .unwrap_or_else(|| panic!("no digest in the emulated run's output:\n{text}"));
    assert_eq!(
        here, there,
        "flushed products differ between this CPU and an emulated Nehalem"
    );
}
