//! Reader for the binary versions of CIFAR-10 and CIFAR-100 (Krizhevsky 2009), read
//! straight from the `.tar.gz` archive.
//!
//! * `cifar-10-binary.tar.gz` → `cifar-10-batches-bin/`: `data_batch_1.bin` …
//!   `data_batch_5.bin` (train, in that order), `test_batch.bin`, `batches.meta.txt`
//!   (class names, one a line). Records of **3,073 bytes**: label byte, then 3,072 pixel
//!   bytes (1,024 R, 1,024 G, 1,024 B; each 32×32 row-major).
//! * `cifar-100-binary.tar.gz` → `cifar-100-binary/`: `train.bin`, `test.bin`,
//!   `fine_label_names.txt` (100), `coarse_label_names.txt` (20). Records of **3,074
//!   bytes**: coarse label byte, fine label byte, 3,072 pixel bytes. The coarse labels are
//!   kept (`*.coarse`) for hierarchical noise.
//!
//! Members are found by their file name whatever the folder. Output: `Pixels { scale:
//! 1/255, mean, std }` with GLC's per-channel normalisation (mean = (125.3, 123.0,
//! 113.9)/255, std = (63.0, 62.1, 66.7)/255, as in GLC's CIFAR scripts), example shape
//! `[3, 32, 32]`. Identity = SHA-256 of the decompressed tar (hashed while it streams).

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};

use crate::data::dataset::{Dataset, DatasetMeta, Encoding, Features, Split};
use crate::data::raw::{self, HashingReader};

pub const PIXELS: usize = 3 * 32 * 32;
pub const CIFAR10_ARCHIVE: &str = "cifar-10-binary.tar.gz";
pub const CIFAR100_ARCHIVE: &str = "cifar-100-binary.tar.gz";
pub const GLC_MEAN: [f32; 3] = [125.3 / 255.0, 123.0 / 255.0, 113.9 / 255.0];
pub const GLC_STD: [f32; 3] = [63.0 / 255.0, 62.1 / 255.0, 66.7 / 255.0];

/// Which archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    Cifar10,
    Cifar100,
}

impl Variant {
    pub fn name(self) -> &'static str {
        match self {
            Variant::Cifar10 => "cifar10",
            Variant::Cifar100 => "cifar100",
        }
    }
    /// Bytes per record.
    pub fn record(self) -> usize {
        match self {
            Variant::Cifar10 => PIXELS + 1,
            Variant::Cifar100 => PIXELS + 2,
        }
    }
    fn train_members(self) -> &'static [&'static str] {
        match self {
            Variant::Cifar10 => &[
                "data_batch_1.bin",
                "data_batch_2.bin",
                "data_batch_3.bin",
                "data_batch_4.bin",
                "data_batch_5.bin",
            ],
            Variant::Cifar100 => &["train.bin"],
        }
    }
    fn test_member(self) -> &'static str {
        match self {
            Variant::Cifar10 => "test_batch.bin",
            Variant::Cifar100 => "test.bin",
        }
    }
    fn name_members(self) -> &'static [&'static str] {
        match self {
            Variant::Cifar10 => &["batches.meta.txt"],
            Variant::Cifar100 => &["fine_label_names.txt", "coarse_label_names.txt"],
        }
    }
}

/// Parses records of one `.bin` member into `split`. `what` names the member in errors.
pub fn parse_records(v: Variant, bytes: &[u8], what: &str, split: &mut Split) -> Result<()> {
    let rec = v.record();
    ensure!(
        bytes.len() % rec == 0,
        "{what}: {} bytes is not a whole number of {rec}-byte records (truncated or not a {} binary batch)",
        bytes.len(),
        v.name()
    );
    let (kf, kc) = match v {
        Variant::Cifar10 => (10u32, 0u32),
        Variant::Cifar100 => (100, 20),
    };
    let Features::U8(x) = &mut split.x else {
        unreachable!()
    };
    for (i, r) in bytes.chunks_exact(rec).enumerate() {
        let (fine, px) = match v {
            Variant::Cifar10 => (r[0] as u32, &r[1..]),
            Variant::Cifar100 => {
                let c = r[0] as u32;
                ensure!(
                    c < kc,
                    "{what}: record {i}: coarse label {c} outside 0..{kc}"
                );
                split.coarse.get_or_insert_with(Vec::new).push(c);
                (r[1] as u32, &r[2..])
            }
        };
        ensure!(
            fine < kf,
            "{what}: record {i}: label {fine} outside 0..{kf}"
        );
        split.y.push(fine);
        x.extend_from_slice(px);
    }
    Ok(())
}

fn names(text: &[u8], what: &str, k: usize) -> Result<Vec<String>> {
    let s = std::str::from_utf8(text).with_context(|| format!("{what} is not UTF-8"))?;
    let v: Vec<String> = s
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    ensure!(
        v.len() == k,
        "{what}: {} class names, expected {k}",
        v.len()
    );
    Ok(v)
}

/// Reads a decompressed tar stream. The identity is the SHA-256 of all bytes read.
pub fn read_tar(v: Variant, tar_stream: impl Read) -> Result<Dataset> {
    let mut hr = HashingReader::new(tar_stream);
    let mut wanted: Vec<&str> = v.train_members().to_vec();
    wanted.push(v.test_member());
    wanted.extend(v.name_members());
    let mut got: HashMap<String, Vec<u8>> = HashMap::new();
    {
        let mut ar = tar::Archive::new(&mut hr);
        for entry in ar.entries().context("reading the tar archive")? {
            let mut e = entry.context("reading a tar entry (truncated archive?)")?;
            let path = e.path().context("tar entry path")?.into_owned();
            let base = path
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            if wanted.contains(&base.as_str()) {
                let mut b = Vec::with_capacity(e.size() as usize);
                e.read_to_end(&mut b).with_context(|| {
                    format!("reading {} from the archive (truncated?)", path.display())
                })?;
                ensure!(
                    b.len() as u64 == e.size(),
                    "{}: {} bytes in the archive but the header says {}",
                    path.display(),
                    b.len(),
                    e.size()
                );
                got.insert(base, b);
            }
        }
    }
    let identity = hr.finish().context("reading the rest of the tar stream")?;
    let missing: Vec<&&str> = wanted.iter().filter(|w| !got.contains_key(**w)).collect();
    if !missing.is_empty() {
        bail!(
            "the {} archive lacks {:?} (is it the *binary* version?)",
            v.name(),
            missing
        );
    }
    let new_split = || Split {
        x: Features::U8(Vec::new()),
        y: Vec::new(),
        coarse: None,
    };
    let mut train = new_split();
    for m in v.train_members() {
        let b = got.remove(*m).unwrap_or_default();
        parse_records(v, &b, m, &mut train)?;
    }
    let mut test = new_split();
    let b = got.remove(v.test_member()).unwrap_or_default();
    parse_records(v, &b, v.test_member(), &mut test)?;
    let (class_names, num_coarse, notes) = match v {
        Variant::Cifar10 => (
            names(&got["batches.meta.txt"], "batches.meta.txt", 10)?,
            None,
            vec![],
        ),
        Variant::Cifar100 => {
            let coarse = names(&got["coarse_label_names.txt"], "coarse_label_names.txt", 20)?;
            (
                names(&got["fine_label_names.txt"], "fine_label_names.txt", 100)?,
                Some(20),
                vec![format!("coarse classes: {}", coarse.join(", "))],
            )
        }
    };
    let ds = Dataset {
        meta: DatasetMeta {
            name: v.name().into(),
            identity,
            num_classes: class_names.len(),
            class_names,
            num_coarse,
            example_shape: vec![3, 32, 32],
            encoding: Encoding::Pixels {
                scale: 1.0 / 255.0,
                mean: Some(GLC_MEAN.to_vec()),
                std: Some(GLC_STD.to_vec()),
            },
            train_len: train.len(),
            test_len: test.len(),
            notes,
        },
        train,
        test,
        real_noise: None,
    };
    ds.validate()?;
    Ok(ds)
}

/// Reads an archive file (`.tar.gz` or an already decompressed `.tar`).
/// Replaces GLC's per-channel mean and std with 0.5 and 0.5 (inputs in [-1, 1], the
/// released MLC code's normalisation), and says so in the dataset's notes.
pub fn normalize_half(ds: &mut Dataset) {
    ds.meta.encoding = Encoding::Pixels {
        scale: 1.0 / 255.0,
        mean: Some(vec![0.5; 3]),
        std: Some(vec![0.5; 3]),
    };
    ds.meta
        .notes
        .push("normalised with mean 0.5 and std 0.5 per channel (normalization: half)".into());
}

pub fn read_archive_file(v: Variant, path: &Path) -> Result<Dataset> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut magic = [0u8; 2];
    let n = f.read(&mut magic)?;
    drop(f);
    let f = std::fs::File::open(path)?;
    let r = std::io::BufReader::with_capacity(1 << 20, f);
    let res = if raw::is_gzip(&magic[..n]) {
        read_tar(v, flate2::read::MultiGzDecoder::new(r))
    } else {
        read_tar(v, r)
    };
    res.with_context(|| format!("reading {} from {}", v.name(), path.display()))
}
