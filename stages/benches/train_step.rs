//! Time per training step (forward + cross-entropy + backward + SGD update, batch 128)
//! of the MLP 784-256-256-10 and the small CNN (1×28×28: conv32-conv64-pool-fc128-fc10);
//! with `--only=wrn` / `--only=resnet18`, of the `paper` profile's CIFAR networks
//! (3×32×32, 10 classes: WRN-40-2 and ResNet-18, a few steps each), and with
//! `--only=resnet50` of its Clothing1M network (ResNet-50, 3×224×224, 14 classes, batch
//! 32), which is what the `paper` profile's cost estimate in the README is computed from.
//!
//! `cargo bench -p repro-stages --bench train_step` (threads: RAYON_NUM_THREADS, default
//! all cores). Prints one line per model: `name median_ms min_ms iterations`.
//! `bench/pytorch_bench.sh` runs this and the same steps in PyTorch side by side.

mod timing;

use std::time::Instant;

use dfdx::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use repro_stages::nn::device::{Dev, Mat, Tp};
use repro_stages::nn::loss::cross_entropy;
use repro_stages::nn::model::{Activation, Input, InputKind, Mode, ModelSpec, Network, WrnBlock};
use repro_stages::nn::optim::{Optimizer, OptimizerSpec};

/// Times `iters` steps after `warmup` untimed ones.
struct Steps {
    batch: usize,
    classes: usize,
    warmup: usize,
    iters: usize,
}

fn bench(name: &str, spec: ModelSpec, shape: Vec<usize>, iters: usize) {
    let steps = Steps {
        batch: 128,
        classes: 10,
        warmup: 3,
        iters,
    };
    bench_with(name, spec, shape, steps)
}

fn bench_with(name: &str, spec: ModelSpec, shape: Vec<usize>, steps: Steps) {
    let Steps {
        batch,
        classes,
        warmup,
        iters,
    } = steps;
    let (net, mut params, mut buffers) =
        Network::new(&spec, &InputKind::Dense(shape.clone()), classes, 0).unwrap();
    let d: usize = shape.iter().product();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let x: Vec<f32> = (0..batch * d).map(|_| rng.random::<f32>()).collect();
    let y: Vec<u32> = (0..batch)
        .map(|_| rng.random_range(0..classes as u32))
        .collect();
    let x: Mat = Dev::default().tensor_from_vec(x, (batch, d));
    let spec_o = OptimizerSpec::Sgd {
        lr: 0.01,
        momentum: 0.9,
        nesterov: false,
        weight_decay: 0.0,
    };
    let mut opt = Optimizer::new(&spec_o, &params);
    let mut times = Vec::new();
    for i in 0..iters + warmup {
        let t = Instant::now();
        let logits = net.forward::<Tp>(
            &params,
            &mut buffers,
            Input::Dense(x.clone()),
            Mode::Train,
            Some(&mut rng),
        );
        let loss = cross_entropy(logits, &y);
        let mut g = loss.backward();
        opt.update(&mut params, &mut g, 0.01);
        if i >= warmup {
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    timing::report(name, times);
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let only = std::env::args().find_map(|a| a.strip_prefix("--only=").map(str::to_string));
    let run = |n: &str| only.as_deref().is_none_or(|o| n.starts_with(o));
    let (n_mlp, n_cnn) = if quick { (20, 3) } else { (200, 20) };
    // The CIFAR networks run only when asked for (seconds per step on a CPU).
    let asked = |n: &str| only.as_deref().is_some_and(|o| n.starts_with(o));
    if asked("wrn") {
        let spec = ModelSpec::Wrn {
            depth: 40,
            widen: 2,
            dropout: 0.3,
            activation: Activation::Relu,
            block: WrnBlock::Glc,
        };
        bench("wrn_40_2_cifar", spec, vec![3, 32, 32], 3);
    }
    if asked("resnet18") {
        bench("resnet18_cifar", ModelSpec::Resnet18, vec![3, 32, 32], 3);
    }
    if asked("resnet50") {
        let steps = Steps {
            batch: 32,
            classes: 14,
            warmup: 1,
            iters: 3,
        };
        bench_with(
            "resnet50_224",
            ModelSpec::Resnet50,
            vec![3, 224, 224],
            steps,
        );
    }
    let big = asked("wrn") || asked("resnet18") || asked("resnet50");
    if run("mlp") && !big {
        let spec = ModelSpec::Mlp {
            hidden: vec![256, 256],
            dropout: 0.0,
            embed_dim: None,
            weight_init: Default::default(),
        };
        bench("mlp_784_256_256_10", spec, vec![784], n_mlp);
    }
    if run("cnn") && !big {
        let spec = ModelSpec::SmallCnn {
            channels: vec![32, 64],
            hidden: 128,
        };
        bench(
            "cnn_28x28_conv32_conv64_pool_fc128",
            spec,
            vec![1, 28, 28],
            n_cnn,
        );
    }
}
