//! Clothing1M (Xiao et al., CVPR 2015): a hand-placed copy only. It is obtainable only by
//! request from its authors and its terms forbid redistribution, so nothing here downloads
//! it and nothing ships it.
//!
//! Layout (datasets.md §2): under `root`, or under `root/annotations/`, the text files
//! `category_names_eng.txt` (14 lines), `noisy_label_kv.txt` / `clean_label_kv.txt`
//! (`<key> <label>` per line), `noisy_train_key_list.txt`, `clean_train_key_list.txt`,
//! `clean_val_key_list.txt`, `clean_test_key_list.txt` (one key per line); images under
//! `root/images/0..9/`. Keys normally start with `images/`; a key without that prefix is
//! resolved under `root/images/`.
//!
//! What this reader does: checks that the files exist and that their line counts equal
//! the official release's ([`OFFICIAL_LINES`]), parses keys and labels of every subset and
//! checks that each listed key has a label and that the image files exist. It does **not**
//! decode the JPEGs: [`Index::load_pixels`] returns an error saying so (the project ships
//! no JPEG decoder; Clothing1M's ResNet-50 training at 224×224 is out of reach on CPU).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};

pub const CLASSES: [&str; 14] = [
    "T-shirt",
    "Shirt",
    "Knitwear",
    "Chiffon",
    "Sweater",
    "Hoodie",
    "Windbreaker",
    "Jacket",
    "Down Coat",
    "Suit",
    "Shawl",
    "Dress",
    "Vest",
    "Underwear",
];

/// The text files and their line counts in the official release.
pub const OFFICIAL_LINES: [(&str, usize); 7] = [
    ("category_names_eng.txt", 14),
    ("noisy_label_kv.txt", 1_037_497),
    ("clean_label_kv.txt", 72_409),
    ("noisy_train_key_list.txt", 1_000_000),
    ("clean_train_key_list.txt", 47_570),
    ("clean_val_key_list.txt", 14_313),
    ("clean_test_key_list.txt", 10_526),
];

pub const HOW_TO_OBTAIN: &str = "Clothing1M cannot be downloaded automatically: ask its authors for access (see https://github.com/Cysu/noisy_label: \
contact Tong Xiao), extract the annotation archive and the image tars images/0..9 into one folder, and give that folder as the `root` param";

/// One subset: image paths and labels.
#[derive(Clone, Debug, PartialEq)]
pub struct Subset {
    pub keys: Vec<String>,
    pub paths: Vec<PathBuf>,
    pub labels: Vec<u32>,
}

/// The parsed key lists of a Clothing1M root.
#[derive(Clone, Debug, PartialEq)]
pub struct Index {
    pub root: PathBuf,
    /// Where the text files are (`root` or `root/annotations`).
    pub annotations: PathBuf,
    /// Noisy train: `noisy_train_key_list.txt` with labels from `noisy_label_kv.txt`.
    pub noisy_train: Subset,
    /// Clean subsets with labels from `clean_label_kv.txt`.
    pub clean_train: Subset,
    pub clean_val: Subset,
    pub clean_test: Subset,
}

fn read_lines(p: &Path) -> Result<Vec<String>> {
    let s = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    Ok(s.lines()
        .map(|l| l.trim_end_matches('\r').to_string())
        .filter(|l| !l.trim().is_empty())
        .collect())
}

/// Resolves an image key against `root`.
pub fn image_path(root: &Path, key: &str) -> PathBuf {
    if key.starts_with("images/") {
        root.join(key)
    } else {
        root.join("images").join(key)
    }
}

impl Index {
    /// Opens `root` and checks it against `expected` line counts (pass
    /// [`OFFICIAL_LINES`] for the real data). `check_images` also stats every image file.
    pub fn open(root: &Path, expected: &[(&str, usize)], check_images: bool) -> Result<Index> {
        ensure!(
            root.is_dir(),
            "Clothing1M root {} is not a directory. {HOW_TO_OBTAIN}",
            root.display()
        );
        let ann = if root.join("noisy_label_kv.txt").is_file() {
            root.to_path_buf()
        } else {
            root.join("annotations")
        };
        let mut lines: HashMap<&str, Vec<String>> = HashMap::new();
        for (name, _) in OFFICIAL_LINES {
            let p = ann.join(name);
            ensure!(
                p.is_file(),
                "Clothing1M: {} is missing (looked in {} and {}/annotations). {HOW_TO_OBTAIN}",
                name,
                root.display(),
                root.display()
            );
            lines.insert(name, read_lines(&p)?);
        }
        for (name, n) in expected {
            let got = lines.get(name).map(|v| v.len()).unwrap_or(0);
            ensure!(
                got == *n,
                "Clothing1M: {} has {got} lines, the official release has {n} (incomplete copy?)",
                ann.join(name).display()
            );
        }
        let kv = |name: &str| -> Result<HashMap<String, u32>> {
            let mut m = HashMap::new();
            for (i, l) in lines[name].iter().enumerate() {
                let mut it = l.split_whitespace();
                let (Some(k), Some(v), None) = (it.next(), it.next(), it.next()) else {
                    bail!(
                        "{} line {}: expected `<key> <label>`",
                        ann.join(name).display(),
                        i + 1
                    );
                };
                let y: u32 = v.parse().with_context(|| {
                    format!("{} line {}: label `{v}`", ann.join(name).display(), i + 1)
                })?;
                ensure!(
                    y < 14,
                    "{} line {}: label {y} outside 0..14",
                    ann.join(name).display(),
                    i + 1
                );
                m.insert(k.to_string(), y);
            }
            Ok(m)
        };
        let noisy = kv("noisy_label_kv.txt")?;
        let clean = kv("clean_label_kv.txt")?;
        let subset = |list: &str, labels: &HashMap<String, u32>, lname: &str| -> Result<Subset> {
            let mut s = Subset {
                keys: vec![],
                paths: vec![],
                labels: vec![],
            };
            for k in &lines[list] {
                let k = k.trim();
                let Some(&y) = labels.get(k) else {
                    bail!("Clothing1M: key {k} of {list} has no label in {lname}");
                };
                let p = image_path(root, k);
                if check_images {
                    ensure!(
                        p.is_file(),
                        "Clothing1M: image {} (key {k} of {list}) is missing",
                        p.display()
                    );
                }
                s.keys.push(k.to_string());
                s.paths.push(p);
                s.labels.push(y);
            }
            Ok(s)
        };
        Ok(Index {
            root: root.to_path_buf(),
            annotations: ann.clone(),
            noisy_train: subset("noisy_train_key_list.txt", &noisy, "noisy_label_kv.txt")?,
            clean_train: subset("clean_train_key_list.txt", &clean, "clean_label_kv.txt")?,
            clean_val: subset("clean_val_key_list.txt", &clean, "clean_label_kv.txt")?,
            clean_test: subset("clean_test_key_list.txt", &clean, "clean_label_kv.txt")?,
        })
    }

    /// Pixel loading is not implemented: always an error that says so.
    pub fn load_pixels(&self) -> Result<()> {
        bail!(
            "Clothing1M at {}: the key lists and labels are read and checked ({} noisy train, {} clean train, {} clean val, \
             {} clean test images), but decoding the JPEG images into the dataset format is not implemented \
             (no JPEG decoder in this build; Clothing1M needs ResNet-50 at 224x224, beyond CPU scale)",
            self.root.display(),
            self.noisy_train.keys.len(),
            self.clean_train.keys.len(),
            self.clean_val.keys.len(),
            self.clean_test.keys.len()
        )
    }
}
