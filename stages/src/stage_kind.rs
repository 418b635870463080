//! What a stage kind is: the [`StageKind`] trait, implemented by each kind's params
//! (`Params` in `kinds/<name>.rs`; a kind is what its params mean): its version, the checks
//! of its params and inputs, the methods its runs report, how it runs.
//!
//! The dispatch that turns a kind's name and raw params into these calls (`Kind::validate`,
//! `Kind::run`, ...) sits at the top of the crate (`lib.rs`); this module sits below the
//! kinds, which implement it without reaching the dispatch.

use serde::de::DeserializeOwned;

use crate::context::StageContext;
use crate::declared::Inputs;
use crate::kind::CodeFile;
use crate::method::Method;

/// One stage kind, implemented by the kind's params (`kinds/<name>.rs`'s `Params`): a kind
/// is what its params mean. Only [`Kind`]'s dispatch calls these, on params it has parsed.
pub trait StageKind: DeserializeOwned {
    /// A manual version, bumped when the kind's outputs change meaning in a way its code
    /// hash would not show (for example a change of file format made in shared code).
    const VERSION: u32;

    /// The methods its runs report in `metrics.json` (what tables list); empty for the
    /// kinds that write no metrics, and for `command`, whose methods are the user's.
    const METHODS: &'static [Method] = &[];

    /// Refuses params no run can mean: sizes beyond the limits of [`crate::bounds`], values
    /// the kind cannot use. An error about one field reads `field `PATH`: ...`.
    fn check(&self) -> Result<(), String>;

    /// Refuses, when the pipeline loads, inputs the kind cannot read ([`Inputs`]); an error
    /// reads `field `PATH`: ...` or `input `NAME`: ...`.
    fn check_inputs(&self, inputs: &Inputs) -> Result<(), String>;

    /// The method a run with these params reports in its `metrics.json`, if any.
    fn declared_method(&self) -> Option<String> {
        None
    }

    /// The programs the params name to run, each with the params field naming it.
    fn programs(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    /// The project files and folders the params name as code of the stage.
    fn code_files(&self) -> Vec<CodeFile> {
        Vec::new()
    }

    /// Runs the stage: writes only into `ctx.out_dir` (and `ctx.checkpoint_dir`), reports
    /// progress through `ctx.progress`, returns [`crate::context::Interrupted`] when
    /// `ctx.should_stop()`.
    fn run(&self, ctx: &StageContext) -> anyhow::Result<()>;
}
