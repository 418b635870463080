//! Every architecture builds with the published parameter count and takes one training
//! step (forward in each mode, backward, update) with finite values.
//!
//! Reference counts, 10 classes: ResNet-18 CIFAR variant 11,173,962 (torchvision's
//! 11,689,512 with a 3×3 stem instead of 7×7 and a 10-way fc); ResNet-50 with the 3×3
//! stem 23,520,842 (25,557,032 − 9,408 + 1,728 − 2,049,000 + 20,490); WRN-40-2
//! 2,243,546 (Zagoruyko & Komodakis; Hendrycks' wideresnet.py); batch-norm running
//! statistics are buffers, not parameters.

use dfdx::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use repro_stages::nn::kernels::{host, Dev, Mat, Tp};
use repro_stages::nn::loss::cross_entropy;
use repro_stages::nn::model::{Input, InputKind, Mode, ModelSpec, Network};
use repro_stages::nn::optim::{Optimizer, OptimizerSpec};

fn step(spec: ModelSpec, shape: Vec<usize>, want_params: Option<usize>) {
    let (net, mut params, mut buffers) =
        Network::new(&spec, &InputKind::Dense(shape.clone()), 10, 0).unwrap();
    if let Some(n) = want_params {
        assert_eq!(params.numel(), n, "{}", spec.label());
    }
    let d: usize = shape.iter().product();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let x: Mat =
        Dev::default().tensor_from_vec((0..2 * d).map(|_| rng.random::<f32>()).collect(), (2, d));
    let before = buffers.clone();
    let frozen: Mat = net.forward::<NoneTape>(
        &params,
        &mut buffers,
        Input::Dense(x.clone()),
        Mode::TrainFrozenBn,
        Some(&mut rng),
    );
    assert_eq!(
        buffers, before,
        "a frozen-BN forward changed running statistics"
    );
    assert_eq!(*frozen.shape(), (2, 10));
    let logits = net.forward::<Tp>(
        &params,
        &mut buffers,
        Input::Dense(x.clone()),
        Mode::Train,
        Some(&mut rng),
    );
    let loss = cross_entropy(logits, &[1, 7]);
    assert!(loss.array().is_finite());
    let mut g = loss.backward();
    let grads = params.grads(&mut g);
    assert!(grads.iter().all(|v| v.iter().all(|x| x.is_finite())));
    assert!(
        grads[0].iter().any(|&x| x != 0.0),
        "first layer got no gradient"
    );
    let mut opt = Optimizer::new(
        &OptimizerSpec::Sgd {
            lr: 0.1,
            momentum: 0.9,
            nesterov: true,
            weight_decay: 5e-4,
        },
        &params,
    );
    opt.update(&mut params, &mut g, 0.1);
    let eval: Mat =
        net.forward::<NoneTape>(&params, &mut buffers, Input::Dense(x), Mode::Eval, None);
    assert!(host(&eval).iter().all(|v| v.is_finite()));
}

#[test]
fn resnet18_cifar() {
    step(ModelSpec::Resnet18, vec![3, 8, 8], Some(11_173_962));
}

#[test]
fn resnet50_small_input_stem() {
    step(ModelSpec::Resnet50, vec![3, 8, 8], Some(23_520_842));
}

#[test]
fn resnet18_imagenet_stem() {
    step(ModelSpec::Resnet18, vec![3, 64, 64], None);
}

#[test]
fn wrn_40_2() {
    step(
        ModelSpec::Wrn {
            depth: 40,
            widen: 2,
            dropout: 0.3,
        },
        vec![3, 8, 8],
        Some(2_243_546),
    );
}

#[test]
fn small_cnn_and_token_mlp() {
    step(
        ModelSpec::SmallCnn {
            channels: vec![32, 64],
            hidden: 128,
        },
        vec![1, 28, 28],
        Some(1_199_882),
    );
    let spec = ModelSpec::Mlp {
        hidden: vec![16],
        dropout: 0.5,
        embed_dim: Some(4),
    };
    let (net, params, mut buffers) =
        Network::new(&spec, &InputKind::Tokens { len: 3, vocab: 20 }, 5, 0).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let logits = net.forward::<Tp>(
        &params,
        &mut buffers,
        Input::Tokens {
            ids: vec![1, 2, 3, 19, 0, 5],
            batch: 2,
        },
        Mode::Train,
        Some(&mut rng),
    );
    let mut g = cross_entropy(logits, &[0, 4]).backward();
    let ge = &params.grads(&mut g)[0];
    // rows 1, 2, 3, 19, 0, 5 of the embedding got gradient, row 7 none
    assert!(ge[4..8].iter().any(|&v| v != 0.0) && ge[7 * 4..8 * 4].iter().all(|&v| v == 0.0));
}
