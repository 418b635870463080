//! Operators against PyTorch: forward values and the gradients of sum(out ⊙ r) with
//! respect to every input, for convolution (strided, padded, non-square, with and
//! without bias), max pooling (with and without padding), batch norm (training mode
//! with the running-statistics update at PyTorch's momentum and at another, evaluation
//! mode), the linear layer and LeakyReLU (against its definition). Every case
//! runs twice: on the host kernels (module `host_kernels`, the CPU build's operators) and
//! on their compositions of dfdx ops (module `portable_ops`, the operators of a `cuda`
//! build), both on the CPU.
//!
//! The literal arrays below were printed by `tests/reference/nn_ops_reference.py`
//! (PyTorch 2.x on CPU in float64, `torch.nn.functional.{conv2d, max_pool2d,
//! batch_norm, linear}` and autograd); the inputs follow the closed formulas in that
//! script, rebuilt here by `seq`.

use dfdx::prelude::*;
use repro_stages::nn::batch_norm::{BnMode, BN_MOMENTUM};
use repro_stages::nn::conv::ConvGeom;
use repro_stages::nn::device::{host, Dev, Mat, Vector};
use repro_stages::nn::{batch_norm, conv, elementwise, linear, pool, portable};

const CONV_Y: [f64; 54] = [
    -4.0000000000e-01,
    -3.5000000000e-01,
    -8.0000000000e-01,
    -4.5000000000e-01,
    -5.5000000000e-01,
    1.9000000000e+00,
    2.0000000000e-01,
    -5.5000000000e-01,
    -1.0000000000e-01,
    -1.5500000000e+00,
    5.5000000000e-01,
    -3.5000000000e-01,
    1.8000000000e+00,
    1.2000000000e+00,
    -7.0000000000e-01,
    -6.0000000000e-01,
    -1.5000000000e+00,
    2.0000000000e-01,
    -1.5000000000e-01,
    -2.0000000000e-01,
    1.6000000000e+00,
    -5.0000000000e-02,
    -4.5000000000e-01,
    3.0000000000e-01,
    1.0000000000e-01,
    -2.5000000000e-01,
    2.5000000000e-01,
    1.5500000000e+00,
    -5.0000000000e-02,
    -1.5000000000e-01,
    -2.1000000000e+00,
    1.4000000000e+00,
    -1.0000000000e+00,
    1.5500000000e+00,
    1.2000000000e+00,
    1.0000000000e-01,
    -1.3000000000e+00,
    -4.5000000000e-01,
    -7.0000000000e-01,
    -1.7000000000e+00,
    6.5000000000e-01,
    1.7000000000e+00,
    3.0000000000e-01,
    -1.0500000000e+00,
    -6.0000000000e-01,
    -9.0000000000e-01,
    1.3500000000e+00,
    2.5000000000e-01,
    2.3000000000e+00,
    3.5000000000e-01,
    3.0000000000e-01,
    5.5000000000e-01,
    -1.1000000000e+00,
    1.6000000000e+00,
];
const CONV_GX: [f64; 100] = [
    -2.6666666667e-01,
    -5.5511151231e-17,
    -6.6666666667e-02,
    -4.0000000000e-01,
    -2.0000000000e-01,
    8.6666666667e-01,
    1.3333333333e-01,
    -4.6666666667e-01,
    1.0000000000e+00,
    -1.3333333333e-01,
    3.3333333333e-01,
    -5.3333333333e-01,
    2.0000000000e-01,
    7.3333333333e-01,
    -2.6666666667e-01,
    -4.6666666667e-01,
    4.0000000000e-01,
    2.0000000000e-01,
    -4.0000000000e-01,
    8.6666666667e-01,
    -6.6666666667e-02,
    -4.0000000000e-01,
    -2.0000000000e-01,
    2.0000000000e-01,
    3.3333333333e-01,
    -2.6666666667e-01,
    7.3333333333e-01,
    2.0000000000e-01,
    -5.3333333333e-01,
    3.3333333333e-01,
    -1.3333333333e-01,
    1.0000000000e+00,
    -4.6666666667e-01,
    1.3333333333e-01,
    8.6666666667e-01,
    -2.0000000000e-01,
    -4.0000000000e-01,
    -6.6666666667e-02,
    -5.5511151231e-17,
    -2.6666666667e-01,
    2.0000000000e-01,
    4.0000000000e-01,
    -4.6666666667e-01,
    -1.1333333333e+00,
    -1.3333333333e-01,
    2.0000000000e-01,
    -5.3333333333e-01,
    3.3333333333e-01,
    2.0000000000e-01,
    -2.0000000000e-01,
    -2.0000000000e-01,
    2.0000000000e-01,
    3.3333333333e-01,
    -5.3333333333e-01,
    2.0000000000e-01,
    -1.3333333333e-01,
    -1.1333333333e+00,
    -4.6666666667e-01,
    4.0000000000e-01,
    2.0000000000e-01,
    -2.6666666667e-01,
    -5.5511151231e-17,
    -6.6666666667e-02,
    -4.0000000000e-01,
    -2.0000000000e-01,
    8.6666666667e-01,
    1.3333333333e-01,
    -4.6666666667e-01,
    1.0000000000e+00,
    -1.3333333333e-01,
    3.3333333333e-01,
    -5.3333333333e-01,
    2.0000000000e-01,
    7.3333333333e-01,
    -2.6666666667e-01,
    3.3333333333e-01,
    2.0000000000e-01,
    -2.0000000000e-01,
    -4.0000000000e-01,
    -6.6666666667e-02,
    8.6666666667e-01,
    -4.0000000000e-01,
    2.0000000000e-01,
    4.0000000000e-01,
    -4.6666666667e-01,
    -2.6666666667e-01,
    7.3333333333e-01,
    2.0000000000e-01,
    -5.3333333333e-01,
    3.3333333333e-01,
    -1.3333333333e-01,
    1.0000000000e+00,
    -4.6666666667e-01,
    1.3333333333e-01,
    8.6666666667e-01,
    -2.0000000000e-01,
    -4.0000000000e-01,
    -6.6666666667e-02,
    -5.5511151231e-17,
    -2.6666666667e-01,
];
const CONV_GW: [f64; 54] = [
    1.0000000000e+00,
    -2.3333333333e+00,
    -3.3333333333e-01,
    1.1666666667e+00,
    5.5511151231e-17,
    -2.0000000000e+00,
    7.5000000000e-01,
    1.0833333333e+00,
    -1.6666666667e-01,
    1.2500000000e+00,
    -4.1666666667e+00,
    1.2500000000e+00,
    1.2500000000e+00,
    -2.6666666667e+00,
    -4.1666666667e-01,
    1.6666666667e+00,
    4.1666666667e-01,
    -2.0833333333e+00,
    -3.3333333333e-01,
    1.5833333333e+00,
    -1.2500000000e+00,
    -2.0000000000e+00,
    1.4166666667e+00,
    2.5000000000e-01,
    -1.6666666667e-01,
    8.3333333333e-01,
    1.0000000000e+00,
    1.2500000000e+00,
    1.6666666667e+00,
    -2.0833333333e+00,
    -4.1666666667e-01,
    2.3333333333e+00,
    -4.1666666667e-01,
    -2.0833333333e+00,
    1.6666666667e+00,
    1.2500000000e+00,
    -1.2500000000e+00,
    -1.1666666667e+00,
    7.5000000000e-01,
    2.5000000000e-01,
    -2.5833333333e+00,
    4.1666666667e-01,
    1.0000000000e+00,
    -2.3333333333e+00,
    -3.3333333333e-01,
    -2.0833333333e+00,
    4.1666666667e-01,
    1.6666666667e+00,
    -4.1666666667e-01,
    -2.6666666667e+00,
    1.2500000000e+00,
    1.2500000000e+00,
    -4.1666666667e+00,
    1.2500000000e+00,
];
const CONV_GB: [f64; 3] = [-3.3333333333e-01, 0.0000000000e+00, 3.3333333333e-01];
const CONV2_Y: [f64; 12] = [
    2.5500000000e+00,
    -1.5000000000e-01,
    -1.0000000000e-01,
    5.0000000000e-02,
    2.3000000000e+00,
    -2.0500000000e+00,
    -1.5000000000e+00,
    2.9000000000e+00,
    -1.5000000000e+00,
    -2.6000000000e+00,
    3.4500000000e+00,
    -1.5000000000e+00,
];
const CONV2_GX: [f64; 40] = [
    6.0000000000e-01,
    -6.0000000000e-01,
    6.0000000000e-01,
    6.6666666667e-02,
    -1.3333333333e-01,
    -3.3333333333e-01,
    -3.3333333333e-01,
    1.3333333333e-01,
    6.6666666667e-02,
    -1.3333333333e-01,
    -2.6666666667e-01,
    1.4666666667e+00,
    -8.6666666667e-01,
    4.0000000000e-01,
    -1.3333333333e-01,
    -1.3333333333e-01,
    -1.3333333333e-01,
    -1.3333333333e-01,
    4.6666666667e-01,
    -2.0000000000e-01,
    -6.6666666667e-02,
    1.3333333333e-01,
    -3.3333333333e-01,
    -2.0000000000e-01,
    6.6666666667e-02,
    -1.3333333333e-01,
    -6.6666666667e-02,
    1.3333333333e+00,
    -8.0000000000e-01,
    3.3333333333e-01,
    -6.6666666667e-02,
    -1.3333333333e-01,
    -1.3333333333e-01,
    -4.6666666667e-01,
    3.3333333333e-01,
    2.6666666667e-01,
    -1.3333333333e-01,
    -3.3333333333e-01,
    3.3333333333e-01,
    6.6666666667e-02,
];
const CONV2_GW: [f64; 36] = [
    6.6666666667e-01,
    4.1666666667e-01,
    1.6666666667e-01,
    3.3333333333e-01,
    -8.3333333333e-01,
    -1.0833333333e+00,
    -9.1666666667e-01,
    6.6666666667e-01,
    4.1666666667e-01,
    1.1666666667e+00,
    -9.1666666667e-01,
    6.6666666667e-01,
    -1.0000000000e+00,
    5.8333333333e-01,
    3.3333333333e-01,
    5.0000000000e-01,
    1.1666666667e+00,
    -9.1666666667e-01,
    -1.5833333333e+00,
    8.3333333333e-01,
    5.0000000000e-01,
    4.1666666667e-01,
    -8.3333333333e-01,
    1.5833333333e+00,
    1.5000000000e+00,
    -1.5833333333e+00,
    8.3333333333e-01,
    -9.1666666667e-01,
    1.5000000000e+00,
    -1.5833333333e+00,
    -7.5000000000e-01,
    7.5000000000e-01,
    4.1666666667e-01,
    -1.5000000000e+00,
    -9.1666666667e-01,
    1.5000000000e+00,
];
const POOL_A_Y: [f64; 8] = [
    5.0000000000e-01,
    1.2500000000e+00,
    7.5000000000e-01,
    1.2500000000e+00,
    1.0000000000e+00,
    5.0000000000e-01,
    1.2500000000e+00,
    7.5000000000e-01,
];
const POOL_A_GX: [f64; 32] = [
    0.0000000000e+00,
    -6.6666666667e-01,
    0.0000000000e+00,
    3.3333333333e-01,
    0.0000000000e+00,
    0.0000000000e+00,
    0.0000000000e+00,
    0.0000000000e+00,
    0.0000000000e+00,
    -3.3333333333e-01,
    0.0000000000e+00,
    0.0000000000e+00,
    0.0000000000e+00,
    0.0000000000e+00,
    6.6666666667e-01,
    0.0000000000e+00,
    0.0000000000e+00,
    0.0000000000e+00,
    0.0000000000e+00,
    0.0000000000e+00,
    0.0000000000e+00,
    0.0000000000e+00,
    0.0000000000e+00,
    -6.6666666667e-01,
    0.0000000000e+00,
    3.3333333333e-01,
    0.0000000000e+00,
    0.0000000000e+00,
    0.0000000000e+00,
    0.0000000000e+00,
    0.0000000000e+00,
    -3.3333333333e-01,
];
const POOL_B_Y: [f64; 8] = [
    5.0000000000e-01,
    1.2500000000e+00,
    7.5000000000e-01,
    1.2500000000e+00,
    1.0000000000e+00,
    1.0000000000e+00,
    1.2500000000e+00,
    1.2500000000e+00,
];
const POOL_B_GX: [f64; 32] = [
    0.0000000000e+00,
    -6.6666666667e-01,
    0.0000000000e+00,
    3.3333333333e-01,
    0.0000000000e+00,
    0.0000000000e+00,
    0.0000000000e+00,
    0.0000000000e+00,
    0.0000000000e+00,
    -3.3333333333e-01,
    0.0000000000e+00,
    0.0000000000e+00,
    0.0000000000e+00,
    0.0000000000e+00,
    6.6666666667e-01,
    0.0000000000e+00,
    0.0000000000e+00,
    -6.6666666667e-01,
    0.0000000000e+00,
    0.0000000000e+00,
    0.0000000000e+00,
    0.0000000000e+00,
    0.0000000000e+00,
    0.0000000000e+00,
    0.0000000000e+00,
    0.0000000000e+00,
    0.0000000000e+00,
    0.0000000000e+00,
    0.0000000000e+00,
    0.0000000000e+00,
    0.0000000000e+00,
    0.0000000000e+00,
];
const BN_Y: [f64; 24] = [
    -1.6190048614e+00,
    1.4369233057e+00,
    -3.0932136119e-01,
    2.7466068059e+00,
    2.5924642836e-02,
    7.3704807161e-01,
    -5.0741792874e-01,
    2.0370550003e-01,
    -1.1824436946e+00,
    1.8734844725e+00,
    1.2723980554e-01,
    -1.6190048614e+00,
    -1.5185621436e-01,
    5.5926721442e-01,
    -6.8519878594e-01,
    2.5924642836e-02,
    -7.4588252792e-01,
    2.3100456392e+00,
    5.6380097228e-01,
    -1.1824436946e+00,
    -3.2963707155e-01,
    3.8148635722e-01,
    1.0926097860e+00,
    -1.5185621436e-01,
];
const BN_GX: [f64; 24] = [
    -1.1641650835e+00,
    3.3760864337e-01,
    -6.8685678787e-01,
    8.1491693898e-01,
    -5.3277147006e-02,
    3.6336700708e-01,
    -2.4723969111e-01,
    1.6940446298e-01,
    1.1292367191e+00,
    -2.7939733228e-01,
    -1.3038627635e+00,
    5.8207958344e-01,
    1.9812352886e-01,
    -5.7043803167e-01,
    4.1609847519e-03,
    4.2080513884e-01,
    5.1223074342e-01,
    -8.9640330793e-01,
    9.8953903903e-01,
    -3.4926392212e-02,
    4.4952420472e-01,
    -3.1903735581e-01,
    9.7606798281e-02,
    -5.1299989992e-01,
];
const BN_GG: [f64; 2] = [8.2461553716e-01, 6.8149328591e-01];
const BN_GB: [f64; 2] = [1.0000000000e+00, -1.0000000000e+00];
const BN_RM: [f64; 2] = [-2.0833333333e-02, 4.6458333333e-01];
const BN_RV: [f64; 2] = [9.8049242424e-01, 1.8539299242e+00];
const BNE_Y: [f64; 24] = [
    -2.6637538264e+00,
    1.0485196523e+00,
    -1.0727794784e+00,
    2.6394940003e+00,
    -5.9098628021e-02,
    2.9445387869e-01,
    -3.2426300806e-01,
    2.9289498657e-02,
    -2.1334290437e+00,
    1.5788444349e+00,
    -5.4245469574e-01,
    -2.6637538264e+00,
    -1.4748675470e-01,
    2.0606575201e-01,
    -4.1265113473e-01,
    -5.9098628021e-02,
    -1.6031042611e+00,
    2.1091692176e+00,
    -1.2129913067e-02,
    -2.1334290437e+00,
    -2.3587488138e-01,
    1.1767762534e-01,
    4.7123013205e-01,
    -1.4748675470e-01,
];
const BNE_GX: [f64; 24] = [
    -1.4141994204e+00,
    7.0709971022e-01,
    -7.0709971022e-01,
    1.4141994204e+00,
    -0.0000000000e+00,
    2.3570167114e-01,
    -1.1785083557e-01,
    1.1785083557e-01,
    1.4141994204e+00,
    0.0000000000e+00,
    -1.4141994204e+00,
    7.0709971022e-01,
    1.1785083557e-01,
    -2.3570167114e-01,
    -0.0000000000e+00,
    2.3570167114e-01,
    7.0709971022e-01,
    -7.0709971022e-01,
    1.4141994204e+00,
    0.0000000000e+00,
    2.3570167114e-01,
    -1.1785083557e-01,
    1.1785083557e-01,
    -2.3570167114e-01,
];
const BNE_GG: [f64; 2] = [5.6567976818e-01, 9.4280668457e-02];
const BNE_GB: [f64; 2] = [1.0000000000e+00, -1.0000000000e+00];
const LIN_Y: [f64; 12] = [
    7.0000000000e-01,
    2.5000000000e-01,
    6.0000000000e-01,
    1.8000000000e+00,
    -9.5000000000e-01,
    9.5000000000e-01,
    7.0000000000e-01,
    -5.0000000000e-01,
    -9.0000000000e-01,
    -9.5000000000e-01,
    -6.0000000000e-01,
    5.5000000000e-01,
];
const LIN_GX: [f64; 20] = [
    6.0000000000e-01,
    -5.3333333333e-01,
    -2.6666666667e-01,
    4.6666666667e-01,
    -2.0000000000e-01,
    -1.3333333333e-01,
    -1.3333333333e-01,
    -1.3333333333e-01,
    -1.3333333333e-01,
    8.0000000000e-01,
    -5.3333333333e-01,
    6.0000000000e-01,
    3.3333333333e-01,
    -4.0000000000e-01,
    -2.0000000000e-01,
    -2.6666666667e-01,
    3.3333333333e-01,
    4.6666666667e-01,
    -3.3333333333e-01,
    -2.0000000000e-01,
];
const LIN_GW: [f64; 15] = [
    2.5000000000e-01,
    -8.3333333333e-02,
    5.0000000000e-01,
    -1.6666666667e+00,
    7.5000000000e-01,
    -5.0000000000e-01,
    1.0833333333e+00,
    -1.0000000000e+00,
    5.8333333333e-01,
    3.3333333333e-01,
    8.3333333333e-01,
    -1.9166666667e+00,
    8.3333333333e-01,
    -8.3333333333e-02,
    -8.3333333333e-02,
];
const LIN_GB: [f64; 3] = [3.3333333333e-01, -6.6666666667e-01, -5.5511151231e-17];

fn seq(n: usize, a: usize, m: usize, off: f64, div: f64) -> Vec<f32> {
    (0..n)
        .map(|i| (((a * i) % m) as f64 - off) as f32 / div as f32)
        .collect()
}
fn xs(n: usize) -> Vec<f32> {
    seq(n, 7, 11, 5.0, 4.0)
}
fn ws(n: usize) -> Vec<f32> {
    seq(n, 5, 7, 3.0, 5.0)
}
fn rs(n: usize) -> Vec<f32> {
    seq(n, 3, 5, 2.0, 3.0)
}

fn close(name: &str, got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (*g as f64 - w).abs() <= 1e-5 * (1.0 + w.abs()),
            "{name}[{i}]: got {g}, want {w}"
        );
    }
}

/// sum(out ⊙ r) on the tape, then the gradients.
fn backward_weighted(out: Mat<OwnedTape<f32, Dev>>) -> (Vec<f32>, Gradients<f32, Dev>) {
    let dev = Dev::default();
    let shape = *out.shape();
    let y = host(&out.retaped::<NoneTape>());
    let r = dev.tensor_from_vec(rs(shape.0 * shape.1), shape);
    let loss = (out * r).sum::<(), _>();
    (y, loss.backward())
}

fn vec1(v: Vec<f32>) -> Vector {
    let n = v.len();
    Dev::default().tensor_from_vec(v, (n,))
}

type TMat = Mat<OwnedTape<f32, Dev>>;

/// One implementation of the operators under test, at the taped CPU type.
struct Impl {
    conv: fn(TMat, &Vector, Option<&Vector>, ConvGeom) -> TMat,
    pool: fn(TMat, usize, usize, usize, usize, usize, usize) -> (TMat, usize, usize),
    #[allow(clippy::type_complexity)]
    bn: fn(TMat, &Vector, &Vector, (&mut [f32], &mut [f32]), usize, usize, BnMode, f64) -> TMat,
    linear: fn(TMat, &Vector, Option<&Vector>, usize) -> TMat,
    leaky: fn(TMat, f32) -> TMat,
}

fn host_conv(x: TMat, w: &Vector, b: Option<&Vector>, g: ConvGeom) -> TMat {
    conv::conv2d(x, w, b, g, true)
}
fn host_linear(x: TMat, w: &Vector, b: Option<&Vector>, o: usize) -> TMat {
    linear::linear(x, w, b, o, true)
}

const HOST: Impl = Impl {
    conv: host_conv,
    pool: pool::max_pool2d,
    bn: batch_norm::batch_norm2d,
    linear: host_linear,
    leaky: elementwise::leaky_relu,
};
const PORTABLE: Impl = Impl {
    conv: portable::conv2d,
    pool: portable::max_pool2d,
    bn: portable::batch_norm2d,
    linear: portable::linear,
    leaky: portable::leaky_relu,
};

/// Each check runs once per implementation, as `host_kernels::<name>` and
/// `portable_ops::<name>`.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod host_kernels {
            $( #[test] fn $name() { super::$name(&super::HOST) } )*
        }
        mod portable_ops {
            $( #[test] fn $name() { super::$name(&super::PORTABLE) } )*
        }
    };
}

on_both!(
    conv2d_strided_padded_with_bias_matches_pytorch,
    conv2d_valid_non_square_without_bias_matches_pytorch,
    max_pool_matches_pytorch,
    batch_norm_training_matches_pytorch_and_updates_running_stats,
    batch_norm_eval_matches_pytorch,
    batch_norm_momentum_weighs_the_batch_statistics,
    linear_matches_pytorch,
    leaky_relu_matches_its_definition,
);

fn conv2d_strided_padded_with_bias_matches_pytorch(imp: &Impl) {
    let dev = Dev::default();
    let x: Mat = dev.tensor_from_vec(xs(2 * 50), (2, 50));
    let w = vec1(ws(54));
    let b = vec1(vec![0.1, -0.2, 0.3]);
    let g = ConvGeom {
        in_c: 2,
        out_c: 3,
        h: 5,
        w: 5,
        k: 3,
        stride: 2,
        pad: 1,
    };
    let y = (imp.conv)(x.leaky_trace(), &w, Some(&b), g);
    let (yv, mut grads) = backward_weighted(y);
    close("y", &yv, &CONV_Y);
    close("gx", &grads.get_or_alloc_mut(&x).unwrap(), &CONV_GX);
    close("gw", &grads.get_or_alloc_mut(&w).unwrap(), &CONV_GW);
    close("gb", &grads.get_or_alloc_mut(&b).unwrap(), &CONV_GB);
}

fn conv2d_valid_non_square_without_bias_matches_pytorch(imp: &Impl) {
    let dev = Dev::default();
    let x: Mat = dev.tensor_from_vec(xs(40), (1, 40));
    let w = vec1(ws(36));
    let g = ConvGeom {
        in_c: 2,
        out_c: 2,
        h: 4,
        w: 5,
        k: 3,
        stride: 1,
        pad: 0,
    };
    let y = (imp.conv)(x.leaky_trace(), &w, None, g);
    let (yv, mut grads) = backward_weighted(y);
    close("y", &yv, &CONV2_Y);
    close("gx", &grads.get_or_alloc_mut(&x).unwrap(), &CONV2_GX);
    close("gw", &grads.get_or_alloc_mut(&w).unwrap(), &CONV2_GW);
}

fn max_pool_matches_pytorch(imp: &Impl) {
    let dev = Dev::default();
    for (k, s, p, wy, wgx) in [
        (2, 2, 0, &POOL_A_Y[..], &POOL_A_GX[..]),
        (3, 2, 1, &POOL_B_Y[..], &POOL_B_GX[..]),
    ] {
        let x: Mat = dev.tensor_from_vec(xs(32), (1, 32));
        let (y, _, _) = (imp.pool)(x.leaky_trace(), 2, 4, 4, k, s, p);
        let (yv, mut grads) = backward_weighted(y);
        close("y", &yv, wy);
        close("gx", &grads.get_or_alloc_mut(&x).unwrap(), wgx);
    }
}

fn batch_norm_training_matches_pytorch_and_updates_running_stats(imp: &Impl) {
    let dev = Dev::default();
    let x: Mat = dev.tensor_from_vec(xs(24), (3, 8));
    let g = vec1(vec![1.5, -0.5]);
    let b = vec1(vec![0.2, 0.1]);
    let (mut rm, mut rv) = (vec![0.0f32, 0.5], vec![1.0f32, 2.0]);
    let y = (imp.bn)(
        x.leaky_trace(),
        &g,
        &b,
        (&mut rm, &mut rv),
        2,
        4,
        BnMode::TrainUpdate,
        BN_MOMENTUM,
    );
    let (yv, mut grads) = backward_weighted(y);
    close("y", &yv, &BN_Y);
    close("gx", &grads.get_or_alloc_mut(&x).unwrap(), &BN_GX);
    close("gamma", &grads.get_or_alloc_mut(&g).unwrap(), &BN_GG);
    close("beta", &grads.get_or_alloc_mut(&b).unwrap(), &BN_GB);
    close("running_mean", &rm, &BN_RM);
    close("running_var", &rv, &BN_RV);
    // the frozen mode gives the same output and leaves the statistics alone
    let (mut rm2, mut rv2) = (vec![0.0f32, 0.5], vec![1.0f32, 2.0]);
    let y = (imp.bn)(
        x.leaky_trace(),
        &g,
        &b,
        (&mut rm2, &mut rv2),
        2,
        4,
        BnMode::TrainFrozen,
        BN_MOMENTUM,
    );
    let (yv, _) = backward_weighted(y);
    close("y frozen", &yv, &BN_Y);
    assert_eq!((rm2, rv2), (vec![0.0, 0.5], vec![1.0, 2.0]));
}

/// At momentum 0.9 (the released MLC code's last batch norm) the running statistics take
/// 0.9 of the batch's: the batch statistics are recovered from PyTorch's update at 0.1.
fn batch_norm_momentum_weighs_the_batch_statistics(imp: &Impl) {
    let dev = Dev::default();
    let x: Mat = dev.tensor_from_vec(xs(24), (3, 8));
    let g = vec1(vec![1.5, -0.5]);
    let b = vec1(vec![0.2, 0.1]);
    let (r0m, r0v) = ([0.0f64, 0.5], [1.0f64, 2.0]);
    let (mut rm, mut rv) = (vec![0.0f32, 0.5], vec![1.0f32, 2.0]);
    let y = (imp.bn)(
        x.leaky_trace(),
        &g,
        &b,
        (&mut rm, &mut rv),
        2,
        4,
        BnMode::TrainUpdate,
        0.9,
    );
    let (yv, _) = backward_weighted(y);
    close("y", &yv, &BN_Y);
    let want = |r0: &[f64; 2], at_default: &[f64]| -> Vec<f64> {
        (0..2)
            .map(|c| {
                let batch = (at_default[c] - 0.9 * r0[c]) / 0.1;
                0.1 * r0[c] + 0.9 * batch
            })
            .collect()
    };
    close("running_mean", &rm, &want(&r0m, &BN_RM));
    close("running_var", &rv, &want(&r0v, &BN_RV));
}

/// `x` above 0, `0.01·x` below, with the gradient 1 or 0.01 (PyTorch's LeakyReLU); the
/// inputs avoid 0, where the two paths' gradients differ by definition.
fn leaky_relu_matches_its_definition(imp: &Impl) {
    let dev = Dev::default();
    let v: Vec<f32> = xs(12).iter().map(|a| a - 0.3).collect();
    assert!(v.iter().all(|&a| a != 0.0) && v.iter().any(|&a| a < 0.0));
    let x: Mat = dev.tensor_from_vec(v.clone(), (3, 4));
    let y = (imp.leaky)(x.leaky_trace(), 0.01);
    let (yv, mut grads) = backward_weighted(y);
    let r = rs(12);
    let want_y: Vec<f64> = v
        .iter()
        .map(|&a| if a > 0.0 { a as f64 } else { 0.01 * a as f64 })
        .collect();
    let want_g: Vec<f64> = v
        .iter()
        .zip(&r)
        .map(|(&a, &ri)| if a > 0.0 { ri as f64 } else { 0.01 * ri as f64 })
        .collect();
    close("y", &yv, &want_y);
    close("gx", &grads.get_or_alloc_mut(&x).unwrap(), &want_g);
}

#[test]
fn host_leaky_relu_takes_the_slope_at_zero_as_pytorch() {
    let dev = Dev::default();
    let x: Mat = dev.tensor_from_vec(vec![0.0, 2.0], (1, 2));
    let y = elementwise::leaky_relu(x.leaky_trace(), 0.01);
    let grads = y.sum::<(), _>().backward();
    assert_eq!(grads.get(&x).as_vec(), vec![0.01, 1.0]);
}

fn batch_norm_eval_matches_pytorch(imp: &Impl) {
    let dev = Dev::default();
    let x: Mat = dev.tensor_from_vec(xs(24), (3, 8));
    let g = vec1(vec![1.5, -0.5]);
    let b = vec1(vec![0.2, 0.1]);
    let (mut rm, mut rv) = (vec![0.1f32, -0.2], vec![0.5f32, 2.0]);
    let y = (imp.bn)(
        x.leaky_trace(),
        &g,
        &b,
        (&mut rm, &mut rv),
        2,
        4,
        BnMode::Eval,
        BN_MOMENTUM,
    );
    let (yv, mut grads) = backward_weighted(y);
    close("y", &yv, &BNE_Y);
    close("gx", &grads.get_or_alloc_mut(&x).unwrap(), &BNE_GX);
    close("gamma", &grads.get_or_alloc_mut(&g).unwrap(), &BNE_GG);
    close("beta", &grads.get_or_alloc_mut(&b).unwrap(), &BNE_GB);
}

fn linear_matches_pytorch(imp: &Impl) {
    let dev = Dev::default();
    let x: Mat = dev.tensor_from_vec(xs(20), (4, 5));
    let w = vec1(ws(15));
    let b = vec1(vec![0.1, -0.2, 0.3]);
    let y = (imp.linear)(x.leaky_trace(), &w, Some(&b), 3);
    let (yv, mut grads) = backward_weighted(y);
    close("y", &yv, &LIN_Y);
    close("gx", &grads.get_or_alloc_mut(&x).unwrap(), &LIN_GX);
    close("gw", &grads.get_or_alloc_mut(&w).unwrap(), &LIN_GW);
    close("gb", &grads.get_or_alloc_mut(&b).unwrap(), &LIN_GB);
}

/// A deterministic pseudo-random vector in [−1, 1).
fn noise(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Output, and the gradients of sum(out ⊙ r) for `leaves`, of one taped computation.
fn run_weighted(out: TMat, leaves: &[&Vector], x: &Mat) -> Vec<Vec<f32>> {
    let (y, mut grads) = backward_weighted(out);
    let mut all = vec![y, grads.get_or_alloc_mut(x).unwrap().to_vec()];
    all.extend(
        leaves
            .iter()
            .map(|t| grads.get_or_alloc_mut(*t).unwrap().to_vec()),
    );
    all
}

fn same(name: &str, host: &[Vec<f32>], portable: &[Vec<f32>]) {
    assert_eq!(host.len(), portable.len());
    for (k, (h, p)) in host.iter().zip(portable).enumerate() {
        assert_eq!(h.len(), p.len(), "{name} part {k}: length");
        for (i, (a, b)) in h.iter().zip(p).enumerate() {
            assert!(
                (a - b).abs() <= 1e-4 * (1.0 + a.abs()),
                "{name} part {k} [{i}]: host {a}, portable {b}"
            );
        }
    }
}

#[test]
fn portable_operators_equal_host_kernels_on_network_shapes() {
    let dev = Dev::default();
    // convolutions as the networks use them: 3×3 padded (WRN/ResNet body), 1×1 stride 1
    // and stride 2 (shortcuts), 7×7 stride 2 (ImageNet stem), bias and no bias
    let geoms = [
        (3, 4, 6, 6, 3, 1, 1, true),
        (4, 6, 6, 6, 1, 1, 0, false),
        (4, 6, 6, 6, 1, 2, 0, false),
        (3, 2, 9, 9, 7, 2, 3, false),
        (2, 3, 5, 7, 3, 2, 1, true),
    ];
    for (s, &(in_c, out_c, h, w, k, stride, pad, bias)) in geoms.iter().enumerate() {
        let g = ConvGeom {
            in_c,
            out_c,
            h,
            w,
            k,
            stride,
            pad,
        };
        let n = 3;
        let x: Mat = dev.tensor_from_vec(noise(n * in_c * h * w, s as u64), (n, in_c * h * w));
        let wt = vec1(noise(out_c * in_c * k * k, 100 + s as u64));
        let b = vec1(noise(out_c, 200 + s as u64));
        let b = bias.then_some(&b);
        let mut leaves = vec![&wt];
        leaves.extend(b);
        let hk = run_weighted(host_conv(x.leaky_trace(), &wt, b, g), &leaves, &x);
        let pt = run_weighted(portable::conv2d(x.leaky_trace(), &wt, b, g), &leaves, &x);
        same(&format!("conv {g:?}"), &hk, &pt);
    }
    // pooling: 3×3 stride 2 pad 1 (ImageNet stem), 2×2 stride 2, global average
    let x: Mat = dev.tensor_from_vec(noise(2 * 3 * 7 * 7, 7), (2, 3 * 49));
    for (k, s, p) in [(3, 2, 1), (2, 2, 0)] {
        let hk = run_weighted(
            pool::max_pool2d(x.leaky_trace(), 3, 7, 7, k, s, p).0,
            &[],
            &x,
        );
        let pt = run_weighted(
            portable::max_pool2d(x.leaky_trace(), 3, 7, 7, k, s, p).0,
            &[],
            &x,
        );
        same(&format!("max pool {k}/{s}/{p}"), &hk, &pt);
    }
    let hk = run_weighted(pool::global_avg_pool(x.leaky_trace(), 3, 49), &[], &x);
    let pt = run_weighted(portable::global_avg_pool(x.leaky_trace(), 3, 49), &[], &x);
    same("global average pool", &hk, &pt);
    // dropout mask
    let mask: Vec<f32> = noise(2 * 3 * 49, 8)
        .into_iter()
        .map(|v| if v < 0.0 { 0.0 } else { 2.0 })
        .collect();
    let hk = run_weighted(
        repro_stages::nn::elementwise::mul_mask(x.leaky_trace(), mask.clone()),
        &[],
        &x,
    );
    let pt = run_weighted(portable::mul_mask(x.leaky_trace(), mask), &[], &x);
    same("mul_mask", &hk, &pt);
    // embedding of 2 examples x 3 tokens (a repeated id) in a 5 x 4 table
    let table = vec1(noise(20, 9));
    let ids = [4u32, 0, 4, 2, 2, 1];
    let embed = |out: TMat| {
        let (y, mut grads) = backward_weighted(out);
        vec![y, grads.get_or_alloc_mut(&table).unwrap().to_vec()]
    };
    let hk = embed(repro_stages::nn::elementwise::embedding(
        &dev,
        &ids,
        2,
        &table,
        4,
        OwnedTape::default(),
    ));
    let pt = embed(portable::embedding(
        &dev,
        &ids,
        2,
        &table,
        4,
        OwnedTape::default(),
    ));
    same("embedding", &hk, &pt);
}
