//! Small operators with a host-side mask or index list: multiplication by a fixed mask
//! (inverted dropout), LeakyReLU and embedding lookup (token-id inputs).

use dfdx::prelude::*;

use super::device::host;
use super::kernels::{with_grads2, HostMat, HostVector};

/// `y = x ⊙ mask` for a constant `mask` (no gradient with respect to the mask).
pub fn mul_mask<T: Tape<f32, Cpu>>(x: HostMat<T>, mask: Vec<f32>) -> HostMat<T> {
    let (x, mut tape) = x.split_tape();
    let shape = *x.shape();
    let xs = host(&x);
    assert_eq!(mask.len(), xs.len(), "mul_mask: mask length");
    let y: Vec<f32> = xs.iter().zip(&mask).map(|(a, b)| a * b).collect();
    let out = x.device().tensor_from_vec(y, shape);
    if T::OWNS_TAPE {
        let out_c = out.clone();
        tape.add_backward_op(move |grads| {
            with_grads2(grads, &out_c, &x, |go, gx| {
                for ((g, o), m) in gx.iter_mut().zip(go).zip(&mask) {
                    *g += o * m;
                }
            })
        });
    }
    out.put_tape(tape)
}

/// LeakyReLU as PyTorch defines it: `y = x` for `x > 0`, `slope·x` otherwise; the
/// gradient is 1 for `x > 0` and `slope` otherwise (at 0 too). That is `x ⊙ m` for the
/// constant mask `m = [x > 0] + slope·[x ≤ 0]`, so it is [`mul_mask`] with that mask.
pub fn leaky_relu<T: Tape<f32, Cpu>>(x: HostMat<T>, slope: f32) -> HostMat<T> {
    let mask = host(&x)
        .iter()
        .map(|&v| if v > 0.0 { 1.0 } else { slope })
        .collect();
    mul_mask(x, mask)
}

/// Looks up `ids` (`batch x len` token ids, row-major) in the `vocab x dim` table `w`;
/// returns `batch x (len·dim)`, the embeddings of one example's tokens side by side.
pub fn embedding<T: Tape<f32, Cpu>>(
    dev: &Cpu,
    ids: &[u32],
    batch: usize,
    w: &HostVector,
    dim: usize,
    mut tape: T,
) -> HostMat<T> {
    let len = ids.len() / batch.max(1);
    assert_eq!(
        len * batch,
        ids.len(),
        "embedding: {} ids for batch {batch}",
        ids.len()
    );
    let ws = host(w);
    let vocab = ws.len() / dim;
    let mut y = Vec::with_capacity(ids.len() * dim);
    for &t in ids {
        let t = t as usize;
        assert!(t < vocab, "embedding: token id {t} out of range 0..{vocab}");
        y.extend_from_slice(&ws[t * dim..(t + 1) * dim]);
    }
    let out = dev.tensor_from_vec(y, (batch, len * dim));
    if T::OWNS_TAPE {
        let out_c = out.clone();
        let w_c = w.clone();
        let ids = ids.to_vec();
        tape.add_backward_op(move |grads| {
            with_grads2(grads, &out_c, &w_c, |go, gw| {
                for (i, &t) in ids.iter().enumerate() {
                    let t = t as usize;
                    for (g, o) in gw[t * dim..(t + 1) * dim]
                        .iter_mut()
                        .zip(&go[i * dim..(i + 1) * dim])
                    {
                        *g += o;
                    }
                }
            })
        });
    }
    out.put_tape(tape)
}
