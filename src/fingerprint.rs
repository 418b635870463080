//! Fingerprints: what decides whether a member's stored outputs are still the right ones.
//!
//! A member's fingerprint is the SHA-256 of the canonical JSON of its [`Key`] (object
//! keys sorted, no whitespace). The key is stored as `key.json` beside the outputs in the
//! run store, so `repro why` can print the exact difference between two keys.
//!
//! | Tracked in the key | Why |
//! |---|---|
//! | `kind` | a different computation |
//! | `kind_version` (the kind's manual `VERSION`) | bumped when outputs change meaning in a way the code hash cannot see |
//! | `code_hash` (build script: the kind's source and the shared sources it uses) | editing a kind's code reruns that kind's stages, and only those |
//! | `code_files`: per project file or folder the params name as code (a `command` stage's `deps`, [`Kind::code_files`]), its content digest ([`crate::code_files`]); absent for the built-in kinds | a program outside the binary is code the code hash cannot see: editing it reruns the stages that name it, and only those |
//! | `params` (merged: defaults, profile, stage, matrix values; canonical) | the configuration of the computation |
//! | `seed` | same seed, same bytes; another seed is another run |
//! | `profile` (its name) | stages receive it and record it in their metrics, so a scaled-down run is never mistaken for a paper-scale one: it is part of the bytes |
//! | `inputs`: per input name, per bound upstream member, its output *content digest* and its matrix coordinates | upstream data; the content digest (not the upstream fingerprint) gives early cutoff: an upstream rerun that yields identical bytes keeps downstream fresh. The coordinates are handed to the stage (tables group runs by them), so they are part of what it computes from |
//! | `dfdx_version` | numeric library changes may change bytes |
//! | `backend` (`cpu` / `cpu-portable` / `cuda`) | different kernels, different bytes |
//!
//! | Not tracked | Why |
//! |---|---|
//! | absolute paths (project, store, inputs) | moving or copying the project keeps everything fresh |
//! | mtimes, host, user | they do not change what is computed |
//! | thread count (`-j`, `RAYON_NUM_THREADS`) | outputs must not depend on it (stages use no thread-count-dependent reductions) |
//! | verbosity, progress | presentation only |
//! | member name, stage name | a rename computes the same thing; the name only labels it |
//! | `publish` path | where a copy goes does not change what is computed |
//! | how a stage is run: the executor, Slurm `resources`, a stage launcher, a stage's `timeout` | a stage finishes with the same bytes whatever runs it and however long it may take, or fails and publishes nothing |
//! | files under an output's `log/` | wall times; excluded from the output content digest |
//!
//! Numbers are compared as JSON: `1` and `1.0` are different params (YAML gives an
//! integer and a float), so writing `lr: 1` where `lr: 1.0` was reruns the stage.
//!
//! **Test-only override**: in a debug build (the one the integration tests run), the
//! environment variable `REPRO_TEST_KIND_VERSIONS` (`probe=7,train=2`) replaces the manual
//! version of the named kinds when keys are built, so an integration test can check that a
//! version bump invalidates only that kind's stages without editing source. A release
//! build does not read it.

use std::collections::BTreeMap;
use std::fmt;

use repro_stages::Kind;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// One bound upstream member, as the key sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputKey {
    /// The upstream's output content digest.
    pub digest: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub coords: BTreeMap<String, Value>,
}

/// Everything a member's outputs depend on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Key {
    pub kind: String,
    pub kind_version: u32,
    pub code_hash: String,
    /// Path as the params name it -> content digest; empty (and absent from the JSON)
    /// for kinds whose code is all in the binary.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub code_files: BTreeMap<String, String>,
    pub params: Value,
    pub seed: u64,
    pub profile: String,
    pub inputs: BTreeMap<String, Vec<InputKey>>,
    pub dfdx_version: String,
    pub backend: String,
}

/// The identity of a kind's code: its manual version and its code hash.
#[derive(Clone, Debug, PartialEq)]
pub struct KindIdentity {
    pub version: u32,
    pub code_hash: String,
}

impl KindIdentity {
    /// The compiled-in identity (with the test-only version override of a debug build).
    pub fn of(kind: Kind) -> KindIdentity {
        KindIdentity {
            version: version_override(kind).unwrap_or_else(|| kind.version()),
            code_hash: kind.code_hash().to_string(),
        }
    }
}

/// The version `REPRO_TEST_KIND_VERSIONS` gives `kind` (module doc). Read only by a debug
/// build, the one the integration tests run; a release build never looks at it.
#[cfg(debug_assertions)]
fn version_override(kind: Kind) -> Option<u32> {
    let spec = std::env::var("REPRO_TEST_KIND_VERSIONS").ok()?;
    spec.split(',').find_map(|part| {
        let (k, v) = part.split_once('=')?;
        (k.trim() == kind.name()).then(|| v.trim().parse().ok())?
    })
}

#[cfg(not(debug_assertions))]
fn version_override(_: Kind) -> Option<u32> {
    None
}

impl Key {
    /// Builds the key of a member from its parts; `identity` is the kind's code identity
    /// (normally [`KindIdentity::of`]).
    pub fn new(
        kind: Kind,
        identity: &KindIdentity,
        params: &Value,
        seed: u64,
        profile: &str,
        inputs: BTreeMap<String, Vec<InputKey>>,
    ) -> Key {
        Key {
            kind: kind.name().to_string(),
            kind_version: identity.version,
            code_hash: identity.code_hash.clone(),
            code_files: BTreeMap::new(),
            params: canonical(params),
            seed,
            profile: profile.to_string(),
            inputs,
            dfdx_version: repro_stages::DFDX_VERSION.to_string(),
            backend: repro_stages::BACKEND.to_string(),
        }
    }

    /// Canonical JSON: sorted object keys, no whitespace.
    pub fn canonical_json(&self) -> String {
        let v = serde_json::to_value(self).expect("a key serializes");
        canonical(&v).to_string()
    }

    /// SHA-256 (hex) of the canonical JSON.
    pub fn fingerprint(&self) -> String {
        hex::encode(Sha256::digest(self.canonical_json().as_bytes()))
    }

    /// The differences from `old` to `self`, in key order (each displays as one line, e.g.
    /// `param lr: 0.1 -> 0.05`, `code of train changed`, `input data: digest changed`).
    pub fn diff(&self, old: &Key) -> Vec<KeyChange> {
        let mut out = Vec::new();
        if self.kind != old.kind {
            out.push(KeyChange::Kind(old.kind.clone(), self.kind.clone()));
        }
        if self.kind_version != old.kind_version {
            out.push(KeyChange::Version {
                kind: self.kind.clone(),
                old: old.kind_version,
                new: self.kind_version,
            });
        }
        if self.code_hash != old.code_hash {
            out.push(KeyChange::Code {
                kind: self.kind.clone(),
            });
        }
        for (path, d) in &self.code_files {
            if old.code_files.get(path) != Some(d) {
                out.push(KeyChange::CodeFile { path: path.clone() });
            }
        }
        out.extend(param_changes(&old.params, &self.params));
        if self.seed != old.seed {
            out.push(KeyChange::Seed(old.seed, self.seed));
        }
        if self.profile != old.profile {
            out.push(KeyChange::Profile(
                old.profile.clone(),
                self.profile.clone(),
            ));
        }
        let names: std::collections::BTreeSet<&String> =
            old.inputs.keys().chain(self.inputs.keys()).collect();
        for n in names {
            for change in input_changes(old.inputs.get(n), self.inputs.get(n)) {
                out.push(KeyChange::Input {
                    input: n.clone(),
                    change,
                });
            }
        }
        if self.dfdx_version != old.dfdx_version {
            out.push(KeyChange::Dfdx(
                old.dfdx_version.clone(),
                self.dfdx_version.clone(),
            ));
        }
        if self.backend != old.backend {
            out.push(KeyChange::Backend(
                old.backend.clone(),
                self.backend.clone(),
            ));
        }
        out
    }
}

/// One difference between two keys (old value first).
#[derive(Clone, Debug, PartialEq)]
pub enum KeyChange {
    Kind(String, String),
    Version {
        kind: String,
        old: u32,
        new: u32,
    },
    Code {
        kind: String,
    },
    /// A project file or folder named as code ([`Key::code_files`]) whose digest differs
    /// or that is newly named.
    CodeFile {
        path: String,
    },
    /// A flattened param path (`opt.m`) and its values, `None` when unset.
    Param {
        name: String,
        old: Option<String>,
        new: Option<String>,
    },
    Seed(u64, u64),
    Profile(String, String),
    Input {
        input: String,
        change: InputChange,
    },
    Dfdx(String, String),
    Backend(String, String),
}

/// How one input of a key changed.
#[derive(Clone, Debug, PartialEq)]
pub enum InputChange {
    Removed,
    Added,
    /// Another number of bound members (old, new).
    Members(usize, usize),
    /// The one bound member's coordinates.
    Coords,
    /// The one bound member's output digest.
    Digest,
    /// `changed` of `of` bound members differ.
    SomeMembers {
        changed: usize,
        of: usize,
    },
}

impl fmt::Display for KeyChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unset = |v: &Option<String>| v.clone().unwrap_or_else(|| "(unset)".into());
        match self {
            KeyChange::Kind(a, b) => write!(f, "kind: {a} -> {b}"),
            KeyChange::Version { kind, old, new } => {
                write!(f, "version of {kind}: {old} -> {new}")
            }
            KeyChange::Code { kind } => write!(f, "code of {kind} changed"),
            KeyChange::CodeFile { path } => write!(f, "code file {path} changed"),
            KeyChange::Param { name, old, new } => {
                write!(f, "param {name}: {} -> {}", unset(old), unset(new))
            }
            KeyChange::Seed(a, b) => write!(f, "seed: {a} -> {b}"),
            KeyChange::Profile(a, b) => write!(f, "profile: {a} -> {b}"),
            KeyChange::Input { input, change } => match change {
                InputChange::Removed => write!(f, "input {input}: removed"),
                InputChange::Added => write!(f, "input {input}: added"),
                InputChange::Members(a, b) => write!(f, "input {input}: {a} -> {b} members"),
                InputChange::Coords => write!(f, "input {input}: coordinates changed"),
                InputChange::Digest => write!(f, "input {input}: digest changed"),
                InputChange::SomeMembers { changed, of } => {
                    write!(f, "input {input}: {changed} of {of} members changed")
                }
            },
            KeyChange::Dfdx(a, b) => write!(f, "dfdx version: {a} -> {b}"),
            KeyChange::Backend(a, b) => write!(f, "backend: {a} -> {b}"),
        }
    }
}

/// The changed params, by flattened path in sorted order.
fn param_changes(old: &Value, new: &Value) -> Vec<KeyChange> {
    let mut a = BTreeMap::new();
    let mut b = BTreeMap::new();
    flatten("", old, &mut a);
    flatten("", new, &mut b);
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| KeyChange::Param {
            name: k.clone(),
            old: a.get(k).cloned(),
            new: b.get(k).cloned(),
        })
        .collect()
}

/// How one input's bound members changed (a one-member input can change both its coordinates
/// and its digest).
fn input_changes(old: Option<&Vec<InputKey>>, new: Option<&Vec<InputKey>>) -> Vec<InputChange> {
    match (old, new) {
        (Some(_), None) => vec![InputChange::Removed],
        (None, Some(_)) => vec![InputChange::Added],
        (Some(x), Some(y)) if x != y => {
            if x.len() != y.len() {
                vec![InputChange::Members(x.len(), y.len())]
            } else if x.len() == 1 {
                let mut v = Vec::new();
                if x[0].coords != y[0].coords {
                    v.push(InputChange::Coords);
                }
                if x[0].digest != y[0].digest {
                    v.push(InputChange::Digest);
                }
                v
            } else {
                vec![InputChange::SomeMembers {
                    changed: x.iter().zip(y).filter(|(p, q)| p != q).count(),
                    of: x.len(),
                }]
            }
        }
        _ => Vec::new(),
    }
}

/// A copy of `v` with every object's keys sorted (independent of serde_json features).
pub fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let mut out = serde_json::Map::new();
            for k in keys {
                out.insert(k.clone(), canonical(&m[k]));
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, String>) {
    match v {
        Value::Object(m) if !m.is_empty() || prefix.is_empty() => {
            for (k, x) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&p, x, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(params: Value, version: u32, digest: &str) -> Key {
        let id = KindIdentity {
            version,
            code_hash: "c0de".into(),
        };
        let mut inputs = BTreeMap::new();
        inputs.insert(
            "data".to_string(),
            vec![InputKey {
                digest: digest.into(),
                coords: BTreeMap::new(),
            }],
        );
        Key::new(Kind::Probe, &id, &params, 1, "default", inputs)
    }

    #[test]
    fn param_order_does_not_matter() {
        let a = key(json!({"a": 1, "b": {"y": 2, "x": 3}}), 1, "d");
        let b = key(json!({"b": {"x": 3, "y": 2}, "a": 1}), 1, "d");
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint().len(), 64);
    }

    #[test]
    fn every_tracked_part_changes_the_fingerprint() {
        let base = key(json!({"lr": 0.1}), 1, "d");
        let fp = base.fingerprint();
        assert_ne!(key(json!({"lr": 0.05}), 1, "d").fingerprint(), fp);
        assert_ne!(key(json!({"lr": 0.1}), 2, "d").fingerprint(), fp);
        assert_ne!(key(json!({"lr": 0.1}), 1, "e").fingerprint(), fp);
        let mut k = base.clone();
        k.seed = 2;
        assert_ne!(k.fingerprint(), fp);
        let mut k = base.clone();
        k.code_hash = "other".into();
        assert_ne!(k.fingerprint(), fp);
        let mut k = base.clone();
        k.code_files.insert("a.py".into(), "5eed".into());
        assert_ne!(k.fingerprint(), fp);
        let mut k = base.clone();
        k.inputs.get_mut("data").unwrap()[0]
            .coords
            .insert("seed".into(), json!(1));
        assert_ne!(k.fingerprint(), fp);
    }

    #[test]
    fn diff_names_each_change() {
        let old = key(json!({"lr": 0.1, "opt": {"m": 0.9}, "gone": 1}), 1, "d1");
        let mut new = key(json!({"lr": 0.05, "opt": {"m": 0.9}, "new": true}), 2, "d2");
        new.code_hash = "changed".into();
        new.code_files.insert("a.py".into(), "5eed".into());
        let d: Vec<String> = new.diff(&old).iter().map(|c| c.to_string()).collect();
        assert_eq!(
            d,
            [
                "version of probe: 1 -> 2",
                "code of probe changed",
                "code file a.py changed",
                "param gone: 1 -> (unset)",
                "param lr: 0.1 -> 0.05",
                "param new: (unset) -> true",
                "input data: digest changed",
            ]
        );
        assert!(old.diff(&old).is_empty());
    }

    #[test]
    fn key_round_trips_through_json() {
        let k = key(json!({"lr": 0.1}), 1, "d");
        let back: Key = serde_json::from_str(&k.canonical_json()).unwrap();
        assert_eq!(back, k);
        assert_eq!(back.fingerprint(), k.fingerprint());
    }
}
