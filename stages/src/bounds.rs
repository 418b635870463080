//! Limits on the sizes a kind's params may ask for, checked when the pipeline is loaded.
//! The helpers here know no kind: each kind's `Params::check_bounds` applies them to its
//! own fields, so a kind's code hash covers its own checks and no other kind's.
//!
//! A typo can ask for a layer of 10^15 units or 10^19 epochs. Without a limit the first
//! would abort the stage process with an allocation failure and the second would be
//! accepted and never end; with these limits both are refused when params are validated
//! (each kind's `Params::check_bounds`, called by `Kind::validate`) before any stage runs,
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
//! the class count; here it is bounded from below with the smallest input (one feature,
//! or a 1×8×8 image) and two classes, so a network refused here is too large for every
//! dataset. [`crate::nn::model::Network::new`] checks the exact count against the limit
//! and the memory this process may take ([`crate::memory`]), before allocating anything.
//!
//! Each refusal reads `field `NAME`: ...`, the form `Kind::validate` uses for
//! every field-level error, so the engine can point at the line of that field.

use crate::nn::model::{InputKind, ModelSpec};

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

/// Widths, depth, and the parameter count of `m` on the smallest input, for the params
/// field `field` (`model`).
pub fn model(field: &str, m: &ModelSpec) -> Result<(), String> {
    let wide = |sub: &str, v: usize| at_most(&format!("{field}.{sub}"), v, MAX_WIDTH, "units");
    let (smallest, counted_field) = match m {
        ModelSpec::Mlp {
            hidden, embed_dim, ..
        } => {
            at_most(
                &format!("{field}.hidden"),
                hidden.len(),
                MAX_LAYERS,
                "hidden layers",
            )?;
            for &h in hidden {
                wide("hidden", h)?;
            }
            match embed_dim {
                Some(d) => {
                    wide("embed_dim", *d)?;
                    (InputKind::Tokens { len: 1, vocab: 1 }, "hidden")
                }
                None => (InputKind::Dense(vec![1]), "hidden"),
            }
        }
        ModelSpec::SmallCnn { channels, hidden } => {
            for &c in channels {
                wide("channels", c)?;
            }
            wide("hidden", *hidden)?;
            (InputKind::Dense(vec![1, 8, 8]), "")
        }
        ModelSpec::Wrn { depth, widen, .. } => {
            at_most(&format!("{field}.depth"), *depth, MAX_LAYERS, "layers")?;
            at_most(&format!("{field}.widen"), *widen, MAX_WIDTH / 64, "times")?;
            (InputKind::Dense(vec![1, 8, 8]), "")
        }
        ModelSpec::Resnet18 | ModelSpec::Resnet50 => (InputKind::Dense(vec![1, 8, 8]), ""),
    };
    let n = m.parameter_count(&smallest, 2);
    if n.is_none_or(|n| n > MAX_PARAMETERS) {
        let name = if counted_field.is_empty() {
            field.to_string()
        } else {
            format!("{field}.{counted_field}")
        };
        return Err(format!(
            "field `{name}`: network {} has {} parameters even on a one-feature input with \
             two classes, more than the limit of {MAX_PARAMETERS} (4 GiB as f32)",
            m.label(),
            n.map_or("too many to count".to_string(), |n| format!("at least {n}"))
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::model::Network;
    use crate::Kind;
    use serde_json::json;

    #[test]
    fn parameter_count_matches_the_built_network() {
        let img = InputKind::Dense(vec![3, 32, 32]);
        let cases = [
            (
                json!({"arch": "mlp", "hidden": [7, 5]}),
                InputKind::Dense(vec![4, 3]),
            ),
            (
                json!({"arch": "mlp", "hidden": [6], "embed_dim": 3}),
                InputKind::Tokens { len: 4, vocab: 11 },
            ),
            (
                json!({"arch": "small_cnn", "channels": [4, 6], "hidden": 9}),
                InputKind::Dense(vec![1, 12, 10]),
            ),
            (
                json!({"arch": "wrn", "depth": 10, "widen": 1, "dropout": 0.0}),
                img.clone(),
            ),
            (json!({"arch": "resnet18"}), img.clone()),
            (
                json!({"arch": "resnet50"}),
                InputKind::Dense(vec![3, 64, 64]),
            ),
        ];
        for (spec, input) in cases {
            let m: ModelSpec = serde_json::from_value(spec).unwrap();
            let (_, params, _) = Network::new(&m, &input, 10, 0).unwrap();
            assert_eq!(
                m.parameter_count(&input, 10),
                Some(params.numel() as u128),
                "{}",
                m.label()
            );
        }
    }

    #[test]
    fn network_too_large_for_its_input_is_refused_before_allocation() {
        // Allowed at load (one feature in), but 785 M + 1 G weights on 784 features: the
        // check runs before the 7 GB of weights would be drawn.
        let m: ModelSpec =
            serde_json::from_value(json!({"arch": "mlp", "hidden": [1000000, 1000]})).unwrap();
        model("model", &m).unwrap();
        let e = Network::new(&m, &InputKind::Dense(vec![784]), 10, 0).unwrap_err();
        let e = format!("{e:#}");
        assert!(e.contains("params field `model`"), "{e}");
        assert!(e.contains("more than the limit"), "{e}");
    }

    #[test]
    fn sizes_the_papers_use_pass_and_absurd_ones_name_their_field() {
        for (kind, ok) in [
            (
                Kind::Train,
                json!({"method": "glc", "epochs": 75, "batch_size": 128,
                "model": {"arch": "wrn", "depth": 40, "widen": 2}}),
            ),
            (
                Kind::Train,
                json!({"method": "ce", "model": {"arch": "resnet50"}}),
            ),
            (
                Kind::TrainMlc,
                json!({"epochs": 120, "model": {"arch": "mlp", "hidden": [256, 256]}}),
            ),
            (
                Kind::Download,
                json!({"dataset": "clothing1m", "root": "x", "resize": 256, "crop": 224}),
            ),
        ] {
            kind.validate(&ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for (kind, bad, field) in [
            (
                Kind::Train,
                json!({"method": "ce", "epochs": 1_000_000}),
                "epochs",
            ),
            (
                Kind::Train,
                json!({"method": "ce", "batch_size": 10_000_000}),
                "batch_size",
            ),
            (
                Kind::Train,
                json!({"method": "ce", "model": {"arch": "wrn", "widen": 100000}}),
                "model.widen",
            ),
            (
                Kind::Train,
                json!({"method": "ce", "model": {"arch": "small_cnn", "channels": [32, 10_000_000]}}),
                "model.channels",
            ),
            (
                Kind::TrainSoftLabels,
                json!({"meta_batch_size": 10_000_000}),
                "meta_batch_size",
            ),
            (
                Kind::Distill,
                json!({"model": {"arch": "mlp", "hidden": [1_000_000, 1_000_000]}}),
                "model.hidden",
            ),
            (
                Kind::Download,
                json!({"dataset": "digits", "retries": 1000}),
                "retries",
            ),
            (
                Kind::Download,
                json!({"dataset": "digits", "timeout_secs": 0}),
                "timeout_secs",
            ),
            (
                Kind::Download,
                json!({"dataset": "clothing1m", "root": "x", "crop": 100000}),
                "crop",
            ),
        ] {
            let e = kind.validate(&bad).unwrap_err();
            assert!(e.starts_with(&format!("field `{field}`: ")), "{bad}: {e}");
        }
    }

    #[test]
    fn type_errors_name_the_field() {
        let e = Kind::Train
            .validate(&json!({"method": "ce", "epochs": "two"}))
            .unwrap_err();
        assert!(
            e.starts_with("field `epochs`: invalid type: string \"two\""),
            "{e}"
        );
        let e = Kind::Train
            .validate(
                &json!({"method": "ce", "model": {"arch": "mlp", "hidden": [1], "colour": 1}}),
            )
            .unwrap_err();
        assert!(
            e.starts_with("field `model.colour`: unknown field `colour`"),
            "{e}"
        );
        let e = Kind::Train
            .validate(&json!({"method": "ce", "colour": 1}))
            .unwrap_err();
        assert!(
            e.starts_with("field `colour`: unknown field `colour`"),
            "{e}"
        );
    }
}
