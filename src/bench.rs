//! `repro bench` (hidden): the engine's overheads, measured on generated probe pipelines.
//!
//! - **No-op run**: a pipeline shaped like the default grid (1 dataset, 66 noisy sets =
//!   2 corruptions x 11 strengths x 3 seeds, 594 trainings = x 9 methods, 1 table: 662
//!   members) is run once, then `repro run` is timed as a subprocess while everything is
//!   fresh (wall time, median of the rounds). The first run gives the per-stage overhead
//!   (process start, staging, hashing, commit) with trivial stages.
//! - **Planning**: parse + expand + plan a pipeline of N matrix members against an empty
//!   store, in process.
//! - **Hashing**: SHA-256 of a file through the store's reader, warm page cache.
//!
//! Targets: no-op <= 0.5 s, planning 10,000 members <= 1 s, hashing >= 500 MB/s.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use sha2::Digest;

use crate::lock::LockFile;
use crate::pipeline::Pipeline;
use crate::plan;
use crate::project::{FsWorld, Project};
use crate::spec::Spec;
use crate::store::hash_file;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn list(n: usize, f: impl Fn(usize) -> String) -> String {
    (0..n).map(f).collect::<Vec<_>>().join(", ")
}

/// A probe pipeline with `strengths` strengths, `methods` methods and `seeds` seeds.
pub fn grid_yaml(strengths: usize, methods: usize, seeds: usize) -> String {
    let s = list(strengths, |i| format!("{:.1}", i as f64 / 10.0));
    let m = list(methods, |i| format!("m{i}"));
    let sd = list(seeds, |i| format!("{}", i + 1));
    format!(
        "stages:\n  data:\n    kind: probe\n    params: {{ value: data }}\n  noisy:\n    kind: probe\n    inputs: {{ data: data }}\n    \
         matrix: {{ x_corruption: [uniform, flip], x_strength: [{s}], seed: [{sd}] }}\n  train:\n    kind: probe\n    \
         inputs: {{ data: data, noise: noisy }}\n    matrix: {{ x_corruption: [uniform, flip], x_strength: [{s}], x_method: [{m}], seed: [{sd}] }}\n  \
         table:\n    kind: probe\n    inputs: {{ runs: \"train[*]\" }}\n    publish: results/tables\n"
    )
}

pub fn run(noop_members: usize, plan_members: usize, hash_mb: usize, rounds: usize) -> Result<()> {
    let rounds = rounds.max(1);
    let tmp = std::env::temp_dir().join(format!("repro-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let result = (|| -> Result<()> {
        hashing(&tmp, hash_mb, rounds)?;
        planning(&tmp, plan_members, rounds)?;
        noop(&tmp, noop_members, rounds)?;
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

fn hashing(tmp: &Path, mb: usize, rounds: usize) -> Result<()> {
    let path = tmp.join("blob");
    let mut data = vec![0u8; mb << 20];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    std::fs::write(&path, &data)?;
    let mut mem = Vec::new();
    for _ in 0..rounds {
        let c = thread_cpu_secs();
        std::hint::black_box(sha2::Sha256::digest(&data));
        mem.push(mb as f64 / (thread_cpu_secs() - c));
    }
    println!(
        "sha256 in memory: {:.0} MB per CPU-second (median of {rounds})",
        median(mem)
    );
    drop(data);
    hash_file(&path)?; // warm the page cache
    let mut rates = Vec::new();
    let mut cpu_rates = Vec::new();
    for _ in 0..rounds {
        let (t, c) = (Instant::now(), thread_cpu_secs());
        hash_file(&path)?;
        rates.push(mb as f64 / t.elapsed().as_secs_f64());
        cpu_rates.push(mb as f64 / (thread_cpu_secs() - c));
    }
    std::fs::remove_file(&path)?;
    println!(
        "hashing: {:.0} MB/s wall, {:.0} MB per CPU-second (median of {rounds}, {mb} MB file, \
         one thread; target >= 500)",
        median(rates),
        median(cpu_rates)
    );
    Ok(())
}

/// CPU time of the calling thread (leaves out time the machine gave to other processes).
fn thread_cpu_secs() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// A store in which every fingerprint is present and the lock is empty: every member is
/// decided (its key built and hashed), none is pending.
struct AllStored;

impl plan::World for AllStored {
    fn stored(&self, _: &str) -> plan::Stored {
        plan::Stored::Present {
            digest: "0".repeat(64),
        }
    }
    fn lock_entry(&self, _: &str) -> Option<crate::lock::LockEntry> {
        None
    }
    fn published_ok(&self, _: &str, _: &str) -> bool {
        true
    }
    fn lock_agrees(&self, _: &str, _: &crate::lock::LockEntry, _: Option<&str>) -> bool {
        true
    }
    fn stored_key(&self, _: &str) -> Option<crate::fingerprint::Key> {
        None
    }
}

fn planning(tmp: &Path, members: usize, rounds: usize) -> Result<()> {
    // 2 corruptions x 10 strengths x M methods x 5 seeds ~= members.
    let methods = (members / 100).max(1);
    let text = grid_yaml(10, methods, 5);
    let dir = tmp.join("plan");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("pipeline.yaml"), &text)?;
    let project = Project::find(Some(&dir), None)?;
    let lock = LockFile::default();
    let (mut empty, mut decided) = (Vec::new(), Vec::new());
    let mut n = 0;
    for _ in 0..rounds {
        let world = FsWorld::new(&project, &lock, "default");
        for (times, w) in [
            (&mut empty, &world as &dyn plan::World),
            (&mut decided, &AllStored),
        ] {
            let t = Instant::now();
            let spec = Spec::parse(&text, &project.file)?;
            let p = Pipeline::build(&spec, &text, &project.file, "default")?;
            let all = vec![true; p.members.len()];
            let no = vec![false; p.members.len()];
            let entries = plan::plan(&p, &all, &no, &plan::identities(), w);
            times.push(t.elapsed().as_secs_f64());
            n = entries.len();
        }
    }
    println!(
        "planning: {n} members: {:.3} s with every key built and hashed, {:.3} s against an empty \
         store (parse + expand + plan, median of {rounds}; target <= 1 s)",
        median(decided),
        median(empty)
    );
    Ok(())
}

fn noop(tmp: &Path, members: usize, rounds: usize) -> Result<()> {
    // 1 + 2*11*3 + 2*11*M*3 + 1 members.
    let methods = ((members.saturating_sub(68)) / 66).max(1);
    let dir = tmp.join("noop");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("pipeline.yaml"), grid_yaml(11, methods, 3))?;
    let exe = std::env::current_exe()?;
    let repro = |args: &[&str]| -> Result<f64> {
        let t = Instant::now();
        let out = Command::new(&exe)
            .arg("-C")
            .arg(&dir)
            .args(args)
            .output()
            .context("running repro")?;
        let secs = t.elapsed().as_secs_f64();
        if !out.status.success() {
            bail!(
                "repro {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(secs)
    };
    let first = repro(&["run", "-q"])?;
    let n = 2 + 66 + 66 * methods;
    let mut times = Vec::new();
    for _ in 0..rounds {
        times.push(repro(&["run", "-q"])?);
    }
    let mut status = Vec::new();
    for _ in 0..rounds {
        status.push(repro(&["status", "-q"])?);
    }
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!(
        "first run: {first:.2} s for {n} trivial stages on {cores} cores ({:.1} ms per stage per core)",
        first * 1000.0 * cores as f64 / n as f64
    );
    println!(
        "no-op run: {:.3} s wall for {n} fresh members (median of {rounds}; target <= 0.5 s)",
        median(times)
    );
    println!(
        "status:    {:.3} s wall (median of {rounds})",
        median(status)
    );
    Ok(())
}
