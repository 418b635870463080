//! The names of the files training stages write into their output directory, beside
//! `metrics.json` ([`crate::metrics::FILE`]) and `log/timings.json`. Every reader and writer
//! (the training kinds, `distill` reading its teacher, `tables`) uses these constants.

/// The trained network's parameters then batch-norm buffers (PyTorch names and layouts).
pub const WEIGHTS_FILE: &str = "weights.safetensors";
/// The network's [`crate::nn::model::ModelSpec`] as JSON: what `weights.safetensors` fits.
pub const MODEL_FILE: &str = "model.json";
/// Estimated corruption matrix C (row = true class, column = observed class).
pub const C_HAT_FILE: &str = "c_hat.json";
/// Learned transition matrix T at the end of training, in the orientation of `true_c`.
pub const T_FINAL_FILE: &str = "t_final.json";
/// MLC's T after every epoch.
pub const T_EPOCHS_FILE: &str = "t_epochs.json";
/// Learned label logits and soft labels (`logits`, `soft_labels`).
pub const LABELS_FILE: &str = "labels.safetensors";
/// Class similarity of learned soft labels: row i = mean learned label of class i.
pub const CLASS_SIMILARITY_FILE: &str = "class_similarity.json";
