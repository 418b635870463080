//! Learning-rate schedules, evaluated per iteration: constant, step decay at epoch
//! milestones, and cosine annealing (Loshchilov & Hutter 2017, without restarts).

use serde::{Deserialize, Deserializer, Serialize};

use crate::bounds::MAX_EPOCHS;

fn default_gamma() -> f32 {
    0.1
}

/// `kind` tag in params.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Schedule {
    /// The base rate throughout.
    #[default]
    Constant,
    /// Multiply by `gamma` (default 0.1) at each of the `milestones` (epochs, 0-based:
    /// a milestone m applies from the first iteration of epoch m on).
    Step {
        #[serde(deserialize_with = "milestones")]
        milestones: Vec<usize>,
        #[serde(default = "default_gamma")]
        gamma: f32,
    },
    /// Cosine annealing to 0 over the phase, per iteration (no restarts):
    /// lr · ½(1 + cos(π·t/T)), t the iteration, T the phase's iteration count
    /// (GLC's CIFAR schedule).
    Cosine,
}

/// Epoch milestones, each at most [`MAX_EPOCHS`] (a larger one cannot be meant). The
/// message names the field itself: the error path of a tagged enum ends at the enum
/// (`schedule`).
fn milestones<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<usize>, D::Error> {
    let m = Vec::<usize>::deserialize(d)?;
    match m.iter().find(|&&e| e > MAX_EPOCHS) {
        Some(e) => Err(serde::de::Error::custom(format!(
            "`milestones`: epoch {e} cannot be meant (at most {MAX_EPOCHS})"
        ))),
        None => Ok(m),
    }
}

impl Schedule {
    /// Learning rate at 0-based iteration `it` of a phase with `total` iterations and
    /// `per_epoch` iterations per epoch.
    pub fn lr(&self, base: f32, it: usize, total: usize, per_epoch: usize) -> f32 {
        match self {
            Schedule::Constant => base,
            Schedule::Step { milestones, gamma } => {
                let epoch = it / per_epoch.max(1);
                let n = milestones.iter().filter(|&&m| epoch >= m).count();
                base * gamma.powi(n as i32)
            }
            Schedule::Cosine => {
                let t = it as f64 / total.max(1) as f64;
                (base as f64 * 0.5 * (1.0 + crate::math::cos(std::f64::consts::PI * t))) as f32
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules() {
        assert_eq!(Schedule::Constant.lr(0.1, 50, 100, 10), 0.1);
        let s = Schedule::Step {
            milestones: vec![2, 4],
            gamma: 0.1,
        };
        assert_eq!(s.lr(1.0, 19, 100, 10), 1.0);
        assert!((s.lr(1.0, 20, 100, 10) - 0.1).abs() < 1e-7);
        assert!((s.lr(1.0, 45, 100, 10) - 0.01).abs() < 1e-8);
        assert_eq!(Schedule::Cosine.lr(0.2, 0, 100, 10), 0.2);
        assert!((Schedule::Cosine.lr(0.2, 50, 100, 10) - 0.1).abs() < 1e-7);
        assert!(Schedule::Cosine.lr(0.2, 100, 100, 10).abs() < 1e-7);
    }

    #[test]
    fn absurd_milestones_are_refused_with_their_field() {
        let ok = serde_json::json!({"method": "ce", "schedule": {"kind": "step", "milestones": [40, 80]}});
        crate::kind::Kind::Train.validate(&ok).unwrap();
        let bad = serde_json::json!({"method": "ce", "schedule": {"kind": "step", "milestones": [40, 1_000_000]}});
        let e = crate::kind::Kind::Train.validate(&bad).unwrap_err();
        assert!(e.starts_with("field `schedule"), "{e}");
        assert!(
            e.contains("`milestones`: epoch 1000000 cannot be meant"),
            "{e}"
        );
    }
}
