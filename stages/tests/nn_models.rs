//! Every architecture builds with the published parameter count and takes one training
//! step (forward in each mode, backward, update) with finite values.
//!
//! Reference counts, 10 classes: ResNet-18 CIFAR variant 11,173,962 (torchvision's
//! 11,689,512 with a 3×3 stem instead of 7×7 and a 10-way fc); ResNet-50 with the 3×3
//! stem 23,520,842 (25,557,032 − 9,408 + 1,728 − 2,049,000 + 20,490); WRN-40-2
//! 2,243,546 (Zagoruyko & Komodakis; Hendrycks' wideresnet.py); batch-norm running
//! statistics are buffers, not parameters.
//!
//! Every architecture also runs one training forward and backward on both operator paths
//! (the host kernels of a CPU build and the dfdx compositions a `cuda` build runs, here
//! both on the CPU) with the same parameters, inputs and dropout draws: the logits, the
//! loss, every parameter's gradient and the updated running statistics must agree.

use dfdx::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use repro_stages::nn::device::{host, Dev, Mat, Tp};
use repro_stages::nn::loss::cross_entropy;
use repro_stages::nn::model::{Activation, Input, InputKind, Mode, ModelSpec, Network, WrnBlock};
use repro_stages::nn::ops::Ops;
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

/// The released MLC code's WRN-40-2 (`meta_wrn.py`): GLC's count plus a bias on each of
/// its 40 convolutions and 3 shortcuts (16 + 6·2·(32 + 64 + 128) + 32 + 64 + 128 = 2,928).
#[test]
fn wrn_40_2_mlc_code() {
    step(
        ModelSpec::Wrn {
            depth: 40,
            widen: 2,
            dropout: 0.0,
            activation: Activation::LeakyRelu,
            block: WrnBlock::MlcCode,
        },
        vec![3, 8, 8],
        Some(2_246_474),
    );
}

#[test]
fn resnet18_cifar() {
    step(ModelSpec::Resnet18, vec![3, 8, 8], Some(11_173_962));
}

#[test]
fn resnet50_small_input_stem() {
    // 16×16, not 8×8: at 8×8 the last stage is 1×1, so its batch norms see two values per
    // channel and the gradients reach 1e5, and whether one SGD step then overflows is luck.
    step(ModelSpec::Resnet50, vec![3, 16, 16], Some(23_520_842));
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
            activation: Default::default(),
            block: Default::default(),
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
        weight_init: Default::default(),
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

/// Logits, loss, gradients and running statistics after one training forward/backward.
fn train_pass(net: &Network, x: Input, labels: &[u32]) -> (Vec<f32>, f32, Vec<Vec<f32>>, Vec<f32>) {
    let (_, params, mut buffers) = Network::new(&net.spec, &net.input, net.classes, 3).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let logits = net.forward::<Tp>(&params, &mut buffers, x, Mode::Train, Some(&mut rng));
    let z = host(&logits.retaped::<NoneTape>());
    let loss = cross_entropy(logits, labels);
    let l = loss.array();
    let mut g = loss.backward();
    let running = buffers.values.iter().flatten().copied().collect();
    (z, l, params.grads(&mut g), running)
}

/// ‖a − b‖ / ‖a‖ (with ‖a‖ floored at 1e-6).
fn rel(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "length");
    let d: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| ((x - y) as f64).powi(2))
        .sum::<f64>()
        .sqrt();
    let n: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    d / n.max(1e-6)
}

fn near(what: &str, a: &[f32], b: &[f32], tol: f64) {
    let r = rel(a, b);
    assert!(
        r <= tol,
        "{what}: host and portable differ by {r:e} (relative), allowed {tol:e}"
    );
}

/// The two paths round differently (f32 sums in dfdx's kernels, one FMA per term in the
/// host products, f64 channel sums in the host batch norm), and at initialisation a deep
/// network's gradient amplifies rounding: a 1e-6 relative change of the input moves
/// ResNet-50's first-layer gradient by ~1% at batch 2. So each gradient may differ between
/// the paths by a floor or by 5× what that input change makes the host path itself differ,
/// whichever is larger. The floor is 1e-3, and 3e-2 for ResNet-50 at batch 2, whose last
/// stages normalise each channel over a handful of values (2 images of 2×2): there middle
/// layers' gradients differed by up to 1.04e-2 once the host products used FMA, while its
/// logits, loss and running statistics agreed to 1e-4 (a wrong operator differs by O(1)).
#[test]
fn every_architecture_trains_alike_on_host_kernels_and_portable_ops() {
    let dense = |shape: Vec<usize>, n: usize| {
        let d: usize = shape.iter().product();
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let x: Mat = Dev::default().tensor_from_vec(
            (0..n * d).map(|_| rng.random::<f32>() - 0.5).collect(),
            (n, d),
        );
        (InputKind::Dense(shape), x)
    };
    let cases = [
        (
            ModelSpec::Mlp {
                hidden: vec![32, 32],
                dropout: 0.3,
                embed_dim: None,
                weight_init: Default::default(),
            },
            dense(vec![64], 4),
        ),
        (
            ModelSpec::SmallCnn {
                channels: vec![4, 8],
                hidden: 16,
            },
            dense(vec![1, 12, 12], 3),
        ),
        (
            ModelSpec::Wrn {
                depth: 10,
                widen: 2,
                dropout: 0.3,
                activation: Default::default(),
                block: Default::default(),
            },
            dense(vec![3, 8, 8], 3),
        ),
        (
            ModelSpec::Wrn {
                depth: 10,
                widen: 2,
                dropout: 0.0,
                activation: Activation::LeakyRelu,
                block: WrnBlock::MlcCode,
            },
            dense(vec![3, 8, 8], 3),
        ),
        (ModelSpec::Resnet18, dense(vec![3, 8, 8], 3)),
        (ModelSpec::Resnet18, dense(vec![3, 64, 64], 2)),
        (ModelSpec::Resnet50, dense(vec![3, 16, 16], 2)),
    ];
    for (spec, (kind, x)) in cases {
        let floor = if matches!(spec, ModelSpec::Resnet50) {
            3e-2
        } else {
            1e-3
        };
        let (mut net, _, _) = Network::new(&spec, &kind, 10, 3).unwrap();
        let labels: Vec<u32> = (0..x.shape().0 as u32).map(|i| (3 * i + 1) % 10).collect();
        net.ops = Ops::Host;
        let h = train_pass(&net, Input::Dense(x.clone()), &labels);
        let hs = train_pass(&net, Input::Dense(x.clone() * (1.0 + 1e-6)), &labels);
        net.ops = Ops::Portable;
        let p = train_pass(&net, Input::Dense(x), &labels);
        let what = format!("{spec:?} on {kind:?}");
        near(&format!("{what}: logits"), &h.0, &p.0, 1e-4);
        assert!(
            (h.1 - p.1).abs() <= 1e-4 * h.1.abs(),
            "{what}: loss {} vs {}",
            h.1,
            p.1
        );
        for (i, (gh, gp)) in h.2.iter().zip(&p.2).enumerate() {
            let tol = (5.0 * rel(gh, &hs.2[i])).max(floor);
            near(&format!("{what}: gradient of parameter {i}"), gh, gp, tol);
        }
        near(&format!("{what}: running statistics"), &h.3, &p.3, 1e-4);
    }
    // token inputs: embedding + dropout
    let spec = ModelSpec::Mlp {
        hidden: vec![16],
        dropout: 0.5,
        embed_dim: Some(4),
        weight_init: Default::default(),
    };
    let kind = InputKind::Tokens { len: 3, vocab: 20 };
    let (mut net, _, _) = Network::new(&spec, &kind, 5, 3).unwrap();
    let ids = || Input::Tokens {
        ids: vec![1, 2, 3, 19, 0, 1],
        batch: 2,
    };
    net.ops = Ops::Host;
    let h = train_pass(&net, ids(), &[0, 4]);
    net.ops = Ops::Portable;
    let p = train_pass(&net, ids(), &[0, 4]);
    near("token MLP: logits", &h.0, &p.0, 1e-5);
    for (gh, gp) in h.2.iter().zip(&p.2) {
        near("token MLP: gradient", gh, gp, 1e-5);
    }
}

// ------------------------------------------------------------------ starting weights

/// torchvision's ResNet-50 has 161 parameter tensors (53 convolutions, 53 batch norms with
/// weight and bias, the classifier's weight and bias), 106 running statistics, and
/// 25,557,032 parameters with 1,000 classes (`sum(p.numel() for p in resnet50().parameters())`),
/// so 25,557,032 − (2048·1000 + 1000) + (2048·14 + 14) = 23,536,718 with Clothing1M's 14.
/// Same names and shapes means its state dict loads as `init` weights.
#[test]
fn resnet50_names_and_shapes_are_torchvisions() {
    let (_, params, buffers) = Network::new(
        &ModelSpec::Resnet50,
        &InputKind::Dense(vec![3, 224, 224]),
        14,
        0,
    )
    .unwrap();
    assert_eq!(params.names.len(), 161);
    assert_eq!(buffers.names.len(), 106);
    let total: usize = params
        .shapes
        .iter()
        .map(|s| s.iter().product::<usize>())
        .sum();
    assert_eq!(total, 23_536_718);
    let shape = |n: &str| {
        let i = params
            .names
            .iter()
            .position(|x| x == n)
            .unwrap_or_else(|| panic!("{n}"));
        params.shapes[i].clone()
    };
    assert_eq!(shape("conv1.weight"), vec![64, 3, 7, 7]);
    assert_eq!(shape("layer1.0.downsample.0.weight"), vec![256, 64, 1, 1]);
    assert_eq!(shape("layer3.5.conv2.weight"), vec![256, 256, 3, 3]);
    assert_eq!(shape("layer4.2.bn3.weight"), vec![2048]);
    assert_eq!(shape("fc.weight"), vec![14, 2048]);
    assert!(buffers
        .names
        .contains(&"layer4.2.bn3.running_var".to_string()));
    assert!(buffers.names.contains(&"bn1.running_mean".to_string()));
}

/// Writes `net`'s tensors, plus an I64 counter as torchvision saves them, to a file;
/// returns its path and SHA-256.
fn weights_file(
    dir: &std::path::Path,
    tensors: &[repro_stages::nn::params::NamedTensor],
    drop: &str,
) -> (std::path::PathBuf, String) {
    use safetensors::tensor::{Dtype, TensorView};
    let mut owned: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .filter(|t| t.name != drop)
        .map(|t| {
            let b = t.data.iter().flat_map(|x| x.to_le_bytes()).collect();
            (t.name.clone(), Dtype::F32, t.shape.clone(), b)
        })
        .collect();
    owned.push((
        "bn1.num_batches_tracked".into(),
        Dtype::I64,
        vec![],
        7i64.to_le_bytes().to_vec(),
    ));
    let views: Vec<(String, TensorView)> = owned
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    let path = dir.join(format!("w{}.safetensors", drop.len()));
    safetensors::serialize_to_file(views, None, &path).unwrap();
    let sha = repro_stages::data::raw::sha256_hex(&std::fs::read(&path).unwrap());
    (path, sha)
}

#[test]
fn init_weights_load_every_tensor_but_the_skipped_and_check_the_file() {
    use repro_stages::nn::init::{apply, InitWeights};
    let cnn = ModelSpec::SmallCnn {
        channels: vec![4, 8],
        hidden: 16,
    };
    let kind = InputKind::Dense(vec![1, 12, 12]);
    let (_, src, src_buf) = Network::new(&cnn, &kind, 5, 1).unwrap();
    let (_, mut dst, mut dst_buf) = Network::new(&cnn, &kind, 5, 2).unwrap();
    let before = dst.named(&dst_buf);
    let dir = tempfile::tempdir().unwrap();
    let (path, sha) = weights_file(dir.path(), &src.named(&src_buf), "");
    let init = InitWeights {
        path: path.clone(),
        sha256: sha.clone(),
        skip: vec!["fc2.".into()],
    };
    let r = apply(&init, dir.path(), &mut dst, &mut dst_buf).unwrap();
    assert_eq!((r.loaded, r.skipped, r.unused), (6, 2, 3));
    for ((s, d), b) in src
        .named(&src_buf)
        .iter()
        .zip(dst.named(&dst_buf))
        .zip(&before)
    {
        let want = if s.name.starts_with("fc2.") { b } else { s };
        assert_eq!(d.data, want.data, "{}", d.name);
    }
    // A file that is not the one the params name.
    let wrong = InitWeights {
        sha256: "00".repeat(32),
        ..init.clone()
    };
    let e = apply(&wrong, dir.path(), &mut dst, &mut dst_buf).unwrap_err();
    assert!(e.to_string().contains("SHA-256 is"), "{e}");
    // A tensor the network needs is missing.
    let (p2, sha2) = weights_file(dir.path(), &src.named(&src_buf), "conv1.weight");
    let missing = InitWeights {
        path: p2,
        sha256: sha2,
        skip: vec![],
    };
    let e = apply(&missing, dir.path(), &mut dst, &mut dst_buf).unwrap_err();
    assert!(e.to_string().contains("conv1.weight is missing"), "{e}");
    // Another class count: the classifier's shape differs unless it is skipped.
    let (_, mut other, mut other_buf) = Network::new(&cnn, &kind, 7, 2).unwrap();
    let e = apply(
        &InitWeights {
            skip: vec![],
            ..init.clone()
        },
        dir.path(),
        &mut other,
        &mut other_buf,
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("fc2.weight has shape [5, 16], the network's is [7, 16]"),
        "{e}"
    );
    apply(&init, dir.path(), &mut other, &mut other_buf).unwrap();
}

#[test]
fn mlp_normal_init_draws_weights_of_std_one_over_root_fan_in_and_zero_biases() {
    let spec = |weight_init| ModelSpec::Mlp {
        hidden: vec![256, 128],
        dropout: 0.0,
        embed_dim: None,
        weight_init,
    };
    let normal = spec(repro_stages::nn::model::LinearInit::Normal);
    let (_, params, _) = Network::new(&normal, &InputKind::Dense(vec![784]), 10, 3).unwrap();
    let host = params.to_host();
    // fc1.weight, fc1.bias, fc2.weight, fc2.bias, fc3.weight, fc3.bias
    for (w, fan_in) in [(0, 784.0f64), (2, 256.0), (4, 128.0)] {
        let v = &host[w];
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
        let sd = (v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
        let want = 1.0 / fan_in.sqrt();
        assert!(
            (sd / want - 1.0).abs() < 0.05,
            "layer {w}: σ {sd} against {want}"
        );
        assert!(mean.abs() < 0.05 * want, "layer {w}: mean {mean}");
        // a normal law, not a uniform one of the same σ: some draws beyond √3·σ
        assert!(
            v.iter().any(|&x| (x as f64).abs() > 1.8 * want),
            "layer {w}"
        );
        assert!(host[w + 1].iter().all(|&b| b == 0.0), "layer {w}: biases");
    }
    assert_eq!(normal.label(), "mlp-256-128-normal_init");
    // the default is still PyTorch's uniform draw, and writes no field into model.json
    let uniform = spec(Default::default());
    assert_eq!(uniform.label(), "mlp-256-128");
    let json = serde_json::to_string(&uniform).unwrap();
    assert!(!json.contains("weight_init"), "{json}");
    let (_, params, _) = Network::new(&uniform, &InputKind::Dense(vec![784]), 10, 3).unwrap();
    let b = &params.to_host()[1];
    assert!(b.iter().all(|&x| x.abs() <= 1.0 / 784f32.sqrt()) && b.iter().any(|&x| x != 0.0));
}
