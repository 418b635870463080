//! One file per stage kind: params (every field documented with its default), `VERSION`,
//! and `run`.

pub mod command;
pub mod distill;
pub mod download;
pub mod inject_noise;
pub mod inputs;
pub mod metrics_schema;
pub mod probe;
pub mod tables;
pub mod train;
pub mod train_mlc;
pub mod train_soft_labels;
pub mod training;
