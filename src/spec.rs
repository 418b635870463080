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
//! `stages.NAME.params`, then the member's matrix values. Defaults are keyed by kind
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

use std::fmt;
use std::marker::PhantomData;
use std::path::Path;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::SpecError;
use crate::executor::slurm::client::SlurmResources;

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
    pub resources: OrderedMap<SlurmResources>,
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
}

/// One entry of `profiles:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileSpec {
    #[serde(default)]
    pub defaults: OrderedMap<StrictMap>,
    #[serde(default)]
    pub stages: OrderedMap<StageOverride>,
    #[serde(default)]
    pub disable: Vec<String>,
    #[serde(default)]
    pub executor: Option<String>,
    #[serde(default)]
    pub resources: OrderedMap<SlurmResources>,
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

/// The deepest nesting of collections a pipeline file may have. The deepest path of a
/// real file is about 10 (`profiles` > profile > `stages` > stage > `params` > `model`
/// > `hidden` > list); libyaml's flow parser takes time quadratic in the depth (a
/// 200 KB file of `[` took 41 s), so deeper files are refused before parsing.
pub const MAX_NESTING: usize = 64;

/// How many values (scalars and collections, after alias expansion) a file may hold
/// beyond its own length in bytes. A file without aliases holds fewer values than bytes;
/// aliases that expand past this (a "billion laughs" file) are refused after this many
/// values have been counted, before anything is built from them.
pub const MAX_EXPANDED_VALUES: u64 = 1_000_000;

/// Refuses a file whose collections nest deeper than [`MAX_NESTING`], naming the line
/// where the limit is crossed.
///
/// A single pass over the text: block collections nest by indentation (a stack of the
/// columns of open nodes, one more for each `- ` or `? ` that opens a node inside a
/// line), flow collections by `[`/`{` outside quoted scalars and comments. Block scalars
/// (`|`, `>`) are skipped. The count may exceed libyaml's by a level or two in odd
/// layouts (a `[` inside a plain scalar counts), never by more than the file shows.
pub fn check_nesting(text: &str, file: &Path) -> Result<(), SpecError> {
    let mut block: Vec<usize> = Vec::new();
    let mut flow = 0usize;
    // Inside a quoted scalar: its quote character.
    let mut quote: Option<u8> = None;
    // Inside a block scalar: the indentation of the line that opened it.
    let mut literal_of: Option<usize> = None;
    let too_deep = |line: usize| {
        Err(SpecError::new(
            file,
            format!(
                "collections nest deeper than {MAX_NESTING} levels; a pipeline needs about 10 \
                 (refused before parsing)"
            ),
        )
        .line(Some(line)))
    };
    for (li, raw) in text.lines().enumerate() {
        let b = raw.as_bytes();
        let indent = b.iter().take_while(|&&c| c == b' ').count();
        let blank = b[indent..].iter().all(|c| c.is_ascii_whitespace());
        if let Some(open) = literal_of {
            if blank || indent > open {
                continue;
            }
            literal_of = None;
        }
        let mut i = 0;
        if quote.is_none() && flow == 0 {
            if blank || b[indent] == b'#' {
                continue;
            }
            while block.last().is_some_and(|&c| c >= indent) {
                block.pop();
            }
            block.push(indent);
            i = indent;
            // `- - x` and `? x` open one more node each on the same line.
            while i + 1 < b.len() && matches!(b[i], b'-' | b'?') && b[i + 1] == b' ' {
                i += 2;
                while i < b.len() && b[i] == b' ' {
                    i += 1;
                }
                if i < b.len() && !matches!(b[i], b'#') {
                    block.push(i);
                }
            }
            if block.len() > MAX_NESTING {
                return too_deep(li + 1);
            }
        }
        // Tokens: quotes, flow brackets, comments, block-scalar indicators.
        let mut prev: Option<u8> = if i == 0 { None } else { Some(b' ') };
        let mut prev_solid: Option<u8> = None;
        while i < b.len() {
            let c = b[i];
            if let Some(q) = quote {
                if c == q {
                    if q == b'\'' && b.get(i + 1) == Some(&b'\'') {
                        i += 2;
                        continue;
                    }
                    quote = None;
                } else if q == b'"' && c == b'\\' {
                    i += 1;
                }
                i += 1;
                prev = Some(b'x');
                prev_solid = Some(b'x');
                continue;
            }
            let after_space = prev.is_none_or(|p| p == b' ' || p == b'\t');
            match c {
                b'#' if after_space => break,
                b'"' | b'\'' => {
                    let opens = (after_space
                        && matches!(
                            prev_solid,
                            None | Some(b'-' | b'?' | b':' | b'[' | b'{' | b',')
                        ))
                        || matches!(prev, Some(b'[' | b'{' | b','));
                    if opens {
                        quote = Some(c);
                    }
                }
                b'[' | b'{' => {
                    flow += 1;
                    if block.len() + flow > MAX_NESTING {
                        return too_deep(li + 1);
                    }
                }
                b']' | b'}' => flow = flow.saturating_sub(1),
                b'|' | b'>'
                    if flow == 0
                        && after_space
                        && matches!(prev_solid, Some(b':' | b'-') | None) =>
                {
                    let rest = &b[i + 1..];
                    let header = rest
                        .iter()
                        .take_while(|&&x| x != b'#')
                        .all(|&x| x.is_ascii_digit() || matches!(x, b'+' | b'-' | b' ' | b'\t'));
                    if header {
                        literal_of = Some(indent);
                        break;
                    }
                }
                _ => {}
            }
            prev = Some(c);
            if !c.is_ascii_whitespace() {
                prev_solid = Some(c);
            }
            i += 1;
        }
    }
    Ok(())
}

/// Refuses a file whose aliases expand to more than [`MAX_EXPANDED_VALUES`] values
/// beyond its length: walks the parsed document as serde_yaml hands it out (aliases
/// replayed) and stops counting at the limit, so the time taken is bounded too.
pub fn check_expansion(text: &str, file: &Path) -> Result<(), SpecError> {
    use std::cell::Cell;
    let limit = MAX_EXPANDED_VALUES + text.len() as u64;
    let count = Cell::new(0u64);
    let res = serde_yaml::Deserializer::from_str(text).next().map(|d| {
        de::DeserializeSeed::deserialize(
            Counter {
                count: &count,
                limit,
            },
            d,
        )
    });
    let bomb = || {
        SpecError::new(
            file,
            format!(
                "aliases (`*name`) expand the file to more than {limit} values, far more \
                 than it holds; an alias that repeats other aliases (\"billion laughs\")? \
                 Refused before building anything"
            ),
        )
    };
    match res {
        None | Some(Ok(())) => Ok(()),
        Some(Err(e)) if count.get() > limit || e.to_string().contains("repetition limit") => {
            Err(bomb())
        }
        // Anything else (a syntax error) is reported by the typed parse, with its path.
        Some(Err(_)) => Ok(()),
    }
}

/// Counts the values of a document; fails once `limit` is passed.
#[derive(Clone, Copy)]
struct Counter<'a> {
    count: &'a std::cell::Cell<u64>,
    limit: u64,
}

impl Counter<'_> {
    fn tick<E: de::Error>(&self) -> Result<(), E> {
        self.count.set(self.count.get() + 1);
        if self.count.get() > self.limit {
            return Err(E::custom("expansion limit"));
        }
        Ok(())
    }
}

impl<'de> de::DeserializeSeed<'de> for Counter<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Counter<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.tick()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.tick()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.tick()
    }
    fn visit_i128<E: de::Error>(self, _: i128) -> Result<(), E> {
        self.tick()
    }
    fn visit_u128<E: de::Error>(self, _: u128) -> Result<(), E> {
        self.tick()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.tick()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.tick()
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.tick()
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.tick()
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.tick()?;
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.tick()?;
        while map.next_key_seed(self)?.is_some() {
            map.next_value_seed(self)?;
        }
        Ok(())
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        // A tagged value (`!tag x`): count the tag and walk the value.
        use de::VariantAccess;
        self.tick()?;
        let ((), v) = data.variant_seed(self)?;
        v.newtype_variant_seed(self)
    }
}

/// Turns a serde_yaml error (`stages.x.params: unknown field `y`, expected ... at line 3
/// column 5`) into a [`SpecError`] with the stage and the field pulled out of it.
fn yaml_error(e: &serde_yaml::Error, text: &str, file: &Path) -> SpecError {
    let full = e.to_string();
    // serde_yaml appends " at line L column C"; the location is reported separately.
    let msg = match full.rfind(" at line ") {
        Some(i) => full[..i].to_string(),
        None => full.clone(),
    };
    let (path, body) = match msg.split_once(": ") {
        Some((p, b)) if !p.contains(' ') => (p.to_string(), b.to_string()),
        _ => (String::new(), msg.clone()),
    };
    let segs: Vec<&str> = if path.is_empty() {
        vec![]
    } else {
        path.split('.').collect()
    };
    let mut err = SpecError::new(file, body.clone());
    let mut line = e.location().map(|l| l.line());
    if segs.first() == Some(&"stages") && segs.len() >= 2 {
        err = err.stage(strip_index(segs[1]));
    } else if segs.first() == Some(&"profiles") && segs.len() >= 2 {
        err.message = format!("profile `{}`: {}", strip_index(segs[1]), body);
    }
    let field = backticked_after(&body, "unknown field ")
        .or_else(|| backticked_after(&body, "duplicate key "))
        .or_else(|| backticked_after(&body, "missing field "));
    let mut key_path: Vec<String> = segs.iter().map(|s| strip_index(s)).collect();
    if let Some(dup) = backticked_after(&body, "duplicate key ") {
        // serde_yaml points at the mapping; point at the second occurrence instead.
        if path == "stages" {
            err = err.stage(dup.clone());
        } else {
            err = err.field(dup.clone());
        }
        let from = line.unwrap_or(1).saturating_sub(1);
        let hits: Vec<usize> = text
            .lines()
            .enumerate()
            .skip(from)
            .filter(|(_, l)| key_matches(l.trim_start(), &dup))
            .map(|(i, _)| i + 1)
            .collect();
        return err.line(hits.get(1).copied().or(line));
    }
    if let Some(f) = field {
        key_path.push(f.clone());
        err = err.field(f);
    } else if segs.len() >= 3 {
        err = err.field(segs[2..].join("."));
    }
    if line.is_none() {
        let refs: Vec<&str> = key_path.iter().map(|s| s.as_str()).collect();
        line = locate(text, &refs);
    }
    err.line(line)
}

fn strip_index(s: &str) -> String {
    match s.find('[') {
        Some(i) => s[..i].to_string(),
        None => s.to_string(),
    }
}

/// The first backticked word after `marker` in `s`.
pub fn backticked_after(s: &str, marker: &str) -> Option<String> {
    let rest = &s[s.find(marker)? + marker.len()..];
    let rest = rest.strip_prefix('`')?;
    Some(rest[..rest.find('`')?].to_string())
}

/// The 1-based line of the deepest key of `path` found in block-style YAML `text`.
///
/// Walks down by indentation: the key `path[i]` is searched among the lines more
/// indented than `path[i-1]`'s line, up to the first line indented as much or less. A
/// step `[n]` is the n-th item (from 0) of a block sequence (`- ...` lines) under the key
/// before it; the item's first key may sit on its own line (`- table: clean`). Returns the
/// last key or item found (so an error on a field inside a flow mapping points at the line
/// of the mapping's key or item), or None when even the first key is absent.
pub fn locate(text: &str, path: &[&str]) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let mut start = 0usize;
    let mut parent_indent: isize = -1;
    let mut found: Option<usize> = None;
    // A list item just found: its line, the column of its content, and that content.
    let mut item: Option<(usize, usize, &str)> = None;
    for key in path {
        if let Some(n) = key
            .strip_prefix('[')
            .and_then(|k| k.strip_suffix(']'))
            .and_then(|k| k.parse::<usize>().ok())
        {
            let Some((i, col, content)) = nth_item(&lines, start, parent_indent, n) else {
                break;
            };
            found = Some(i + 1);
            start = i + 1;
            parent_indent = col as isize - 1;
            item = Some((i, col, content));
            continue;
        }
        if let Some((i, col, content)) = item.take() {
            if key_matches(content, key) {
                found = Some(i + 1);
                start = i + 1;
                parent_indent = col as isize;
                continue;
            }
        }
        let mut hit = None;
        let mut child_indent: Option<usize> = None;
        for (i, raw) in lines.iter().enumerate().skip(start) {
            let line = strip_comment(raw);
            let trimmed = line.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') || trimmed == "---" {
                continue;
            }
            let indent = line.len() - trimmed.len();
            if (indent as isize) <= parent_indent {
                break;
            }
            let entry = trimmed.strip_prefix("- ").unwrap_or(trimmed);
            if child_indent.is_none() {
                child_indent = Some(indent);
            }
            if Some(indent) != child_indent && !trimmed.starts_with("- ") {
                continue;
            }
            if key_matches(entry, key) {
                hit = Some((i, indent));
                break;
            }
        }
        match hit {
            Some((i, indent)) => {
                found = Some(i + 1);
                start = i + 1;
                parent_indent = indent as isize;
            }
            None => break,
        }
    }
    found
}

/// The `n`-th item (from 0) of the block sequence starting at line `start` under a key
/// indented `parent_indent`: its line, the column of its content, and the content.
fn nth_item<'t>(
    lines: &[&'t str],
    start: usize,
    parent_indent: isize,
    n: usize,
) -> Option<(usize, usize, &'t str)> {
    let mut item_indent = None;
    let mut count = 0;
    for (i, raw) in lines.iter().enumerate().skip(start) {
        let line = strip_comment(raw);
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = (line.len() - trimmed.len()) as isize;
        let dash = trimmed.starts_with("- ") || trimmed == "-";
        // An indentless sequence may sit at its key's own indentation.
        if indent < parent_indent || (indent == parent_indent && !dash) {
            break;
        }
        if !dash || *item_indent.get_or_insert(indent) != indent {
            continue;
        }
        if count == n {
            let content = trimmed.strip_prefix('-').unwrap_or("").trim_start();
            let col = line.len() - content.len();
            return Some((i, col, content));
        }
        count += 1;
    }
    None
}

fn strip_comment(line: &str) -> &str {
    // Good enough for keys: a ` #` outside quotes starts a comment.
    match line.find(" #") {
        Some(i) if !line[..i].contains('"') && !line[..i].contains('\'') => &line[..i],
        _ => line,
    }
}

fn key_matches(entry: &str, key: &str) -> bool {
    for q in ["", "\"", "'"] {
        let k = format!("{q}{key}{q}");
        if let Some(rest) = entry.strip_prefix(&k) {
            let rest = rest.trim_start();
            if rest.starts_with(':') {
                return true;
            }
        }
    }
    false
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
    fn order_of_stages_and_axes_is_kept() {
        let text = "stages:\n  z:\n    kind: probe\n    matrix: { b: [1], a: [2] }\n  y:\n    kind: probe\n";
        let s = parse(text).unwrap();
        assert_eq!(s.stages.keys().cloned().collect::<Vec<_>>(), ["z", "y"]);
        let z = s.stages.get("z").unwrap();
        assert_eq!(z.matrix.keys().cloned().collect::<Vec<_>>(), ["b", "a"]);
    }

    #[test]
    fn locate_walks_by_indentation() {
        let text = "# c\nstages:\n  a:\n    kind: probe\n    params:\n      value: x\n  b:\n    kind: probe\n    params: { value: y }\n    inputs:\n      up: a\n";
        assert_eq!(locate(text, &["stages"]), Some(2));
        assert_eq!(locate(text, &["stages", "a", "params", "value"]), Some(6));
        assert_eq!(locate(text, &["stages", "b", "kind"]), Some(8));
        assert_eq!(locate(text, &["stages", "b", "params", "value"]), Some(9));
        assert_eq!(locate(text, &["stages", "b", "inputs", "up"]), Some(11));
        // `value` under stage a is not found when looking under b.
        assert_eq!(locate(text, &["stages", "b", "value"]), Some(7));
    }

    #[test]
    fn locate_finds_list_items() {
        let text = "stages:\n  t:\n    params:\n      tables:\n        - { table: a }\n        # c\n        - table: b\n          methods: [x]\n        - { table: c, methods: [y] }\n      figures:\n      - figure: e\n";
        let at = |path: &[&str]| locate(text, path);
        assert_eq!(at(&["stages", "t", "params", "tables", "[0]"]), Some(5));
        assert_eq!(
            at(&["stages", "t", "params", "tables", "[1]", "table"]),
            Some(7)
        );
        assert_eq!(
            at(&["stages", "t", "params", "tables", "[1]", "methods"]),
            Some(8)
        );
        assert_eq!(
            at(&["stages", "t", "params", "tables", "[2]", "methods"]),
            Some(9)
        );
        // No such item: the list's key.
        assert_eq!(
            at(&["stages", "t", "params", "tables", "[3]", "methods"]),
            Some(4)
        );
        // An indentless sequence.
        assert_eq!(
            at(&["stages", "t", "params", "figures", "[0]", "figure"]),
            Some(11)
        );
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

#[cfg(test)]
mod size_limit_tests {
    use super::*;

    fn parse(text: &str) -> Result<Spec, SpecError> {
        Spec::parse(text, Path::new("pipeline.yaml"))
    }

    #[test]
    fn deep_flow_nesting_is_refused_at_its_line() {
        let text = format!(
            "stages:\n  a:\n    kind: probe\n    params: {{ value: {} }}\n",
            "[".repeat(200_000)
        );
        let e = parse(&text).unwrap_err();
        assert!(e.message.contains("nest deeper than 64"), "{e}");
        assert_eq!(e.line, Some(4), "{e}");
    }

    #[test]
    fn deep_block_nesting_is_refused() {
        // Indented mappings, one level a line.
        let mut text = "stages:\n  a:\n    kind: probe\n    params:\n".to_string();
        for d in 0..100 {
            text += &format!("{}k{d}:\n", " ".repeat(6 + d));
        }
        let e = parse(&text).unwrap_err();
        assert!(e.message.contains("nest deeper than 64"), "{e}");
        // Compact sequences: `- - - x` nests on one line.
        let text = format!(
            "stages:\n  a:\n    kind: probe\n    params:\n      value:\n        {}x\n",
            "- ".repeat(100_000)
        );
        let e = parse(&text).unwrap_err();
        assert!(e.message.contains("nest deeper than 64"), "{e}");
        assert_eq!(e.line, Some(6), "{e}");
    }

    #[test]
    fn brackets_in_quotes_comments_and_block_scalars_do_not_nest() {
        let deep = "[".repeat(100);
        for value in [
            format!("\"{deep}\""),
            format!("'{deep}'"),
            format!("x # {deep}"),
            format!("|\n        {deep}\n        {deep}"),
            format!("\"a \\\" {deep}\""),
            format!("'it''s {deep}'"),
        ] {
            let text =
                format!("stages:\n  a:\n    kind: probe\n    params:\n      value: {value}\n");
            check_nesting(&text, Path::new("p.yaml")).unwrap_or_else(|e| panic!("{value}: {e}"));
        }
        // Nesting within the limit parses.
        let text = format!(
            "stages:\n  a:\n    kind: probe\n    params:\n      x_n: {}1{}\n",
            "[".repeat(50),
            "]".repeat(50)
        );
        parse(&text).unwrap();
    }

    #[test]
    fn the_project_pipeline_is_well_within_the_limits() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipeline.yaml");
        let text = std::fs::read_to_string(&file).unwrap();
        check_nesting(&text, &file).unwrap();
        check_expansion(&text, &file).unwrap();
        parse(&text).unwrap();
    }

    #[test]
    fn billion_laughs_is_refused() {
        // `x_*` labels of a probe take any value: a valid pipeline, but the aliases
        // expand to 10^9 strings.
        let mut text = "defaults:\n  probe:\n    x_0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n".to_string();
        for i in 1..10 {
            let refs = vec![format!("*l{}", i - 1); 10].join(", ");
            text += &format!("    x_{i}: &l{i} [{refs}]\n");
        }
        text += "stages:\n  a:\n    kind: probe\n";
        let e = parse(&text).unwrap_err();
        assert!(e.message.contains("aliases"), "{e}");
        assert!(e.message.contains("billion laughs"), "{e}");
        assert_eq!(e.file, Path::new("pipeline.yaml"));
    }

    #[test]
    fn wide_alias_repeated_many_times_is_refused() {
        // One anchored list of 3,000 values used 3,000 times: under serde_yaml's own
        // limit on alias jumps, but 9 million values.
        let list = vec!["1"; 3000].join(", ");
        let refs = vec!["*w"; 3000].join(", ");
        let text = format!(
            "defaults:\n  probe:\n    x_w: &w [{list}]\n    x_r: [{refs}]\nstages:\n  a:\n    kind: probe\n"
        );
        let e = parse(&text).unwrap_err();
        assert!(e.message.contains("aliases"), "{e}");
        // A few aliases, as pipeline.yaml uses them, are fine.
        parse("defaults:\n  probe:\n    x_a: &a [1, 2]\n    x_b: *a\nstages:\n  a:\n    kind: probe\n    profiles: &p [default]\n  b:\n    kind: probe\n    profiles: *p\n").unwrap();
    }
}
