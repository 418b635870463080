//! What meta-learning code needs from the parameter API: gradients with respect to
//! every parameter and to extra leaf tensors (a K×K matrix T, a B×K block of label
//! logits) from one backward pass, θ + c·v, and a batch-norm forward that leaves the
//! running statistics alone. Gradients are checked against central finite differences
//! of the same loss evaluated in f64 on the host-side of the f32 model (tolerance 2%).

use dfdx::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use repro_stages::nn::device::{host, Dev, Mat, Tp};
use repro_stages::nn::model::{Input, InputKind, Mode, ModelSpec, Network};
use repro_stages::nn::params::ParamSet;

const B: usize = 6;
const K: usize = 4;

fn setup() -> (
    Network,
    ParamSet,
    repro_stages::nn::params::Buffers,
    Mat,
    Vec<u32>,
) {
    let spec = ModelSpec::Mlp {
        hidden: vec![8],
        dropout: 0.0,
        embed_dim: None,
        weight_init: Default::default(),
    };
    let (net, params, buffers) = Network::new(&spec, &InputKind::Dense(vec![5]), K, 3).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let x: Vec<f32> = (0..B * 5)
        .map(|_| rng.random::<f32>() * 2.0 - 1.0)
        .collect();
    let y: Vec<u32> = (0..B as u32).map(|i| i % K as u32).collect();
    (
        net,
        params,
        buffers,
        Dev::default().tensor_from_vec(x, (B, 5)),
        y,
    )
}

/// loss(θ, T, L) = −(1/B) Σ_b [ log (softmax(f_θ(x_b))·T)[y_b] + Σ_k softmax(L_b)_k log softmax(f_θ(x_b))_k ]
fn loss_taped(
    net: &Network,
    params: &ParamSet,
    buffers: &mut repro_stages::nn::params::Buffers,
    x: &Mat,
    y: &[u32],
    t: &Tensor<(usize, usize), f32, Dev>,
    l: &Tensor<(usize, usize), f32, Dev>,
) -> Tensor<(), f32, Dev, Tp> {
    let dev = Dev::default();
    let mut onehot = vec![0.0f32; B * K];
    y.iter()
        .enumerate()
        .for_each(|(b, &c)| onehot[b * K + c as usize] = 1.0);
    let onehot = dev.tensor_from_vec(onehot, (B, K));
    let logits = net.forward::<Tp>(params, buffers, Input::Dense(x.clone()), Mode::Train, None);
    let (logits, tape) = logits.split_tape();
    let a = logits
        .clone()
        .put_tape(tape)
        .softmax::<Axis<1>>()
        .matmul(t.clone())
        .ln()
        * onehot;
    let soft = l.leaky_trace().softmax::<Axis<1>>();
    let b = soft * logits.leaky_trace().log_softmax::<Axis<1>>();
    (a.sum::<(), _>() + b.sum::<(), _>()) * (-1.0 / B as f32)
}

#[test]
fn one_backward_gives_parameter_and_extra_leaf_gradients() {
    let (net, params, mut buffers, x, y) = setup();
    let dev = Dev::default();
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let tv: Vec<f32> = (0..K * K)
        .map(|i| if i % (K + 1) == 0 { 0.7 } else { 0.1 })
        .collect();
    let lv: Vec<f32> = (0..B * K).map(|_| rng.random::<f32>()).collect();
    let t = dev.tensor_from_vec(tv.clone(), (K, K));
    let l = dev.tensor_from_vec(lv.clone(), (B, K));
    let loss = loss_taped(&net, &params, &mut buffers, &x, &y, &t, &l);
    let mut g = loss.backward();
    let gt = g.get_or_alloc_mut(&t).unwrap().to_vec();
    let gl = g.get_or_alloc_mut(&l).unwrap().to_vec();
    let gp = params.grads(&mut g);

    let eval = |p: &ParamSet, tv: &[f32], lv: &[f32]| -> f64 {
        let mut bf = buffers.clone();
        let t = dev.tensor_from_vec(tv.to_vec(), (K, K));
        let l = dev.tensor_from_vec(lv.to_vec(), (B, K));
        loss_taped(&net, p, &mut bf, &x, &y, &t, &l).array() as f64
    };
    let h = 1e-2f32;
    let check = |name: &str, analytic: f32, plus: f64, minus: f64| {
        let fd = (plus - minus) / (2.0 * h as f64);
        assert!(
            (analytic as f64 - fd).abs() <= 0.02 * fd.abs().max(1e-2),
            "{name}: analytic {analytic}, finite difference {fd}"
        );
    };
    for i in [0, 5, 10, 15] {
        let (mut a, mut b) = (tv.clone(), tv.clone());
        a[i] += h;
        b[i] -= h;
        check(
            &format!("T[{i}]"),
            gt[i],
            eval(&params, &a, &lv),
            eval(&params, &b, &lv),
        );
    }
    for i in [0, 7, 13, 23] {
        let (mut a, mut b) = (lv.clone(), lv.clone());
        a[i] += h;
        b[i] -= h;
        check(
            &format!("L[{i}]"),
            gl[i],
            eval(&params, &tv, &a),
            eval(&params, &tv, &b),
        );
    }
    // a direction along one coordinate of each parameter: θ ± h·e_j via axpy
    for (pi, j) in [(0usize, 3usize), (1, 2), (2, 5), (3, 1)] {
        let mut v: Vec<Vec<f32>> = params
            .tensors
            .iter()
            .map(|t| vec![0.0; t.shape().0])
            .collect();
        v[pi][j] = 1.0;
        let plus = eval(&params.axpy(h, &v), &tv, &lv);
        let minus = eval(&params.axpy(-h, &v), &tv, &lv);
        check(
            &format!("{}[{j}]", params.names[pi]),
            gp[pi][j],
            plus,
            minus,
        );
    }
}

#[test]
fn axpy_makes_new_tensors_and_leaves_the_original() {
    let (_, params, _, _, _) = setup();
    let v: Vec<Vec<f32>> = params
        .tensors
        .iter()
        .map(|t| vec![1.0; t.shape().0])
        .collect();
    let moved = params.axpy(0.5, &v);
    let (a, b) = (host(&params.tensors[0]), host(&moved.tensors[0]));
    assert!(a.iter().zip(&b).all(|(x, y)| (y - x - 0.5).abs() < 1e-6));
}
