//! Datasets: the internal format and the readers of each raw format.
//!
//! * [`dataset`]: the internal format every reader writes.
//! * Readers, one per raw format: [`digits`] (UCI optdigits CSV), [`idx`] (MNIST,
//!   Fashion-MNIST), [`cifar`] (CIFAR-10/100 binary archives), [`twitter`] (GLC's Twitter
//!   POS files), [`clothing1m`] (a hand-placed root: key lists, labels, image paths).
//! * [`images`]: image files decoded on demand (resize, crop, normalise).
//! * [`fetch`]: mirrors, checksums, resume; [`sources`]: the built-in mirrors and
//!   checksums per dataset; [`raw`]: digests and identity; [`split`]: seeded stratified
//!   selection.

pub mod cifar;
pub mod clothing1m;
pub mod dataset;
pub mod digits;
pub mod fetch;
pub mod idx;
pub mod images;
pub mod raw;
pub mod sources;
pub mod split;
pub mod twitter;
