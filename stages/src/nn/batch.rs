//! Turning dataset examples into model inputs: decoding (pixels × scale, per-channel
//! mean/std), optional CIFAR augmentation (random crop with 4 pixels of zero padding,
//! then a horizontal flip with probability ½, as torchvision's `RandomCrop(32, 4)` +
//! `RandomHorizontalFlip()`; padding is the decoded value of a black pixel), token ids for
//! embedding models, and image files decoded per batch (resize, crop, flip: see
//! [`crate::data::images`]), in parallel on the thread pool.
//!
//! Augmentation draws come from the caller's generator in example order before any
//! decoding, so a batch's bytes do not depend on how decoding is scheduled.

use std::path::Path;

use anyhow::Result;
use dfdx::prelude::*;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::device::dev;
use super::model::{Input, InputKind};
use crate::data::dataset::{Dataset, Encoding, Features, Split};
use crate::data::images::{self, Window};

/// Pixels of zero padding of the random crop.
pub const CROP_PAD: usize = 4;

/// What a network built for `ds` reads.
pub fn input_kind(ds: &Dataset) -> InputKind {
    match &ds.meta.encoding {
        Encoding::Tokens { vocab } => InputKind::Tokens {
            len: ds.example_len(),
            vocab: *vocab,
        },
        _ => InputKind::Dense(ds.meta.example_shape.clone()),
    }
}

/// Decodes examples of one split.
pub struct Decoder<'a> {
    split: &'a Split,
    encoding: &'a Encoding,
    shape: Vec<usize>,
    d: usize,
    /// Values per channel plane (`H·W` for `[C, H, W]` examples, else the whole example).
    plane: usize,
    /// For byte features: the decoded value of every byte, per channel (what
    /// [`Decoder::decode`] gives, computed once instead of per pixel).
    table: Vec<[f32; 256]>,
}

impl<'a> Decoder<'a> {
    pub fn new(ds: &'a Dataset, split: &'a Split) -> Decoder<'a> {
        let shape = ds.meta.example_shape.clone();
        let d = ds.example_len();
        let (channels, plane) = if shape.len() == 3 {
            (shape[0], shape[1] * shape[2])
        } else {
            (1, d)
        };
        let mut dec = Decoder {
            split,
            encoding: &ds.meta.encoding,
            shape,
            d,
            plane: plane.max(1),
            table: vec![],
        };
        if matches!(split.x, Features::U8(_)) {
            dec.table = (0..channels)
                .map(|c| std::array::from_fn(|b| dec.decode(b as f32, c)))
                .collect();
        }
        dec
    }

    pub fn len(&self) -> usize {
        self.split.len()
    }
    pub fn is_empty(&self) -> bool {
        self.split.is_empty()
    }

    /// Decoded value of raw `v` at channel `c`.
    fn decode(&self, v: f32, c: usize) -> f32 {
        match self.encoding {
            Encoding::Pixels { scale, mean, std } => {
                let mut x = v * scale;
                if let Some(m) = mean {
                    x -= m[c.min(m.len() - 1)];
                }
                if let Some(s) = std {
                    x /= s[c.min(s.len() - 1)];
                }
                x
            }
            _ => v,
        }
    }

    fn example(&self, i: usize, out: &mut [f32]) {
        let r = i * self.d..(i + 1) * self.d;
        // Channel planes are contiguous: decode plane by plane.
        let planes = out.chunks_mut(self.plane).enumerate();
        match &self.split.x {
            Features::U8(v) => {
                for ((c, o), x) in planes.zip(v[r].chunks(self.plane)) {
                    match self.encoding {
                        // The common case as a plain loop the compiler vectorises: the
                        // same multiply `decode` does.
                        Encoding::Pixels {
                            scale,
                            mean: None,
                            std: None,
                        } => o
                            .iter_mut()
                            .zip(x)
                            .for_each(|(o, &x)| *o = x as f32 * scale),
                        _ => {
                            let t = &self.table[c];
                            o.iter_mut().zip(x).for_each(|(o, &x)| *o = t[x as usize]);
                        }
                    }
                }
            }
            Features::F32(v) => {
                for ((c, o), x) in planes.zip(v[r].chunks(self.plane)) {
                    o.iter_mut()
                        .zip(x)
                        .for_each(|(o, &x)| *o = self.decode(x, c));
                }
            }
            Features::U32(_) => panic!("token inputs are not decoded to values"),
            Features::Files(_) => panic!("image files are decoded batch by batch"),
        }
    }

    /// Decodes image files `idx` into `[batch, 3·crop·crop]` values.
    fn image_files(
        &self,
        files: &[String],
        idx: &[u32],
        aug: Option<&mut ChaCha8Rng>,
    ) -> Result<Vec<f32>> {
        let Encoding::ImageFiles {
            root,
            resize,
            mean,
            std,
        } = self.encoding
        else {
            unreachable!("image files without their encoding (validate() checks)")
        };
        let crop = self.shape[1];
        let windows: Vec<Window> = match aug {
            Some(rng) => idx
                .iter()
                .map(|_| Window::Random {
                    u: rng.random::<f64>(),
                    v: rng.random::<f64>(),
                    flip: rng.random::<bool>(),
                })
                .collect(),
            None => vec![Window::Centre; idx.len()],
        };
        let mut x = vec![0.0f32; idx.len() * self.d];
        x.par_chunks_mut(self.d)
            .zip(idx.par_iter().zip(windows.par_iter()))
            .try_for_each(|(row, (&i, &w))| -> Result<()> {
                let img = images::load_resized(&Path::new(root).join(&files[i as usize]), *resize)?;
                images::crop_into(&img, crop, w, mean, std, row)
            })?;
        Ok(x)
    }

    /// The model input for the examples `idx`; with `aug` (images only) each example is
    /// randomly cropped and flipped with draws from `aug`, in example order.
    /// Fails only for image files that cannot be read or decoded (the error names the file).
    pub fn input(&self, idx: &[u32], aug: Option<&mut ChaCha8Rng>) -> Result<Input> {
        if let Features::U32(v) = &self.split.x {
            let mut ids = Vec::with_capacity(idx.len() * self.d);
            for &i in idx {
                ids.extend_from_slice(&v[i as usize * self.d..(i as usize + 1) * self.d]);
            }
            return Ok(Input::Tokens {
                ids,
                batch: idx.len(),
            });
        }
        if let Features::Files(files) = &self.split.x {
            let x = self.image_files(files, idx, aug)?;
            return Ok(Input::Dense(dev().tensor_from_vec(x, (idx.len(), self.d))));
        }
        let d = self.d;
        let mut x = vec![0.0f32; idx.len() * d];
        for (row, &i) in x.chunks_exact_mut(d).zip(idx) {
            self.example(i as usize, row);
        }
        if let Some(rng) = aug {
            assert_eq!(self.shape.len(), 3, "augmentation needs [C, H, W] images");
            let (c, h, w) = (self.shape[0], self.shape[1], self.shape[2]);
            let pad_val: Vec<f32> = (0..c).map(|ch| self.decode(0.0, ch)).collect();
            let mut tmp = vec![0.0f32; d];
            for row in x.chunks_exact_mut(d) {
                let dy = rng.random_range(0..=2 * CROP_PAD) as isize - CROP_PAD as isize;
                let dx = rng.random_range(0..=2 * CROP_PAD) as isize - CROP_PAD as isize;
                let flip = rng.random::<bool>();
                for ch in 0..c {
                    for y in 0..h {
                        for xx in 0..w {
                            let sy = y as isize + dy;
                            let sx0 = xx as isize + dx;
                            let v = if sy < 0 || sy >= h as isize || sx0 < 0 || sx0 >= w as isize {
                                pad_val[ch]
                            } else {
                                row[(ch * h + sy as usize) * w + sx0 as usize]
                            };
                            let ox = if flip { w - 1 - xx } else { xx };
                            tmp[(ch * h + y) * w + ox] = v;
                        }
                    }
                }
                row.copy_from_slice(&tmp);
            }
        }
        Ok(Input::Dense(dev().tensor_from_vec(x, (idx.len(), d))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::dataset::DatasetMeta;
    use crate::nn::device::host;

    fn images(encoding: Encoding, shape: Vec<usize>) -> Dataset {
        let d: usize = shape.iter().product();
        let x: Vec<u8> = (0..3 * d).map(|i| (i * 37 % 256) as u8).collect();
        let split = Split {
            x: Features::U8(x),
            y: vec![0, 1, 0],
            coarse: None,
        };
        Dataset {
            meta: DatasetMeta {
                name: "t".into(),
                identity: String::new(),
                num_classes: 2,
                class_names: vec!["a".into(), "b".into()],
                num_coarse: None,
                example_shape: shape,
                encoding,
                train_len: 3,
                test_len: 3,
                notes: vec![],
            },
            train: split.clone(),
            test: split,
            real_noise: None,
        }
    }

    #[test]
    fn byte_pixels_decode_as_the_per_pixel_rule() {
        let cases = [
            (
                Encoding::Pixels {
                    scale: 1.0 / 255.0,
                    mean: None,
                    std: None,
                },
                vec![1, 4, 5],
            ),
            (
                Encoding::Pixels {
                    scale: 1.0 / 255.0,
                    mean: Some(vec![0.49, 0.48, 0.45]),
                    std: Some(vec![0.25, 0.24, 0.26]),
                },
                vec![3, 4, 5],
            ),
            (
                Encoding::Pixels {
                    scale: 1.0 / 16.0,
                    mean: Some(vec![0.5]),
                    std: None,
                },
                vec![20],
            ),
        ];
        for (enc, shape) in cases {
            let ds = images(enc, shape.clone());
            let dec = Decoder::new(&ds, &ds.train);
            let Input::Dense(x) = dec.input(&[2, 0], None).unwrap() else {
                panic!("dense input expected")
            };
            let got = host(&x);
            let Features::U8(raw) = &ds.train.x else {
                unreachable!()
            };
            let d = ds.example_len();
            let plane = if shape.len() == 3 {
                shape[1] * shape[2]
            } else {
                d
            };
            for (row, &i) in [2usize, 0].iter().enumerate() {
                for p in 0..d {
                    let want = dec.decode(raw[i * d + p] as f32, p / plane);
                    assert_eq!(
                        got[row * d + p].to_bits(),
                        want.to_bits(),
                        "{shape:?} at {p}"
                    );
                }
            }
        }
    }
}
