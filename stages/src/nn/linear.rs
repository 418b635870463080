//! Fully connected layer `y = x·Wᵀ + b` as one differentiable operator (PyTorch layout:
//! `W` is `out x in`, row-major, stored flat).

use dfdx::prelude::*;

use super::device::host;
use super::kernels::{matmul, with_grads2, HostMat, HostVector, Operand, Par};

/// `x` is `batch x in`; returns `batch x out`. With `input_grad == false` the gradient
/// with respect to `x` is not computed (the first layer of a network).
pub fn linear<T: Tape<f32, Cpu>>(
    x: HostMat<T>,
    w: &HostVector,
    b: Option<&HostVector>,
    out_features: usize,
    input_grad: bool,
) -> HostMat<T> {
    let (x, mut tape) = x.split_tape();
    let (n, d) = *x.shape();
    let o = out_features;
    assert_eq!(
        w.shape().0,
        o * d,
        "linear: weight has {} values, expected {o} x {d}",
        w.shape().0
    );
    let xs = host(&x);
    let ws = host(w);
    let mut y = vec![0.0f32; n * o];
    if let Some(b) = b {
        assert_eq!(b.shape().0, o, "linear: bias length");
        let bs = host(b);
        y.chunks_exact_mut(o)
            .for_each(|row| row.copy_from_slice(&bs));
    }
    matmul(
        Operand::n(&xs, n, d),
        Operand::t(&ws, o, d),
        &mut y,
        b.is_some(),
        Par::Rayon,
    );
    let out = x.device().tensor_from_vec(y, (n, o));
    if T::OWNS_TAPE {
        let out_c = out.clone();
        let w_c = w.clone();
        let b_c = b.cloned();
        tape.add_backward_op(move |grads| {
            if input_grad {
                with_grads2(grads, &out_c, &x, |go, gx| {
                    matmul(
                        Operand::n(go, n, o),
                        Operand::n(&ws, o, d),
                        gx,
                        true,
                        Par::Rayon,
                    )
                })?;
            }
            with_grads2(grads, &out_c, &w_c, |go, gw| {
                matmul(
                    Operand::t(go, n, o),
                    Operand::n(&xs, n, d),
                    gw,
                    true,
                    Par::Rayon,
                )
            })?;
            if let Some(b_c) = &b_c {
                with_grads2(grads, &out_c, b_c, |go, gb| {
                    for row in go.chunks_exact(o) {
                        gb.iter_mut().zip(row).for_each(|(g, r)| *g += r);
                    }
                })?;
            }
            Ok(())
        });
    }
    out.put_tape(tape)
}
