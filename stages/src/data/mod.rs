//! Datasets: the internal format and the readers of each raw format.

pub mod dataset;
