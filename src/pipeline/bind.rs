//! Steps 4 and 5 of [`Pipeline::build`](super::Pipeline::build): binding each member's
//! inputs, then checking what each member reads.
//!
//! `name: up` binds to the member of `up` with the same coordinates on the axes both stages
//! have (exactly one), `up[*]` to all of them, `up[v1,v2]` to that one member. It is a hash
//! lookup: the upstream members are indexed by their values on the shared axes, and each
//! member looks its own values up. Once every stage is built, each kind checks what its
//! members read as the whole pipeline shows it ([`repro_stages::Kind::check_inputs`]).

use std::collections::{BTreeMap, HashMap};

use repro_stages::{Declared, Inputs};
use serde_json::Value;

use super::expand::Expansion;
use super::locate::{params_error, ParamLayers};
use super::InputDecl;
use crate::error::SpecError;

impl Expansion<'_> {
    /// Binds input `d` of the members `stage_members` of stage `name`: to its pinned member,
    /// else to the upstream members sharing their coordinates on the axes both stages have
    /// (exactly one unless `d` is a group).
    pub(super) fn bind_input(
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

    /// Checks what each member reads, as the declared pipeline shows it
    /// ([`repro_stages::Kind::check_inputs`]); an error names the member's input, or the
    /// params field the kind names, at its line.
    pub(super) fn check_inputs(&self) -> Result<(), SpecError> {
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
                coords: &m.coords,
            };
            let head = if whose.is_empty() { "" } else { "member" };
            return Err(params_error(file, text, &layers, head, &m.name, &msg));
        }
        Ok(())
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
