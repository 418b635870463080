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
}

impl<'a> Decoder<'a> {
    pub fn new(ds: &'a Dataset, split: &'a Split) -> Decoder<'a> {
        Decoder {
            split,
            encoding: &ds.meta.encoding,
            shape: ds.meta.example_shape.clone(),
            d: ds.example_len(),
        }
    }

    pub fn len(&self) -> usize {
        self.split.len()
    }
    pub fn is_empty(&self) -> bool {
        self.split.is_empty()
    }

    fn channel_of(&self, pos: usize) -> usize {
        if self.shape.len() == 3 {
            pos / (self.shape[1] * self.shape[2])
        } else {
            0
        }
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
        match &self.split.x {
            Features::U8(v) => {
                for (p, (o, &x)) in out.iter_mut().zip(&v[r]).enumerate() {
                    *o = self.decode(x as f32, self.channel_of(p));
                }
            }
            Features::F32(v) => {
                for (p, (o, &x)) in out.iter_mut().zip(&v[r]).enumerate() {
                    *o = self.decode(x, self.channel_of(p));
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
