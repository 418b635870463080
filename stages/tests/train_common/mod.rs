//! Fixtures shared by the training tests: the committed digits data as a `Dataset`, GLC's
//! corruptions (uniform_mix, flip) with a trusted subset, and a `StageContext`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use repro_stages::data::dataset::{Dataset, DatasetMeta, Encoding, Features, Split};
use repro_stages::noise::{Matrix, NoiseMeta, NoisyLabels};
use repro_stages::{InputRef, Progress, StageContext};

/// `data/optdigits/digits.csv.gz` (1,797 rows: 64 values 0..16, then the label); every
/// fifth row (i % 5 == 4) goes to the test split.
pub fn digits() -> Dataset {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/optdigits/digits.csv.gz");
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&path).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    let (mut tr, mut te) = ((vec![], vec![]), (vec![], vec![]));
    for (i, line) in text.lines().enumerate() {
        let v: Vec<u8> = line.split(',').map(|s| s.trim().parse().unwrap()).collect();
        assert_eq!(v.len(), 65);
        let dst = if i % 5 == 4 { &mut te } else { &mut tr };
        dst.0.extend_from_slice(&v[..64]);
        dst.1.push(v[64] as u32);
    }
    let (train_len, test_len) = (tr.1.len(), te.1.len());
    let ds = Dataset {
        meta: DatasetMeta {
            name: "digits".into(),
            identity: "test-fixture".into(),
            num_classes: 10,
            class_names: (0..10).map(|c| c.to_string()).collect(),
            num_coarse: None,
            example_shape: vec![1, 8, 8],
            encoding: Encoding::Pixels {
                scale: 1.0 / 16.0,
                mean: None,
                std: None,
            },
            train_len,
            test_len,
            notes: vec![],
        },
        train: Split {
            x: Features::U8(tr.0),
            y: tr.1,
            coarse: None,
        },
        test: Split {
            x: Features::U8(te.0),
            y: te.1,
            coarse: None,
        },
        real_noise: None,
    };
    ds.validate().unwrap();
    ds
}

/// GLC's corruption matrices: `uniform` = p/K·11ᵀ + (1−p)·I; `flip` = (1−p) on the
/// diagonal and p on one random other class per row.
pub fn corruption(kind: &str, p: f64, k: usize, rng: &mut ChaCha8Rng) -> Matrix {
    let mut c = Matrix::zeros(k);
    match kind {
        "uniform" => {
            for i in 0..k {
                for j in 0..k {
                    c.set(i, j, p / k as f64 + if i == j { 1.0 - p } else { 0.0 });
                }
            }
        }
        "flip" => {
            for i in 0..k {
                let mut j = rng.random_range(0..k - 1);
                if j >= i {
                    j += 1;
                }
                c.set(i, i, 1.0 - p);
                c.set(i, j, c.at(i, j) + p);
            }
        }
        other => panic!("unknown corruption {other}"),
    }
    c
}

/// Trusted subset = first ⌊frac·N⌋ of a seeded permutation; the rest resampled from C.
pub fn noisy(ds: &Dataset, kind: &str, strength: f64, frac: f64, seed: u64) -> NoisyLabels {
    let k = ds.meta.num_classes;
    let n = ds.train.len();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let c = corruption(kind, strength, k, &mut rng);
    let mut perm: Vec<u32> = (0..n as u32).collect();
    perm.shuffle(&mut rng);
    let m = (frac * n as f64).floor() as usize;
    let mut trusted: Vec<u32> = perm[..m].to_vec();
    trusted.sort();
    let mut is_t = vec![false; n];
    trusted.iter().for_each(|&i| is_t[i as usize] = true);
    let clean = ds.train.y.clone();
    let mut noisy = clean.clone();
    let mut realized = Matrix::zeros(k);
    let mut flipped = 0usize;
    for i in 0..n {
        if is_t[i] {
            continue;
        }
        let y = clean[i] as usize;
        let u: f64 = rng.random();
        let mut acc = 0.0;
        let mut z = k - 1;
        for j in 0..k {
            acc += c.at(y, j);
            if u < acc {
                z = j;
                break;
            }
        }
        noisy[i] = z as u32;
        realized.data[y * k + z] += 1.0;
        flipped += usize::from(z != y);
    }
    for i in 0..k {
        let s: f64 = realized.row(i).iter().sum();
        if s > 0.0 {
            for j in 0..k {
                realized.data[i * k + j] /= s;
            }
        }
    }
    NoisyLabels {
        meta: NoiseMeta {
            corruption: kind.into(),
            strength,
            trusted_fraction: frac,
            seed,
            num_classes: k,
            actual_noise_rate: flipped as f64 / (n - m).max(1) as f64,
            num_trusted: m,
            num_untrusted: n - m,
            dataset: ds.meta.name.clone(),
            dataset_identity: ds.meta.identity.clone(),
            trusted_split: Default::default(),
        },
        noisy,
        clean,
        trusted,
        true_c: c,
        realized_c: realized,
    }
}

/// A progress sink that raises `stop` once `position` reaches `stop_at` (0 = never).
pub struct StopAt<'a> {
    pub stop: &'a AtomicBool,
    pub stop_at: AtomicU64,
    pub last: AtomicU64,
}
impl Progress for StopAt<'_> {
    fn phase(&self, _: &str, _: &str, _: u64) {}
    fn position(&self, done: u64) {
        self.last.store(done, Ordering::Relaxed);
        let at = self.stop_at.load(Ordering::Relaxed);
        if at != 0 && done >= at {
            self.stop.store(true, Ordering::Relaxed);
        }
    }
    fn message(&self, _: &str) {}
}

pub fn context<'a>(
    dir: &Path,
    seed: u64,
    progress: &'a dyn Progress,
    stop: &'a AtomicBool,
) -> StageContext<'a> {
    let out = dir.join("out");
    let ckpt = dir.join("ckpt");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::create_dir_all(&ckpt).unwrap();
    StageContext {
        member: "train[test]".into(),
        profile: "test".into(),
        seed,
        coords: BTreeMap::new(),
        inputs: BTreeMap::new(),
        out_dir: out,
        checkpoint_dir: ckpt,
        project_dir: dir.to_path_buf(),
        download_dir: dir.join("dl"),
        threads: 1,
        progress,
        stop,
    }
}

/// A progress sink that raises `stop` once `after` batches have run in this invocation
/// (positions reported, whatever the phase), so the loop stops before the next batch.
pub struct StopAfter<'a> {
    pub stop: &'a AtomicBool,
    pub after: u64,
    pub seen: AtomicU64,
}
impl Progress for StopAfter<'_> {
    fn phase(&self, _: &str, _: &str, _: u64) {}
    fn position(&self, _: u64) {
        let n = self.seen.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= self.after {
            self.stop.store(true, Ordering::Relaxed);
        }
    }
    fn message(&self, _: &str) {}
}

/// Every file under `dir` (relative path, bytes), sorted, except `log/timings.json`
/// (wall-clock seconds).
pub fn output_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(root: &Path, d: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                if rel != "log/timings.json" {
                    out.push((rel, std::fs::read(&p).unwrap()));
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The inputs of a `distill` stage under `dir`: `data` (the dataset saved) and `teacher`
/// (one epoch of CE on the clean labels, seed 9).
pub fn distill_inputs(dir: &Path, ds: &Dataset) -> BTreeMap<String, Vec<InputRef>> {
    use repro_stages::kinds::train::{train, Params};
    let data_dir = dir.join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    ds.save(&data_dir).unwrap();
    let teacher_dir = dir.join("teacher");
    std::fs::create_dir_all(&teacher_dir).unwrap();
    let stop = AtomicBool::new(false);
    let ctx = context(&teacher_dir, 9, &repro_stages::NoProgress, &stop);
    let p: Params =
        serde_json::from_value(serde_json::json!({"method": "ce", "epochs": 1})).unwrap();
    train(&p, &ctx, ds, None)
        .unwrap()
        .save(&ctx.out_dir)
        .unwrap();
    let input = |name: &str, dir: std::path::PathBuf| {
        (
            name.to_string(),
            vec![InputRef {
                dir,
                member: name.into(),
                coords: BTreeMap::new(),
            }],
        )
    };
    [
        input("data", data_dir),
        input("teacher", teacher_dir.join("out")),
    ]
    .into_iter()
    .collect()
}
