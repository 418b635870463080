//! The compute device of the models and the tensor types every part of the training code
//! is written against.
//!
//! [`Dev`] is dfdx's [`Cpu`] by default and its `Cuda` device when the crate is built with
//! the `cuda` feature. The operators of [`super::ops`] pick their implementation from the
//! same switch: host kernels on the CPU ([`super::kernels`] and the operator modules), and
//! compositions of dfdx's own differentiable tensor ops on any other device
//! ([`super::portable`]). Nothing else in the crate depends on which device it is.

use dfdx::prelude::*;

/// The compute device: [`Cpu`] (default build).
#[cfg(not(feature = "cuda"))]
pub type Dev = Cpu;
/// The compute device: dfdx's `Cuda` (build with `--features cuda`).
#[cfg(feature = "cuda")]
pub type Dev = Cuda;

/// A runtime-shaped matrix (batch x features, or rows x columns).
pub type Mat<T = NoneTape> = Tensor<(usize, usize), f32, Dev, T>;
/// A runtime-shaped vector (every parameter is stored flat).
pub type Vector = Tensor<(usize,), f32, Dev>;
/// The tape of a training forward pass.
pub type Tp = OwnedTape<f32, Dev>;

/// The calling thread's device handle. dfdx devices are handles that tensors keep a copy
/// of, and the tensors of one computation should come from one instance: on CUDA an
/// instance owns a stream, and tensors made on separate instances would be worked on by
/// unordered streams. A thread, not the process, because a CUDA device cannot be shared
/// between threads; a stage's training runs on one thread.
pub fn dev() -> Dev {
    thread_local! {
        static DEV: Dev = Dev::default();
    }
    DEV.with(Dev::clone)
}

/// A host copy of a tensor's storage: its elements in row-major order when the tensor is
/// contiguous, as every output of the operators and of dfdx's element-wise ops is.
pub fn host<S: Shape, D: Device<f32>, T>(t: &Tensor<S, f32, D, T>) -> Vec<f32> {
    let mut v = vec![0.0f32; t.shape().num_elements()];
    t.copy_into(&mut v);
    v
}

/// A host copy of the gradient of `t` (zeros if the backward pass did not reach it).
pub fn grad_host<S: Shape>(grads: &mut Gradients<f32, Dev>, t: &Tensor<S, f32, Dev>) -> Vec<f32> {
    #[cfg(not(feature = "cuda"))]
    {
        grads
            .get_or_alloc_mut(t)
            .expect("gradient allocation")
            .to_vec()
    }
    #[cfg(feature = "cuda")]
    {
        grads.try_alloc_for(t).expect("gradient allocation");
        grads.get(t).as_vec()
    }
}
