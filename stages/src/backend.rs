//! Which compute backend this build computes with, as fingerprints and `metrics.json`
//! record it; a file of its own so that naming it reaches no numeric code.

/// The compute backend compiled in: `cpu` (host kernels), `cuda` with the `cuda` feature,
/// or `cpu-portable` with the `portable-ops` feature (the operators a `cuda` build uses,
/// composed from dfdx ops, run on the CPU; they agree with the host kernels to rounding
/// only, so their outputs must not pass for the host kernels').
pub const BACKEND: &str = if cfg!(feature = "cuda") {
    "cuda"
} else if cfg!(feature = "portable-ops") {
    "cpu-portable"
} else {
    "cpu"
};
