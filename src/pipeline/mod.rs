//! The validated pipeline of one profile: stages in topological order, expanded into
//! matrix members with merged params, seeds, coordinates and bound inputs.
//!
//! Members are stored in topological order (every member comes after all the members it
//! reads), so the planner and the scheduler can walk them front to back. Stages are
//! ordered by a depth-first walk in declaration order, which keeps the order stable when
//! unrelated stages are added.
//!
//! Binding an input is a hash lookup: for each (stage, input) the axes both stages share
//! are fixed, the upstream members are indexed by their values on those axes, and each
//! member looks its own values up. Planning 10,000 members stays far below a second.
//!
//! [`Pipeline::load`] reads the file (`read.rs`: UTF-8 text, then the strict parse of
//! [`crate::spec`]); [`Pipeline::build`] then runs its steps in this order, one file each,
//! and the first error stops it:
//!
//! 1. `checks.rs`: the references of the whole file, of every profile and not only the
//!    active one (a typo must not wait until its profile is used): kinds of defaults, the
//!    stages, axes and publish paths profiles override, `profiles:` lists, time limits.
//!    `profiles.rs` says which profile has which stage; `publish.rs` refuses a publish
//!    directory outside the project and two profiles publishing into one.
//! 2. How the stages run: the executor and the Slurm resources ([`crate::run_config`]).
//! 3. `declare.rs`: each stage's name, kind, axes and input declarations, and the
//!    topological order of the stages (a cycle is named in full).
//! 4. `expand.rs`: each stage the profile has, in that order, expanded into its matrix
//!    members with merged params, each set of params checked by the kind; `bind.rs` binds
//!    each member's inputs to the members of the stages already built.
//! 5. `bind.rs`: what each member reads, as the whole pipeline shows it, checked by its kind.
//!
//! Every error names the file, the line, the stage and the field: `locate.rs` finds the
//! layer (matrix, profile, stage, defaults) that set a refused param.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use repro_stages::Kind;
use serde_json::{Map, Value};

use crate::error::SpecError;
use crate::run_config::{ExecutorKind, ResourceTable};
use crate::spec::{ProfileSpec, Spec};

mod bind;
mod checks;
mod declare;
mod expand;
mod locate;
mod profiles;
mod publish;
mod read;
#[cfg(test)]
mod tests;

use expand::Expansion;
pub use profiles::profiles_with_stage;
use publish::other_publish_dirs;

/// The profile used when `--profile` is not given. It may be absent from the file.
pub const DEFAULT_PROFILE: &str = "default";

#[derive(Debug, Clone)]
pub struct Stage {
    pub name: String,
    pub kind: Kind,
    pub publish: Option<String>,
    /// Matrix axes: the stage's own in declaration order, then those inherited from its
    /// single inputs, `seed` last.
    pub axes: Vec<String>,
    /// The values of each axis (parallel to `axes`).
    pub values: Vec<Vec<Value>>,
    /// Indices into [`Pipeline::members`].
    pub members: Vec<usize>,
    /// Indices into [`Pipeline::stages`] of the stages this one reads.
    pub upstream: Vec<usize>,
    /// The time limit of one run of a member, in seconds (`timeout:`, the profile's if it
    /// sets one); in no fingerprint.
    pub timeout: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct Member {
    /// `stage` or `stage[v1,v2,seed=N]`.
    pub name: String,
    /// Index into [`Pipeline::stages`].
    pub stage: usize,
    pub kind: Kind,
    /// Merged params, axis values included.
    pub params: Value,
    pub seed: u64,
    /// Axis -> value (the seed axis included).
    pub coords: BTreeMap<String, Value>,
    /// Input name -> bound upstream members (indices into [`Pipeline::members`]).
    pub inputs: BTreeMap<String, Vec<usize>>,
    /// Where this member's outputs are published, relative to the project.
    pub publish: Option<String>,
    /// The content digests of the project files its params name as code
    /// ([`crate::code_files`]).
    pub code_files: BTreeMap<String, String>,
}

impl Member {
    /// All upstream member indices, deduplicated.
    pub fn upstream(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self.inputs.values().flatten().copied().collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

#[derive(Debug, Clone)]
pub struct Pipeline {
    pub profile: String,
    /// Topological order.
    pub stages: Vec<Stage>,
    /// Topological order.
    pub members: Vec<Member>,
    /// The executor the file asks for (`executor:` of the profile, else the top level).
    pub executor: Option<ExecutorKind>,
    /// Slurm resources per stage; never part of a fingerprint.
    pub resources: ResourceTable,
    /// The publish directories of the other profiles' stages: never this profile's to
    /// judge, even inside one of its own (`results/tiny` inside `results`).
    pub other_publish: Vec<String>,
    by_name: HashMap<String, usize>,
}

/// One input of a stage as declared: `name: up`, `up[*]` (`group`) or `up[v1,v2]` (`pinned`).
struct InputDecl {
    name: String,
    upstream: usize,
    group: bool,
    /// `up[v1,v2]`: this one member of `up`, whatever the reader's coordinates.
    pinned: Option<String>,
}

impl Pipeline {
    /// Validates `spec` (parsed from `text`, read from `file`) for `profile`, in the steps
    /// the module doc lists.
    pub fn build(
        spec: &Spec,
        text: &str,
        file: &Path,
        profile: &str,
    ) -> Result<Pipeline, SpecError> {
        let ctx = BuildCtx {
            spec,
            text,
            file,
            profile,
        };
        // 1. The whole file, every profile (checks.rs, profiles.rs, publish.rs).
        ctx.check_defaults()?;
        let empty = ProfileSpec::default();
        let prof = ctx.active_profile(&empty)?;
        ctx.check_profiles()?;
        ctx.check_stage_profile_lists()?;
        ctx.check_publish_paths()?;
        ctx.check_timeouts()?;
        // 2. How the stages run.
        let executor = ResourceTable::executor(spec, prof, profile, text, file)?;
        let resources = ResourceTable::build(spec, prof, profile, text, file)?;
        // 3. Each stage's declaration, and their order (declare.rs).
        let names: Vec<&String> = spec.stages.keys().collect();
        let enabled = ctx.enabled_stages(prof);
        let (kinds, decls) = ctx.kinds_and_inputs(&names, &enabled)?;
        let order = ctx.topological_order(&decls, &names)?;
        // 4. Members, their inputs bound (expand.rs, bind.rs).
        let mut b = Expansion::new(&ctx, prof);
        for &si in order.iter().filter(|&&si| enabled[si]) {
            b.add_stage(si, kinds[si], &decls[si])?;
        }
        // 5. What each member reads (bind.rs).
        b.check_inputs()?;
        let by_name = b
            .members
            .iter()
            .enumerate()
            .map(|(i, m)| (m.name.clone(), i))
            .collect();
        Ok(Pipeline {
            profile: profile.to_string(),
            stages: b.stages,
            members: b.members,
            executor,
            resources,
            other_publish: other_publish_dirs(spec, profile),
            by_name,
        })
    }

    pub fn member_index(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    pub fn stage_index(&self, name: &str) -> Option<usize> {
        self.stages.iter().position(|s| s.name == name)
    }

    /// Members selected by `targets` (stage or member names) and everything upstream of
    /// them; all members when `targets` is empty. Returns (selected, directly targeted).
    pub fn select(&self, targets: &[String]) -> Result<(Vec<bool>, Vec<bool>), String> {
        let n = self.members.len();
        if targets.is_empty() {
            return Ok((vec![true; n], vec![true; n]));
        }
        let mut direct = vec![false; n];
        for t in targets {
            if let Some(si) = self.stage_index(t) {
                for &m in &self.stages[si].members {
                    direct[m] = true;
                }
            } else if let Some(mi) = self.member_index(t) {
                direct[mi] = true;
            } else {
                return Err(format!(
                    "no stage or member named `{t}` in profile `{}` (stages: {})",
                    self.profile,
                    self.stages
                        .iter()
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        let mut sel = direct.clone();
        for i in (0..n).rev() {
            if sel[i] {
                for u in self.members[i].upstream() {
                    sel[u] = true;
                }
            }
        }
        Ok((sel, direct))
    }
}

/// The pipeline file being validated for one profile: what every step of
/// [`Pipeline::build`] needs to report an error at its line.
struct BuildCtx<'a> {
    spec: &'a Spec,
    text: &'a str,
    file: &'a Path,
    profile: &'a str,
}

impl<'a> BuildCtx<'a> {
    fn err(&self, msg: String) -> SpecError {
        SpecError::new(self.file, msg)
    }

    fn at(&self, path: &[&str]) -> Option<usize> {
        crate::spec::locate(self.text, path)
    }
}

fn kind_list() -> String {
    Kind::ALL
        .iter()
        .map(|k| k.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Deep merge: mappings merge key by key, anything else is replaced.
pub fn merge(base: &mut Map<String, Value>, over: &Map<String, Value>) {
    for (k, v) in over {
        match (base.get_mut(k), v) {
            (Some(Value::Object(b)), Value::Object(o)) => merge(b, o),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

/// How a matrix value appears in a member name: strings bare, others as JSON.
pub fn value_label(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
