//! Time of one epoch of the `cpu` profile's `ce` stage: the `train` kind's own code
//! ([`repro_stages::kinds::train::train`]) with the profile's params (GLC's MNIST protocol:
//! MLP 784-128-128-10, Adam lr 1e-3, weight decay 1e-6, batch 32) for one epoch over
//! 60,000 training images and the evaluation on 10,000 test images that ends every epoch,
//! including what the stage does around it (network set-up, the end-of-phase checkpoint,
//! writing the weights). The images are synthetic: MNIST-shaped (1×28×28 bytes, decoded
//! as value / 255), uniformly random pixels and labels; the work does not depend on the
//! pixel values.
//!
//! ```text
//! cargo bench -p repro-stages --bench epoch                      # threads: all cores
//! RAYON_NUM_THREADS=1 cargo bench -p repro-stages --bench epoch -- --reps=5
//! ```
//!
//! Params: `--reps=N` epochs timed, each a fresh stage in fresh directories (default 5);
//! `--train=N` training images (default 60,000); `--test=N` test images (default 10,000).
//! Threads come from `RAYON_NUM_THREADS` (default: all cores), as a stage's do.
//!
//! Prints `ce_epoch median_ms min_ms reps` (the line `bench/epoch_bench.sh` reads, beside
//! PyTorch's `bench/pytorch_epoch.py`) and `ce_epoch_weights <sha256>`, the digest of the
//! trained weights file: it must be the same for every thread count and every build that
//! claims to leave the numerics alone.

mod timing;

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use repro_stages::data::dataset::{Dataset, DatasetMeta, Encoding, Features, Split};
use repro_stages::kinds::train;
use repro_stages::{NoProgress, StageContext};
use sha2::{Digest, Sha256};

fn arg(name: &str, default: usize) -> usize {
    std::env::args()
        .find_map(|a| {
            a.strip_prefix(&format!("--{name}="))
                .map(|v| v.parse().expect("a number"))
        })
        .unwrap_or(default)
}

/// MNIST-shaped random bytes and labels.
fn synthetic(n_train: usize, n_test: usize) -> Dataset {
    let d = 28 * 28;
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut split = |n: usize| Split {
        x: Features::U8((0..n * d).map(|_| rng.random::<u8>()).collect()),
        y: (0..n).map(|_| rng.random_range(0..10u32)).collect(),
        coarse: None,
    };
    let train = split(n_train);
    let test = split(n_test);
    Dataset {
        meta: DatasetMeta {
            name: "synthetic_mnist".into(),
            identity: String::new(),
            num_classes: 10,
            class_names: (0..10).map(|c| c.to_string()).collect(),
            num_coarse: None,
            example_shape: vec![1, 28, 28],
            encoding: Encoding::Pixels {
                scale: 1.0 / 255.0,
                mean: None,
                std: None,
            },
            train_len: n_train,
            test_len: n_test,
            notes: vec![],
        },
        train,
        test,
        real_noise: None,
    }
}

fn main() {
    let reps = arg("reps", 5);
    let ds = synthetic(arg("train", 60_000), arg("test", 10_000));
    // The `cpu` profile's `mnist_baselines` params (pipeline.yaml), one epoch.
    let params: train::Params = serde_json::from_value(serde_json::json!({
        "method": "ce",
        "model": { "arch": "mlp", "hidden": [128, 128] },
        "optimizer": { "kind": "adam", "lr": 0.001, "weight_decay": 1.0e-6 },
        "epochs": 1,
        "batch_size": 32,
    }))
    .unwrap();
    let stop = AtomicBool::new(false);
    let mut times = Vec::new();
    let mut digests = Vec::new();
    for _ in 0..reps {
        let dir = tempfile::tempdir().unwrap();
        let ctx = StageContext {
            member: "mnist_baselines[ce]".into(),
            profile: "cpu".into(),
            seed: 1,
            coords: Default::default(),
            inputs: Default::default(),
            out_dir: dir.path().join("out"),
            checkpoint_dir: dir.path().join("ckpt"),
            project_dir: dir.path().to_path_buf(),
            download_dir: dir.path().join("downloads"),
            threads: 1,
            progress: &NoProgress,
            stop: &stop,
        };
        std::fs::create_dir_all(&ctx.out_dir).unwrap();
        std::fs::create_dir_all(&ctx.checkpoint_dir).unwrap();
        let t = Instant::now();
        train::train(&params, &ctx, &ds, None).unwrap();
        times.push(t.elapsed().as_secs_f64() * 1e3);
        let bytes = std::fs::read(ctx.out_dir.join(repro_stages::outputs::WEIGHTS_FILE)).unwrap();
        digests.push(hex::encode(Sha256::digest(&bytes)));
    }
    assert!(
        digests.windows(2).all(|w| w[0] == w[1]),
        "the same stage gave different weights: {digests:?}"
    );
    timing::report("ce_epoch", times);
    println!("ce_epoch_weights {}", digests[0]);
}
