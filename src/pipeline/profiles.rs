//! Which profile has which stage: a stage's `profiles:` list names the profile (or it has
//! none) and the profile does not `disable` it. `default`, the profile used without
//! `--profile`, exists whether the file declares it or not.

use super::{BuildCtx, DEFAULT_PROFILE};
use crate::error::SpecError;
use crate::spec::{ProfileSpec, Spec, StageSpec};

impl<'a> BuildCtx<'a> {
    /// The profile being built (`empty` for a default profile the file does not declare).
    pub(super) fn active_profile(
        &self,
        empty: &'a ProfileSpec,
    ) -> Result<&'a ProfileSpec, SpecError> {
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

    /// Per stage (declaration order): whether the active profile has it.
    pub(super) fn enabled_stages(&self, prof: &ProfileSpec) -> Vec<bool> {
        self.spec
            .stages
            .iter()
            .map(|(n, st)| has_stage(prof, self.profile, n, st))
            .collect()
    }
}

/// Whether profile `pname` (declared as `prof`; an undeclared `default` is empty) has stage
/// `sname`: its `profiles:` list names the profile, or it has no list, and the profile does
/// not disable it.
pub(super) fn has_stage(prof: &ProfileSpec, pname: &str, sname: &str, st: &StageSpec) -> bool {
    st.profiles
        .as_ref()
        .is_none_or(|l| l.iter().any(|p| p == pname))
        && !prof.disable.iter().any(|d| d == sname)
}

/// Every profile of the file, `default` first (declared or not).
pub(super) fn profile_names(spec: &Spec) -> Vec<&str> {
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
