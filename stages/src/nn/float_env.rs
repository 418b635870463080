//! The floating-point environment every stage computes in: subnormal numbers are flushed
//! to zero, both where an operation reads them and where it would produce one (on x86-64,
//! the DAZ and FTZ bits of the MXCSR register).
//!
//! # Why
//!
//! Adam with weight decay drives the weights of inputs that never fire (the border pixels
//! of an image, the units a ReLU has switched off) geometrically towards zero: once
//! `√v̂ < ε` the step is about `lr·λ·θ/ε`, a tenth of the weight per step under GLC's MNIST
//! protocol (lr 1e-3, λ 1e-6, ε 1e-8). After an epoch such weights are subnormal (below
//! 2⁻¹²⁶ ≈ 1.2e-38), and so are their moments and every product they enter. Intel CPUs
//! take a microcode assist, about a hundred cycles, for each vector operation that reads
//! or writes a subnormal: on the Fashion-MNIST MLP, 8 % of the first layer's weights were
//! below 1e-30 after ten epochs and the optimizer's element-wise update, normally a few
//! percent of a step, took 40 % of the stage's time. A subnormal carries at most 23
//! significant bits of a number below 1e-38; flushing it changes no accuracy a table can
//! show, and it is what PyTorch's `torch.set_flush_denormal(True)` and TensorFlow's CPU
//! kernels do.
//!
//! # Same bits on every CPU
//!
//! DAZ and FTZ are part of SSE's definition, and AVX, AVX2 and AVX-512 instructions obey
//! the same register: every x86-64 CPU reads a subnormal operand as a zero of the same
//! sign, and replaces a tiny result with a zero of the result's sign. An x86 CPU decides
//! that a result is tiny after rounding it to the format's precision with an unbounded
//! exponent (where ARM decides before rounding), so the fused multiply-add instruction and
//! the software one [`libm::fmaf`] falls back to on CPUs without it (which rounds its
//! exact double-precision sum to single precision once, with the same conversion
//! instruction) flush the same results. The mode is a property of the thread: [`enter`]
//! sets it on the calling thread and on every thread of rayon's pool, and a thread started
//! afterwards inherits it from the thread that starts it (Linux copies the register at
//! `clone`).
//!
//! On other architectures [`enter`] changes nothing: they compute with subnormals, so
//! their bits may differ from x86-64's wherever a subnormal arises.

#[cfg(target_arch = "x86_64")]
mod mxcsr {
    /// Denormals are zeros: a subnormal operand is read as zero.
    const DAZ: u32 = 1 << 6;
    /// Flush to zero: a tiny result is replaced by zero.
    const FTZ: u32 = 1 << 15;

    /// Sets DAZ and FTZ on the calling thread.
    pub fn set() {
        let mut csr: u32 = 0;
        // SAFETY: `stmxcsr` stores the 32-bit MXCSR register into `csr`, a valid, aligned
        // u32 on this stack frame; SSE is part of the x86-64 baseline.
        unsafe {
            std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack, preserves_flags))
        };
        let want = csr | DAZ | FTZ;
        if want != csr {
            // SAFETY: `ldmxcsr` loads a valid MXCSR value (the current one with two mode
            // bits set; no reserved bit changes).
            unsafe {
                std::arch::asm!("ldmxcsr [{}]", in(reg) &want, options(nostack, preserves_flags))
            };
        }
    }

    /// Whether the calling thread flushes subnormals.
    pub fn is_set() -> bool {
        let mut csr: u32 = 0;
        // SAFETY: as in `set`.
        unsafe {
            std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack, preserves_flags))
        };
        csr & (DAZ | FTZ) == DAZ | FTZ
    }
}

/// Puts the calling thread and every thread of rayon's global pool into the stages'
/// floating-point environment (see the module docs). Cheap and idempotent: every stage and
/// every training session calls it before computing.
pub fn enter() {
    #[cfg(target_arch = "x86_64")]
    {
        mxcsr::set();
        rayon::broadcast(|_| mxcsr::set());
    }
}

/// Whether the calling thread is in the stages' floating-point environment (always true on
/// architectures where [`enter`] changes nothing).
pub fn entered() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        mxcsr::is_set()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `a·b` and `a + b` computed where they are called: the compiler may not reuse a
    /// product from before the mode changed (it assumes that floating point does not
    /// depend on it).
    #[inline(never)]
    fn mul(a: f32, b: f32) -> f32 {
        std::hint::black_box(a) * std::hint::black_box(b)
    }
    #[inline(never)]
    fn add(a: f32, b: f32) -> f32 {
        std::hint::black_box(a) + std::hint::black_box(b)
    }

    #[test]
    fn subnormals_are_flushed_on_every_pool_thread() {
        let tiny = f32::MIN_POSITIVE;
        let sub = f32::from_bits(1);
        std::thread::spawn(move || {
            // A fresh thread computes with subnormals until it enters.
            #[cfg(target_arch = "x86_64")]
            assert_eq!(mul(tiny, 0.5), f32::MIN_POSITIVE / 2.0);
            enter();
            assert!(entered());
            #[cfg(target_arch = "x86_64")]
            {
                // A tiny result becomes zero; a subnormal operand reads as zero.
                assert_eq!(mul(tiny, 0.5).to_bits(), 0);
                assert_eq!(mul(-tiny, 0.5).to_bits(), (-0.0f32).to_bits());
                assert_eq!(add(sub, 0.0).to_bits(), 0);
                assert_eq!(mul(sub, 2.0).to_bits(), 0);
                // The pool's threads, and threads started afterwards, flush too.
                let on_pool = rayon::broadcast(|_| entered());
                assert!(on_pool.iter().all(|&b| b));
                let child = std::thread::spawn(move || mul(tiny, 0.5).to_bits());
                assert_eq!(child.join().unwrap(), 0);
                // The fused multiply-add agrees with the rule: a product that rounds to a
                // tiny value is flushed, a subnormal addend is read as zero.
                let fma = |a, b, c| libm::fmaf(std::hint::black_box(a), b, c);
                assert_eq!(fma(tiny, 0.5, 0.0).to_bits(), 0);
                assert_eq!(fma(sub, 2f32.powi(30), 0.0).to_bits(), 0);
            }
        })
        .join()
        .unwrap();
    }
}
