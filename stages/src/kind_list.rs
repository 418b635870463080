//! The stage kinds, one line each: `Variant => module`. The module is `kinds/<module>.rs`,
//! its name is the kind's name in `pipeline.yaml`, and its `Params` implement
//! [`crate::kind::StageKind`].
//!
//! This file holds the list and nothing else, because two programs read it: the crate,
//! which makes the [`crate::Kind`] enum and its dispatch from it (`kind.rs`, `lib.rs`), and
//! `build.rs`, which hashes each kind's code ([`crate::code_graph`]) and includes this file
//! through `#[path]`. Adding a kind: its file under `kinds/` and one line here.

/// Hands the list of kinds to the macro `$then` (each line with its doc comment).
macro_rules! kind_list {
    ($then:ident) => {
        $then! {
            /// Fetch raw files from mirrors, verify them, read them into the dataset format.
            Download => download,
            /// Draw the trusted subset and corrupt the labels of the rest.
            InjectNoise => inject_noise,
            /// Train a classifier with one of the baseline methods (`ce`, `glc`, `forward`, ...).
            Train => train,
            /// Meta Loss Correction (Wang et al., CVPR 2020).
            TrainMlc => train_mlc,
            /// Learned soft labels (Vyas et al., 2020).
            TrainSoftLabels => train_soft_labels,
            /// Knowledge distillation from a trained teacher.
            Distill => distill,
            /// Tables and figures from a group of runs.
            Tables => tables,
            /// A tiny diagnostic kind: writes its params and the digests of its inputs,
            /// optionally sleeping and checkpointing between steps, or failing on demand. Used
            /// to check an executor or a cluster set-up without training anything.
            Probe => probe,
            /// A program of the user's (any language) run as a stage: a method of one's own in
            /// the same DAG, cache and tables as the built-in ones.
            Command => command,
        }
    };
}
