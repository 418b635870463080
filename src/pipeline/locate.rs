//! Where in the file a kind's refusal of a member's params is: the params of a member are
//! layers merged (the defaults, the profile's defaults, the stage's params, the profile's
//! params for the kind, the profile's stage params, the matrix, the stage's and then the
//! profile's `when` entries), and the error points at the line
//! of the layer that set the refused value, found along its key path by
//! [`crate::spec::locate`].

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value};

use crate::error::SpecError;
use crate::spec::{backticked_after, locate, ProfileSpec, Spec};

/// Where a member's params come from, for locating an invalid one.
pub(super) struct ParamLayers<'a> {
    pub(super) spec: &'a Spec,
    pub(super) prof: &'a ProfileSpec,
    pub(super) profile: &'a str,
    pub(super) stage: &'a str,
    pub(super) kind: &'a str,
    /// The member's coordinates, which pick the `when` entries that apply to it.
    pub(super) coords: &'a BTreeMap<String, Value>,
}

impl ParamLayers<'_> {
    /// The text path of the key `field` (a path of params keys) in the layer that set
    /// it, trying the layers from the one that wins the merge down: the last `when` entry
    /// the member matches that sets it (the profile's, then the stage's), the profile's
    /// matrix, the stage's matrix (both for a top-level key only), the profile's stage
    /// params, the profile's params for the kind, the stage's params, the profile's
    /// defaults for the kind, the defaults.
    fn source(&self, field: &[&str]) -> Option<Vec<String>> {
        let st = self.spec.stages.get(self.stage)?;
        let over = self.prof.stages.get(self.stage);
        let owned = |pre: &[&str]| -> Vec<String> {
            pre.iter().chain(field).map(|s| s.to_string()).collect()
        };
        let has = |m: &Map<String, Value>| {
            let mut cur = m;
            for (i, k) in field.iter().enumerate() {
                match cur.get(*k) {
                    Some(Value::Object(o)) => cur = o,
                    Some(_) => return i + 1 == field.len(),
                    None => return false,
                }
            }
            true
        };
        // The last matching entry that sets it, the profile's entries before the stage's.
        let sets = |w: &crate::spec::WhenSpec| w.matches(self.coords) && has(&w.params.0);
        let profile_when = over.map_or(&[][..], |o| &o.when[..]);
        let lists = [
            (
                profile_when,
                vec!["profiles", self.profile, "stages", self.stage],
            ),
            (&st.when[..], vec!["stages", self.stage]),
        ];
        for (when, mut path) in lists {
            if let Some((i, _)) = when.iter().enumerate().rev().find(|(_, w)| sets(w)) {
                let item = format!("[{i}]");
                path.extend(["when", item.as_str(), "params"]);
                return Some(owned(&path));
            }
        }
        if let [axis] = field {
            if over.is_some_and(|o| o.matrix.get(axis).is_some()) {
                return Some(owned(&[
                    "profiles",
                    self.profile,
                    "stages",
                    self.stage,
                    "matrix",
                ]));
            }
            if st.matrix.get(axis).is_some() {
                return Some(owned(&["stages", self.stage, "matrix"]));
            }
        }
        if over.is_some_and(|o| has(&o.params.0)) {
            return Some(owned(&[
                "profiles",
                self.profile,
                "stages",
                self.stage,
                "params",
            ]));
        }
        if self.prof.params.get(self.kind).is_some_and(|d| has(&d.0)) {
            return Some(owned(&["profiles", self.profile, "params", self.kind]));
        }
        if has(&st.params.0) {
            return Some(owned(&["stages", self.stage, "params"]));
        }
        if self.prof.defaults.get(self.kind).is_some_and(|d| has(&d.0)) {
            return Some(owned(&["profiles", self.profile, "defaults", self.kind]));
        }
        if self.spec.defaults.get(self.kind).is_some_and(|d| has(&d.0)) {
            return Some(owned(&["defaults", self.kind]));
        }
        None
    }
}

/// A kind's refusal of a member's params as a [`SpecError`]: the field comes from the
/// message (`field `a.b`: ...` as [`Kind::validate`] writes it, or an unknown or missing
/// field), the line from the layer that set the value ([`ParamLayers::source`]; for a
/// nested field its deepest part that some layer sets; a list index such as `tables[1]`
/// picks that item), else the stage's `params:` line. `head` starts the message (`invalid
/// params for member`), followed by the member's name; an empty one leaves both out.
pub(super) fn params_error(
    file: &Path,
    text: &str,
    layers: &ParamLayers,
    head: &str,
    member: &str,
    msg: &str,
) -> SpecError {
    let (field, body) = match msg
        .strip_prefix("field `")
        .and_then(|r| r.split_once("`: "))
    {
        Some((f, rest)) => (Some(f.to_string()), rest),
        None => (
            backticked_after(msg, "unknown field ")
                .or_else(|| backticked_after(msg, "missing field ")),
            msg,
        ),
    };
    let stage = layers.stage;
    let mut line = None;
    if let Some(f) = &field {
        // `tables[1].methods` -> (tables, [1]), (methods, []): the keys find the layer that
        // set the value, the indices the item in its text.
        let segs: Vec<(&str, Vec<&str>)> = f
            .split('.')
            .map(|k| {
                let mut parts = k.split('[');
                let name = parts.next().unwrap_or(k);
                (name, parts.map(|i| i.trim_end_matches(']')).collect())
            })
            .filter(|(name, _)| !name.is_empty())
            .collect();
        let keys: Vec<&str> = segs.iter().map(|(name, _)| *name).collect();
        for n in (1..=keys.len()).rev() {
            if let Some(path) = layers.source(&keys[..n]) {
                let mut full: Vec<String> = path[..path.len() - n].to_vec();
                for (name, idx) in &segs[..n] {
                    full.push(name.to_string());
                    full.extend(idx.iter().map(|i| format!("[{i}]")));
                }
                let refs: Vec<&str> = full.iter().map(|s| s.as_str()).collect();
                line = locate(text, &refs);
                break;
            }
        }
    }
    if line.is_none() {
        line =
            locate(text, &["stages", stage, "params"]).or_else(|| locate(text, &["stages", stage]));
    }
    // A stage field written among the params.
    let hint = match field.as_deref() {
        Some("timeout") if body.contains("unknown field") => {
            "; `timeout` is a field of the stage, beside `params:` (`timeout: 10m`)"
        }
        _ => "",
    };
    let message = if head.is_empty() {
        format!("{body}{hint}")
    } else {
        format!("{head} `{member}`: {body}{hint}")
    };
    SpecError::new(file, message)
        .line(line)
        .stage(stage)
        .field(match field {
            Some(f) => format!("params.{f}"),
            None => "params".to_string(),
        })
}
