//! The stage kinds of `repro`: everything that knows about machine learning.
//!
//! The engine (the root crate) knows nothing of datasets, models or tables; it only
//! schedules stages, fingerprints them and publishes their outputs. This crate knows
//! nothing of caching: a stage receives a [`StageContext`] (where its inputs are, where
//! to write, where it may checkpoint, how to report progress) and writes files.
//!
//! The closed set of kinds is the [`Kind`] enum: adding a kind means one variant, one
//! file under `kinds/`, one arm in each `match` below and its name in `build.rs`'s `KINDS`
//! (whose code hash covers every source file the kind's code reaches, see [`code_graph`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use declared::{Declared, Inputs};

pub mod bounds;
pub mod code_graph;
#[cfg(feature = "cuda")]
mod cuda_shim;
pub mod data;
pub mod declared;
pub mod kinds;
pub mod math;
pub mod memory;
pub mod metrics;
pub mod nn;
pub mod noise;
pub mod numpy_legacy;
pub mod outputs;
pub mod report;

mod code_hashes {
    include!(concat!(env!("OUT_DIR"), "/code_hashes.rs"));
}

/// The dfdx version the numeric code is built against (read from Cargo.lock at build time).
pub const DFDX_VERSION: &str = code_hashes::DFDX_VERSION;

/// The compute backend compiled in: `cpu` (host kernels), `cuda` with the `cuda` feature,
/// or `cpu-portable` with the `portable-ops` feature (the operators a `cuda` build uses,
/// composed from dfdx ops, run on the CPU; they agree with the host kernels to rounding
/// only, so their outputs must not pass for the host kernels').
pub const BACKEND: &str = if cfg!(feature = "cuda") {
    "cuda"
} else if cfg!(feature = "portable-ops") {
    "cpu-portable"
} else {
    "cpu"
};

/// Every stage kind `pipeline.yaml` may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Fetch raw files from mirrors, verify them, read them into the dataset format.
    Download,
    /// Draw the trusted subset and corrupt the labels of the rest.
    InjectNoise,
    /// Train a classifier with one of the baseline methods (`ce`, `glc`, `forward`, ...).
    Train,
    /// Meta Loss Correction (Wang et al., CVPR 2020).
    TrainMlc,
    /// Learned soft labels (Vyas et al., 2020).
    TrainSoftLabels,
    /// Knowledge distillation from a trained teacher.
    Distill,
    /// Tables and figures from a group of runs.
    Tables,
    /// A tiny diagnostic kind: writes its params and the digests of its inputs, optionally
    /// sleeping and checkpointing between steps, or failing on demand. Used to check an
    /// executor or a cluster set-up without training anything.
    Probe,
    /// A program of the user's (any language) run as a stage: a method of one's own in the
    /// same DAG, cache and tables as the built-in ones.
    Command,
}

impl Kind {
    pub const ALL: [Kind; 9] = [
        Kind::Download,
        Kind::InjectNoise,
        Kind::Train,
        Kind::TrainMlc,
        Kind::TrainSoftLabels,
        Kind::Distill,
        Kind::Tables,
        Kind::Probe,
        Kind::Command,
    ];

    /// The name used in `pipeline.yaml`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Download => "download",
            Kind::InjectNoise => "inject_noise",
            Kind::Train => "train",
            Kind::TrainMlc => "train_mlc",
            Kind::TrainSoftLabels => "train_soft_labels",
            Kind::Distill => "distill",
            Kind::Tables => "tables",
            Kind::Probe => "probe",
            Kind::Command => "command",
        }
    }

    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.iter().copied().find(|k| k.name() == name)
    }

    /// A manual version, bumped when a kind's outputs change meaning in a way its code
    /// hash would not show (for example a change of file format made in shared code).
    pub fn version(self) -> u32 {
        match self {
            Kind::Download => kinds::download::VERSION,
            Kind::InjectNoise => kinds::inject_noise::VERSION,
            Kind::Train => kinds::train::VERSION,
            Kind::TrainMlc => kinds::train_mlc::VERSION,
            Kind::TrainSoftLabels => kinds::train_soft_labels::VERSION,
            Kind::Distill => kinds::distill::VERSION,
            Kind::Tables => kinds::tables::VERSION,
            Kind::Probe => kinds::probe::VERSION,
            Kind::Command => kinds::command::VERSION,
        }
    }

    /// SHA-256 over every source file the kind's code can reach ([`code_graph`]),
    /// computed by `build.rs`.
    pub fn code_hash(self) -> &'static str {
        code_hashes::code_hash(self.name())
    }

    /// Checks that `params` deserialize into the kind's params struct (unknown fields,
    /// wrong types and out-of-range values are errors) and ask for no size that cannot
    /// be meant (each kind's `Params::check_bounds`, with the limits of [`bounds`]). An
    /// error about one field reads `field `PATH`: ...` (PATH like `epochs` or
    /// `model.hidden`).
    pub fn validate(self, params: &Value) -> Result<(), String> {
        match self {
            Kind::Download => parse::<kinds::download::Params>(params)?.check_bounds(),
            Kind::InjectNoise => parse::<kinds::inject_noise::Params>(params)?.check(),
            Kind::Train => parse::<kinds::train::Params>(params)?.check_bounds(),
            Kind::TrainMlc => parse::<kinds::train_mlc::Params>(params)?.check_bounds(),
            Kind::TrainSoftLabels => {
                parse::<kinds::train_soft_labels::Params>(params)?.check_bounds()
            }
            Kind::Distill => parse::<kinds::distill::Params>(params)?.check_bounds(),
            Kind::Tables => parse::<kinds::tables::Params>(params)?.check(),
            Kind::Probe => parse::<kinds::probe::Params>(params)?.check_bounds(),
            Kind::Command => parse::<kinds::command::Params>(params)?.check(),
        }
    }

    /// Checks, when the pipeline loads, what member `inputs.me` reads, as far as the
    /// declared pipeline shows it ([`declared`]): the inputs the kind needs are there, of
    /// kinds that make them, named as the kind reads them, and they can give it what it
    /// needs (a training method that needs trusted examples against a noise stage that
    /// draws none; a table's methods against the runs it reads). Call on validated params.
    /// An error reads `field `PATH`: ...` or `input `NAME`: ...`.
    pub fn check_inputs(self, inputs: &Inputs) -> Result<(), String> {
        let params = inputs.member().params;
        match self {
            Kind::Download => inputs.only(&[]),
            Kind::InjectNoise => kinds::inject_noise::check_inputs(inputs),
            Kind::Train => parse::<kinds::train::Params>(params)?.check_inputs(inputs),
            Kind::TrainMlc => parse::<kinds::train_mlc::Params>(params)?.check_inputs(inputs),
            Kind::TrainSoftLabels => {
                parse::<kinds::train_soft_labels::Params>(params)?.check_inputs(inputs)
            }
            Kind::Distill => parse::<kinds::distill::Params>(params)?.check_inputs(inputs),
            Kind::Tables => parse::<kinds::tables::Params>(params)?.check_inputs(inputs),
            Kind::Probe | Kind::Command => Ok(()),
        }
    }

    /// The method a member of this kind with `params` reports in its `metrics.json` (the
    /// name tables list), as its params say; `None` for the kinds that write no metrics.
    pub fn declared_method(self, params: &Value) -> Option<String> {
        let name = |m: &str| Some(m.to_string());
        match self {
            Kind::Train => name(parse::<kinds::train::Params>(params).ok()?.method.name()),
            Kind::TrainMlc => name(parse::<kinds::train_mlc::Params>(params).ok()?.method()),
            Kind::TrainSoftLabels => name(
                parse::<kinds::train_soft_labels::Params>(params)
                    .ok()?
                    .method(),
            ),
            Kind::Distill => name("distill"),
            Kind::Command => name(params.get("method")?.as_str()?),
            Kind::Download | Kind::InjectNoise | Kind::Tables | Kind::Probe => None,
        }
    }

    /// The programs `params` name to run, each with the params field naming it (a
    /// `command` stage's `run[0]`, as written): the engine checks, when the pipeline
    /// loads, that each is a project file, an absolute path or a name on `PATH`. Call on
    /// validated params.
    pub fn programs(self, params: &Value) -> Vec<(String, String)> {
        match self {
            Kind::Command => params
                .get("run")
                .and_then(|r| r.get(0))
                .and_then(Value::as_str)
                .map(|p| vec![("run[0]".to_string(), p.to_string())])
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// The project files and folders that `params` name as code of the stage (the
    /// programs a `command` stage runs): the engine hashes their content into the
    /// fingerprint, so editing one reruns the stages that name it. Each comes with the
    /// params field naming it (`deps[0]`), for errors. Empty for the built-in kinds,
    /// whose code is their [`Kind::code_hash`]. Call on validated params.
    pub fn code_files(self, params: &Value) -> Vec<CodeFile> {
        match self {
            Kind::Command => kinds::command::code_files(params),
            _ => Vec::new(),
        }
    }

    /// Runs the stage. Outputs go to `ctx.out_dir`; nothing else may be written outside
    /// `ctx.out_dir` and `ctx.checkpoint_dir` (downloads go to `ctx.download_dir`).
    pub fn run(self, params: &Value, ctx: &StageContext) -> anyhow::Result<()> {
        use anyhow::Context as _;
        let ctx_msg = || format!("stage {} (kind {})", ctx.member, self.name());
        nn::float_env::enter();
        match self {
            Kind::Download => kinds::download::run(&parse_ok(params)?, ctx),
            Kind::InjectNoise => kinds::inject_noise::run(&parse_ok(params)?, ctx),
            Kind::Train => kinds::train::run(&parse_ok(params)?, ctx),
            Kind::TrainMlc => kinds::train_mlc::run(&parse_ok(params)?, ctx),
            Kind::TrainSoftLabels => kinds::train_soft_labels::run(&parse_ok(params)?, ctx),
            Kind::Distill => kinds::distill::run(&parse_ok(params)?, ctx),
            Kind::Tables => kinds::tables::run(&parse_ok(params)?, ctx),
            Kind::Probe => kinds::probe::run(&parse_ok(params)?, ctx),
            Kind::Command => kinds::command::run(&parse_ok(params)?, ctx),
        }
        .with_context(ctx_msg)
    }
}

/// Deserializes a kind's params. An error inside a field names it first:
/// `field `epochs`: invalid type: string "two", expected usize` (the path as
/// [serde_path_to_error](https://docs.rs/serde_path_to_error) tracks it, with an unknown
/// nested field appended: `field `model.colour`: unknown field `colour`, ...`).
pub fn parse<P: serde::de::DeserializeOwned>(params: &Value) -> Result<P, String> {
    serde_path_to_error::deserialize::<_, P>(params).map_err(|e| {
        let inner = e.inner().to_string();
        let mut path = e.path().to_string();
        if path == "." {
            path.clear();
        }
        if let Some(k) = inner
            .strip_prefix("unknown field `")
            .and_then(|r| r.split_once('`'))
            .map(|(k, _)| k)
        {
            // The path ends at the unknown key itself for a struct read directly, at its
            // parent for one read through a tagged enum (`model`).
            if path.is_empty() {
                path = k.to_string();
            } else if path != k && !path.ends_with(&format!(".{k}")) {
                path = format!("{path}.{k}");
            }
        }
        if path.is_empty() {
            inner
        } else {
            format!("field `{path}`: {inner}")
        }
    })
}

fn parse_ok<P: serde::de::DeserializeOwned>(params: &Value) -> anyhow::Result<P> {
    parse(params).map_err(|e| anyhow::anyhow!("invalid params: {e}"))
}

/// A project file or folder a stage's params name as its code ([`Kind::code_files`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeFile {
    /// The params field naming it, e.g. `deps[0]`.
    pub field: String,
    /// As written in the params: relative to the project root.
    pub path: PathBuf,
}

/// One upstream output a stage reads: the directory holding the upstream's published
/// files, the upstream member's name and its matrix coordinates (axis -> value).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InputRef {
    pub dir: PathBuf,
    pub member: String,
    #[serde(default)]
    pub coords: BTreeMap<String, Value>,
}

/// Receives progress from a running stage. The engine draws bars from it (or plain log
/// lines when not on a terminal); stages never print.
pub trait Progress: Send + Sync {
    /// A new phase with `total` steps of `unit` (e.g. "epoch", "batch", "bytes").
    fn phase(&self, name: &str, unit: &str, total: u64);
    /// Steps done so far in the current phase.
    fn position(&self, done: u64);
    /// A short status line (last loss, accuracy, ...).
    fn message(&self, msg: &str);
}

/// A progress sink that drops everything (tests, library use).
pub struct NoProgress;
impl Progress for NoProgress {
    fn phase(&self, _: &str, _: &str, _: u64) {}
    fn position(&self, _: u64) {}
    fn message(&self, _: &str) {}
}

/// The error a stage returns when it was asked to stop and has saved a checkpoint.
#[derive(Debug)]
pub struct Interrupted;
impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "interrupted; progress saved to the checkpoint")
    }
}
impl std::error::Error for Interrupted {}

/// Everything a stage may know about where it runs.
pub struct StageContext<'a> {
    /// The member's full name, e.g. `train[digits,flip,0.6,0.05,seed=1]` (for messages).
    pub member: String,
    /// The active profile name (recorded in metrics so scaled-down runs are never
    /// mistaken for paper-scale ones).
    pub profile: String,
    /// The seed (the `seed` matrix axis, or the stage's `seed`, default 0).
    pub seed: u64,
    /// The member's own matrix coordinates.
    pub coords: BTreeMap<String, Value>,
    /// Named inputs; a group input holds many refs, a single input one.
    pub inputs: BTreeMap<String, Vec<InputRef>>,
    /// Where outputs are written (a staging directory the engine publishes atomically).
    pub out_dir: PathBuf,
    /// Survives a crash or an interruption; tied to the fingerprint; removed on success.
    pub checkpoint_dir: PathBuf,
    /// The project root: relative paths in params (e.g. `data/...`) resolve against it.
    pub project_dir: PathBuf,
    /// A cache for downloaded raw files, shared by all stages (verified by SHA-256).
    pub download_dir: PathBuf,
    pub progress: &'a dyn Progress,
    /// Set when the stage should checkpoint and return [`Interrupted`].
    pub stop: &'a AtomicBool,
}

impl StageContext<'_> {
    pub fn should_stop(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// The single input named `name`, or an error naming the stage and the input.
    pub fn input(&self, name: &str) -> anyhow::Result<&InputRef> {
        match self.inputs.get(name).map(|v| v.as_slice()) {
            Some([one]) => Ok(one),
            Some(many) if many.len() > 1 => anyhow::bail!(
                "input `{name}` of {} must be a single stage, but {} members match",
                self.member,
                many.len()
            ),
            _ => anyhow::bail!("{} needs an input named `{name}`", self.member),
        }
    }

    /// An optional single input.
    pub fn input_opt(&self, name: &str) -> anyhow::Result<Option<&InputRef>> {
        if self.inputs.contains_key(name) {
            self.input(name).map(Some)
        } else {
            Ok(None)
        }
    }

    /// All refs of a (group) input; empty when absent.
    pub fn group(&self, name: &str) -> &[InputRef] {
        self.inputs.get(name).map(|v| v.as_slice()).unwrap_or(&[])
    }

    /// Resolves a path from params against the project root.
    pub fn project_path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.project_dir.join(p)
        }
    }
}
