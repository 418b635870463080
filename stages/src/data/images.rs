//! Image files decoded on demand (Clothing1M's JPEGs): decoding, the shorter-side resize
//! and the crop window of [`Encoding::ImageFiles`](super::dataset::Encoding::ImageFiles).
//!
//! * Decoding: the `image` crate (JPEG baseline and progressive, PNG); any colour type is
//!   converted to 8-bit RGB (greyscale replicated, alpha dropped).
//! * Resize: the shorter side becomes `resize` and the longer one
//!   `floor(resize · long / short)`, as torchvision's `Resize(int)` computes it; the
//!   filter is bilinear (a triangle kernel widened by the scale factor when shrinking, so
//!   downscaling averages like PIL's antialiased bilinear). An image whose shorter side is
//!   already `resize` is left untouched, pixel for pixel.
//! * Crop: a `crop`×`crop` window, centred (offset `(size − crop) / 2`, rounded down), or
//!   at a position drawn uniformly from all that fit, then optionally mirrored.

use std::path::Path;

use anyhow::{ensure, Context, Result};
use image::imageops::FilterType;
use image::RgbImage;

/// Decodes `path` to RGB and resizes its shorter side to `resize`.
pub fn load_resized(path: &Path, resize: usize) -> Result<RgbImage> {
    let img = image::io::Reader::open(path)
        .with_context(|| format!("opening image {}", path.display()))?
        .with_guessed_format()
        .with_context(|| format!("reading image {}", path.display()))?
        .decode()
        .with_context(|| format!("decoding image {}", path.display()))?
        .to_rgb8();
    let (w, h) = img.dimensions();
    ensure!(
        w > 0 && h > 0,
        "image {} has no pixels ({w}x{h})",
        path.display()
    );
    let (nw, nh) = resized_dims(w as usize, h as usize, resize);
    if (nw, nh) == (w as usize, h as usize) {
        return Ok(img);
    }
    Ok(image::imageops::resize(
        &img,
        nw as u32,
        nh as u32,
        FilterType::Triangle,
    ))
}

/// `(width, height)` after resizing the shorter side of a `w`×`h` image to `resize`.
pub fn resized_dims(w: usize, h: usize, resize: usize) -> (usize, usize) {
    if w <= h {
        (resize, (resize * h / w).max(resize))
    } else {
        ((resize * w / h).max(resize), resize)
    }
}

/// Where a crop window sits and whether it is mirrored.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Window {
    Centre,
    /// Uniform draws in [0, 1) for the horizontal and vertical offset, and the flip.
    Random {
        u: f64,
        v: f64,
        flip: bool,
    },
}

/// Writes the `crop`×`crop` window of `img` into `out` (`[3, crop, crop]`, channel-major),
/// each value `(pixel / 255 − mean[c]) / std[c]`.
pub fn crop_into(
    img: &RgbImage,
    crop: usize,
    window: Window,
    mean: &[f32],
    std: &[f32],
    out: &mut [f32],
) -> Result<()> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    ensure!(
        w >= crop && h >= crop,
        "a {w}x{h} image is smaller than the {crop}x{crop} crop"
    );
    let pick = |u: f64, room: usize| ((u * (room + 1) as f64) as usize).min(room);
    let (ox, oy, flip) = match window {
        Window::Centre => ((w - crop) / 2, (h - crop) / 2, false),
        Window::Random { u, v, flip } => (pick(u, w - crop), pick(v, h - crop), flip),
    };
    let raw = img.as_raw();
    for c in 0..3 {
        let (m, s) = (mean[c], std[c]);
        for y in 0..crop {
            let src_row = (oy + y) * w;
            let dst = &mut out[(c * crop + y) * crop..(c * crop + y + 1) * crop];
            for (xx, o) in dst.iter_mut().enumerate() {
                let sx = ox + if flip { crop - 1 - xx } else { xx };
                *o = (raw[(src_row + sx) * 3 + c] as f32 / 255.0 - m) / s;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shorter_side_becomes_resize_and_longer_is_truncated() {
        assert_eq!(resized_dims(500, 375, 256), (341, 256)); // 256·500/375 = 341.33
        assert_eq!(resized_dims(375, 500, 256), (256, 341));
        assert_eq!(resized_dims(300, 300, 256), (256, 256));
        assert_eq!(resized_dims(10, 1000, 4), (4, 400));
    }

    /// Pixel values back from `value / 255` (mean 0, std 1).
    fn bytes(v: &[f32]) -> Vec<f32> {
        v.iter().map(|x| (x * 255.0).round()).collect()
    }

    fn ramp(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(10 * x + y) as u8, 100 + y as u8, 7])
        })
    }

    #[test]
    fn centre_crop_takes_the_middle_window_channel_major() {
        let img = ramp(5, 4);
        let mut out = vec![0.0; 3 * 2 * 2];
        let unit = [0.0f32; 3];
        let one = [1.0f32; 3];
        crop_into(&img, 2, Window::Centre, &unit, &one, &mut out).unwrap();
        let out = bytes(&out);
        // offset ((5-2)/2, (4-2)/2) = (1, 1): red = 10x + y at x 1..3, y 1..3.
        assert_eq!(&out[0..4], &[11.0, 21.0, 12.0, 22.0]);
        assert_eq!(&out[4..8], &[101.0, 101.0, 102.0, 102.0]);
        assert_eq!(&out[8..12], &[7.0; 4]);
    }

    #[test]
    fn random_crop_spans_every_offset_and_flip_mirrors() {
        let img = ramp(4, 3);
        let unit = [0.0f32; 3];
        let one = [1.0f32; 3];
        let mut out = vec![0.0; 12];
        // u just below 1 picks the last offset (4 - 2 = 2), v = 0 the first.
        let w = Window::Random {
            u: 0.999,
            v: 0.0,
            flip: true,
        };
        crop_into(&img, 2, w, &unit, &one, &mut out).unwrap();
        assert_eq!(&bytes(&out)[0..4], &[30.0, 20.0, 31.0, 21.0]);
        let w = Window::Random {
            u: 0.0,
            v: 0.999,
            flip: false,
        };
        crop_into(&img, 2, w, &unit, &one, &mut out).unwrap();
        assert_eq!(&bytes(&out)[0..4], &[1.0, 11.0, 2.0, 12.0]);
    }

    #[test]
    fn normalisation_is_value_over_255_minus_mean_over_std() {
        let img = RgbImage::from_pixel(1, 1, image::Rgb([255, 0, 51]));
        let mut out = vec![0.0; 3];
        crop_into(
            &img,
            1,
            Window::Centre,
            &[0.5, 0.5, 0.2],
            &[0.25, 0.5, 0.1],
            &mut out,
        )
        .unwrap();
        assert_eq!(out, vec![2.0, -1.0, 0.0]);
    }

    #[test]
    fn a_too_small_image_is_an_error() {
        let img = ramp(3, 2);
        let mut out = vec![0.0; 27];
        let e = crop_into(&img, 3, Window::Centre, &[0.0; 3], &[1.0; 3], &mut out).unwrap_err();
        assert!(e.to_string().contains("smaller than the 3x3 crop"), "{e}");
    }

    #[test]
    fn png_at_target_size_decodes_pixel_exact_and_a_resize_keeps_a_flat_colour() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.png");
        ramp(6, 4).save(&p).unwrap();
        let img = load_resized(&p, 4).unwrap();
        assert_eq!(img, ramp(6, 4));
        let q = dir.path().join("flat.png");
        RgbImage::from_pixel(40, 30, image::Rgb([90, 12, 200]))
            .save(&q)
            .unwrap();
        let small = load_resized(&q, 6).unwrap();
        assert_eq!(small.dimensions(), (8, 6));
        assert!(small.pixels().all(|p| p.0 == [90, 12, 200]));
        let e = load_resized(&dir.path().join("missing.jpg"), 4).unwrap_err();
        assert!(format!("{e:#}").contains("missing.jpg"), "{e:#}");
    }
}
