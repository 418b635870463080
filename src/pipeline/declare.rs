//! Step 3 of [`Pipeline::build`](super::Pipeline::build): each stage's declaration read on
//! its own (a plain name, a known kind, non-empty axes, inputs naming stages the profile
//! has) and the order of the stages: a depth-first walk in declaration order, so the order
//! stays stable when unrelated stages are added, and a cycle is named in full at the input
//! that closes it.

use std::collections::HashMap;

use repro_stages::Kind;

use super::publish::check_publish_dir;
use super::{kind_list, BuildCtx, InputDecl};
use crate::error::SpecError;
use crate::spec::StageSpec;

impl BuildCtx<'_> {
    /// Per stage (declaration order): its kind and its input declarations, after checking its
    /// name, publish path and matrix axes.
    pub(super) fn kinds_and_inputs(
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
    pub(super) fn topological_order(
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
