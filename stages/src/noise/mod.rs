//! Label noise: the K×K transition matrix, the noise models' matrices, the generators
//! of GLC and of the official MLC code, and the [`NoisyLabels`] folder format that
//! `inject_noise` writes and training stages read.
//!
//! * [`matrix`]: [`Matrix`] (row = true class, column = observed class) and its JSON
//!   file form [`MatrixFile`].
//! * [`transition`]: the closed-form C of each noise model, with its equation.
//! * [`generators`]: the trusted subset and the corruption of the other labels (GLC
//!   resampling, MLC exact counts, real noise), seeded per purpose.
//! * [`file`]: `noise.safetensors` + `noise.json`, [`NoisyLabels`].
//!
//! Everything is re-exported here, so `crate::noise::X` names any of it.

pub mod file;
pub mod generators;
pub mod matrix;
pub mod transition;

pub use file::{NoiseMeta, NoisyLabels, TrustedSplit, META_FILE, TENSORS_FILE};
pub use generators::{
    corrupt, draw_trusted, inject, inject_with, mlc_count, real, realized_c, rng, sample_row,
    Corruption, FlipTargets, Injection, Trusted, STREAM_LABELS, STREAM_MATRIX, STREAM_TRUSTED,
};
pub use matrix::{Matrix, MatrixFile};
pub use transition::{
    fine_to_coarse, flip_c, glc_flip_c, hierarchical_c, other_class, pair_c, random_targets,
    symmetric_c, uniform_mix_c, GLC_FLIP_SEED,
};
