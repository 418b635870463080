//! The stage kinds of `repro`: everything that knows about machine learning.
//!
//! The engine (the root crate) knows nothing of datasets, models or tables; it only
//! schedules stages, fingerprints them and publishes their outputs. This crate knows
//! nothing of caching: a stage receives a [`StageContext`] (where its inputs are, where
//! to write, where it may checkpoint, how to report progress) and writes files.
//!
//! This file is the top of the crate: the dispatch from a kind's name and raw params to
//! its [`StageKind`] implementation. The kinds are listed once, in `kind_list.rs` (one
//! line each; `build.rs` reads the same list for their code hashes, see [`code_graph`]);
//! the enum [`Kind`] lives in [`kind`], what a kind is in [`stage_kind`], what a running
//! stage is given in [`context`], all below the kinds, which never reach up to this file.

use serde_json::Value;

pub use backend::BACKEND;
pub use context::{InputRef, Interrupted, NoProgress, Progress, StageContext};
pub use declared::{Declared, Inputs};
pub use kind::{parse, CodeFile, Kind};
pub use method::Method;
pub use stage_kind::StageKind;

// The list of kinds, first: the modules below expand it.
#[macro_use]
mod kind_list;

pub mod backend;
pub mod bounds;
pub mod code_graph;
pub mod context;
#[cfg(feature = "cuda")]
mod cuda_shim;
pub mod data;
pub mod declared;
pub mod kind;
pub mod kinds;
pub mod math;
pub mod memory;
pub mod method;
pub mod metrics;
pub mod metrics_schema;
pub mod nn;
pub mod noise;
pub mod numpy_legacy;
pub mod outputs;
pub mod process;
pub mod report;
pub mod stage_kind;
pub mod training;

mod code_hashes {
    include!(concat!(env!("OUT_DIR"), "/code_hashes.rs"));
}

/// The dfdx version the numeric code is built against (read from Cargo.lock at build time).
pub const DFDX_VERSION: &str = code_hashes::DFDX_VERSION;

/// A kind's [`StageKind`] items as plain functions of raw params: what [`Kind`]'s methods
/// call, made once per kind by [`Entry::of`].
struct Entry {
    version: u32,
    methods: &'static [Method],
    validate: fn(&Value) -> Result<(), String>,
    check_inputs: fn(&Value, &Inputs) -> Result<(), String>,
    declared_method: fn(&Value) -> Option<String>,
    programs: fn(&Value) -> Vec<(String, String)>,
    code_files: fn(&Value) -> Vec<CodeFile>,
    run: fn(&Value, &StageContext) -> anyhow::Result<()>,
}

impl Entry {
    fn of<K: StageKind>() -> Entry {
        Entry {
            version: K::VERSION,
            methods: K::METHODS,
            validate: |v| parse::<K>(v)?.check(),
            check_inputs: |v, inputs| parse::<K>(v)?.check_inputs(inputs),
            declared_method: |v| parse::<K>(v).ok()?.declared_method(),
            programs: |v| parse::<K>(v).map(|p| p.programs()).unwrap_or_default(),
            code_files: |v| parse::<K>(v).map(|p| p.code_files()).unwrap_or_default(),
            run: |v, ctx| {
                let p = parse::<K>(v).map_err(|e| anyhow::anyhow!("invalid params: {e}"))?;
                p.run(ctx)
            },
        }
    }
}

macro_rules! dispatch {
    ($($(#[$doc:meta])* $variant:ident => $module:ident,)*) => {
        impl Kind {
            /// The kind's entry points (the one `match` over the list of kinds).
            fn entry(self) -> Entry {
                match self {
                    $(Kind::$variant => Entry::of::<kinds::$module::Params>(),)*
                }
            }
        }
    };
}

kind_list!(dispatch);

impl Kind {
    /// A manual version, bumped when a kind's outputs change meaning in a way its code
    /// hash would not show ([`StageKind::VERSION`]).
    pub fn version(self) -> u32 {
        self.entry().version
    }

    /// The built-in methods its runs report ([`StageKind::METHODS`]).
    pub fn methods(self) -> &'static [Method] {
        self.entry().methods
    }

    /// SHA-256 over every source file the kind's code can reach ([`code_graph`]),
    /// computed by `build.rs`.
    pub fn code_hash(self) -> &'static str {
        code_hashes::code_hash(self.name())
    }

    /// Checks that `params` deserialize into the kind's params struct (unknown fields,
    /// wrong types and out-of-range values are errors) and ask for no size that cannot
    /// be meant ([`StageKind::check`], with the limits of [`bounds`]). An error about one
    /// field reads `field `PATH`: ...` (PATH like `epochs` or `model.hidden`).
    pub fn validate(self, params: &Value) -> Result<(), String> {
        (self.entry().validate)(params)
    }

    /// Checks, when the pipeline loads, what member `inputs.me` reads, as far as the
    /// declared pipeline shows it ([`declared`]): the inputs the kind needs are there, of
    /// kinds that make them, named as the kind reads them, and they can give it what it
    /// needs (a training method that needs trusted examples against a noise stage that
    /// draws none; a table's methods against the runs it reads). Call on validated params.
    /// An error reads `field `PATH`: ...` or `input `NAME`: ...`.
    pub fn check_inputs(self, inputs: &Inputs) -> Result<(), String> {
        (self.entry().check_inputs)(inputs.member().params, inputs)
    }

    /// The method a member of this kind with `params` reports in its `metrics.json` (the
    /// name tables list), as its params say; `None` for the kinds that write no metrics.
    pub fn declared_method(self, params: &Value) -> Option<String> {
        (self.entry().declared_method)(params)
    }

    /// The programs `params` name to run, each with the params field naming it (a
    /// `command` stage's `run[0]`, as written): the engine checks, when the pipeline
    /// loads, that each is a project file, an absolute path or a name on `PATH`. Call on
    /// validated params.
    pub fn programs(self, params: &Value) -> Vec<(String, String)> {
        (self.entry().programs)(params)
    }

    /// The project files and folders that `params` name as code of the stage (the
    /// programs a `command` stage runs): the engine hashes their content into the
    /// fingerprint, so editing one reruns the stages that name it. Each comes with the
    /// params field naming it (`deps[0]`), for errors. Empty for the built-in kinds,
    /// whose code is their [`Kind::code_hash`]. Call on validated params.
    pub fn code_files(self, params: &Value) -> Vec<CodeFile> {
        (self.entry().code_files)(params)
    }

    /// Runs the stage. Outputs go to `ctx.out_dir`; nothing else may be written outside
    /// `ctx.out_dir` and `ctx.checkpoint_dir` (downloads go to `ctx.download_dir`).
    pub fn run(self, params: &Value, ctx: &StageContext) -> anyhow::Result<()> {
        use anyhow::Context as _;
        let ctx_msg = || format!("stage {} (kind {})", ctx.member, self.name());
        nn::float_env::enter();
        (self.entry().run)(params, ctx).with_context(ctx_msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_built_in_method_is_provided_by_one_kind_and_declared_as_listed() {
        for m in Method::ALL {
            let by: Vec<Kind> = Kind::ALL
                .iter()
                .copied()
                .filter(|k| k.methods().contains(&m))
                .collect();
            let want = usize::from(m != Method::Identity);
            assert_eq!(by.len(), want, "{m:?} is provided by {by:?}");
        }
        for (kind, params) in [
            (Kind::Train, json!({"method": "ideal"})),
            (Kind::TrainMlc, json!({"variant": "official_code"})),
            (Kind::TrainSoftLabels, json!({"granularity": "per_class"})),
            (Kind::Distill, json!({})),
        ] {
            let m = kind.declared_method(&params).unwrap();
            let m = Method::from_name(&m).unwrap();
            assert!(kind.methods().contains(&m), "{kind:?} declares {m:?}");
        }
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
