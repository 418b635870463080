//! Publish directories: where a stage copies its outputs after a run or a restore. Each must
//! be a folder inside the project, outside the run store; no two profiles may publish into
//! the same one (a run of one would overwrite the other's results); and the directories of
//! the other profiles are never the active profile's to judge for stray files.

use std::collections::BTreeMap;
use std::path::Path;

use super::profiles::{has_stage, profile_names};
use super::BuildCtx;
use crate::error::SpecError;
use crate::spec::{ProfileSpec, Spec, StageOverride, StageSpec};

impl BuildCtx<'_> {
    /// No two profiles publish into the same directory.
    pub(super) fn check_publish_paths(&self) -> Result<(), SpecError> {
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
}

/// Why `dir` may not be a publish directory, if it may not: it must be a folder inside the
/// project, not the project itself (a publish directory belongs to its stages: `run`
/// removes the files they did not publish there) and not in the run store.
pub(super) fn check_publish_dir(dir: &str) -> Result<(), String> {
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
pub(super) fn effective_publish(st: &StageSpec, over: Option<&StageOverride>) -> Option<String> {
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
pub(super) fn other_publish_dirs(spec: &Spec, profile: &str) -> Vec<String> {
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
