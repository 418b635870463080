//! Tables and figures built from the outputs of training stages (used by the `tables` kind).
//!
//! Every number in a table comes from a `metrics.json` (see [`crate::metrics`]), except the
//! "paper" columns, which quote GLC Table 1 from one place: [`paper`].
//!
//! # What training kinds write for the tables (the contract)
//!
//! * `metrics.json` ([`crate::metrics::Metrics`]) in every training stage's output.
//!   `method` is the column a run lands in (`trusted_only`, `ce`, `forward`, `forward_gold`,
//!   `confusion`, `glc`, `mlc`, `soft_labels`, `label_smoothing`, `distill`, ...); `noise` is
//!   `None` for clean-data runs. Accuracies and errors are fractions in `[0, 1]`; the tables
//!   show percentages.
//! * Metrics `extra` keys read by the tables (all final values, fractions or plain numbers):
//!   - `label_correction_rate`: share of the noisy training examples whose learned label's
//!     arg-max equals the clean label while the given noisy label did not (T4);
//!   - transition-matrix estimation error against the true corruption matrix `true_c` of the
//!     noise input (row = true class, column = observed class; estimates must be compared in
//!     that orientation, e.g. a column-normalised MLC T is transposed first):
//!     `c_hat_frobenius_to_true_c`, `c_hat_mean_row_l1_to_true_c` (methods estimating C before
//!     training: `glc`, `forward`, `confusion`), `t_frobenius_to_true_c`,
//!     `t_mean_row_l1_to_true_c` (the final learned T of `mlc`), `identity_frobenius_to_true_c`,
//!     `identity_mean_row_l1_to_true_c` (the identity matrix, i.e. "no correction"; any run may
//!     write them). Frobenius = [`crate::noise::Matrix::frobenius_distance`], row L1 =
//!     [`crate::noise::Matrix::mean_row_l1_distance`] (T6);
//!   - `teacher_test_accuracy`: the teacher's final test accuracy, written by `distill` (T5).
//! * K×K matrices as JSON files ([`crate::noise::MatrixFile`]: `{"k": K, "rows": [[..], ..]}`):
//!   `c_hat.json` (estimated C), `t_final.json` (learned T at the end of training, in the
//!   orientation of `true_c`), `class_similarity.json` (soft-label runs: row i = the mean
//!   learned label of the examples of class i). Optional; figures use them.
//! * `teacher.json` ([`TeacherInfo`]) beside the metrics of a `distill` stage: the method and
//!   model of the teacher whose labels the student learned from (T5). Without it the
//!   student's `teacher` matrix coordinate is used.
//!
//! # Provenance
//!
//! Each written table starts with a comment: the profile, the datasets (name and SHA-256
//! identity), and a pipeline fingerprint: SHA-256 over the sorted (member name, bytes of
//! `metrics.json`) pairs of every input run (see [`run::fingerprint`]), so equal inputs give
//! equal tables and any changed number changes the fingerprint.

pub mod aggregate;
pub mod figures;
pub mod format;
pub mod layouts;
pub mod matrix_file;
pub mod paper;
pub mod provenance;
pub mod run;
pub mod significance;
pub mod table;
pub mod teacher;
pub mod writers;

pub use aggregate::Stat;
pub use provenance::Provenance;
pub use run::RunRecord;
pub use table::Table;
pub use teacher::TeacherInfo;
