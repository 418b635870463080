//! How a pipeline's stages are run, as opposed to what they compute: the executor
//! (`executor:`), the Slurm resources per stage (`resources:`) and a stage's time limit
//! (`timeout:`, [`parse_timeout`]). None of it enters a fingerprint (see `fingerprint.rs`):
//! the same stage run locally or on a cluster, with 2 or 8 CPUs, within a time limit or
//! without, is the same cached result. The format is documented in [`crate::spec`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use repro_stages::Kind;
use slurm_client::SlurmResources;

use crate::error::SpecError;
use crate::spec::{locate, OrderedMap, ProfileSpec, ResourcesSpec, Spec};

/// Where the stages of a run execute.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExecutorKind {
    /// Child processes of `repro` on this machine.
    #[default]
    Local,
    /// One Slurm batch job per stage.
    Slurm,
}

impl FromStr for ExecutorKind {
    type Err = String;
    fn from_str(s: &str) -> Result<ExecutorKind, String> {
        match s {
            "local" => Ok(ExecutorKind::Local),
            "slurm" => Ok(ExecutorKind::Slurm),
            other => Err(format!(
                "unknown executor `{other}` (executors: local, slurm)"
            )),
        }
    }
}

impl fmt::Display for ExecutorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExecutorKind::Local => "local",
            ExecutorKind::Slurm => "slurm",
        })
    }
}

/// The largest time limit: 365 days.
const MAX_TIMEOUT: u64 = 365 * 24 * 3600;

/// A stage's time limit in seconds, from `timeout:` in pipeline.yaml: a whole number of
/// seconds (`90`, or `"90"`), or numbers with units `d`, `h`, `m`, `s`, largest first (`45s`, `10m`,
/// `1h30m`, `2d`). Between 1 second and 365 days.
pub fn parse_timeout(v: &serde_json::Value) -> Result<u64, String> {
    let shown = v.as_str().map_or_else(|| v.to_string(), str::to_string);
    let bad = || {
        format!(
            "`{shown}` is not a time limit: write seconds (`90`) or numbers with units d, h, m, \
             s (`45s`, `10m`, `1h30m`)"
        )
    };
    let secs = match v {
        serde_json::Value::Number(n) => n.as_u64().ok_or_else(bad)?,
        serde_json::Value::String(text) => {
            let units = [('d', 86_400u64), ('h', 3600), ('m', 60), ('s', 1)];
            let (mut total, mut digits, mut next_unit) = (0u64, String::new(), 0usize);
            for c in text.trim().chars() {
                if c.is_ascii_digit() {
                    digits.push(c);
                    continue;
                }
                let at = units[next_unit..]
                    .iter()
                    .position(|(u, _)| *u == c)
                    .ok_or_else(bad)?;
                let n: u64 = digits.parse().map_err(|_| bad())?;
                let unit = units[next_unit + at].1;
                total = n
                    .checked_mul(unit)
                    .and_then(|x| x.checked_add(total))
                    .ok_or_else(bad)?;
                digits.clear();
                next_unit += at + 1;
            }
            match (digits.is_empty(), next_unit) {
                // Digits alone are seconds.
                (false, 0) => digits.parse().map_err(|_| bad())?,
                (true, n) if n > 0 => total,
                _ => return Err(bad()),
            }
        }
        _ => return Err(bad()),
    };
    if secs == 0 || secs > MAX_TIMEOUT {
        return Err(format!(
            "{} is not a time limit: it must be between 1 second and 365 days",
            format_timeout(secs)
        ));
    }
    Ok(secs)
}

/// Seconds as [`parse_timeout`] reads them: `1h30m`, `45s`, `2d`.
pub fn format_timeout(secs: u64) -> String {
    if secs == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    let mut rest = secs;
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if rest >= size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    out
}

/// The key of the resources every stage gets.
pub const DEFAULT_RESOURCES: &str = "default";

/// Slurm resources per `default`, kind name or stage name, the profile's entries already laid
/// over the top-level ones.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResourceTable {
    entries: BTreeMap<String, SlurmResources>,
}

impl ResourceTable {
    /// The executor the file asks for in `profile` (the profile's, else the top-level one).
    pub fn executor(
        spec: &Spec,
        prof: &ProfileSpec,
        profile: &str,
        text: &str,
        file: &Path,
    ) -> Result<Option<ExecutorKind>, SpecError> {
        let (value, path): (Option<&String>, Vec<&str>) = match &prof.executor {
            Some(e) => (Some(e), vec!["profiles", profile, "executor"]),
            None => (spec.executor.as_ref(), vec!["executor"]),
        };
        // Check the other profiles too: a typo must not wait until that profile is used.
        for (name, p) in spec.profiles.iter() {
            if let Some(e) = &p.executor {
                e.parse::<ExecutorKind>().map_err(|msg| {
                    SpecError::new(file, format!("profile `{name}`: {msg}"))
                        .line(locate(text, &["profiles", name, "executor"]))
                        .field("executor")
                })?;
            }
        }
        value
            .map(|v| {
                v.parse::<ExecutorKind>().map_err(|msg| {
                    SpecError::new(file, msg)
                        .line(locate(text, &path))
                        .field("executor")
                })
            })
            .transpose()
    }

    /// Builds the table for `profile` and checks every entry of the file (keys must be
    /// `default`, a kind or a stage; values must be valid Slurm resources).
    pub fn build(
        spec: &Spec,
        prof: &ProfileSpec,
        profile: &str,
        text: &str,
        file: &Path,
    ) -> Result<ResourceTable, SpecError> {
        let check = |table: &OrderedMap<ResourcesSpec>, at: &[&str]| -> Result<(), SpecError> {
            for (key, r) in table.iter() {
                let mut path = at.to_vec();
                path.push(key);
                let known = key == DEFAULT_RESOURCES
                    || Kind::from_name(key).is_some()
                    || spec.stages.get(key).is_some();
                if !known {
                    return Err(SpecError::new(
                        file,
                        format!(
                            "resources for `{key}`, which is neither `default`, a kind nor a stage"
                        ),
                    )
                    .line(locate(text, &path))
                    .field(format!("resources.{key}")));
                }
                slurm_resources(r).validate().map_err(|e| {
                    SpecError::new(file, e.to_string())
                        .line(locate(text, &path))
                        .field(format!("resources.{key}"))
                })?;
            }
            Ok(())
        };
        check(&spec.resources, &["resources"])?;
        for (name, p) in spec.profiles.iter() {
            check(&p.resources, &["profiles", name, "resources"])?;
        }
        let mut entries: BTreeMap<String, SlurmResources> = spec
            .resources
            .iter()
            .map(|(k, r)| (k.clone(), slurm_resources(r)))
            .collect();
        for (k, r) in prof.resources.iter() {
            let merged = entries
                .get(k)
                .cloned()
                .unwrap_or_default()
                .overlay(&slurm_resources(r));
            entries.insert(k.clone(), merged);
        }
        let table = ResourceTable { entries };
        // Combinations can clash only through extra_args; check what each stage will get.
        for (name, st) in spec.stages.iter() {
            table.for_stage(name, &st.kind).validate().map_err(|e| {
                SpecError::new(file, format!("{e} (profile `{profile}`)"))
                    .stage(name.clone())
                    .field("resources")
            })?;
        }
        Ok(table)
    }

    /// The resources of a stage: `default`, then its kind's entry, then its own.
    pub fn for_stage(&self, stage: &str, kind: &str) -> SlurmResources {
        let mut r = SlurmResources::default();
        for key in [DEFAULT_RESOURCES, kind, stage] {
            if let Some(e) = self.entries.get(key) {
                r = r.overlay(e);
            }
        }
        r
    }
}

/// An entry of `resources:` as the Slurm client takes it: the boundary between the file's
/// format ([`ResourcesSpec`]) and the client's ([`SlurmResources`]).
fn slurm_resources(r: &ResourcesSpec) -> SlurmResources {
    SlurmResources {
        cpus: r.cpus,
        mem: r.mem.clone(),
        gpus: r.gpus,
        gres: r.gres.clone(),
        time: r.time.clone(),
        partition: r.partition.clone(),
        extra_args: r.extra_args.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::Pipeline;

    fn load(text: &str, profile: &str) -> Result<Pipeline, SpecError> {
        let f = Path::new("pipeline.yaml");
        Pipeline::build(&Spec::parse(text, f)?, text, f, profile)
    }

    const TEXT: &str = "\
stages:
  a:
    kind: probe
  b:
    kind: probe
    inputs: { up: a }
executor: local
resources:
  default: { cpus: 1, mem: 1G }
  probe: { cpus: 2, time: 30 }
  b: { mem: 4G, extra_args: [\"--qos=x\"] }
profiles:
  cluster:
    executor: slurm
    resources:
      probe: { cpus: 3 }
      b: { extra_args: [\"--account=y\"] }
";

    #[test]
    fn default_then_kind_then_stage_and_profile_over_top_level() {
        let p = load(TEXT, "default").unwrap();
        assert_eq!(p.executor, Some(ExecutorKind::Local));
        let a = p.resources.for_stage("a", "probe");
        assert_eq!(a.cpus, Some(2));
        assert_eq!(a.mem.as_deref(), Some("1G"));
        assert_eq!(a.time.as_deref(), Some("30"));
        let b = p.resources.for_stage("b", "probe");
        assert_eq!(b.mem.as_deref(), Some("4G"));
        assert_eq!(b.extra_args, ["--qos=x"]);

        let p = load(TEXT, "cluster").unwrap();
        assert_eq!(p.executor, Some(ExecutorKind::Slurm));
        let b = p.resources.for_stage("b", "probe");
        assert_eq!(b.cpus, Some(3));
        assert_eq!(b.time.as_deref(), Some("30"));
        assert_eq!(b.extra_args, ["--qos=x", "--account=y"]);
    }

    #[test]
    fn resources_and_executor_are_not_in_the_fingerprint() {
        use crate::plan;
        let bare = "stages:\n  a:\n    kind: probe\n  b:\n    kind: probe\n    inputs: { up: a }\n";
        let with = load(TEXT, "cluster").unwrap();
        let without = load(bare, "default").unwrap();
        let ids = plan::identities();
        let digests = vec![Some("d".to_string()); 2];
        for mi in 0..2 {
            let k1 = plan::member_key(&with, mi, &digests, &ids).unwrap();
            let mut k2 = plan::member_key(&without, mi, &digests, &ids).unwrap();
            // Profiles are part of keys by design; compare everything else.
            k2.profile = k1.profile.clone();
            assert_eq!(k1, k2);
        }
    }

    #[test]
    fn timeouts_read_seconds_or_units_and_print_back_the_same() {
        use serde_json::json;
        for (v, secs) in [
            (json!(90), 90),
            (json!("45s"), 45),
            (json!("10m"), 600),
            (json!("1h30m"), 5400),
            (json!("2d"), 172_800),
            (json!("1d2h3m4s"), 93_784),
            (json!(" 5m "), 300),
            (json!("120"), 120),
        ] {
            assert_eq!(parse_timeout(&v), Ok(secs), "{v}");
            assert_eq!(parse_timeout(&json!(format_timeout(secs))), Ok(secs));
        }
        for v in [
            json!(0),
            json!("0s"),
            json!(-5),
            json!(1.5),
            json!(""),
            json!("m"),
            json!("5x"),
            json!("30s1m"),
            json!("1m1m"),
            json!("400d"),
            json!(true),
        ] {
            assert!(parse_timeout(&v).is_err(), "{v}");
        }
        assert_eq!(format_timeout(5400), "1h30m");
    }

    #[test]
    fn bad_keys_values_and_executors_are_errors_with_their_line() {
        let bad_key = "stages:\n  a:\n    kind: probe\nresources:\n  nope: { cpus: 1 }\n";
        let e = load(bad_key, "default").unwrap_err();
        assert_eq!(e.line, Some(5), "{e}");
        assert!(e.message.contains("`nope`"), "{e}");

        let bad_value = "stages:\n  a:\n    kind: probe\nresources:\n  a:\n    mem: lots\n";
        let e = load(bad_value, "default").unwrap_err();
        assert!(e.message.contains("mem"), "{e}");
        assert_eq!(e.line, Some(5), "{e}");

        let unknown_field = "stages:\n  a:\n    kind: probe\nresources:\n  a: { cpu: 2 }\n";
        let e = load(unknown_field, "default").unwrap_err();
        assert!(e.message.contains("unknown field `cpu`"), "{e}");

        let bad_exec = "stages:\n  a:\n    kind: probe\nprofiles:\n  p:\n    executor: pbs\n";
        let e = load(bad_exec, "default").unwrap_err();
        assert!(e.message.contains("unknown executor `pbs`"), "{e}");
        assert_eq!(e.line, Some(6), "{e}");
    }
}
