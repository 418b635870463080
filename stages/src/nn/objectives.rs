//! The objective of the baseline methods: one loss per batch, no state of its own.

use anyhow::Result;

use super::loss;
use super::model::Mode;
use super::trainer::{Objective, StepCtx, StepOut};
use crate::noise::Matrix;

/// How a batch's labels enter the loss.
#[derive(Clone, Debug)]
pub enum Target {
    /// Cross-entropy with the labels as given.
    Hard,
    /// Cross-entropy with (1 − ε)·onehot + ε/K.
    Smoothed(f32),
    /// Forward correction with a fixed C; with `trusted_ce` trusted examples get plain
    /// CE (GLC's phase 2), otherwise every example is corrected (Patrini's Forward).
    Forward { c: Matrix, trusted_ce: bool },
}

/// A supervised loss on the batch, one optimizer step per batch.
pub struct LossObjective {
    pub target: Target,
}

impl Objective for LossObjective {
    fn step(&mut self, s: &mut StepCtx) -> Result<StepOut> {
        let logits = s.forward(Mode::Train);
        let k = s.net.classes;
        let labels = &s.batch.labels;
        let l = match &self.target {
            Target::Hard => loss::cross_entropy(logits, labels),
            Target::Smoothed(eps) => {
                loss::soft_cross_entropy(logits, loss::smoothed_targets(labels, k, *eps))
            }
            Target::Forward { c, trusted_ce } => loss::forward_corrected(
                logits,
                labels,
                c,
                trusted_ce.then_some(s.batch.trusted.as_slice()),
            ),
        };
        s.backward_and_update(l)
    }
}
