//! Reader for the IDX format of MNIST and Fashion-MNIST (LeCun & Cortes; Xiao et al. 2017).
//!
//! Every header integer is a big-endian u32.
//! * Images: magic `0x00000803` (2051), count, rows, cols, then `count × rows × cols` u8
//!   pixels, row-major.
//! * Labels: magic `0x00000801` (2049), count, then `count` u8 labels.
//!
//! The four files (`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
//! `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`, raw = decompressed) become one
//! [`Dataset`]: `Pixels { scale: 1/255 }`, example shape `[1, rows, cols]`, identity over
//! the four raw digests in that order ([`crate::data::raw::identity`]).

use anyhow::{bail, ensure, Context, Result};

use crate::data::dataset::{Dataset, DatasetMeta, Encoding, Features, Split};
use crate::data::raw;

pub const IMAGES_MAGIC: u32 = 2051;
pub const LABELS_MAGIC: u32 = 2049;

/// The file names in the fixed order the identity uses (gzip names as published).
pub const FILES: [&str; 4] = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
];

pub const MNIST_CLASSES: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
pub const FASHION_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

fn be_u32(b: &[u8], at: usize, what: &str) -> Result<u32> {
    match b.get(at..at + 4) {
        Some(s) => Ok(u32::from_be_bytes(s.try_into().unwrap())),
        None => bail!(
            "{what}: truncated header ({} bytes, the IDX header needs {})",
            b.len(),
            at + 4
        ),
    }
}

/// Refuses a file whose magic number is not `want.0` (an IDX `want.1` file), saying so
/// when it is `other.0` (`other.1` file) instead.
fn check_magic(raw: &[u8], what: &str, want: (u32, &str), other: (u32, &str)) -> Result<()> {
    let magic = be_u32(raw, 0, what)?;
    let (want, kind) = want;
    ensure!(
        magic == want,
        "{what}: wrong magic {magic:#010x}, an IDX {kind} file starts with {want:#010x}{}",
        if magic == other.0 {
            format!(" (this is {} file)", other.1)
        } else {
            String::new()
        }
    );
    Ok(())
}

/// An IDX image file: `(count, rows, cols, pixels)`. `what` names the file in errors.
pub fn read_images(raw: &[u8], what: &str) -> Result<(usize, usize, usize, Vec<u8>)> {
    check_magic(
        raw,
        what,
        (IMAGES_MAGIC, "image"),
        (LABELS_MAGIC, "a label"),
    )?;
    let n = be_u32(raw, 4, what)? as usize;
    let rows = be_u32(raw, 8, what)? as usize;
    let cols = be_u32(raw, 12, what)? as usize;
    let need = 16 + n * rows * cols;
    ensure!(raw.len() >= need, "{what}: truncated: {} bytes, the header announces {n} images of {rows}x{cols} = {need} bytes", raw.len());
    ensure!(
        raw.len() == need,
        "{what}: {} trailing bytes after {n} images",
        raw.len() - need
    );
    Ok((n, rows, cols, raw[16..].to_vec()))
}

/// An IDX label file.
pub fn read_labels(raw: &[u8], what: &str) -> Result<Vec<u32>> {
    check_magic(
        raw,
        what,
        (LABELS_MAGIC, "label"),
        (IMAGES_MAGIC, "an image"),
    )?;
    let n = be_u32(raw, 4, what)? as usize;
    ensure!(
        raw.len() >= 8 + n,
        "{what}: truncated: {} bytes, the header announces {n} labels = {} bytes",
        raw.len(),
        8 + n
    );
    ensure!(
        raw.len() == 8 + n,
        "{what}: {} trailing bytes after {n} labels",
        raw.len() - 8 - n
    );
    Ok(raw[8..].iter().map(|&b| b as u32).collect())
}

/// Builds the dataset `name` (`mnist` or `fashion_mnist`) from the four raw IDX files in
/// the order of [`FILES`].
pub fn read(name: &str, raw_files: [&[u8]; 4]) -> Result<Dataset> {
    let class_names: Vec<String> = match name {
        "mnist" => MNIST_CLASSES.iter().map(|s| s.to_string()).collect(),
        "fashion_mnist" => FASHION_CLASSES.iter().map(|s| s.to_string()).collect(),
        other => bail!("the IDX reader knows mnist and fashion_mnist, not `{other}`"),
    };
    let split = |img: &[u8], lab: &[u8], fi: usize| -> Result<(Split, usize, usize)> {
        let (n, r, c, px) = read_images(img, FILES[fi])?;
        let y = read_labels(lab, FILES[fi + 1])?;
        ensure!(
            y.len() == n,
            "{} holds {n} images but {} holds {} labels",
            FILES[fi],
            FILES[fi + 1],
            y.len()
        );
        if let Some(bad) = y.iter().find(|&&v| v > 9) {
            bail!("{}: label {bad} outside 0..=9", FILES[fi + 1]);
        }
        Ok((
            Split {
                x: Features::U8(px),
                y,
                coarse: None,
            },
            r,
            c,
        ))
    };
    let (train, r, c) = split(raw_files[0], raw_files[1], 0)?;
    let (test, r2, c2) = split(raw_files[2], raw_files[3], 2)?;
    ensure!(
        (r, c) == (r2, c2),
        "train images are {r}x{c} but test images are {r2}x{c2}"
    );
    let digests: Vec<String> = raw_files.iter().map(|b| raw::sha256_hex(b)).collect();
    let named: Vec<(&str, &str)> = FILES
        .iter()
        .zip(&digests)
        .map(|(n, d)| (*n, d.as_str()))
        .collect();
    let ds = Dataset {
        meta: DatasetMeta {
            name: name.into(),
            identity: raw::identity(&named),
            num_classes: 10,
            class_names,
            num_coarse: None,
            example_shape: vec![1, r, c],
            encoding: Encoding::Pixels {
                scale: 1.0 / 255.0,
                mean: None,
                std: None,
            },
            train_len: train.len(),
            test_len: test.len(),
            notes: vec![],
        },
        train,
        test,
        real_noise: None,
    };
    ds.validate().context("IDX dataset")?;
    Ok(ds)
}
