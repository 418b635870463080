//! Batch normalisation over channels (BatchNorm2d; PyTorch semantics: eps 1e-5,
//! momentum 0.1 unless a layer says otherwise, biased variance to normalise, unbiased
//! variance in the running estimate) as one differentiable operator.
//!
//! Three modes ([`BnMode`]): batch statistics with a running-statistics update (ordinary
//! training), batch statistics without an update (the extra look-ahead forwards of
//! meta-learning, which must not disturb the running estimates), and running statistics
//! (evaluation). Channel sums are accumulated in f64, one channel per task, so the
//! result does not depend on the thread count.

use dfdx::prelude::*;
use rayon::prelude::*;

use super::device::host;
use super::kernels::{HostMat, HostVector};

pub const BN_EPS: f64 = 1e-5;
/// PyTorch's default momentum of the running statistics.
pub const BN_MOMENTUM: f64 = 0.1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BnMode {
    /// Normalise with batch statistics and update the running ones.
    TrainUpdate,
    /// Normalise with batch statistics; leave the running ones untouched.
    TrainFrozen,
    /// Normalise with the running statistics.
    Eval,
}

/// Per channel of `xs` (`n x C·HW`): the batch mean and the biased variance, each a sum
/// in f64 over the images in order (mean first, then squared deviations from it).
fn channel_stats(xs: &[f32], n: usize, c: usize, hw: usize) -> Vec<(f64, f64)> {
    let d = c * hw;
    let count = n * hw;
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let mut s = 0.0f64;
            for img in 0..n {
                s += xs[img * d + ch * hw..img * d + (ch + 1) * hw]
                    .iter()
                    .map(|&v| v as f64)
                    .sum::<f64>();
            }
            let m = s / count as f64;
            let mut ss = 0.0f64;
            for img in 0..n {
                ss += xs[img * d + ch * hw..img * d + (ch + 1) * hw]
                    .iter()
                    .map(|&v| (v as f64 - m) * (v as f64 - m))
                    .sum::<f64>();
            }
            (m, ss / count as f64)
        })
        .collect()
}

/// The running estimates after one batch of `count` values per channel:
/// `r ← (1 − momentum)·r + momentum·batch`, the variance unbiased (`count/(count − 1)`).
fn update_running(
    running: (&mut [f32], &mut [f32]),
    stats: &[(f64, f64)],
    count: usize,
    momentum: f64,
) {
    let unbias = if count > 1 {
        count as f64 / (count - 1) as f64
    } else {
        1.0
    };
    for (ch, &(m, v)) in stats.iter().enumerate() {
        running.0[ch] = ((1.0 - momentum) * running.0[ch] as f64 + momentum * m) as f32;
        running.1[ch] = ((1.0 - momentum) * running.1[ch] as f64 + momentum * v * unbias) as f32;
    }
}

/// `x` is `batch x C·HW`; `gamma`, `beta` have `C` values; `running` is
/// `(mean, var)` with `C` values each, updated in place in [`BnMode::TrainUpdate`] with
/// weight `momentum` on the batch's statistics ([`BN_MOMENTUM`] for PyTorch's default).
#[allow(clippy::too_many_arguments)]
pub fn batch_norm2d<T: Tape<f32, Cpu>>(
    x: HostMat<T>,
    gamma: &HostVector,
    beta: &HostVector,
    running: (&mut [f32], &mut [f32]),
    c: usize,
    hw: usize,
    mode: BnMode,
    momentum: f64,
) -> HostMat<T> {
    let (x, mut tape) = x.split_tape();
    let (n, d) = *x.shape();
    assert_eq!(d, c * hw, "batch_norm2d: input shape");
    let xs = host(&x);
    let gs = host(gamma);
    let bs = host(beta);
    let count = n * hw;
    // per-channel mean and 1/sqrt(var + eps)
    let (mean, inv_std): (Vec<f64>, Vec<f64>) = match mode {
        BnMode::Eval => (
            running.0.iter().map(|&m| m as f64).collect(),
            running
                .1
                .iter()
                .map(|&v| 1.0 / (v as f64 + BN_EPS).sqrt())
                .collect(),
        ),
        BnMode::TrainUpdate | BnMode::TrainFrozen => {
            let stats = channel_stats(&xs, n, c, hw);
            if mode == BnMode::TrainUpdate {
                update_running(running, &stats, count, momentum);
            }
            stats
                .iter()
                .map(|&(m, v)| (m, 1.0 / (v + BN_EPS).sqrt()))
                .unzip()
        }
    };
    let scale: Vec<f32> = (0..c)
        .map(|ch| (gs[ch] as f64 * inv_std[ch]) as f32)
        .collect();
    let shift: Vec<f32> = (0..c)
        .map(|ch| (bs[ch] as f64 - mean[ch] * gs[ch] as f64 * inv_std[ch]) as f32)
        .collect();
    let mut y = vec![0.0f32; n * d];
    y.par_chunks_mut(d)
        .zip(xs.par_chunks(d))
        .for_each(|(yi, xi)| {
            for ch in 0..c {
                let (a, b) = (scale[ch], shift[ch]);
                for (o, &v) in yi[ch * hw..(ch + 1) * hw]
                    .iter_mut()
                    .zip(&xi[ch * hw..(ch + 1) * hw])
                {
                    *o = v * a + b;
                }
            }
        });
    let out = x.device().tensor_from_vec(y, (n, d));
    if T::OWNS_TAPE {
        let out_c = out.clone();
        let (g_c, b_c) = (gamma.clone(), beta.clone());
        let batch_stats = mode != BnMode::Eval;
        tape.add_backward_op(move |grads| {
            let go = grads.get_or_alloc_mut(&out_c)?.to_vec();
            // per channel: Σ g and Σ g·x̂
            let sums: Vec<(f64, f64)> = (0..c)
                .into_par_iter()
                .map(|ch| {
                    let (m, is) = (mean[ch], inv_std[ch]);
                    let (mut sg, mut sgx) = (0.0f64, 0.0f64);
                    for img in 0..n {
                        let r = img * d + ch * hw..img * d + (ch + 1) * hw;
                        for (&g, &v) in go[r.clone()].iter().zip(&xs[r]) {
                            sg += g as f64;
                            sgx += g as f64 * (v as f64 - m) * is;
                        }
                    }
                    (sg, sgx)
                })
                .collect();
            {
                let gg = grads.get_or_alloc_mut(&g_c)?;
                for ch in 0..c {
                    gg[ch] += sums[ch].1 as f32;
                }
            }
            {
                let gb = grads.get_or_alloc_mut(&b_c)?;
                for ch in 0..c {
                    gb[ch] += sums[ch].0 as f32;
                }
            }
            let gx = grads.get_or_alloc_mut(&x)?;
            let cnt = count as f64;
            gx.par_chunks_mut(d).enumerate().for_each(|(img, gxi)| {
                for ch in 0..c {
                    let (m, is, ga) = (mean[ch], inv_std[ch], gs[ch] as f64);
                    let r = img * d + ch * hw..img * d + (ch + 1) * hw;
                    let dst = &mut gxi[ch * hw..(ch + 1) * hw];
                    if batch_stats {
                        // dx = γ·σ⁻¹/N · (N·g − Σg − x̂·Σ(g·x̂))
                        let (sg, sgx) = sums[ch];
                        for ((o, &g), &v) in dst.iter_mut().zip(&go[r.clone()]).zip(&xs[r]) {
                            let xhat = (v as f64 - m) * is;
                            *o += (ga * is / cnt * (cnt * g as f64 - sg - xhat * sgx)) as f32;
                        }
                    } else {
                        let a = (ga * is) as f32;
                        for (o, &g) in dst.iter_mut().zip(&go[r]) {
                            *o += g * a;
                        }
                    }
                }
            });
            Ok(())
        });
    }
    out.put_tape(tape)
}
