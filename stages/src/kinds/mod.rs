//! One file per stage kind (listed in `kind_list.rs`): a `//!` header saying what it
//! computes, its `Params` (every field documented with its default), and the type named
//! like its `Kind` variant that implements [`crate::kind::StageKind`].

pub mod command;
pub mod distill;
pub mod download;
pub mod inject_noise;
pub mod probe;
pub mod tables;
pub mod train;
pub mod train_mlc;
pub mod train_soft_labels;
