//! The one internal dataset format every reader writes and every training stage reads.
//!
//! A dataset is two files in a stage's output directory:
//!
//! * `dataset.safetensors`: tensors `train.x`, `train.y`, `test.x`, `test.y`, and for
//!   datasets with a class hierarchy `train.coarse`, `test.coarse`.
//!   - `*.x` is `U8` (raw pixels, decoded as `value * scale`), `F32` (features), or `U32`
//!     (token ids, for models with an embedding layer); shape `[N, ..example_shape]`.
//!   - or, for image collections too large to hold (Clothing1M), `*.files`: `U8`, the
//!     UTF-8 paths of the image files relative to the encoding's `root`, one per line; the
//!     images are decoded batch by batch ([`Encoding::ImageFiles`]).
//!   - `*.y` and `*.coarse` are `U32`, shape `[N]`.
//!   - for datasets that ship their own label noise ([`RealNoise`]): `train.verified` (U32,
//!     sorted indices of training examples whose label was verified) and
//!     `train.noisy_of_verified` (U32, the noisy source's label of each, or [`NO_LABEL`]).
//! * `dataset.json`: [`DatasetMeta`]: name, identity (SHA-256 of the raw content the
//!   reader consumed), class names, the example shape, how to decode `x`.
//!
//! Identity is what tables and metrics quote, so a run on a substitute dataset can never
//! be mistaken for a run on the original.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use safetensors::tensor::{Dtype, TensorView};
use serde::{Deserialize, Serialize};

pub const TENSORS_FILE: &str = "dataset.safetensors";
pub const META_FILE: &str = "dataset.json";

/// How the stored `x` tensor is turned into model input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Encoding {
    /// `U8` values; model input = `value * scale`, then `(v - mean[c]) / std[c]` per channel
    /// when `mean`/`std` are given (channel = axis 0 of the example shape).
    Pixels {
        scale: f32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mean: Option<Vec<f32>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        std: Option<Vec<f32>>,
    },
    /// `F32` values used as they are.
    Features,
    /// `U32` token ids in `0..vocab`, for a model that embeds them.
    Tokens { vocab: usize },
    /// Image files (JPEG or PNG) under `root`, decoded to RGB when a batch is made: the
    /// shorter side resized to `resize` (bilinear, aspect kept), then a `crop`×`crop`
    /// window (the example shape is `[3, crop, crop]`): the centre one, or with
    /// augmentation a uniformly random one, flipped horizontally with probability ½
    /// (torchvision's `Resize(resize)` + `CenterCrop`/`RandomCrop(crop)` +
    /// `RandomHorizontalFlip`); model input = `(value / 255 − mean[c]) / std[c]`.
    ImageFiles {
        root: String,
        resize: usize,
        mean: Vec<f32>,
        std: Vec<f32>,
    },
}

/// "No label" in [`RealNoise::noisy_of_verified`].
pub const NO_LABEL: u32 = u32::MAX;

/// Label noise that comes with the data (Clothing1M), instead of being injected: `train.y`
/// holds the labels the dataset gives, noisy for most examples and verified by hand for
/// [`verified`](Self::verified) ones.
#[derive(Clone, Debug, PartialEq)]
pub struct RealNoise {
    /// Sorted indices into the train split of the examples whose label was verified.
    pub verified: Vec<u32>,
    /// For each verified example (same order), the label the noisy source gives it, or
    /// [`NO_LABEL`] where that source has none. Pairs with a label estimate the noise.
    pub noisy_of_verified: Vec<u32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DatasetMeta {
    /// Short name: `digits`, `mnist`, `fashion_mnist`, `cifar10`, `cifar100`, `twitter`, `clothing1m`.
    pub name: String,
    /// SHA-256 (hex) of the raw content read (for several files: of their digests in order).
    pub identity: String,
    pub num_classes: usize,
    pub class_names: Vec<String>,
    /// Number of coarse classes (CIFAR-100 superclasses), when `*.coarse` exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_coarse: Option<usize>,
    /// Shape of one example, e.g. `[1, 8, 8]`, `[3, 32, 32]`, `[3]` (a token window).
    pub example_shape: Vec<usize>,
    pub encoding: Encoding,
    pub train_len: usize,
    pub test_len: usize,
    /// Free-form notes the reader wants recorded (e.g. "learned-embedding fallback").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Raw `x` storage.
#[derive(Clone, Debug, PartialEq)]
pub enum Features {
    U8(Vec<u8>),
    F32(Vec<f32>),
    U32(Vec<u32>),
    /// Image paths relative to [`Encoding::ImageFiles`]'s root, one per example.
    Files(Vec<String>),
}

impl Features {
    /// Stored values (for `Files`, paths).
    pub fn len(&self) -> usize {
        match self {
            Features::U8(v) => v.len(),
            Features::F32(v) => v.len(),
            Features::U32(v) => v.len(),
            Features::Files(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One split (train or test).
#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    pub x: Features,
    pub y: Vec<u32>,
    pub coarse: Option<Vec<u32>>,
}

impl Split {
    pub fn len(&self) -> usize {
        self.y.len()
    }
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pub meta: DatasetMeta,
    pub train: Split,
    pub test: Split,
    /// Present when the dataset ships its own label noise.
    pub real_noise: Option<RealNoise>,
}

impl Dataset {
    /// Elements per example (product of the example shape).
    pub fn example_len(&self) -> usize {
        self.meta.example_shape.iter().product()
    }

    /// Checks shapes, label ranges and the meta's counts.
    pub fn validate(&self) -> Result<()> {
        let d = self.example_len();
        let k = self.meta.num_classes;
        ensure!(
            self.meta.class_names.len() == k,
            "{} class names for {k} classes",
            self.meta.class_names.len()
        );
        for (name, s, n) in [
            ("train", &self.train, self.meta.train_len),
            ("test", &self.test, self.meta.test_len),
        ] {
            ensure!(s.len() == n, "{name}: {} labels but meta says {n}", s.len());
            if let Features::Files(f) = &s.x {
                ensure!(
                    f.len() == n,
                    "{name}.files has {} paths, expected {n}",
                    f.len()
                );
                if let Some(bad) = f.iter().find(|p| p.is_empty() || p.contains('\n')) {
                    bail!("{name}.files: path {bad:?} is empty or holds a line break");
                }
            } else {
                ensure!(
                    s.x.len() == n * d,
                    "{name}.x has {} values, expected {n} x {d}",
                    s.x.len()
                );
            }
            if let Some(bad) = s.y.iter().find(|&&y| y as usize >= k) {
                bail!("{name}: label {bad} out of range 0..{k}");
            }
            match (&s.coarse, self.meta.num_coarse) {
                (Some(c), Some(kc)) => {
                    ensure!(
                        c.len() == n,
                        "{name}.coarse has {} labels, expected {n}",
                        c.len()
                    );
                    if let Some(bad) = c.iter().find(|&&y| y as usize >= kc) {
                        bail!("{name}: coarse label {bad} out of range 0..{kc}");
                    }
                }
                (None, None) => {}
                _ => bail!("{name}: coarse labels and meta.num_coarse disagree"),
            }
            match (&s.x, &self.meta.encoding) {
                (Features::U8(_), Encoding::Pixels { .. })
                | (Features::F32(_), Encoding::Features) => {}
                (Features::Files(_), Encoding::ImageFiles { mean, std, .. }) => {
                    let shape = &self.meta.example_shape;
                    ensure!(
                        shape.len() == 3 && shape[0] == 3 && shape[1] == shape[2],
                        "image files decode to [3, crop, crop], not {shape:?}"
                    );
                    ensure!(
                        mean.len() == 3 && std.len() == 3 && std.iter().all(|&s| s > 0.0),
                        "image files need 3 channel means and 3 positive stds"
                    );
                }
                (Features::U32(v), Encoding::Tokens { vocab }) => {
                    if let Some(bad) = v.iter().find(|&&t| t as usize >= *vocab) {
                        bail!("{name}: token id {bad} out of range 0..{vocab}");
                    }
                }
                _ => bail!(
                    "{name}.x storage does not match the encoding {:?}",
                    self.meta.encoding
                ),
            }
        }
        if let Some(r) = &self.real_noise {
            let n = self.train.len() as u32;
            ensure!(
                r.verified.windows(2).all(|w| w[0] < w[1]) && r.verified.iter().all(|&i| i < n),
                "real noise: verified indices must be sorted, distinct and below {n}"
            );
            ensure!(
                r.noisy_of_verified.len() == r.verified.len(),
                "real noise: {} noisy labels for {} verified examples",
                r.noisy_of_verified.len(),
                r.verified.len()
            );
            if let Some(bad) = r
                .noisy_of_verified
                .iter()
                .find(|&&y| y != NO_LABEL && y as usize >= k)
            {
                bail!("real noise: noisy label {bad} out of range 0..{k}");
            }
        }
        Ok(())
    }

    /// Writes `dataset.safetensors` and `dataset.json` into `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        self.validate()
            .context("refusing to save an inconsistent dataset")?;
        let mut owned: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
        for (name, s) in [("train", &self.train), ("test", &self.test)] {
            let mut shape = vec![s.len()];
            shape.extend(&self.meta.example_shape);
            match &s.x {
                Features::U8(v) => owned.push((format!("{name}.x"), Dtype::U8, shape, v.clone())),
                Features::F32(v) => owned.push((
                    format!("{name}.x"),
                    Dtype::F32,
                    shape,
                    v.iter().flat_map(|f| f.to_le_bytes()).collect(),
                )),
                Features::U32(v) => {
                    owned.push((format!("{name}.x"), Dtype::U32, shape, u32_bytes(v)))
                }
                Features::Files(v) => {
                    let bytes = v.join("\n").into_bytes();
                    owned.push((format!("{name}.files"), Dtype::U8, vec![bytes.len()], bytes));
                }
            }
            owned.push((
                format!("{name}.y"),
                Dtype::U32,
                vec![s.len()],
                u32_bytes(&s.y),
            ));
            if let Some(c) = &s.coarse {
                owned.push((
                    format!("{name}.coarse"),
                    Dtype::U32,
                    vec![c.len()],
                    u32_bytes(c),
                ));
            }
        }
        if let Some(r) = &self.real_noise {
            owned.push((
                "train.verified".into(),
                Dtype::U32,
                vec![r.verified.len()],
                u32_bytes(&r.verified),
            ));
            owned.push((
                "train.noisy_of_verified".into(),
                Dtype::U32,
                vec![r.noisy_of_verified.len()],
                u32_bytes(&r.noisy_of_verified),
            ));
        }
        let views: Vec<(String, TensorView)> = owned
            .iter()
            .map(|(n, dt, shape, b)| Ok((n.clone(), TensorView::new(*dt, shape.clone(), b)?)))
            .collect::<Result<_>>()?;
        safetensors::serialize_to_file(views, None, &dir.join(TENSORS_FILE))?;
        let json = serde_json::to_string_pretty(&self.meta)? + "\n";
        std::fs::write(dir.join(META_FILE), json)?;
        Ok(())
    }

    /// Reads a dataset written by [`Dataset::save`].
    pub fn load(dir: &Path) -> Result<Dataset> {
        let meta_path = dir.join(META_FILE);
        let meta: DatasetMeta = serde_json::from_slice(
            &std::fs::read(&meta_path)
                .with_context(|| format!("reading {}", meta_path.display()))?,
        )
        .with_context(|| format!("parsing {}", meta_path.display()))?;
        let t_path = dir.join(TENSORS_FILE);
        let bytes =
            std::fs::read(&t_path).with_context(|| format!("reading {}", t_path.display()))?;
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .with_context(|| format!("parsing {}", t_path.display()))?;
        let names: HashMap<String, ()> = st
            .names()
            .into_iter()
            .map(|n| (n.to_string(), ()))
            .collect();
        let split = |name: &str| -> Result<Split> {
            let x = if names.contains_key(&format!("{name}.files")) {
                let b = st.tensor(&format!("{name}.files"))?.data();
                let text = std::str::from_utf8(b)
                    .with_context(|| format!("{}: {name}.files is not UTF-8", t_path.display()))?;
                Features::Files(if text.is_empty() {
                    vec![]
                } else {
                    text.split('\n').map(str::to_string).collect()
                })
            } else {
                let x = st.tensor(&format!("{name}.x"))?;
                match x.dtype() {
                    Dtype::U8 => Features::U8(x.data().to_vec()),
                    Dtype::F32 => Features::F32(
                        x.data()
                            .chunks_exact(4)
                            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                            .collect(),
                    ),
                    Dtype::U32 => Features::U32(read_u32(x.data())),
                    other => bail!(
                        "{}: {name}.x has unsupported dtype {other:?}",
                        t_path.display()
                    ),
                }
            };
            let y = read_u32(st.tensor(&format!("{name}.y"))?.data());
            let coarse = if names.contains_key(&format!("{name}.coarse")) {
                Some(read_u32(st.tensor(&format!("{name}.coarse"))?.data()))
            } else {
                None
            };
            Ok(Split { x, y, coarse })
        };
        let real_noise = if names.contains_key("train.verified") {
            Some(RealNoise {
                verified: read_u32(st.tensor("train.verified")?.data()),
                noisy_of_verified: read_u32(st.tensor("train.noisy_of_verified")?.data()),
            })
        } else {
            None
        };
        let ds = Dataset {
            meta,
            train: split("train")?,
            test: split("test")?,
            real_noise,
        };
        ds.validate()
            .with_context(|| format!("checking the dataset in {}", dir.display()))?;
        Ok(ds)
    }
}

pub fn u32_bytes(v: &[u32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn read_u32(b: &[u8]) -> Vec<u32> {
    b.chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Dataset {
        Dataset {
            meta: DatasetMeta {
                name: "tiny".into(),
                identity: "00".into(),
                num_classes: 2,
                class_names: vec!["a".into(), "b".into()],
                num_coarse: None,
                example_shape: vec![1, 2, 2],
                encoding: Encoding::Pixels {
                    scale: 1.0 / 16.0,
                    mean: None,
                    std: None,
                },
                train_len: 2,
                test_len: 1,
                notes: vec![],
            },
            train: Split {
                x: Features::U8(vec![0, 1, 2, 3, 4, 5, 6, 7]),
                y: vec![0, 1],
                coarse: None,
            },
            test: Split {
                x: Features::U8(vec![9, 9, 9, 9]),
                y: vec![1],
                coarse: None,
            },
            real_noise: None,
        }
    }

    #[test]
    fn save_then_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let ds = tiny();
        ds.save(dir.path()).unwrap();
        assert_eq!(Dataset::load(dir.path()).unwrap(), ds);
    }

    #[test]
    fn out_of_range_label_is_rejected() {
        let mut ds = tiny();
        ds.train.y[1] = 2;
        let err = ds.validate().unwrap_err().to_string();
        assert!(err.contains("label 2 out of range"), "{err}");
    }
}
