//! `pipeline.yaml`: the raw file, parsed strictly. This doc is the format reference.
//!
//! ```yaml
//! defaults:                       # optional: params merged under every stage of a kind
//!   train: { epochs: 10, lr: 0.1 }
//! stages:                         # required; a stage's name is its key
//!   digits:
//!     kind: download              # required: a kind (an unknown kind's error lists them)
//!     params: { dataset: digits } # optional mapping; checked by the kind (unknown field = error)
//!   noisy:
//!     kind: inject_noise
//!     inputs: { data: digits }    # input name -> upstream stage (one member) ...
//!     params: { trusted_fraction: 0.05 }
//!     matrix:                     # optional fan-out: the cartesian product of the lists
//!       corruption: [uniform, flip]
//!       strength: [0.0, 0.5, 1.0]
//!       seed: [1, 2, 3]
//!   train_ce:
//!     kind: train
//!     inputs: { data: digits, noise: noisy }
//!     params: { method: ce }
//!     matrix: { corruption: [uniform, flip], strength: [0.0, 0.5, 1.0], seed: [1, 2, 3] }
//!     when:                       # optional: params for the members whose coordinates match
//!       - { if: { corruption: flip, strength: [0.5, 1.0] }, params: { lr: 0.01 } }
//!   table1:
//!     kind: tables
//!     inputs: { runs: "train_ce[*]" } # ... or `stage[*]`: a whole matrix group
//!     publish: results/tables     # copy the outputs here after a run or a restore
//!     seed: 0                     # optional seed of a stage without a `seed` axis (default 0)
//!     timeout: 10m                # optional time limit of one run of a member (`90`, `45s`, `1h30m`)
//!   mnist:
//!     kind: download
//!     params: { dataset: mnist }
//!     profiles: [cpu]             # optional: only these profiles have the stage
//! profiles:                       # optional; `repro run --profile NAME`
//!   tiny:
//!     defaults: { train: { epochs: 1 } }
//!     stages:
//!       train_ce: { params: { lr: 0.05 }, matrix: { seed: [1] }, timeout: 2m }
//!     disable: [table1]           # stages left out of this profile
//!   cluster:
//!     executor: slurm             # optional: `local` or `slurm` for this profile
//!     resources:                  # optional: Slurm resources, merged over the top-level ones
//!       train: { gpus: 1, time: "4:00:00" }
//! executor: local                 # optional: how stages run (`local`, the default, or `slurm`)
//! resources:                      # optional: Slurm resources per stage; never in a fingerprint
//!   default: { cpus: 1, mem: 2G, time: "0:30:00" }  # every stage
//!   train: { cpus: 4, mem: 8G, time: "2:00:00" }    # a kind: every stage of that kind
//!   table1: { partition: short }                    # a stage name: that stage only
//! ```
//!
//! **Params** of a member are merged, later layers winning, deep-merging mappings:
//! `defaults[kind]`, the profile's `defaults[kind]`, the stage's `params`, the profile's
//! `stages.NAME.params`, the member's matrix values, then the params of the stage's
//! `when` entries the member matches, in order. Defaults are keyed by kind
//! (not global) because every kind rejects unknown params: a global default could only
//! hold fields every kind accepts.
//!
//! **Matrix**: each axis value is set in the member's params under the axis name, except
//! the axis `seed`, which becomes the member's seed (and must be a non-negative integer).
//! Axis values are scalars. Members are named `stage[v1,v2,...,seed=N]` with values in
//! axis declaration order (`seed` last), e.g. `train_glc[digits,flip,0.6,0.05,seed=1]`; a stage without
//! a matrix has one member named like the stage. A profile replaces the list of an
//! existing axis (it cannot add or remove axes: member names must stay comparable).
//!
//! **When**: each entry's `if` names axes of the stage (own, inherited or `seed`) with a
//! value or a list of values (any of them); a member matches when every named axis has a
//! wanted value. An axis the stage lacks, or a value its own matrix (as the stage declares
//! it) lacks, is an error at the entry's line; a value a profile leaves out matches
//! nothing. For sources whose settings differ per method or dataset within one grid.
//!
//! **Inputs**: `name: up` binds to one member of `up`. The stage *inherits* every axis of
//! `up` it does not declare itself (with `up`'s values, as the active profile sets them):
//! it has one member per combination of its own and inherited axes, and each binds to the
//! member of `up` with the same coordinates. So `train` reading `noisy` fans out over the
//! corruptions, strengths and seeds of `noisy` without repeating them; an inherited axis
//! is a coordinate, not a param. Member names list own axes, then inherited ones, with
//! `seed` always last. `name: "up[*]"` (a group) inherits nothing and binds to all
//! members of `up` that agree with this member on the axes both have (at least one), in
//! `up`'s member order. Every bound member reaches the stage with its own coordinates, so
//! a table can group runs by them. `name: "up[v1,v2]"` binds to the one member of `up`
//! with that name, for every member of the stage, and inherits nothing (e.g. the
//! CIFAR-100 member of a download stage whose matrix lists several datasets).
//!
//! **Publish**: `publish: DIR` (relative to the project) receives a copy of the stage's
//! output files after it runs or is restored. A stage with several members publishes each
//! under `DIR/<its matrix values>` (the bracketed part of its name). A profile may move it
//! (`profiles: tiny: stages: report: { publish: results/tiny }`); two profiles may not
//! publish into the same directory, or a run of one would overwrite the other's results
//! (checked for every profile when the file is loaded). The directory belongs to the stages
//! publishing into it: `run` removes any other file there ([`crate::strays`]), so it must
//! be a folder inside the project, not the project itself.
//!
//! **Timeout**: `timeout: 10m` on a stage (or on its entry in a profile's `stages:`, which
//! replaces it) limits each run of each of its members: seconds (`90`) or numbers with units
//! `d`, `h`, `m`, `s`, largest first (`45s`, `1h30m`, `2d`), from 1 s to 365 days. A stage
//! that reaches it is asked to stop as by Ctrl-C and fails naming the limit; its checkpoint
//! is kept, so the next run resumes where it stopped (each run gets the whole limit again).
//! It applies to every kind, locally and in a Slurm job (where the job's own `time` resource
//! still applies too). Like the executor and the resources, it says how a stage is run,
//! not what it computes: it is in no fingerprint, and adding, changing or removing it
//! reruns nothing.
//!
//! **Profile membership**: a stage with `profiles: [a, b]` exists only in those profiles
//! (`default` names the profile used without `--profile`); a stage without the field is
//! in every profile, unless a profile's `disable` leaves it out. So one file holds the
//! stage groups of several datasets, and each profile runs its own. A stage of a profile
//! may not read a stage the profile does not have.
//!
//! **Executor** (`repro run --executor` wins over the profile's `executor:`, which wins
//! over the top-level one; default `local`): `local` runs each stage as a child process,
//! `slurm` submits each as a batch job on the cluster `SLURM_CONF` names (see
//! [`crate::executor::slurm`]).
//!
//! **Resources** (used by the `slurm` executor only): keys are `default`, a kind name or
//! a stage name; values take the fields `cpus`, `mem` (`4G`, `4000` = MB), `gpus`, `gres`
//! (`gpu:a100:1`), `time` (`M`, `H:M:S`, `D-H:M:S`), `partition` and `extra_args` (a list
//! of further `sbatch` options, e.g. `["--account=ml"]`). A stage gets `default`, then its
//! kind's entry, then its own entry, each field set by a later one replacing the earlier;
//! a profile's entry for a key is laid over the top-level entry for the same key. They say
//! where a stage runs, not what it computes, so they are not part of any fingerprint:
//! changing them (or the executor) reruns nothing. The `cpus` of a stage also sets its
//! `RAYON_NUM_THREADS` (1 when unset), unless the environment sets it.
//!
//! **Strictness**: unknown fields, unknown kinds, wrong types, duplicate keys, unknown
//! inputs or profile entries, empty matrix axes, cycles, params a kind rejects and inputs
//! a kind cannot use (`repro_stages::Kind::check_inputs`: an input it does not read or
//! lacks, a method that needs trusted examples reading a noise stage that draws none, a
//! table's method that names no input run) are all errors naming the file, the line, the
//! stage and the field (exit code 2). So are a stage name that is no plain path component
//! and a command's program that cannot be found (`crate::programs`). Syntax and type
//! errors carry the line serde_yaml reports. Semantic errors (found after parsing) are
//! located by [`locate`], which walks the block-style YAML text by indentation along the
//! key path (`stages` > stage > field > ...) and returns the line of the deepest key it
//! finds, or of a list item (`tables[1]`); inside flow mappings (`{ a: 1 }`) it stops at
//! the enclosing key's line.
//!
//! **Limits**: a file must be UTF-8 (else the error names the line and column of the first
//! bad byte), its collections may nest at most [`MAX_NESTING`] (64) deep, and its aliases
//! may not expand it past [`MAX_EXPANDED_VALUES`] (10^6) values beyond its length; all
//! three are checked before the typed parse. Sizes in params (epochs, widths, ...) are
//! bounded by the kinds (`repro_stages::bounds`), and a refused value is located in the
//! layer that set it: the member's matrix, the profile's or the stage's params, or the
//! defaults.
//!
//! **Code**: this file holds the serde structs of the format (ordered maps that refuse
//! duplicate keys at every depth) and [`Spec::parse`]; `guard.rs` the two scans of the text
//! that enforce the limits before the typed parse ([`check_nesting`], [`check_expansion`]);
//! `locate.rs` the lines of errors ([`locate`], and serde_yaml's errors read into a
//! [`SpecError`]).

use std::fmt;
use std::marker::PhantomData;
use std::path::Path;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::SpecError;

mod guard;
mod locate;

pub use guard::{check_expansion, check_nesting, MAX_EXPANDED_VALUES, MAX_NESTING};
use locate::yaml_error;
pub use locate::{backticked_after, locate};

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// kind name -> params merged under every stage of that kind.
    #[serde(default)]
    pub defaults: OrderedMap<StrictMap>,
    pub stages: OrderedMap<StageSpec>,
    #[serde(default)]
    pub profiles: OrderedMap<ProfileSpec>,
    /// `local` or `slurm`; checked when the pipeline is built.
    #[serde(default)]
    pub executor: Option<String>,
    /// `default`, kind or stage name -> Slurm resources.
    #[serde(default)]
    pub resources: OrderedMap<ResourcesSpec>,
}

/// One entry of `stages:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageSpec {
    pub kind: String,
    /// input name -> `stage` or `stage[*]`.
    #[serde(default)]
    pub inputs: OrderedMap<String>,
    #[serde(default)]
    pub params: StrictMap,
    /// axis name -> values, in declaration order.
    #[serde(default)]
    pub matrix: OrderedMap<Vec<Value>>,
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(default)]
    pub publish: Option<String>,
    /// The profiles this stage belongs to (`default` is the profile without `--profile`);
    /// absent = every profile.
    #[serde(default)]
    pub profiles: Option<Vec<String>>,
    /// The time limit of one run of each member: seconds or `1h30m` (checked when the
    /// pipeline is built, [`crate::run_config::parse_timeout`]); never in a fingerprint.
    #[serde(default)]
    pub timeout: Option<Value>,
    /// Params for the members whose coordinates match, merged after every other layer, in
    /// order ([`WhenSpec`]).
    #[serde(default)]
    pub when: Vec<WhenSpec>,
}

/// One entry of a stage's `when:`: `params` given to the members whose coordinates match
/// every axis of `if` (the stage's own axes, those it inherits from its inputs, or
/// `seed`); a list value matches any of its items. For a source whose settings differ per
/// method or dataset without splitting the stage: `{ if: { method: forward, dataset:
/// cifar100 }, params: { anchor_percentile: null } }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhenSpec {
    #[serde(rename = "if")]
    pub cond: OrderedMap<Value>,
    pub params: StrictMap,
}

impl WhenSpec {
    /// Whether a member at `coords` matches: every axis of `if` has one of the wanted
    /// values (numbers compare by value, so `1` matches `1.0`).
    pub fn matches(&self, coords: &std::collections::BTreeMap<String, Value>) -> bool {
        self.cond.iter().all(|(axis, want)| {
            coords
                .get(axis)
                .is_some_and(|have| wanted_values(want).iter().any(|w| same_value(w, have)))
        })
    }
}

/// The values an `if` entry accepts: the list's items, or the one value.
pub fn wanted_values(want: &Value) -> &[Value] {
    match want {
        Value::Array(items) => items,
        v => std::slice::from_ref(v),
    }
}

/// Whether a value can be a matrix axis value (or a `when` entry's wanted value): a
/// string, a boolean or a number.
pub fn is_scalar(v: &Value) -> bool {
    matches!(v, Value::String(_) | Value::Bool(_) | Value::Number(_))
}

/// Equality of two matrix values, numbers by value.
pub fn same_value(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// One entry of `profiles:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileSpec {
    #[serde(default)]
    pub defaults: OrderedMap<StrictMap>,
    /// Kind -> params merged over the params of every stage of that kind (under this
    /// profile's own params for a stage, the matrix and the `when` entries): what a
    /// profile that shrinks another's grid sets once, e.g. one epoch for every training.
    #[serde(default)]
    pub params: OrderedMap<StrictMap>,
    #[serde(default)]
    pub stages: OrderedMap<StageOverride>,
    #[serde(default)]
    pub disable: Vec<String>,
    #[serde(default)]
    pub executor: Option<String>,
    #[serde(default)]
    pub resources: OrderedMap<ResourcesSpec>,
}

/// What a profile may change in a stage.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageOverride {
    #[serde(default)]
    pub params: StrictMap,
    #[serde(default)]
    pub matrix: OrderedMap<Vec<Value>>,
    #[serde(default)]
    pub seed: Option<u64>,
    /// Where this profile publishes the stage, instead of the stage's `publish`.
    #[serde(default)]
    pub publish: Option<String>,
    /// This profile's time limit for the stage, instead of the stage's `timeout`.
    #[serde(default)]
    pub timeout: Option<Value>,
    /// `when` entries of this profile, applied after the stage's own (same rules).
    #[serde(default)]
    pub when: Vec<WhenSpec>,
}

/// One entry of `resources:` (top-level or a profile's): what the Slurm executor asks for a
/// stage. The executor's Slurm client has its own type for them; [`crate::run_config`]
/// converts, so the file's format is the spec's to define.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(
    default,
    deny_unknown_fields,
    // What the parse's errors have always said.
    expecting = "struct SlurmResources"
)]
pub struct ResourcesSpec {
    /// `--cpus-per-task`; also the stage's `RAYON_NUM_THREADS`.
    pub cpus: Option<u32>,
    /// `--mem`: `16G`, or a number of MB.
    #[serde(deserialize_with = "string_or_integer")]
    pub mem: Option<String>,
    /// `--gpus`.
    pub gpus: Option<u32>,
    /// `--gres`, e.g. `gpu:a100:1`.
    pub gres: Option<String>,
    /// `--time`: `M`, `H:M:S`, `D-H:M:S`, ...
    #[serde(deserialize_with = "string_or_integer")]
    pub time: Option<String>,
    /// `--partition`.
    pub partition: Option<String>,
    /// Further `sbatch` options, one argument each (`--account=ml`).
    pub extra_args: Vec<String>,
}

/// `mem: 4000` and `time: 30` are integers in YAML; Slurm reads them as text (MB, minutes).
fn string_or_integer<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Number(u64),
    }
    Ok(Some(
        match Raw::deserialize(d)
            .map_err(|_| de::Error::custom("expected a string or a non-negative integer"))?
        {
            Raw::Text(s) => s,
            Raw::Number(n) => n.to_string(),
        },
    ))
}

/// A mapping that keeps declaration order and rejects duplicate keys (serde_yaml would
/// hand a plain map both entries and the last would silently win).
#[derive(Debug, Clone, PartialEq)]
pub struct OrderedMap<V>(pub Vec<(String, V)>);

impl<V> Default for OrderedMap<V> {
    fn default() -> Self {
        OrderedMap(Vec::new())
    }
}

impl<V> OrderedMap<V> {
    pub fn get(&self, key: &str) -> Option<&V> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
    pub fn iter(&self) -> impl Iterator<Item = (&String, &V)> {
        self.0.iter().map(|(k, v)| (k, v))
    }
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.0.iter().map(|(k, _)| k)
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for OrderedMap<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V2<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for V2<V> {
            type Value = OrderedMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(OrderedMap::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out: Vec<(String, V)> = Vec::new();
                while let Some(k) = map.next_key::<String>()? {
                    if out.iter().any(|(e, _)| *e == k) {
                        return Err(de::Error::custom(format!("duplicate key `{k}`")));
                    }
                    let v = map.next_value::<V>()?;
                    out.push((k, v));
                }
                Ok(OrderedMap(out))
            }
        }
        d.deserialize_map(V2(PhantomData))
    }
}

/// A YAML mapping read as a JSON object, rejecting duplicate keys at every depth
/// (serde_yaml would let the last one win silently).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StrictMap(pub Map<String, Value>);

/// A YAML value read as JSON, rejecting duplicate keys at every depth.
struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StrictValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a value")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<StrictValue, E> {
                Ok(StrictValue(Value::Bool(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<StrictValue, E> {
                Ok(StrictValue(Value::from(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<StrictValue, E> {
                Ok(StrictValue(Value::from(v)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<StrictValue, E> {
                serde_json::Number::from_f64(v)
                    .map(|n| StrictValue(Value::Number(n)))
                    .ok_or_else(|| E::custom(format!("{v} is not a finite number")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StrictValue, E> {
                Ok(StrictValue(Value::String(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<StrictValue, E> {
                Ok(StrictValue(Value::String(v)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<StrictValue, E> {
                Ok(StrictValue(Value::Null))
            }
            fn visit_none<E: de::Error>(self) -> Result<StrictValue, E> {
                Ok(StrictValue(Value::Null))
            }
            fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<StrictValue, D2::Error> {
                StrictValue::deserialize(d)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<StrictValue, A::Error> {
                let mut v = Vec::new();
                while let Some(StrictValue(x)) = seq.next_element()? {
                    v.push(x);
                }
                Ok(StrictValue(Value::Array(v)))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<StrictValue, A::Error> {
                Ok(StrictValue(Value::Object(strict_map(map)?)))
            }
        }
        d.deserialize_any(V)
    }
}

fn strict_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<Map<String, Value>, A::Error> {
    let mut out = Map::new();
    while let Some(k) = map.next_key::<String>()? {
        if out.contains_key(&k) {
            return Err(de::Error::custom(format!("duplicate key `{k}`")));
        }
        let StrictValue(v) = map.next_value()?;
        out.insert(k, v);
    }
    Ok(out)
}

impl<'de> Deserialize<'de> for StrictMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StrictMap;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_unit<E: de::Error>(self) -> Result<StrictMap, E> {
                Ok(StrictMap::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<StrictMap, A::Error> {
                strict_map(map).map(StrictMap)
            }
        }
        d.deserialize_map(V)
    }
}

impl Spec {
    /// Parses the text of `file`; errors carry the line and, when the path shows them,
    /// the stage and the field.
    ///
    /// Two checks run before the typed parse, so that no input makes the parser slow or
    /// large: [`check_nesting`] (a text scan) and [`check_expansion`] (a walk that counts
    /// the values aliases expand to).
    pub fn parse(text: &str, file: &Path) -> Result<Spec, SpecError> {
        check_nesting(text, file)?;
        check_expansion(text, file)?;
        serde_yaml::from_str::<Spec>(text).map_err(|e| yaml_error(&e, text, file))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "pipeline.yaml";

    fn parse(text: &str) -> Result<Spec, SpecError> {
        Spec::parse(text, Path::new(FILE))
    }

    #[test]
    fn unknown_field_names_line_stage_and_field() {
        let text = "stages:\n  a:\n    kind: probe\n  b:\n    kind: probe\n    colour: red\n";
        let e = parse(text).unwrap_err();
        assert_eq!(e.line, Some(6), "{e}");
        assert_eq!(e.stage.as_deref(), Some("b"), "{e}");
        assert_eq!(e.field.as_deref(), Some("colour"), "{e}");
        let shown = e.to_string();
        assert!(
            shown.starts_with("pipeline.yaml:6: stage `b`, field `colour`:"),
            "{shown}"
        );
    }

    #[test]
    fn duplicate_stage_is_an_error_with_its_line() {
        let text = "stages:\n  a:\n    kind: probe\n  a:\n    kind: probe\n";
        let e = parse(text).unwrap_err();
        assert!(e.message.contains("duplicate key `a`"), "{e}");
        assert_eq!(e.line, Some(4), "{e}");
    }

    #[test]
    fn duplicate_matrix_axis_is_an_error() {
        let text =
            "stages:\n  a:\n    kind: probe\n    matrix:\n      seed: [1]\n      seed: [2]\n";
        let e = parse(text).unwrap_err();
        assert!(e.message.contains("duplicate key `seed`"), "{e}");
        assert_eq!(e.stage.as_deref(), Some("a"));
    }

    #[test]
    fn wrong_type_is_an_error_with_its_line() {
        let text = "stages:\n  a:\n    kind: probe\n    seed: many\n";
        let e = parse(text).unwrap_err();
        assert_eq!(e.line, Some(4), "{e}");
        assert_eq!(e.stage.as_deref(), Some("a"));
    }

    #[test]
    fn resource_fields_are_optional_and_unknown_ones_rejected() {
        let r: ResourcesSpec = serde_yaml::from_str("cpus: 2\ntime: '30'\n").unwrap();
        assert_eq!(r.cpus, Some(2));
        assert_eq!(r.time.as_deref(), Some("30"));
        assert_eq!(r.mem, None);
        let r: ResourcesSpec = serde_yaml::from_str("mem: 4000\ntime: 30\n").unwrap();
        assert_eq!(r.mem.as_deref(), Some("4000"));
        assert_eq!(r.time.as_deref(), Some("30"));
        let err = serde_yaml::from_str::<ResourcesSpec>("cpu: 2\n").unwrap_err();
        assert!(err.to_string().contains("unknown field `cpu`"), "{err}");
        let err = serde_yaml::from_str::<ResourcesSpec>("lots").unwrap_err();
        assert!(err.to_string().contains("struct SlurmResources"), "{err}");
    }

    #[test]
    fn order_of_stages_and_axes_is_kept() {
        let text = "stages:\n  z:\n    kind: probe\n    matrix: { b: [1], a: [2] }\n  y:\n    kind: probe\n";
        let s = parse(text).unwrap();
        assert_eq!(s.stages.keys().cloned().collect::<Vec<_>>(), ["z", "y"]);
        let z = s.stages.get("z").unwrap();
        assert_eq!(z.matrix.keys().cloned().collect::<Vec<_>>(), ["b", "a"]);
    }
}

#[cfg(test)]
mod duplicate_param_tests {
    use super::*;

    #[test]
    fn duplicate_param_keys_are_errors_at_any_depth() {
        for text in [
            "stages:\n  a:\n    kind: probe\n    params:\n      value: x\n      value: y\n",
            "stages:\n  a:\n    kind: probe\n    params:\n      opt:\n        m: 1\n        m: 2\n",
            "defaults:\n  probe:\n    value: x\n    value: y\nstages:\n  a:\n    kind: probe\n",
        ] {
            let e = Spec::parse(text, Path::new("pipeline.yaml")).unwrap_err();
            assert!(e.message.contains("duplicate"), "{e}");
            assert!(e.line.is_some(), "{e}");
        }
    }
}
