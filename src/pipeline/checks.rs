//! Step 1 of [`Pipeline::build`](super::Pipeline::build): the references of the whole file,
//! checked for every profile and not only the one being built, so that a typo in a profile
//! or a stage fails every command, not only the run that would use it. Kinds of the
//! defaults, the stages, axes and publish paths a profile overrides, the stages it
//! disables, each stage's `profiles:` list and every `timeout`.

use repro_stages::Kind;

use super::publish::check_publish_dir;
use super::{kind_list, BuildCtx, DEFAULT_PROFILE};
use crate::error::SpecError;
use crate::run_config::parse_timeout;
use crate::spec::StageOverride;

impl BuildCtx<'_> {
    /// Top-level `defaults:` are keyed by kind.
    pub(super) fn check_defaults(&self) -> Result<(), SpecError> {
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

    /// Every profile's references, not only the active one's: kinds of its defaults, the
    /// stages and matrix axes it overrides, its publish paths, the stages it disables.
    pub(super) fn check_profiles(&self) -> Result<(), SpecError> {
        for (pname, p) in self.spec.profiles.iter() {
            for (field, map) in [("defaults", &p.defaults), ("params", &p.params)] {
                for (kind, _) in map.iter() {
                    if Kind::from_name(kind).is_none() {
                        return Err(self
                            .err(format!(
                                "profile `{pname}`: {field} for unknown kind `{kind}`"
                            ))
                            .line(self.at(&["profiles", pname, field, kind])));
                    }
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
    pub(super) fn check_timeouts(&self) -> Result<(), SpecError> {
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
    pub(super) fn check_stage_profile_lists(&self) -> Result<(), SpecError> {
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
}
