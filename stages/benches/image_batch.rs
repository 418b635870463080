//! Time to make one training batch of image files (Clothing1M's input path): decode 32
//! JPEGs, resize the shorter side to 256, take a random 224×224 crop with a flip, normalise,
//! in parallel on the thread pool, as the `paper` profile's Clothing1M stages do every step.
//! The images are synthetic 500×375 JPEGs (quality 90) written to a temporary directory;
//! real photographs decode at a different speed.
//!
//! `cargo bench -p repro-stages --bench image_batch` (threads: RAYON_NUM_THREADS, default
//! all cores). Prints `name median_ms min_ms iterations`.

mod timing;

use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use repro_stages::data::dataset::{Dataset, DatasetMeta, Encoding, Features, Split};
use repro_stages::nn::batch::Decoder;

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let n = 64;
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut files = Vec::new();
    for i in 0..n {
        let img = image::RgbImage::from_fn(500, 375, |x, y| {
            let v = rng.random::<u8>() / 4;
            image::Rgb([(x / 2) as u8 + v, (y / 2) as u8 + v, ((x + y) / 4) as u8])
        });
        let name = format!("{i}.jpg");
        let mut f = std::fs::File::create(dir.path().join(&name)).unwrap();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut f, 90)
            .encode_image(&img)
            .unwrap();
        files.push(name);
    }
    let ds = Dataset {
        meta: DatasetMeta {
            name: "jpegs".into(),
            identity: String::new(),
            num_classes: 2,
            class_names: vec!["a".into(), "b".into()],
            num_coarse: None,
            example_shape: vec![3, 224, 224],
            encoding: Encoding::ImageFiles {
                root: dir.path().to_str().unwrap().into(),
                resize: 256,
                mean: vec![0.485, 0.456, 0.406],
                std: vec![0.229, 0.224, 0.225],
            },
            train_len: n,
            test_len: 0,
            notes: vec![],
        },
        train: Split {
            x: Features::Files(files),
            y: vec![0; n],
            coarse: None,
        },
        test: Split {
            x: Features::Files(vec![]),
            y: vec![],
            coarse: None,
        },
        real_noise: None,
    };
    ds.validate().unwrap();
    let dec = Decoder::new(&ds, &ds.train);
    let mut times = Vec::new();
    for i in 0..12 {
        let idx: Vec<u32> = (0..32).map(|j| ((i * 32 + j) % n) as u32).collect();
        let t = Instant::now();
        let _ = dec.input(&idx, Some(&mut rng)).unwrap();
        if i >= 2 {
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    timing::report("jpeg_batch_32_500x375_to_224", times);
}
