//! Limits on the sizes a kind's params may ask for, checked when the pipeline is loaded.
//! The helpers here know no kind: each kind's `StageKind::check` applies them to its
//! own fields, so a kind's code hash covers its own checks and no other kind's.
//!
//! A typo can ask for a layer of 10^15 units or 10^19 epochs. Without a limit the first
//! would abort the stage process with an allocation failure and the second would be
//! accepted and never end; with these limits both are refused when params are validated
//! (each kind's `StageKind::check`, called by `Kind::validate`) before any stage runs,
//! and the engine reports the file, the line, the stage and the field. The limits are far
//! above anything the papers use (noted with each), so no real configuration meets them:
//!
//! | what | limit | the papers use |
//! |---|---|---|
//! | `epochs`, `warmup_epochs`, `schedule.milestones` | [`MAX_EPOCHS`] = 100,000 | 10 to 200 |
//! | `batch_size`, `eval_batch_size`, `meta_batch_size` | [`MAX_BATCH`] = 2^20 | 32 to 500 |
//! | `epochs`, `batch_size`, `eval_batch_size` (at least) | 1 | 10 to 500 |
//! | `min_updates`, `t_update_interval` | [`MAX_UPDATES`] = 10^9 | 1 to 2,000 |
//! | a layer width (`hidden`, `channels`, `embed_dim`) | [`MAX_WIDTH`] = 2^20 | 128 to 2,048 |
//! | hidden layers of an MLP, WRN `depth` | [`MAX_LAYERS`] = 1,000 | 2 to 40 |
//! | parameters of a network | [`MAX_PARAMETERS`] = 2^30 | 25.6 M (ResNet-50) |
//! | `resize`, `crop` (image side) | [`MAX_IMAGE_SIDE`] = 4,096 | 224, 256 |
//! | `timeout_secs`, `read_timeout_secs`, `backoff_secs` | [`MAX_WAIT_SECS`] = 3,600 | 1 to 30 |
//! | `retries` | [`MAX_RETRIES`] = 20 | 3 |
//! | `probe` `steps` | [`MAX_PROBE_STEPS`] = 10^6 | (no paper; the pipelines use 1 to 40) |
//! | `probe` `sleep_ms` | [`MAX_WAIT_SECS`] · 1,000 | (no paper; the pipelines use 0 to 300) |
//!
//! The parameter count is known exactly only once the dataset gives the input size and
//! the class count; when params are validated it is bounded from below with the smallest
//! input (one feature, or a 1×8×8 image) and two classes, so a network refused then is too
//! large for every dataset ([`crate::nn::model::ModelSpec::check_bounds`]).
//! [`crate::nn::model::Network::new`] checks the exact count against the limit and the
//! memory this process may take ([`crate::memory`]), before allocating anything. This
//! module uses nothing of the crate; the network's own checks live with the network.
//!
//! Each refusal reads `field `NAME`: ...`, the form `Kind::validate` uses for
//! every field-level error, so the engine can point at the line of that field.

/// Most epochs of a training phase.
pub const MAX_EPOCHS: usize = 100_000;
/// Largest batch (training, evaluation or meta batch).
pub const MAX_BATCH: usize = 1 << 20;
/// Most optimizer updates or steps between updates a count may ask for.
pub const MAX_UPDATES: usize = 1_000_000_000;
/// Widest layer (units, channels, embedding width).
pub const MAX_WIDTH: usize = 1 << 20;
/// Most layers (MLP hidden layers, WRN depth).
pub const MAX_LAYERS: usize = 1_000;
/// Most parameters of a network: 4 GiB as f32 for the weights alone, about 16 GiB to
/// train with Adam (weights, gradients and two moments).
pub const MAX_PARAMETERS: u128 = 1 << 30;
/// Largest image side after resizing or cropping.
pub const MAX_IMAGE_SIDE: usize = 4096;
/// Longest network timeout or backoff, in seconds.
pub const MAX_WAIT_SECS: f64 = 3600.0;
/// Most extra download rounds.
pub const MAX_RETRIES: u32 = 20;
/// Most steps of a `probe` stage.
pub const MAX_PROBE_STEPS: usize = 1_000_000;

/// `field` holds `v`, which must be at least 1 (`unit` names what is counted): a zero
/// that would only fail (a batch of none) or do nothing (no epoch) when the stage runs.
pub fn at_least_one(field: &str, v: usize, unit: &str) -> Result<(), String> {
    if v == 0 {
        return Err(format!("field `{field}`: 0 {unit}: must be at least 1"));
    }
    Ok(())
}

/// `field` holds `v`, which may be at most `max` (`unit` names what is counted).
pub fn at_most(field: &str, v: usize, max: usize, unit: &str) -> Result<(), String> {
    if v > max {
        return Err(format!(
            "field `{field}`: {v} {unit} cannot be meant (at most {max})"
        ));
    }
    Ok(())
}

/// The epoch and batch-size fields every training kind has (`warmup` and `meta_batch` 0:
/// the kind has no such field).
pub fn training(
    epochs: usize,
    warmup: usize,
    batch: usize,
    eval_batch: usize,
    meta_batch: usize,
) -> Result<(), String> {
    at_least_one("epochs", epochs, "epochs")?;
    at_least_one("batch_size", batch, "examples")?;
    at_least_one("eval_batch_size", eval_batch, "examples")?;
    at_most("epochs", epochs, MAX_EPOCHS, "epochs")?;
    at_most("warmup_epochs", warmup, MAX_EPOCHS, "epochs")?;
    at_most("batch_size", batch, MAX_BATCH, "examples")?;
    at_most("eval_batch_size", eval_batch, MAX_BATCH, "examples")?;
    at_most("meta_batch_size", meta_batch, MAX_BATCH, "examples")
}
