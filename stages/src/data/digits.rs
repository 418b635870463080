//! Reader for the UCI optical digits CSV (the project's embedded default dataset).
//!
//! Format (the copy scikit-learn ships as `digits.csv.gz`, committed as
//! `data/optdigits/digits.csv.gz`): no header, one example a line, 65 comma-separated
//! integers: 64 pixel counts `0..=16` of an 8×8 image (row-major), then the label `0..=9`.
//! The file holds 1,797 examples (UCI `optdigits.tes`).
//!
//! The data has no official train/test split here, so the reader makes a fixed seeded
//! stratified one ([`crate::data::split`]): `test_size` examples (default 500) keep the
//! class proportions; the rest (1,297) is train. Both splits keep file order.
//!
//! Output: `Pixels { scale: 1/16 }`, example shape `[1, 8, 8]`, identity = SHA-256 of the
//! raw CSV ([`RAW_SHA256`] for the committed file).

use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::data::dataset::{Dataset, DatasetMeta, Encoding, Features, Split};
use crate::data::raw;
use crate::data::split;

/// SHA-256 of the decompressed `data/optdigits/digits.csv.gz`.
pub const RAW_SHA256: &str = "6ebb3d2fee246a4e99363262ddf8a00a3c41bee6014c373ed9d9216ba7f651b8";
/// Default size of the test split.
pub const DEFAULT_TEST_SIZE: usize = 500;
/// Rows in the full file.
pub const ROWS: usize = 1797;

/// Parses the raw (decompressed) CSV and splits it: `test_size` examples, stratified by
/// class and drawn with `ChaCha8Rng::seed_from_u64(split_seed)`, form the test split.
pub fn read(raw_csv: &[u8], test_size: usize, split_seed: u64) -> Result<Dataset> {
    let text = std::str::from_utf8(raw_csv).context("digits CSV is not UTF-8")?;
    let mut pixels: Vec<u8> = Vec::with_capacity(ROWS * 64);
    let mut labels: Vec<u32> = Vec::with_capacity(ROWS);
    for (ln, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').collect();
        ensure!(
            fields.len() == 65,
            "digits CSV line {}: {} fields, expected 65 (64 pixels + label)",
            ln + 1,
            fields.len()
        );
        for (j, f) in fields.iter().enumerate() {
            let v: f64 = f.trim().parse().with_context(|| {
                format!(
                    "digits CSV line {}, field {}: `{f}` is not a number",
                    ln + 1,
                    j + 1
                )
            })?;
            ensure!(
                v.fract() == 0.0,
                "digits CSV line {}, field {}: `{f}` is not an integer",
                ln + 1,
                j + 1
            );
            if j < 64 {
                ensure!(
                    (0.0..=16.0).contains(&v),
                    "digits CSV line {}, pixel {}: {v} outside 0..=16",
                    ln + 1,
                    j + 1
                );
                pixels.push(v as u8);
            } else {
                ensure!(
                    (0.0..=9.0).contains(&v),
                    "digits CSV line {}: label {v} outside 0..=9",
                    ln + 1
                );
                labels.push(v as u32);
            }
        }
    }
    let n = labels.len();
    if n == 0 {
        bail!("digits CSV holds no rows");
    }
    ensure!(
        test_size < n,
        "test_size {test_size} must be smaller than the {n} rows"
    );
    let counts = split::class_counts(&labels, 10);
    let take = split::proportional_counts(&counts, test_size);
    let mut rng = ChaCha8Rng::seed_from_u64(split_seed);
    let test_idx = split::stratified_pick(&labels, &take, &mut rng)?;
    let train_idx = split::complement(&test_idx, n);
    let subset = |idx: &[usize]| Split {
        x: Features::U8(
            idx.iter()
                .flat_map(|&i| pixels[i * 64..(i + 1) * 64].iter().copied())
                .collect(),
        ),
        y: idx.iter().map(|&i| labels[i]).collect(),
        coarse: None,
    };
    let mut notes = vec![format!(
        "UCI optdigits test partition (Alpaydin & Kaynak 1998, CC BY 4.0); seeded stratified split: {} train / {} test, split_seed {split_seed}",
        n - test_size,
        test_size
    )];
    if n != ROWS {
        notes.push(format!("{n} rows instead of the {ROWS} of the UCI file"));
    }
    let ds = Dataset {
        meta: DatasetMeta {
            name: "digits".into(),
            identity: raw::sha256_hex(raw_csv),
            num_classes: 10,
            class_names: (0..10).map(|d| d.to_string()).collect(),
            num_coarse: None,
            example_shape: vec![1, 8, 8],
            encoding: Encoding::Pixels {
                scale: 1.0 / 16.0,
                mean: None,
                std: None,
            },
            train_len: train_idx.len(),
            test_len: test_idx.len(),
            notes,
        },
        train: subset(&train_idx),
        test: subset(&test_idx),
        real_noise: None,
    };
    ds.validate()?;
    Ok(ds)
}

/// Reads `path` (gzip or plain CSV) with [`read`].
pub fn read_file(path: &Path, test_size: usize, split_seed: u64) -> Result<Dataset> {
    let raw = raw::read_raw_file(path)?;
    read(&raw, test_size, split_seed)
        .with_context(|| format!("reading digits from {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(label: u32, fill: u8) -> String {
        let mut f: Vec<String> = (0..64).map(|_| fill.to_string()).collect();
        f.push(label.to_string());
        f.join(",") + "\n"
    }

    #[test]
    fn small_csv_splits_stratified() {
        let mut csv = String::new();
        for i in 0..40u32 {
            csv += &row(i % 10, (i % 17) as u8);
        }
        let ds = read(csv.as_bytes(), 10, 0).unwrap();
        assert_eq!(ds.meta.train_len, 30);
        assert_eq!(ds.meta.test_len, 10);
        assert_eq!(split::class_counts(&ds.test.y, 10), vec![1; 10]);
        assert_eq!(ds.meta.identity, raw::sha256_hex(csv.as_bytes()));
        assert_eq!(read(csv.as_bytes(), 10, 0).unwrap(), ds);
        assert_ne!(read(csv.as_bytes(), 10, 1).unwrap().test.x, ds.test.x);
    }

    #[test]
    fn bad_rows_are_named() {
        let bad = "1,2,3\n";
        let e = read(bad.as_bytes(), 0, 0).unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("3 fields"), "{e}");
        let mut r = row(3, 1);
        r = r.replacen("1,", "17,", 1);
        let e = read(r.as_bytes(), 0, 0).unwrap_err().to_string();
        assert!(e.contains("outside 0..=16"), "{e}");
    }
}
