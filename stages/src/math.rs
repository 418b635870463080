//! Elementary functions with the same bits on every machine.
//!
//! `f32::exp`, `f64::ln`, `f64::cos` and the like call the platform's math library
//! (glibc's `libm` on Linux), which is free to differ between versions, operating systems
//! and CPUs: glibc picks FMA-compiled variants of `exp`, `log`, `pow`, `sin` and `cos` at
//! load time on CPUs that have FMA, and their last bits may differ from the plain ones.
//! One last bit in a loss is enough for chaotic training to end a point of test error
//! away. Stage code therefore calls these functions, which run the pure-Rust
//! [`libm`](https://docs.rs/libm) crate (a port of musl's routines: ordinary IEEE
//! arithmetic in a fixed order, no run-time dispatch), so a result is a function of its
//! argument alone.
//!
//! `sqrt`, `powi` (repeated multiplication in the compiler's runtime), `abs`, `max` and
//! `min` are exact or fixed by IEEE 754 and stay as they are. A test of this crate
//! (`stages/tests/math_calls.rs`) refuses any other call to the platform's functions in
//! `stages/src`.

/// eˣ (f64).
#[inline]
pub fn exp(x: f64) -> f64 {
    libm::exp(x)
}

/// Natural logarithm (f64).
#[inline]
pub fn ln(x: f64) -> f64 {
    libm::log(x)
}

/// Cosine (f64, radians).
#[inline]
pub fn cos(x: f64) -> f64 {
    libm::cos(x)
}

/// Sine (f64, radians).
#[inline]
pub fn sin(x: f64) -> f64 {
    libm::sin(x)
}

/// eˣ (f32).
#[inline]
pub fn expf(x: f32) -> f32 {
    libm::expf(x)
}

/// Natural logarithm (f32).
#[inline]
pub fn lnf(x: f32) -> f32 {
    libm::logf(x)
}
