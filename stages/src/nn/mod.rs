//! Models, optimizers, schedules, losses and the one generic training loop.
//!
//! dfdx 0.13 supplies the tensors, the tape and the gradient store; its convolution and
//! pooling need a nightly compiler, so the heavy operators (linear, conv2d, pooling,
//! batch norm, embedding, dropout, log-softmax) are written here, twice: as dfdx tape
//! operators with host kernels whose arithmetic order is fixed in this crate (see
//! [`kernels`] and [`softmax`]; the CPU build, the same bits on every CPU), and composed
//! from dfdx's stable differentiable ops ([`portable`]; any device, the `cuda` build).
//! [`ops`] picks one by [`device::Dev`]. Everything else (losses, any extra
//! differentiable computation a method adds) uses dfdx's exact ops (sums, products,
//! selections) on the same tape; anything that needs `exp` or `ln` goes through
//! [`ops`] or [`crate::math`].
//!
//! Map: [`model::Network`] (architectures) + [`params::ParamSet`] (flat named
//! parameters) -> [`loss`] -> [`optim::Optimizer`] under a [`schedule::Schedule`], driven
//! by [`trainer::train`] with a method plugged in through [`trainer::Objective`];
//! [`init`] starts the weights from a file when asked.

pub mod batch;
pub mod batch_norm;
pub mod checkpoint;
pub mod conv;
pub mod device;
pub mod elementwise;
pub mod float_env;
pub mod hypergrad;
pub mod init;
pub mod kernels;
pub mod linear;
pub mod loss;
pub mod model;
pub mod objectives;
pub mod ops;
pub mod optim;
pub mod params;
pub mod pool;
pub mod portable;
pub mod schedule;
pub mod softmax;
pub mod trainer;
