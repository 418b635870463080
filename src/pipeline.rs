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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use repro_stages::{Declared, Inputs, Kind};
use serde_json::{Map, Value};

use crate::code_files;
use crate::error::SpecError;
use crate::programs;
use crate::run_config::{parse_timeout, ExecutorKind, ResourceTable};
use crate::spec::{backticked_after, locate, ProfileSpec, Spec, StageOverride, StageSpec};

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

struct InputDecl {
    name: String,
    upstream: usize,
    group: bool,
    /// `up[v1,v2]`: this one member of `up`, whatever the reader's coordinates.
    pinned: Option<String>,
}

impl Pipeline {
    /// Validates `spec` (parsed from `text`, read from `file`) for `profile`.
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
        ctx.check_defaults()?;
        let empty = ProfileSpec::default();
        let prof = ctx.active_profile(&empty)?;
        ctx.check_profiles()?;
        ctx.check_stage_profile_lists()?;
        ctx.check_publish_paths()?;
        ctx.check_timeouts()?;
        let executor = ResourceTable::executor(spec, prof, profile, text, file)?;
        let resources = ResourceTable::build(spec, prof, profile, text, file)?;
        let names: Vec<&String> = spec.stages.keys().collect();
        let enabled = ctx.enabled_stages(prof);
        let (kinds, decls) = ctx.kinds_and_inputs(&names, &enabled)?;
        let order = ctx.topological_order(&decls, &names)?;
        let mut b = Expansion {
            ctx: &ctx,
            prof,
            stages: Vec::new(),
            members: Vec::new(),
            stage_pos: HashMap::new(),
        };
        for &si in order.iter().filter(|&&si| enabled[si]) {
            b.add_stage(si, kinds[si], &decls[si])?;
        }
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

    /// Reads and validates `file` for `profile`.
    pub fn load(file: &Path, profile: &str) -> Result<Pipeline, SpecError> {
        let (text, spec) = Pipeline::read(file)?;
        Pipeline::build(&spec, &text, file, profile)
    }

    /// Reads and parses `file`: its text and its [`Spec`].
    pub fn read(file: &Path) -> Result<(String, Spec), SpecError> {
        let bytes = std::fs::read(file)
            .map_err(|e| SpecError::new(file, format!("cannot read the pipeline file: {e}")))?;
        let text = utf8_text(bytes, file)?;
        let spec = Spec::parse(&text, file)?;
        Ok((text, spec))
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
        locate(self.text, path)
    }

    /// Top-level `defaults:` are keyed by kind.
    fn check_defaults(&self) -> Result<(), SpecError> {
        for (kind, _) in self.spec.defaults.iter() {
            if Kind::from_name(kind).is_none() {
                return Err(self
                    .err(format!(
                        "defaults for unknown kind `{kind}` (kinds: {})",
                        kind_list()
                    ))
                    .line(self.at(&["defaults", kind]))
                    .field(format!("defaults.{kind}")));
            }
        }
        Ok(())
    }

    /// The profile being built (`empty` for a default profile the file does not declare).
    fn active_profile(&self, empty: &'a ProfileSpec) -> Result<&'a ProfileSpec, SpecError> {
        let profile = self.profile;
        match self.spec.profiles.get(profile) {
            Some(p) => Ok(p),
            None if profile == DEFAULT_PROFILE => Ok(empty),
            None => {
                let known: Vec<&str> = self.spec.profiles.keys().map(|s| s.as_str()).collect();
                Err(self.err(format!(
                    "no profile `{profile}` (profiles: {}{})",
                    DEFAULT_PROFILE,
                    known
                        .iter()
                        .filter(|k| **k != DEFAULT_PROFILE)
                        .map(|k| format!(", {k}"))
                        .collect::<String>()
                )))
            }
        }
    }

    /// Every profile's references, not only the active one's: kinds of its defaults, the
    /// stages and matrix axes it overrides, its publish paths, the stages it disables.
    fn check_profiles(&self) -> Result<(), SpecError> {
        for (pname, p) in self.spec.profiles.iter() {
            for (kind, _) in p.defaults.iter() {
                if Kind::from_name(kind).is_none() {
                    return Err(self
                        .err(format!(
                            "profile `{pname}`: defaults for unknown kind `{kind}`"
                        ))
                        .line(self.at(&["profiles", pname, "defaults", kind])));
                }
            }
            for (sname, o) in p.stages.iter() {
                self.check_override(pname, sname, o)?;
            }
            for (sname, o) in p.stages.iter() {
                if let Some(dir) = &o.publish {
                    check_publish_dir(dir).map_err(|m| {
                        self.err(m)
                            .line(self.at(&["profiles", pname, "stages", sname, "publish"]))
                            .stage(sname.clone())
                            .field("publish")
                    })?;
                }
            }
            for d in &p.disable {
                if self.spec.stages.get(d).is_none() {
                    return Err(self
                        .err(format!("profile `{pname}` disables unknown stage `{d}`"))
                        .line(self.at(&["profiles", pname, "disable"])));
                }
            }
        }
        Ok(())
    }

    /// Every `timeout` of the file, the stages' and each profile's, reads as a time limit
    /// (a typo must not wait until its profile or stage is used).
    fn check_timeouts(&self) -> Result<(), SpecError> {
        let stages = self
            .spec
            .stages
            .iter()
            .map(|(n, st)| (n, &st.timeout, vec!["stages", n.as_str(), "timeout"]));
        let overrides = self.spec.profiles.iter().flat_map(|(pn, p)| {
            p.stages.iter().map(move |(n, o)| {
                let path = vec!["profiles", pn.as_str(), "stages", n.as_str(), "timeout"];
                (n, &o.timeout, path)
            })
        });
        for (name, value, path) in stages.chain(overrides) {
            if let Some(v) = value {
                parse_timeout(v).map_err(|msg| {
                    self.err(msg)
                        .line(self.at(&path))
                        .stage(name.clone())
                        .field("timeout")
                })?;
            }
        }
        Ok(())
    }

    /// Profile `pname`'s override of stage `sname`: a known stage, known non-empty axes.
    fn check_override(&self, pname: &str, sname: &str, o: &StageOverride) -> Result<(), SpecError> {
        let Some(st) = self.spec.stages.get(sname) else {
            return Err(self
                .err(format!(
                    "profile `{pname}` overrides unknown stage `{sname}`"
                ))
                .line(self.at(&["profiles", pname, "stages", sname]))
                .stage(sname));
        };
        for (axis, values) in o.matrix.iter() {
            let msg = if st.matrix.get(axis).is_none() {
                format!(
                    "profile `{pname}` sets matrix axis `{axis}` the stage does not have (axes: {})",
                    st.matrix.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            } else if values.is_empty() {
                format!("profile `{pname}`: matrix axis `{axis}` is empty")
            } else {
                continue;
            };
            return Err(self
                .err(msg)
                .line(self.at(&["profiles", pname, "stages", sname, "matrix", axis]))
                .stage(sname)
                .field(format!("matrix.{axis}")));
        }
        Ok(())
    }

    /// A stage's `profiles:` list names at least one profile, each a known one.
    fn check_stage_profile_lists(&self) -> Result<(), SpecError> {
        let spec = self.spec;
        for (sname, st) in spec.stages.iter() {
            let Some(list) = &st.profiles else { continue };
            let fail = |msg: String| {
                Err(self
                    .err(msg)
                    .line(self.at(&["stages", sname, "profiles"]))
                    .stage(sname.clone())
                    .field("profiles".to_string()))
            };
            if list.is_empty() {
                return fail("`profiles` lists no profile".into());
            }
            for pn in list {
                if pn != DEFAULT_PROFILE && spec.profiles.get(pn).is_none() {
                    return fail(format!(
                        "`profiles` names unknown profile `{pn}` (profiles: {DEFAULT_PROFILE}{})",
                        spec.profiles
                            .keys()
                            .filter(|k| k.as_str() != DEFAULT_PROFILE)
                            .map(|k| format!(", {k}"))
                            .collect::<String>()
                    ));
                }
            }
        }
        Ok(())
    }

    /// No two profiles publish into the same directory.
    fn check_publish_paths(&self) -> Result<(), SpecError> {
        let Some((dir, (p0, s0), (p1, s1), overridden)) = publish_clash(self.spec) else {
            return Ok(());
        };
        let line = if overridden {
            self.at(&["profiles", &p1, "stages", &s1, "publish"])
        } else {
            self.at(&["stages", &s1, "publish"])
        };
        Err(self
            .err(format!(
                "profiles `{p0}` (stage `{s0}`) and `{p1}` publish into the same directory \
                 `{dir}`: a run of one would overwrite the other's results; give one its own \
                 (profiles: {p1}: stages: {s1}: {{ publish: {dir}/{p1} }})"
            ))
            .line(line)
            .stage(s1)
            .field("publish"))
    }

    /// Per stage (declaration order): whether the active profile has it.
    fn enabled_stages(&self, prof: &ProfileSpec) -> Vec<bool> {
        self.spec
            .stages
            .iter()
            .map(|(n, st)| has_stage(prof, self.profile, n, st))
            .collect()
    }

    /// Per stage (declaration order): its kind and its input declarations, after checking its
    /// name, publish path and matrix axes.
    fn kinds_and_inputs(
        &self,
        names: &[&String],
        enabled: &[bool],
    ) -> Result<(Vec<Kind>, Vec<Vec<InputDecl>>), SpecError> {
        let index: HashMap<&str, usize> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        let mut kinds = Vec::new();
        let mut decls = Vec::new();
        for (name, st) in self.spec.stages.iter() {
            kinds.push(self.check_stage(name, st)?);
            decls.push(self.input_decls(name, st, &index, enabled)?);
        }
        Ok((kinds, decls))
    }

    /// A stage's name, publish path, kind and matrix axes; returns its kind.
    fn check_stage(&self, name: &String, st: &StageSpec) -> Result<Kind, SpecError> {
        let bad = |c: char| {
            matches!(c, '[' | ']' | ',' | '=' | '*' | '/') || c.is_whitespace() || c.is_control()
        };
        if name.is_empty() || name == "." || name == ".." || name.chars().any(bad) {
            return Err(self
                .err(
                    "a stage name must be one plain path component (not empty, `.` or `..`; no \
                     `/` or control characters) and may not contain `[ ] , = *` or spaces"
                        .into(),
                )
                .line(self.at(&["stages", name]))
                .stage(name.clone()));
        }
        if let Some(dir) = &st.publish {
            check_publish_dir(dir).map_err(|m| {
                self.err(m)
                    .line(self.at(&["stages", name, "publish"]))
                    .stage(name.clone())
                    .field("publish")
            })?;
        }
        let Some(kind) = Kind::from_name(&st.kind) else {
            return Err(self
                .err(format!(
                    "unknown kind `{}` (kinds: {})",
                    st.kind,
                    kind_list()
                ))
                .line(self.at(&["stages", name, "kind"]))
                .stage(name.clone())
                .field("kind"));
        };
        for (axis, values) in st.matrix.iter() {
            if values.is_empty() {
                return Err(self
                    .err(format!("matrix axis `{axis}` is empty"))
                    .line(self.at(&["stages", name, "matrix", axis]))
                    .stage(name.clone())
                    .field(format!("matrix.{axis}")));
            }
        }
        Ok(kind)
    }

    /// A stage's inputs: `up`, `up[*]` (a group) or `up[v1,v2]` (one pinned member) of a
    /// known stage the active profile has whenever it has this one.
    fn input_decls(
        &self,
        name: &String,
        st: &StageSpec,
        index: &HashMap<&str, usize>,
        enabled: &[bool],
    ) -> Result<Vec<InputDecl>, SpecError> {
        let profile = self.profile;
        let mut ds = Vec::new();
        for (iname, target) in st.inputs.iter() {
            let target = target.trim();
            let (up, group, pinned) = match target.strip_suffix("[*]") {
                Some(u) => (u.trim(), true, None),
                None => match target.strip_suffix(']').and_then(|t| t.split_once('[')) {
                    Some((u, _)) => (u.trim(), false, Some(target.to_string())),
                    None => (target, false, None),
                },
            };
            let fail = |msg: String| {
                Err(self
                    .err(msg)
                    .line(self.at(&["stages", name, "inputs", iname]))
                    .stage(name.clone())
                    .field(format!("inputs.{iname}")))
            };
            let Some(&ui) = index.get(up) else {
                return fail(format!("input `{iname}` names unknown stage `{up}`"));
            };
            if enabled[index[name.as_str()]] && !enabled[ui] {
                let why = match &self.spec.stages.0[ui].1.profiles {
                    Some(l) if !l.iter().any(|p| p == profile) => {
                        format!("which only profiles [{}] have", l.join(", "))
                    }
                    _ => format!("which profile `{profile}` disables"),
                };
                return fail(format!("input `{iname}` reads stage `{up}`, {why}"));
            }
            ds.push(InputDecl {
                name: iname.clone(),
                upstream: ui,
                group,
                pinned,
            });
        }
        Ok(ds)
    }

    /// Stage indices in topological order (DFS in declaration order); a cycle is an error at
    /// the input of its first stage that closes it.
    fn topological_order(
        &self,
        decls: &[Vec<InputDecl>],
        names: &[&String],
    ) -> Result<Vec<usize>, SpecError> {
        topo_order(decls, names).map_err(|cycle| {
            let first = cycle[0].clone();
            let next = cycle.get(1).cloned().unwrap_or_default();
            let iname = names
                .iter()
                .position(|n| **n == first)
                .and_then(|i| decls[i].iter().find(|d| *names[d.upstream] == next))
                .map(|d| d.name.clone())
                .unwrap_or_default();
            self.err(format!("cycle: {}", cycle.join(" -> ")))
                .line(self.at(&["stages", &first, "inputs", &iname]))
                .stage(first.clone())
                .field(format!("inputs.{iname}"))
        })
    }
}

/// The stages and members built so far, in topological order: each stage is expanded into
/// its matrix members, their params checked by the kind, and their inputs bound to members of
/// stages already built.
struct Expansion<'a> {
    ctx: &'a BuildCtx<'a>,
    prof: &'a ProfileSpec,
    stages: Vec<Stage>,
    members: Vec<Member>,
    /// Declaration index -> index into `stages`.
    stage_pos: HashMap<usize, usize>,
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

impl Expansion<'_> {
    /// Builds stage `si` (declaration index) of kind `kind` reading `decls`.
    fn add_stage(&mut self, si: usize, kind: Kind, decls: &[InputDecl]) -> Result<(), SpecError> {
        let (name, st) = (&self.ctx.spec.stages.0[si].0, &self.ctx.spec.stages.0[si].1);
        let over = self.prof.stages.get(name);
        let pos = self.stages.len();
        self.stage_pos.insert(si, pos);
        let (axes, own) = self.stage_axes(st, over, decls);
        self.check_axis_values(name, &axes)?;
        let base = self.base_params(kind, st, over);
        let timeout = self.timeout(name, st, over)?;
        let stage_seed = over.and_then(|o| o.seed).or(st.seed).unwrap_or(0);
        let total: usize = axes.iter().map(|(_, v)| v.len()).product();
        let mut stage_members = Vec::new();
        let mut checked: HashMap<String, BTreeMap<String, String>> = HashMap::new();
        for combo in 0..total {
            let m = expand_member(name, &axes, &own, &base, stage_seed, combo);
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

    /// Checks what each member reads, as the declared pipeline shows it
    /// ([`Kind::check_inputs`]); an error names the member's input, or the params field the
    /// kind names, at its line.
    fn check_inputs(&self) -> Result<(), SpecError> {
        let members = &self.members;
        let methods: Vec<Option<String>> = members
            .iter()
            .map(|m| m.kind.declared_method(&m.params))
            .collect();
        let declared: Vec<Declared> = members
            .iter()
            .zip(&methods)
            .enumerate()
            .map(|(index, (m, method))| Declared {
                index,
                name: &m.name,
                kind: m.kind,
                method: method.as_deref(),
                params: &m.params,
                coords: &m.coords,
                inputs: &m.inputs,
            })
            .collect();
        for (mi, m) in members.iter().enumerate() {
            let inputs = Inputs {
                me: mi,
                all: &declared,
            };
            let Err(msg) = m.kind.check_inputs(&inputs) else {
                continue;
            };
            let (file, text) = (self.ctx.file, self.ctx.text);
            let stage = &self.stages[m.stage].name;
            let whose = if m.name == *stage {
                String::new()
            } else {
                format!("member `{}`: ", m.name)
            };
            if let Some((input, body)) = msg.strip_prefix("input `").and_then(|r| r.split_once("`"))
            {
                // The field names the input; the message need not, unless it reads on.
                let said = match body.strip_prefix(": ") {
                    Some(rest) => rest.to_string(),
                    None => format!("input `{input}`{body}"),
                };
                return Err(self
                    .ctx
                    .err(format!("{whose}{said}"))
                    .line(
                        self.ctx
                            .at(&["stages", stage, "inputs", input])
                            .or_else(|| self.ctx.at(&["stages", stage])),
                    )
                    .stage(stage.clone())
                    .field(format!("inputs.{input}")));
            }
            let layers = ParamLayers {
                spec: self.ctx.spec,
                prof: self.prof,
                profile: self.ctx.profile,
                stage,
                kind: m.kind.name(),
            };
            let head = if whose.is_empty() { "" } else { "member" };
            return Err(params_error(file, text, &layers, head, &m.name, &msg));
        }
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

    /// Axis values are scalars; `seed` values non-negative integers.
    fn check_axis_values(
        &self,
        name: &String,
        axes: &[(String, Vec<Value>)],
    ) -> Result<(), SpecError> {
        for (a, vals) in axes {
            for v in vals {
                let ok = matches!(v, Value::String(_) | Value::Bool(_) | Value::Number(_));
                if !ok || (a == "seed" && v.as_u64().is_none()) {
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
    /// profile stage.
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
        if let Some(o) = over {
            merge(&mut base, &o.params.0);
        }
        base
    }

    /// Binds input `d` of the members `stage_members` of stage `name`: to its pinned member,
    /// else to the upstream members sharing their coordinates on the axes both stages have
    /// (exactly one unless `d` is a group).
    fn bind_input(
        &mut self,
        name: &String,
        d: &InputDecl,
        axes: &[(String, Vec<Value>)],
        stage_members: &[usize],
    ) -> Result<(), SpecError> {
        let ctx = self.ctx;
        let up = &self.stages[self.stage_pos[&d.upstream]];
        let members = &mut self.members;
        let fail = |msg: String| {
            Err(ctx
                .err(msg)
                .line(ctx.at(&["stages", name, "inputs", &d.name]))
                .stage(name.clone())
                .field(format!("inputs.{}", d.name)))
        };
        if let Some(pin) = &d.pinned {
            let Some(&um) = up.members.iter().find(|&&um| members[um].name == *pin) else {
                return fail(format!(
                    "input `{}` names member `{pin}`, which profile `{}` does not have (members: {})",
                    d.name,
                    ctx.profile,
                    up.members
                        .iter()
                        .map(|&um| members[um].name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            };
            for &mi in stage_members {
                members[mi].inputs.insert(d.name.clone(), vec![um]);
            }
            return Ok(());
        }
        let shared: Vec<String> = up
            .axes
            .iter()
            .filter(|a| axes.iter().any(|(b, _)| b == *a))
            .cloned()
            .collect();
        let mut idx: HashMap<String, Vec<usize>> = HashMap::new();
        for &um in &up.members {
            idx.entry(projection(&members[um].coords, &shared))
                .or_default()
                .push(um);
        }
        for &mi in stage_members {
            let key = projection(&members[mi].coords, &shared);
            let found = idx.get(&key).cloned().unwrap_or_default();
            if found.is_empty() {
                return fail(format!(
                    "input `{}` of `{}`: no member of `{}` matches its coordinates",
                    d.name, members[mi].name, up.name
                ));
            }
            if !d.group && found.len() > 1 {
                return fail(format!(
                    "input `{}` of `{}` matches {} members of `{}` (axes it lacks: {}); \
                     write `{}[*]` to read them all",
                    d.name,
                    members[mi].name,
                    found.len(),
                    up.name,
                    up.axes
                        .iter()
                        .filter(|a| !shared.contains(a))
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", "),
                    up.name
                ));
            }
            members[mi].inputs.insert(d.name.clone(), found);
        }
        Ok(())
    }
}

/// Member number `combo` of stage `name` (the last axis varies fastest): its name, params
/// (`base` with the values of the stage's `own` axes), seed and coordinates.
fn expand_member(
    name: &str,
    axes: &[(String, Vec<Value>)],
    own: &HashSet<String>,
    base: &Map<String, Value>,
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

/// Why `dir` may not be a publish directory, if it may not: it must be a folder inside the
/// project, not the project itself (a publish directory belongs to its stages: `run`
/// removes the files they did not publish there) and not in the run store.
fn check_publish_dir(dir: &str) -> Result<(), String> {
    use std::path::Component;
    let d = Path::new(dir.trim());
    let parts: std::path::PathBuf = d
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect();
    let bad = parts.as_os_str().is_empty()
        || d.is_absolute()
        || d.components().any(|c| matches!(c, Component::ParentDir))
        || parts.starts_with("results/.runs");
    if bad {
        Err(format!(
            "publish directory `{dir}` must be a folder inside the project (not the project \
             itself), outside results/.runs"
        ))
    } else {
        Ok(())
    }
}

/// Where a stage publishes in a profile (the profile's override, else its own), trimmed.
fn effective_publish(st: &StageSpec, over: Option<&StageOverride>) -> Option<String> {
    over.and_then(|o| o.publish.as_ref())
        .or(st.publish.as_ref())
        .map(|p| {
            p.trim()
                .trim_start_matches("./")
                .trim_end_matches('/')
                .to_string()
        })
}

/// Two profiles publishing into one directory: (dir, first (profile, stage), second
/// (profile, stage), whether the second's dir is a profile override). Each profile's
/// stages are those it has (`profiles:` lists, `disable`), `default` included.
fn publish_clash(spec: &Spec) -> Option<(String, (String, String), (String, String), bool)> {
    let empty = ProfileSpec::default();
    let mut seen: BTreeMap<String, (String, String)> = BTreeMap::new();
    for pname in profile_names(spec) {
        let prof = spec.profiles.get(pname).unwrap_or(&empty);
        for (sname, st) in spec.stages.iter() {
            if !has_stage(prof, pname, sname, st) {
                continue;
            }
            let over = prof.stages.get(sname);
            let Some(dir) = effective_publish(st, over) else {
                continue;
            };
            match seen.get(&dir) {
                Some((p0, s0)) if p0 != pname => {
                    return Some((
                        dir,
                        (p0.clone(), s0.clone()),
                        (pname.to_string(), sname.clone()),
                        over.is_some_and(|o| o.publish.is_some()),
                    ));
                }
                Some(_) => {}
                None => {
                    seen.insert(dir, (pname.to_string(), sname.clone()));
                }
            }
        }
    }
    None
}

/// The publish directories of the stages of every profile but `profile` (sorted, without
/// repeats).
fn other_publish_dirs(spec: &Spec, profile: &str) -> Vec<String> {
    let empty = ProfileSpec::default();
    let mut dirs = std::collections::BTreeSet::new();
    for pname in profile_names(spec).into_iter().filter(|p| *p != profile) {
        let prof = spec.profiles.get(pname).unwrap_or(&empty);
        for (sname, st) in spec.stages.iter() {
            if has_stage(prof, pname, sname, st) {
                dirs.extend(effective_publish(st, prof.stages.get(sname)));
            }
        }
    }
    dirs.into_iter().collect()
}

/// Whether profile `pname` (declared as `prof`; an undeclared `default` is empty) has stage
/// `sname`: its `profiles:` list names the profile, or it has no list, and the profile does
/// not disable it.
fn has_stage(prof: &ProfileSpec, pname: &str, sname: &str, st: &StageSpec) -> bool {
    st.profiles
        .as_ref()
        .is_none_or(|l| l.iter().any(|p| p == pname))
        && !prof.disable.iter().any(|d| d == sname)
}

/// Every profile of the file, `default` first (declared or not).
fn profile_names(spec: &Spec) -> Vec<&str> {
    let mut names = vec![DEFAULT_PROFILE];
    names.extend(
        spec.profiles
            .keys()
            .map(|k| k.as_str())
            .filter(|k| *k != DEFAULT_PROFILE),
    );
    names
}

/// The profiles of `spec` that have a stage named `stage` (`default` first): where to look
/// for a stage the active profile lacks.
pub fn profiles_with_stage(spec: &Spec, stage: &str) -> Vec<String> {
    let Some(st) = spec.stages.get(stage) else {
        return Vec::new();
    };
    let empty = ProfileSpec::default();
    profile_names(spec)
        .into_iter()
        .filter(|p| has_stage(spec.profiles.get(p).unwrap_or(&empty), p, stage, st))
        .map(str::to_string)
        .collect()
}

/// The file's text, or an error naming the line, the column and the first byte that is
/// not UTF-8 (a file saved in Latin-1, UTF-16 or a binary file given by mistake).
fn utf8_text(bytes: Vec<u8>, file: &Path) -> Result<String, SpecError> {
    String::from_utf8(bytes).map_err(|e| {
        let bytes = e.as_bytes();
        let at = e.utf8_error().valid_up_to();
        let before = &bytes[..at];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        // Column in characters: the prefix of the line is valid UTF-8.
        let column = String::from_utf8_lossy(&before[line_start..])
            .chars()
            .count()
            + 1;
        let utf16 = bytes.starts_with(&[0xff, 0xfe]) || bytes.starts_with(&[0xfe, 0xff]);
        SpecError::new(
            file,
            format!(
                "the file is not UTF-8 text: byte 0x{:02x} at column {column} is not valid UTF-8{}",
                bytes[at],
                if utf16 {
                    " (the file starts with a UTF-16 byte-order mark; save it as UTF-8)"
                } else {
                    " (save the file as UTF-8)"
                }
            ),
        )
        .line(Some(line))
    })
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

fn projection(coords: &BTreeMap<String, Value>, axes: &[String]) -> String {
    let mut s = String::new();
    for a in axes {
        s.push_str(&coords.get(a).map(|v| v.to_string()).unwrap_or_default());
        s.push('\u{1f}');
    }
    s
}

/// Stage indices in topological order, or the cycle as a list of names (first repeated
/// at the end).
fn topo_order(decls: &[Vec<InputDecl>], names: &[&String]) -> Result<Vec<usize>, Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum C {
        White,
        Grey,
        Black,
    }
    let n = decls.len();
    let mut color = vec![C::White; n];
    let mut order = Vec::with_capacity(n);
    // Iterative DFS; the stack holds (node, next input index).
    for root in 0..n {
        if color[root] != C::White {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
        color[root] = C::Grey;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            if *next < decls[node].len() {
                let up = decls[node][*next].upstream;
                *next += 1;
                match color[up] {
                    C::White => {
                        color[up] = C::Grey;
                        stack.push((up, 0));
                    }
                    C::Grey => {
                        // The stack from `up` to `node` is the cycle (reversed: each reads the next).
                        let startpos = stack.iter().position(|(s, _)| *s == up).unwrap();
                        let mut path: Vec<String> = stack[startpos..]
                            .iter()
                            .map(|(s, _)| names[*s].clone())
                            .collect();
                        path.push(names[up].clone());
                        return Err(path);
                    }
                    C::Black => {}
                }
            } else {
                color[node] = C::Black;
                order.push(node);
                stack.pop();
            }
        }
    }
    Ok(order)
}

/// Where a member's params come from, for locating an invalid one.
struct ParamLayers<'a> {
    spec: &'a Spec,
    prof: &'a ProfileSpec,
    profile: &'a str,
    stage: &'a str,
    kind: &'a str,
}

impl ParamLayers<'_> {
    /// The text path of the key `field` (a path of params keys) in the layer that set
    /// it, trying the layers from the one that wins the merge down: the profile's matrix,
    /// the stage's matrix (both for a top-level key only), the profile's stage params,
    /// the stage's params, the profile's defaults for the kind, the defaults.
    fn source(&self, field: &[&str]) -> Option<Vec<String>> {
        let st = self.spec.stages.get(self.stage)?;
        let over = self.prof.stages.get(self.stage);
        let owned = |pre: &[&str]| -> Vec<String> {
            pre.iter().chain(field).map(|s| s.to_string()).collect()
        };
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
        if over.is_some_and(|o| has(&o.params.0)) {
            return Some(owned(&[
                "profiles",
                self.profile,
                "stages",
                self.stage,
                "params",
            ]));
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
fn params_error(
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

#[cfg(test)]
mod tests {
    use super::*;

    fn build(text: &str, profile: &str) -> Result<Pipeline, SpecError> {
        let file = Path::new("pipeline.yaml");
        let spec = Spec::parse(text, file)?;
        Pipeline::build(&spec, text, file, profile)
    }

    const GRID: &str = "\
stages:
  data:
    kind: probe
    params: { value: d }
  noisy:
    kind: probe
    inputs: { data: data }
    matrix: { value: [u, f], seed: [1, 2] }
  train:
    kind: probe
    inputs: { data: data, noise: noisy }
    params: { steps: 2 }
    matrix: { value: [u, f], note: [a, b], seed: [1, 2] }
  table:
    kind: probe
    inputs: { runs: \"train[*]\" }
profiles:
  tiny:
    stages:
      train: { params: { steps: 1 }, matrix: { seed: [1] } }
";

    #[test]
    fn matrix_members_are_named_in_axis_order() {
        let p = build(GRID, "default").unwrap();
        let names: Vec<&str> = p.members.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names[0], "data");
        assert_eq!(
            names[1..5],
            [
                "noisy[u,seed=1]",
                "noisy[u,seed=2]",
                "noisy[f,seed=1]",
                "noisy[f,seed=2]"
            ]
        );
        assert_eq!(names[5], "train[u,a,seed=1]");
        assert_eq!(names.len(), 1 + 4 + 8 + 1);
        let m = &p.members[p.member_index("train[f,b,seed=2]").unwrap()];
        assert_eq!(m.seed, 2);
        assert_eq!(m.params["value"], "f");
        assert_eq!(m.params["note"], "b");
        assert_eq!(m.params["steps"], 2);
        assert!(m.params.get("seed").is_none(), "seed is not a param");
    }

    #[test]
    fn inputs_bind_on_shared_axes() {
        let p = build(GRID, "default").unwrap();
        let m = &p.members[p.member_index("train[f,b,seed=2]").unwrap()];
        let noise: Vec<&str> = m.inputs["noise"]
            .iter()
            .map(|&i| p.members[i].name.as_str())
            .collect();
        assert_eq!(noise, ["noisy[f,seed=2]"]);
        assert_eq!(m.inputs["data"], vec![0]);
        let t = &p.members[p.member_index("table").unwrap()];
        assert_eq!(t.inputs["runs"].len(), 8);
        // Topological: every input comes earlier.
        for (i, m) in p.members.iter().enumerate() {
            assert!(m.upstream().iter().all(|&u| u < i));
        }
    }

    #[test]
    fn profile_replaces_axis_and_merges_params() {
        let p = build(GRID, "tiny").unwrap();
        let train: Vec<&Member> = p
            .members
            .iter()
            .filter(|m| m.name.starts_with("train["))
            .collect();
        assert_eq!(train.len(), 4);
        assert!(train.iter().all(|m| m.seed == 1 && m.params["steps"] == 1));
    }

    #[test]
    fn single_input_inherits_the_upstream_axes() {
        let text = "stages:\n  a:\n    kind: probe\n    matrix: { seed: [1, 2], x_c: [u, f] }\n  b:\n    kind: probe\n    inputs:\n      up: a\n    matrix: { x_m: [p, q] }\n";
        let p = build(text, "default").unwrap();
        let names: Vec<&str> = p
            .members
            .iter()
            .filter(|m| m.name.starts_with("b["))
            .map(|m| m.name.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "b[p,u,seed=1]",
                "b[p,u,seed=2]",
                "b[p,f,seed=1]",
                "b[p,f,seed=2]",
                "b[q,u,seed=1]",
                "b[q,u,seed=2]",
                "b[q,f,seed=1]",
                "b[q,f,seed=2]"
            ]
        );
        let m = &p.members[p.member_index("b[q,f,seed=2]").unwrap()];
        assert_eq!(m.seed, 2);
        assert_eq!(m.params["x_m"], "q");
        assert!(
            m.params.get("x_c").is_none(),
            "an inherited axis is not a param"
        );
        let up: Vec<&str> = m.inputs["up"]
            .iter()
            .map(|&i| p.members[i].name.as_str())
            .collect();
        assert_eq!(up, ["a[f,seed=2]"]);
    }

    #[test]
    fn cycle_is_named_in_full() {
        let text = "stages:\n  a:\n    kind: probe\n    inputs: { x: c }\n  b:\n    kind: probe\n    inputs: { x: a }\n  c:\n    kind: probe\n    inputs: { x: b }\n";
        let e = build(text, "default").unwrap_err();
        assert!(e.message.contains("cycle: a -> c -> b -> a"), "{e}");
    }

    #[test]
    fn unknown_kind_and_input_and_empty_axis() {
        let e = build("stages:\n  a:\n    kind: nope\n", "default").unwrap_err();
        assert_eq!((e.line, e.field.as_deref()), (Some(3), Some("kind")));
        let e = build(
            "stages:\n  a:\n    kind: probe\n    inputs:\n      d: zz\n",
            "default",
        )
        .unwrap_err();
        assert_eq!((e.line, e.field.as_deref()), (Some(5), Some("inputs.d")));
        let e = build(
            "stages:\n  a:\n    kind: probe\n    matrix:\n      seed: []\n",
            "default",
        )
        .unwrap_err();
        assert_eq!((e.line, e.field.as_deref()), (Some(5), Some("matrix.seed")));
    }

    #[test]
    fn kind_params_are_validated_with_line() {
        let text =
            "stages:\n  a:\n    kind: probe\n    params:\n      value: x\n      colour: red\n";
        let e = build(text, "default").unwrap_err();
        assert_eq!(e.line, Some(6), "{e}");
        assert_eq!(e.field.as_deref(), Some("params.colour"));
        let text = "stages:\n  a:\n    kind: probe\n    params:\n      steps: many\n";
        let e = build(text, "default").unwrap_err();
        assert_eq!(e.stage.as_deref(), Some("a"));
        assert!(e.line == Some(5) || e.line == Some(4), "{e}");
    }

    #[test]
    fn defaults_are_per_kind_and_profiles_can_disable() {
        let text = "defaults:\n  probe: { steps: 3 }\nstages:\n  a:\n    kind: probe\n  b:\n    kind: probe\n    params: { steps: 4 }\nprofiles:\n  small:\n    disable: [b]\n";
        let p = build(text, "default").unwrap();
        assert_eq!(p.members[0].params["steps"], 3);
        assert_eq!(p.members[1].params["steps"], 4);
        let p = build(text, "small").unwrap();
        assert_eq!(p.members.len(), 1);
        let e = build(text, "nope").unwrap_err();
        assert!(e.message.contains("no profile `nope`"), "{e}");
    }

    #[test]
    fn stages_can_belong_to_some_profiles_only() {
        let text = "stages:\n  a:\n    kind: probe\n    profiles: [default, small]\n  b:\n    kind: probe\n    profiles: [big]\n  c:\n    kind: probe\n    inputs: { x: b }\n    profiles: [big]\nprofiles:\n  small: {}\n  big: {}\n";
        let names = |p: &Pipeline| p.members.iter().map(|m| m.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&build(text, "default").unwrap()), ["a"]);
        assert_eq!(names(&build(text, "small").unwrap()), ["a"]);
        assert_eq!(names(&build(text, "big").unwrap()), ["b", "c"]);

        let bad = text.replace("profiles: [big]\n  c:", "profiles: [bgi]\n  c:");
        let e = build(&bad, "default").unwrap_err();
        assert!(e.message.contains("unknown profile `bgi`"), "{e}");
        assert_eq!((e.stage.as_deref(), e.line), (Some("b"), Some(7)), "{e}");

        let bad = text.replace("inputs: { x: b }\n    profiles: [big]", "inputs: { x: b }");
        let e = build(&bad, "default").unwrap_err();
        assert!(e.message.contains("which only profiles [big] have"), "{e}");
        assert_eq!(e.stage.as_deref(), Some("c"));
    }

    #[test]
    fn an_input_can_pin_one_member() {
        let text = "stages:\n  d:\n    kind: probe\n    matrix: { steps: [1, 2] }\n  n:\n    kind: probe\n    inputs: { x: \"d[2]\" }\n    matrix: { seed: [1, 2] }\n";
        let p = build(text, "default").unwrap();
        let names: Vec<&str> = p.members.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["d[1]", "d[2]", "n[seed=1]", "n[seed=2]"]);
        for m in &p.members[2..] {
            assert_eq!(m.inputs["x"], vec![1], "{}", m.name);
        }
        let e = build(&text.replace("d[2]", "d[3]"), "default").unwrap_err();
        assert!(e.message.contains("members: d[1], d[2]"), "{e}");
        assert_eq!(e.field.as_deref(), Some("inputs.x"));
    }

    #[test]
    fn profiles_may_not_publish_into_one_directory() {
        let base = "stages:\n  a:\n    kind: probe\n    publish: out\n  b:\n    kind: probe\n    publish: out\nprofiles:\n  small:\n    stages:\n      a: { params: { value: z } }\n";
        let e = build(base, "default").unwrap_err();
        assert_eq!(
            (e.line, e.stage.as_deref(), e.field.as_deref()),
            (Some(4), Some("a"), Some("publish")),
            "{e}"
        );
        assert!(
            e.message.contains(
                "profiles `default` (stage `a`) and `small` publish into the same directory `out`"
            ),
            "{e}"
        );
        // Moved by the profile: fine, and each profile publishes where it says.
        let ok = base.replace(
            "value: z } }",
            "value: z }, publish: out/small }\n      b: { publish: out/small }",
        );
        assert_eq!(
            build(&ok, "default").unwrap().members[0].publish.as_deref(),
            Some("out")
        );
        assert_eq!(
            build(&ok, "small").unwrap().members[0].publish.as_deref(),
            Some("out/small")
        );
        // A stage only one profile has, or one a profile disables, clashes with nothing.
        let only = "stages:\n  a:\n    kind: probe\n    publish: out\n    profiles: [default]\n  b:\n    kind: probe\nprofiles:\n  small: {}\n";
        assert!(build(only, "small").is_ok());
        assert!(build(&format!("{base}    disable: [a, b]\n"), "small").is_ok());
        // A bad override is located at the profile's line.
        let bad = ok.replace("publish: out/small }\n", "publish: /tmp/x }\n");
        let e = build(&bad, "small").unwrap_err();
        assert_eq!(
            (e.line, e.field.as_deref()),
            (Some(11), Some("publish")),
            "{e}"
        );
    }

    #[test]
    fn publish_must_stay_inside_the_project() {
        for dir in [
            "/tmp/x",
            "../x",
            "results/.runs/x",
            "./results/.runs/x",
            "a/../../b",
            ".",
            "./",
        ] {
            let text = format!("stages:\n  a:\n    kind: probe\n    publish: {dir}\n");
            let e = build(&text, "default").unwrap_err();
            assert_eq!(
                (e.line, e.field.as_deref()),
                (Some(4), Some("publish")),
                "{dir}: {e}"
            );
        }
        let p = build(
            "stages:\n  a:\n    kind: probe\n    publish: ./out/a/\n",
            "default",
        )
        .unwrap();
        assert_eq!(p.members[0].publish.as_deref(), Some("out/a"));
    }

    #[test]
    fn targets_select_upstream() {
        let p = build(GRID, "default").unwrap();
        let (sel, direct) = p.select(&["train[u,a,seed=1]".to_string()]).unwrap();
        let chosen: Vec<&str> = p
            .members
            .iter()
            .zip(&sel)
            .filter(|(_, s)| **s)
            .map(|(m, _)| m.name.as_str())
            .collect();
        assert_eq!(chosen, ["data", "noisy[u,seed=1]", "train[u,a,seed=1]"]);
        assert_eq!(direct.iter().filter(|d| **d).count(), 1);
        assert!(p.select(&["zz".into()]).is_err());
    }
}
