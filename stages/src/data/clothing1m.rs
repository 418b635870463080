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
//! What this reader does:
//! * [`Index::open`] checks that the files exist and that their line counts equal the
//!   official release's ([`OFFICIAL_LINES`]), parses keys and labels of every subset,
//!   checks that each listed key has a label and that the image files exist, and digests
//!   the text files.
//! * [`Index::to_dataset`] makes the internal dataset without copying a pixel: the splits
//!   hold image paths ([`Features::Files`]) that training decodes batch by batch
//!   ([`Encoding::ImageFiles`]: shorter side resized to 256, 224×224 crops, ImageNet
//!   mean/std by default). The train split is the noisy training set (labels from
//!   `noisy_label_kv.txt`, optionally a seeded subset of it) followed by the clean
//!   training set (labels from `clean_label_kv.txt`); the clean ones are the dataset's
//!   verified examples ([`RealNoise`]), and for those that also carry a noisy label
//!   (24,637 in the official release) that label is kept, which measures the real noise.
//!   The test split is `clean_test`. `clean_val` is parsed and checked, and not used: no
//!   stage selects a model on a validation split.
//! * Identity: the SHA-256 of the text files' digests and, unless turned off, of every
//!   image file used (one pass over the images, in parallel).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use rand::SeedableRng;
use rayon::prelude::*;

use super::dataset::{Dataset, DatasetMeta, Encoding, Features, RealNoise, Split, NO_LABEL};
use super::raw;

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
    /// For each clean-train example, its label in `noisy_label_kv.txt` or [`NO_LABEL`].
    pub clean_train_noisy: Vec<u32>,
    /// `(file name, SHA-256 of its bytes)` of the text files, in [`OFFICIAL_LINES`] order.
    pub annotation_digests: Vec<(String, String)>,
}

/// ImageNet's channel means and standard deviations (torchvision's `Normalize` for
/// ImageNet-pretrained networks), the usual normalisation for Clothing1M.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// How [`Index::to_dataset`] builds the dataset.
#[derive(Clone, Debug, PartialEq)]
pub struct DatasetOptions {
    /// Shorter side after resizing (256).
    pub resize: usize,
    /// Side of the square crop the network sees (224).
    pub crop: usize,
    /// Keep only this many noisy training examples, a seeded subset in list order
    /// (`None`: all 1,000,000).
    pub max_noisy: Option<usize>,
    /// Seed of that subset.
    pub seed: u64,
    /// Digest every image into the identity.
    pub hash_images: bool,
}

impl Default for DatasetOptions {
    fn default() -> Self {
        DatasetOptions {
            resize: 256,
            crop: 224,
            max_noisy: None,
            seed: 0,
            hash_images: true,
        }
    }
}

/// The non-blank lines of a text file's bytes (`p` names it in errors).
fn lines_of(bytes: &[u8], p: &Path) -> Result<Vec<String>> {
    let s = std::str::from_utf8(bytes).with_context(|| format!("{} is not UTF-8", p.display()))?;
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
        let mut annotation_digests = Vec::new();
        for (name, _) in OFFICIAL_LINES {
            let p = ann.join(name);
            ensure!(
                p.is_file(),
                "Clothing1M: {} is missing (looked in {} and {}/annotations). {HOW_TO_OBTAIN}",
                name,
                root.display(),
                root.display()
            );
            let bytes = std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
            annotation_digests.push((name.to_string(), raw::sha256_hex(&bytes)));
            lines.insert(name, lines_of(&bytes, &p)?);
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
        let clean_train = subset("clean_train_key_list.txt", &clean, "clean_label_kv.txt")?;
        let clean_train_noisy = clean_train
            .keys
            .iter()
            .map(|k| noisy.get(k).copied().unwrap_or(NO_LABEL))
            .collect();
        Ok(Index {
            root: root.to_path_buf(),
            annotations: ann.clone(),
            noisy_train: subset("noisy_train_key_list.txt", &noisy, "noisy_label_kv.txt")?,
            clean_train,
            clean_val: subset("clean_val_key_list.txt", &clean, "clean_label_kv.txt")?,
            clean_test: subset("clean_test_key_list.txt", &clean, "clean_label_kv.txt")?,
            clean_train_noisy,
            annotation_digests,
        })
    }

    /// The noisy-train examples used (indices into `noisy_train`, increasing): those
    /// without a clean label, or a seeded subset of `max_noisy` of them; and how many
    /// have no clean label.
    fn noisy_part(&self, o: &DatasetOptions) -> (Vec<usize>, usize) {
        // An image with a clean label is never a noisy training example: a clean-train one
        // would appear twice, a val or test one would leak into training.
        let clean_paths: std::collections::HashSet<&PathBuf> = self
            .clean_train
            .paths
            .iter()
            .chain(&self.clean_val.paths)
            .chain(&self.clean_test.paths)
            .collect();
        let noisy_only: Vec<usize> = (0..self.noisy_train.keys.len())
            .filter(|&i| !clean_paths.contains(&self.noisy_train.paths[i]))
            .collect();
        let n_noisy = noisy_only.len();
        let keep: Vec<usize> = match o.max_noisy {
            Some(m) if m < n_noisy => {
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(o.seed);
                let mut all = noisy_only;
                super::split::shuffle(&mut all, &mut rng);
                all.truncate(m);
                all.sort_unstable();
                all
            }
            _ => noisy_only,
        };
        (keep, n_noisy)
    }

    /// The internal dataset (image paths, labels, the real noise): see the module doc.
    pub fn to_dataset(&self, o: &DatasetOptions) -> Result<Dataset> {
        ensure!(
            o.crop >= 1 && o.resize >= o.crop,
            "Clothing1M: the crop ({}) must be at least 1 and at most the resize ({})",
            o.crop,
            o.resize
        );
        let root = std::fs::canonicalize(&self.root)
            .with_context(|| format!("resolving {}", self.root.display()))?;
        let root_str = root
            .to_str()
            .with_context(|| format!("Clothing1M root {} is not UTF-8", root.display()))?
            .to_string();
        let rel = |p: &Path| -> Result<String> {
            let r = p.strip_prefix(&self.root).unwrap_or(p);
            r.to_str()
                .map(str::to_string)
                .with_context(|| format!("image path {} is not UTF-8", p.display()))
        };
        let (keep, n_noisy) = self.noisy_part(o);
        let dropped = self.noisy_train.keys.len() - n_noisy;
        let mut files = Vec::with_capacity(keep.len() + self.clean_train.keys.len());
        let mut y = Vec::with_capacity(files.capacity());
        for &i in &keep {
            files.push(rel(&self.noisy_train.paths[i])?);
            y.push(self.noisy_train.labels[i]);
        }
        let first_clean = files.len() as u32;
        for (p, &l) in self.clean_train.paths.iter().zip(&self.clean_train.labels) {
            files.push(rel(p)?);
            y.push(l);
        }
        let test_files = self
            .clean_test
            .paths
            .iter()
            .map(|p| rel(p))
            .collect::<Result<Vec<_>>>()?;
        let mut listing: Vec<(String, String)> = self.annotation_digests.clone();
        if o.hash_images {
            listing.push((
                "images".into(),
                images_identity(&root, &files, &test_files)?,
            ));
        }
        let named: Vec<(&str, &str)> = listing
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let mut notes = vec![format!(
            "train = {} noisy-train images (of {n_noisy}) then {} clean-train images (verified); \
             test = clean_test; clean_val ({}) unused",
            keep.len(),
            self.clean_train.keys.len(),
            self.clean_val.keys.len()
        )];
        if dropped > 0 {
            notes.push(format!(
                "{dropped} noisy-train images that also have a clean label were left out of the noisy part"
            ));
        }
        if !o.hash_images {
            notes.push("identity covers the annotation files only (images not hashed)".into());
        }
        let ds = Dataset {
            meta: DatasetMeta {
                name: "clothing1m".into(),
                identity: raw::identity(&named),
                num_classes: CLASSES.len(),
                class_names: CLASSES.iter().map(|c| c.to_string()).collect(),
                num_coarse: None,
                example_shape: vec![3, o.crop, o.crop],
                encoding: Encoding::ImageFiles {
                    root: root_str,
                    resize: o.resize,
                    mean: IMAGENET_MEAN.to_vec(),
                    std: IMAGENET_STD.to_vec(),
                },
                train_len: files.len(),
                test_len: test_files.len(),
                notes,
            },
            train: Split {
                x: Features::Files(files),
                y,
                coarse: None,
            },
            test: Split {
                x: Features::Files(test_files),
                y: self.clean_test.labels.clone(),
                coarse: None,
            },
            real_noise: Some(RealNoise {
                verified: (first_clean..first_clean + self.clean_train.keys.len() as u32).collect(),
                noisy_of_verified: self.clean_train_noisy.clone(),
            }),
        };
        ds.validate()?;
        Ok(ds)
    }
}

/// The identity of the images (`files` then `test_files`, relative to `root`): the
/// [`raw::identity`] of each image's SHA-256, read in parallel.
fn images_identity(root: &Path, files: &[String], test_files: &[String]) -> Result<String> {
    let digests: Vec<String> = files
        .par_iter()
        .chain(test_files.par_iter())
        .map(|f| -> Result<String> {
            let p = root.join(f);
            let b = std::fs::read(&p).with_context(|| format!("reading image {}", p.display()))?;
            Ok(raw::sha256_hex(&b))
        })
        .collect::<Result<_>>()?;
    let per_image: Vec<(&str, &str)> = files
        .iter()
        .chain(test_files)
        .zip(&digests)
        .map(|(f, d)| (f.as_str(), d.as_str()))
        .collect();
    Ok(raw::identity(&per_image))
}
