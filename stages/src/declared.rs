//! The pipeline as declared, before anything runs: what a kind may check of a member's
//! inputs when the pipeline loads ([`crate::kind::Kind::check_inputs`]), so that a stage that
//! would fail on what it reads fails at load, naming the file, the line, the stage and the
//! field, instead of after hours of upstream work.
//!
//! A member is known by its kind, its merged params, its matrix coordinates and the
//! members bound to each of its inputs; nothing it will compute is. Errors read
//! `input `NAME`: ...` (the engine points at the input's line) or `field `PATH`: ...` (a
//! params field, as [`crate::kind::Kind::validate`] writes them).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::kind::Kind;

/// One member of the pipeline as the file declares it.
#[derive(Clone, Copy, Debug)]
pub struct Declared<'a> {
    /// Its index in the pipeline.
    pub index: usize,
    /// `stage` or `stage[v1,v2,seed=N]`.
    pub name: &'a str,
    pub kind: Kind,
    /// The method its runs report, as its kind reads it from its params
    /// (`Kind::declared_method`); `None` for a kind that writes no metrics.
    pub method: Option<&'a str>,
    /// Merged params, axis values included.
    pub params: &'a Value,
    /// Axis -> value, the seed axis included.
    pub coords: &'a BTreeMap<String, Value>,
    /// Input name -> the members bound to it (indices into the whole pipeline).
    pub inputs: &'a BTreeMap<String, Vec<usize>>,
}

/// Member `me` of the pipeline `all` (every member, in topological order), whose inputs a
/// kind checks.
#[derive(Clone, Copy)]
pub struct Inputs<'a> {
    pub me: usize,
    pub all: &'a [Declared<'a>],
}

impl<'a> Inputs<'a> {
    pub fn member(&self) -> &'a Declared<'a> {
        &self.all[self.me]
    }

    /// The members bound to input `name` (none when the stage has no such input).
    pub fn bound(&self, name: &str) -> Vec<&'a Declared<'a>> {
        let all = self.all;
        self.member()
            .inputs
            .get(name)
            .map(|v| v.iter().map(|&i| &all[i]).collect())
            .unwrap_or_default()
    }

    /// The inputs of another member, for looking one step further upstream.
    pub fn of(&self, member: &Declared) -> Inputs<'a> {
        Inputs {
            me: member.index,
            all: self.all,
        }
    }

    /// Refuses inputs the kind does not read: a misspelt input name would be bound, never
    /// read, and the stage would run without it.
    pub fn only(&self, known: &[&str]) -> Result<(), String> {
        let kind = self.member().kind.name();
        for name in self.member().inputs.keys() {
            if !known.contains(&name.as_str()) {
                return Err(format!(
                    "input `{name}`: a `{kind}` stage reads no input of that name ({})",
                    match known {
                        [] => "it reads none".to_string(),
                        _ => format!("it reads {}", list(known)),
                    }
                ));
            }
        }
        Ok(())
    }

    /// Requires input `name`, which the kind reads as `what`.
    pub fn require(&self, name: &str, what: &str) -> Result<(), String> {
        if self.member().inputs.contains_key(name) {
            return Ok(());
        }
        Err(format!(
            "input `{name}`: a `{}` stage needs `{name}`, {what}; it has {}",
            self.member().kind.name(),
            match self.member().inputs.len() {
                0 => "no inputs".to_string(),
                _ => format!(
                    "only {}",
                    list(
                        &self
                            .member()
                            .inputs
                            .keys()
                            .map(String::as_str)
                            .collect::<Vec<_>>()
                    )
                ),
            }
        ))
    }

    /// Requires input `name`, when present, to read stages of the kinds `kinds` only.
    pub fn of_kinds(&self, name: &str, kinds: &[Kind]) -> Result<(), String> {
        for up in self.bound(name) {
            if !kinds.contains(&up.kind) {
                return Err(format!(
                    "input `{name}` reads `{}`, a `{}` stage; it must be {}",
                    up.name,
                    up.kind.name(),
                    list(&kinds.iter().map(|k| k.name()).collect::<Vec<_>>()).replace(", ", " or ")
                ));
            }
        }
        Ok(())
    }
}

/// `a`, `b`, `c`.
fn list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
