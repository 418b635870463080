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
/// between threads; a stage's training runs on one thread. Training calls [`open`] first,
/// so that a machine without a GPU gets an error rather than a panic here.
pub fn dev() -> Dev {
    DEV.with(|d| d.get_or_init(Dev::default).clone())
}

thread_local! {
    static DEV: std::cell::OnceCell<Dev> = const { std::cell::OnceCell::new() };
}

/// Opens the calling thread's device (once; later calls return at once). On the CPU this
/// cannot fail. In the `cuda` build it loads the CUDA libraries and opens GPU 0, and fails
/// with one line that says what is missing (the driver, a library, a device) and that the
/// CPU build is the one for a machine without a GPU.
pub fn open() -> anyhow::Result<()> {
    #[cfg(feature = "cuda")]
    {
        if DEV.with(|d| d.get().is_some()) {
            return Ok(());
        }
        const CPU_BUILD: &str = "this is the `cuda` build of repro; on a machine without an \
                                 NVIDIA GPU use the CPU build (`cargo build --release`, no \
                                 `--features cuda`)";
        if let Err(m) = crate::cuda_shim::preflight() {
            if m.driver {
                anyhow::bail!("no CUDA driver found: {}; {CPU_BUILD}", m.libraries);
            }
            anyhow::bail!(
                "CUDA libraries not found: {}; install a CUDA 13 toolkit or put the lib/ dirs \
                 of the nvidia-cuda-nvrtc and nvidia-cublas wheels in LD_LIBRARY_PATH",
                m.libraries
            );
        }
        // cudarc's device constructor unwraps these two: ask first
        use cudarc::driver::result as cu;
        let no_device = |why: String| anyhow::anyhow!("no CUDA device found ({why}); {CPU_BUILD}");
        cu::init().map_err(|e| no_device(format!("{e:?}")))?;
        match cu::device::get_count() {
            Ok(n) if n > 0 => {}
            Ok(_) => return Err(no_device("the driver lists no GPU".into())),
            Err(e) => return Err(no_device(format!("{e:?}"))),
        }
        // the seed of `Cuda::default()`, which `dev()` would use
        let cuda = Cuda::try_seed_from_u64(0)
            .map_err(|e| anyhow::anyhow!("opening CUDA device 0: {e:?}"))?;
        DEV.with(|d| d.get_or_init(|| cuda).clone());
    }
    Ok(())
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
