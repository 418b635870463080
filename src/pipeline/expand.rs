//! Step 4 of [`Pipeline::build`](super::Pipeline::build): each stage the profile has, in
//! topological order, expanded into its matrix members. A stage's axes are its own (the
//! profile's values where it overrides them), then those inherited from its single inputs,
//! `seed` last; member number `combo` takes one value of each (the last axis varies
//! fastest). Its params are the layers merged (defaults < profile defaults < stage <
//! profile kind params < profile stage < its own axis values < the `when` entries it
//! matches, the stage's then the profile's), checked
//! by the kind once per distinct set, with the digests of the project files they name as
//! code; its inputs are bound by `bind.rs`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use repro_stages::Kind;
use serde_json::{Map, Value};

use super::locate::{params_error, ParamLayers};
use super::publish::effective_publish;
use super::{merge, value_label, BuildCtx, InputDecl, Member, Stage};
use crate::code_files;
use crate::error::SpecError;
use crate::programs;
use crate::run_config::parse_timeout;
use crate::spec::{ProfileSpec, StageOverride, StageSpec, WhenSpec};

/// The stages and members built so far, in topological order: each stage is expanded into
/// its matrix members, their params checked by the kind, and their inputs bound to members of
/// stages already built.
pub(super) struct Expansion<'a> {
    pub(super) ctx: &'a BuildCtx<'a>,
    pub(super) prof: &'a ProfileSpec,
    pub(super) stages: Vec<Stage>,
    pub(super) members: Vec<Member>,
    /// Declaration index -> index into `stages`.
    pub(super) stage_pos: HashMap<usize, usize>,
}

/// One matrix member of a stage before its inputs are bound.
struct Expanded {
    name: String,
    params: Value,
    seed: u64,
    coords: BTreeMap<String, Value>,
    /// The axis values of the name (`v1,v2,seed=N`).
    label: Vec<String>,
}

impl<'a> Expansion<'a> {
    pub(super) fn new(ctx: &'a BuildCtx<'a>, prof: &'a ProfileSpec) -> Expansion<'a> {
        Expansion {
            ctx,
            prof,
            stages: Vec::new(),
            members: Vec::new(),
            stage_pos: HashMap::new(),
        }
    }

    /// Builds stage `si` (declaration index) of kind `kind` reading `decls`.
    pub(super) fn add_stage(
        &mut self,
        si: usize,
        kind: Kind,
        decls: &[InputDecl],
    ) -> Result<(), SpecError> {
        let (name, st) = (&self.ctx.spec.stages.0[si].0, &self.ctx.spec.stages.0[si].1);
        let over = self.prof.stages.get(name);
        let pos = self.stages.len();
        self.stage_pos.insert(si, pos);
        let (axes, own) = self.stage_axes(st, over, decls);
        self.check_axis_values(name, &axes)?;
        let profile_when = over.map_or(&[][..], |o| &o.when[..]);
        self.check_when(name, st, &st.when, &["stages", name], &axes, &own)?;
        let profile_path = ["profiles", self.ctx.profile, "stages", name];
        self.check_when(name, st, profile_when, &profile_path, &axes, &own)?;
        let when: Vec<&WhenSpec> = st.when.iter().chain(profile_when).collect();
        let base = self.base_params(kind, st, over);
        let timeout = self.timeout(name, st, over)?;
        let stage_seed = over.and_then(|o| o.seed).or(st.seed).unwrap_or(0);
        let total: usize = axes.iter().map(|(_, v)| v.len()).product();
        let mut stage_members = Vec::new();
        let mut checked: HashMap<String, BTreeMap<String, String>> = HashMap::new();
        for combo in 0..total {
            let m = expand_member(name, &axes, &own, &base, &when, stage_seed, combo);
            let code_files = match checked.get(&m.params.to_string()) {
                Some(c) => c.clone(),
                None => {
                    let c = self.check_params(name, kind, &m)?;
                    checked.insert(m.params.to_string(), c.clone());
                    c
                }
            };
            let publish = effective_publish(st, over).map(|p| {
                if total > 1 {
                    format!("{p}/{}", m.label.join(","))
                } else {
                    p
                }
            });
            if publish.is_some() && total > 1 {
                self.check_label(name, &axes, &m)?;
            }
            stage_members.push(self.members.len());
            self.members.push(Member {
                name: m.name,
                stage: pos,
                kind,
                params: m.params,
                seed: m.seed,
                coords: m.coords,
                inputs: BTreeMap::new(),
                publish,
                code_files,
            });
        }
        let mut upstream_stages = Vec::new();
        for d in decls {
            upstream_stages.push(self.stage_pos[&d.upstream]);
            self.bind_input(name, d, &axes, &stage_members)?;
        }
        upstream_stages.sort_unstable();
        upstream_stages.dedup();
        self.stages.push(Stage {
            name: name.clone(),
            kind,
            publish: effective_publish(st, over),
            axes: axes.iter().map(|(a, _)| a.clone()).collect(),
            values: axes.iter().map(|(_, v)| v.clone()).collect(),
            members: stage_members,
            upstream: upstream_stages,
            timeout,
        });
        Ok(())
    }

    /// The stage's time limit in seconds: the profile's `timeout`, else the stage's.
    fn timeout(
        &self,
        name: &str,
        st: &StageSpec,
        over: Option<&StageOverride>,
    ) -> Result<Option<u64>, SpecError> {
        let (value, path) = match over.and_then(|o| o.timeout.as_ref()) {
            Some(v) => (
                v,
                vec!["profiles", self.ctx.profile, "stages", name, "timeout"],
            ),
            None => match &st.timeout {
                Some(v) => (v, vec!["stages", name, "timeout"]),
                None => return Ok(None),
            },
        };
        parse_timeout(value).map(Some).map_err(|msg| {
            self.ctx
                .err(msg)
                .line(self.ctx.at(&path))
                .stage(name)
                .field("timeout")
        })
    }

    /// Checks member `m` of stage `name` with its kind's rules, digests the project files
    /// its params name as code ([`code_files`]) and finds the programs they name
    /// ([`programs`]); a code file or a program that does not exist is an error of the
    /// params, located like one.
    fn check_params(
        &self,
        name: &str,
        kind: Kind,
        m: &Expanded,
    ) -> Result<BTreeMap<String, String>, SpecError> {
        let (file, text) = (self.ctx.file, self.ctx.text);
        let project = file.parent().unwrap_or(Path::new("."));
        kind.validate(&m.params)
            .and_then(|()| code_files::digests(kind, &m.params, project))
            .and_then(|c| programs::check(kind, &m.params, project).map(|()| c))
            .map_err(|msg| {
                let layers = ParamLayers {
                    spec: self.ctx.spec,
                    prof: self.prof,
                    profile: self.ctx.profile,
                    stage: name,
                    kind: kind.name(),
                    coords: &m.coords,
                };
                params_error(
                    file,
                    text,
                    &layers,
                    "invalid params for member",
                    &m.name,
                    &msg,
                )
            })
    }

    /// The stage's matrix axes with their values (the profile's where it overrides them),
    /// then those inherited from its single inputs, `seed` last; and the names of its own.
    fn stage_axes(
        &self,
        st: &StageSpec,
        over: Option<&StageOverride>,
        decls: &[InputDecl],
    ) -> (Vec<(String, Vec<Value>)>, HashSet<String>) {
        let mut axes: Vec<(String, Vec<Value>)> = st
            .matrix
            .iter()
            .map(|(a, vals)| {
                let vals = over.and_then(|o| o.matrix.get(a)).unwrap_or(vals);
                (a.clone(), vals.clone())
            })
            .collect();
        let own_axis_count = axes.len();
        // Axes inherited from single (non-group) inputs: one member per upstream
        // member, so a stage reading a matrix stage fans out with it.
        for d in decls.iter().filter(|d| !d.group && d.pinned.is_none()) {
            let up = &self.stages[self.stage_pos[&d.upstream]];
            for (a, vals) in up.axes.iter().zip(&up.values) {
                if !axes.iter().any(|(b, _)| b == a) {
                    axes.push((a.clone(), vals.clone()));
                }
            }
        }
        let own: HashSet<String> = axes[..own_axis_count]
            .iter()
            .map(|(a, _)| a.clone())
            .collect();
        // `seed` last, so member names read `stage[...,seed=N]`.
        if let Some(i) = axes.iter().position(|(a, _)| a == "seed") {
            let seed_axis = axes.remove(i);
            axes.push(seed_axis);
        }
        (axes, own)
    }

    /// The matrix values of member `m` of stage `name` name its folder under the stage's
    /// publish directory: no value may hold `/` or a control character, or be `.` or `..`
    /// alone (the folder would be elsewhere, outside the project even).
    fn check_label(
        &self,
        name: &String,
        axes: &[(String, Vec<Value>)],
        m: &Expanded,
    ) -> Result<(), SpecError> {
        let folder = m.label.join(",");
        let bad =
            folder == "." || folder == ".." || folder.chars().any(|c| c == '/' || c.is_control());
        if !bad {
            return Ok(());
        }
        let axis = axes
            .iter()
            .map(|(a, _)| a.clone())
            .find(|a| {
                m.coords.get(a).map(value_label).is_some_and(|v| {
                    v == "." || v == ".." || v.chars().any(|c| c == '/' || c.is_control())
                })
            })
            .unwrap_or_default();
        Err(self
            .ctx
            .err(format!(
                "matrix axis `{axis}`: member `{}` would publish into the folder `{folder}` of \
                 the stage's publish directory, which is no plain folder name (a value may not \
                 hold `/`, nor be `.` or `..`)",
                m.name
            ))
            .line(self.ctx.at(&["stages", name, "matrix", &axis]))
            .stage(name.clone())
            .field(format!("matrix.{axis}")))
    }

    /// Each `when` entry of the list at `path` (the stage's own, or a profile's for it)
    /// names axes the stage has (own, inherited or `seed`), with scalar values (or lists
    /// of them); on an own axis, only values its matrix declares in the stage (a profile
    /// that narrows the matrix simply leaves the entry nothing to match, but a value no
    /// profile could give is a typo).
    fn check_when(
        &self,
        name: &String,
        st: &StageSpec,
        when: &[WhenSpec],
        path: &[&str],
        axes: &[(String, Vec<Value>)],
        own: &HashSet<String>,
    ) -> Result<(), SpecError> {
        for (i, w) in when.iter().enumerate() {
            let item = format!("[{i}]");
            for (axis, want) in w.cond.iter() {
                let at = |err: SpecError| {
                    let entry: Vec<&str> = path.iter().copied().chain(["when", &item]).collect();
                    let cond: Vec<&str> = entry.iter().copied().chain(["if", axis]).collect();
                    err.line(self.ctx.at(&cond).or_else(|| self.ctx.at(&entry)))
                        .stage(name.clone())
                        .field(format!("when{item}.if.{axis}"))
                };
                if !axes.iter().any(|(a, _)| a == axis) {
                    let names: Vec<&str> = axes.iter().map(|(a, _)| a.as_str()).collect();
                    return Err(at(self.ctx.err(format!(
                        "`when` names the axis `{axis}`, which the stage does not have (its \
                         axes: {})",
                        if names.is_empty() {
                            "none".to_string()
                        } else {
                            names.join(", ")
                        }
                    ))));
                }
                for v in crate::spec::wanted_values(want) {
                    if !crate::spec::is_scalar(v) {
                        return Err(at(self.ctx.err(format!(
                            "`when` on axis `{axis}`: value {v} is not a scalar (or a list \
                             of scalars)"
                        ))));
                    }
                    let declared = st.matrix.get(axis).filter(|_| own.contains(axis));
                    if let Some(vals) = declared {
                        if !vals.iter().any(|d| crate::spec::same_value(d, v)) {
                            let list: Vec<String> = vals.iter().map(value_label).collect();
                            return Err(at(self.ctx.err(format!(
                                "`when` on axis `{axis}`: {} is none of the values the \
                                 stage's matrix declares ({})",
                                value_label(v),
                                list.join(", ")
                            ))));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Axis values are scalars; `seed` values non-negative integers.
    fn check_axis_values(
        &self,
        name: &String,
        axes: &[(String, Vec<Value>)],
    ) -> Result<(), SpecError> {
        for (a, vals) in axes {
            for v in vals {
                if !crate::spec::is_scalar(v) || (a == "seed" && v.as_u64().is_none()) {
                    let what = if a == "seed" {
                        "a non-negative integer"
                    } else {
                        "a scalar"
                    };
                    return Err(self
                        .ctx
                        .err(format!("matrix axis `{a}`: value {v} is not {what}"))
                        .line(self.ctx.at(&["stages", name, "matrix", a]))
                        .stage(name.clone())
                        .field(format!("matrix.{a}")));
                }
            }
        }
        Ok(())
    }

    /// A stage's params before its axis values: defaults < profile defaults < stage <
    /// profile kind params < profile stage.
    fn base_params(
        &self,
        kind: Kind,
        st: &StageSpec,
        over: Option<&StageOverride>,
    ) -> Map<String, Value> {
        let mut base = Map::new();
        if let Some(d) = self.ctx.spec.defaults.get(kind.name()) {
            merge(&mut base, &d.0);
        }
        if let Some(d) = self.prof.defaults.get(kind.name()) {
            merge(&mut base, &d.0);
        }
        merge(&mut base, &st.params.0);
        if let Some(p) = self.prof.params.get(kind.name()) {
            merge(&mut base, &p.0);
        }
        if let Some(o) = over {
            merge(&mut base, &o.params.0);
        }
        base
    }
}

/// Member number `combo` of stage `name` (the last axis varies fastest): its name, params
/// (`base` with the values of the stage's `own` axes, then the params of the `when`
/// entries its coordinates match), seed and coordinates.
fn expand_member(
    name: &str,
    axes: &[(String, Vec<Value>)],
    own: &HashSet<String>,
    base: &Map<String, Value>,
    when: &[&WhenSpec],
    stage_seed: u64,
    combo: usize,
) -> Expanded {
    let mut rem = combo;
    let mut picks = vec![0usize; axes.len()];
    for (ai, (_, vals)) in axes.iter().enumerate().rev() {
        picks[ai] = rem % vals.len();
        rem /= vals.len();
    }
    let mut params = base.clone();
    let mut coords = BTreeMap::new();
    let mut seed = stage_seed;
    let mut label = Vec::new();
    for (ai, (a, vals)) in axes.iter().enumerate() {
        let v = &vals[picks[ai]];
        coords.insert(a.clone(), v.clone());
        if a == "seed" {
            seed = v.as_u64().unwrap_or(0);
            label.push(format!("seed={seed}"));
        } else {
            if own.contains(a) {
                params.insert(a.clone(), v.clone());
            }
            label.push(value_label(v));
        }
    }
    for w in when.iter().filter(|w| w.matches(&coords)) {
        merge(&mut params, &w.params.0);
    }
    let name = if axes.is_empty() {
        name.to_string()
    } else {
        format!("{name}[{}]", label.join(","))
    };
    Expanded {
        name,
        params: Value::Object(params),
        seed,
        coords,
        label,
    }
}
