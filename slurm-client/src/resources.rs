//! What a job asks Slurm for: CPUs, memory, GPUs, time, partition, extra `sbatch` options.
//!
//! Resources come in layers (defaults for every job, for a group of jobs, for one job);
//! [`SlurmResources::overlay`] combines them. They say where and how a job runs, never what
//! it computes: `repro` keeps them out of every fingerprint, so the same stage run with 4 or
//! 8 CPUs, on any partition, is the same cached result.

use crate::SlurmError;

/// Slurm resources of one job. Every field is optional: a missing field means "the cluster's
/// default" and adds no `sbatch` option.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlurmResources {
    /// CPUs for the stage process (`--cpus-per-task`). Default: the cluster's default, usually 1.
    pub cpus: Option<u32>,
    /// Memory for the job (`--mem`): an integer with an optional unit K, M, G or T (Slurm's
    /// default unit is M), e.g. `"16G"` or `"4000"`. `"0"` asks for all the node's memory.
    /// Default: the cluster's default.
    pub mem: Option<String>,
    /// Number of GPUs of any type (`--gpus`). For a GPU type use `gres` instead. Default: none.
    pub gpus: Option<u32>,
    /// Generic resources (`--gres`), e.g. `"gpu:a100:1"`. Default: none.
    pub gres: Option<String>,
    /// Wall-clock limit (`--time`) in one of Slurm's forms: `"M"`, `"M:S"`, `"H:M:S"`, `"D-H"`,
    /// `"D-H:M"`, `"D-H:M:S"`, or `"UNLIMITED"`. A stage over its limit ends as TIMEOUT (a failure).
    /// Default: the partition's default limit.
    pub time: Option<String>,
    /// Partition (`--partition`). Default: the cluster's default partition.
    pub partition: Option<String>,
    /// More `sbatch` options, passed as they are after the ones above (each element one
    /// argument, e.g. `"--account=ml"`, `"--constraint=a100"`, `"--exclusive"`). Options this
    /// module sets itself (job name, output files, working dir, ...) are rejected. Default: none.
    pub extra_args: Vec<String>,
}

/// Options the submission sets itself; `extra_args` may not override them.
const RESERVED_OPTIONS: &[&str] = &[
    "-J",
    "--job-name",
    "-o",
    "--output",
    "-e",
    "--error",
    "-D",
    "--chdir",
    "--wrap",
    "--parsable",
    "-a",
    "--array",
    "--requeue",
    "--no-requeue",
    "-W",
    "--wait",
    "-i",
    "--input",
];

impl SlurmResources {
    /// `self` (e.g. the profile's defaults) with every field `over` sets (e.g. a stage's own
    /// resources) replacing it; `extra_args` are concatenated, `self`'s first, so that for an
    /// option given twice `sbatch` takes the value from `over`.
    pub fn overlay(&self, over: &SlurmResources) -> SlurmResources {
        SlurmResources {
            cpus: over.cpus.or(self.cpus),
            mem: over.mem.clone().or_else(|| self.mem.clone()),
            gpus: over.gpus.or(self.gpus),
            gres: over.gres.clone().or_else(|| self.gres.clone()),
            time: over.time.clone().or_else(|| self.time.clone()),
            partition: over.partition.clone().or_else(|| self.partition.clone()),
            extra_args: self
                .extra_args
                .iter()
                .chain(&over.extra_args)
                .cloned()
                .collect(),
        }
    }

    /// Checks every field set; the error names the field and the accepted form.
    pub fn validate(&self) -> Result<(), SlurmError> {
        let bad = |msg: String| Err(SlurmError::Resources(msg));
        if self.cpus == Some(0) {
            return bad("cpus: must be at least 1 (omit it for the cluster's default)".into());
        }
        if self.gpus == Some(0) {
            return bad("gpus: must be at least 1 (omit it for no GPU)".into());
        }
        if let Some(mem) = &self.mem {
            if !valid_mem(mem) {
                return bad(format!(
                    "mem: {mem:?} is not an integer with an optional unit K, M, G or T (e.g. \"16G\")"
                ));
            }
        }
        if let Some(time) = &self.time {
            if !valid_time(time) {
                return bad(format!(
                    "time: {time:?} is not a Slurm time limit (M, M:S, H:M:S, D-H, D-H:M, D-H:M:S or UNLIMITED)"
                ));
            }
        }
        for (field, value) in [("gres", &self.gres), ("partition", &self.partition)] {
            if let Some(v) = value {
                if v.is_empty() || v.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return bad(format!("{field}: {v:?} is empty or contains whitespace"));
                }
            }
        }
        for arg in &self.extra_args {
            if !arg.starts_with('-') {
                return bad(format!(
                    "extra_args: {arg:?} is not an option; write each option with its value as one \
                     element, e.g. \"--account=ml\""
                ));
            }
            if arg.chars().any(|c| c == '\n' || c == '\0') {
                return bad(format!("extra_args: {arg:?} contains a newline or NUL"));
            }
            let name = option_name(arg);
            if RESERVED_OPTIONS.contains(&name) {
                return bad(format!(
                    "extra_args: {arg:?} sets {name}, which repro sets itself for every stage job"
                ));
            }
        }
        Ok(())
    }

    /// The `sbatch` arguments for these resources, validated, in a fixed order.
    pub fn sbatch_args(&self) -> Result<Vec<String>, SlurmError> {
        self.validate()?;
        let mut args = Vec::new();
        if let Some(cpus) = self.cpus {
            args.push(format!("--cpus-per-task={cpus}"));
        }
        if let Some(mem) = &self.mem {
            args.push(format!("--mem={mem}"));
        }
        if let Some(gpus) = self.gpus {
            args.push(format!("--gpus={gpus}"));
        }
        if let Some(gres) = &self.gres {
            args.push(format!("--gres={gres}"));
        }
        if let Some(time) = &self.time {
            args.push(format!("--time={time}"));
        }
        if let Some(partition) = &self.partition {
            args.push(format!("--partition={partition}"));
        }
        args.extend(self.extra_args.iter().cloned());
        Ok(args)
    }
}

/// The option name of one argument: `--mem=4G` -> `--mem`, `-Jname` -> `-J`.
fn option_name(arg: &str) -> &str {
    if arg.starts_with("--") {
        arg.split('=').next().unwrap_or(arg)
    } else {
        arg.get(..2).unwrap_or(arg)
    }
}

fn valid_mem(mem: &str) -> bool {
    let digits = mem.trim_end_matches(['K', 'M', 'G', 'T', 'k', 'm', 'g', 't']);
    let unit_len = mem.len() - digits.len();
    !digits.is_empty() && unit_len <= 1 && digits.bytes().all(|b| b.is_ascii_digit())
}

fn valid_time(time: &str) -> bool {
    let t = time.trim();
    if t.eq_ignore_ascii_case("unlimited") || t.eq_ignore_ascii_case("infinite") {
        return true;
    }
    let num = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (days, rest) = match t.split_once('-') {
        Some((d, rest)) => (Some(d), rest),
        None => (None, t),
    };
    if let Some(d) = days {
        if !num(d) {
            return false;
        }
    }
    let parts: Vec<&str> = rest.split(':').collect();
    if !parts.iter().all(|p| num(p)) {
        return false;
    }
    // Without days: M, M:S, H:M:S. With days: D-H, D-H:M, D-H:M:S.
    (1..=3).contains(&parts.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_resources_add_no_option() {
        assert_eq!(
            SlurmResources::default().sbatch_args().unwrap(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn all_fields_become_options_in_order() {
        let r = SlurmResources {
            cpus: Some(4),
            mem: Some("16G".into()),
            gpus: Some(1),
            gres: Some("gpu:a100:1".into()),
            time: Some("1-02:00:00".into()),
            partition: Some("gpu".into()),
            extra_args: vec!["--account=ml".into(), "--exclusive".into()],
        };
        assert_eq!(
            r.sbatch_args().unwrap(),
            [
                "--cpus-per-task=4",
                "--mem=16G",
                "--gpus=1",
                "--gres=gpu:a100:1",
                "--time=1-02:00:00",
                "--partition=gpu",
                "--account=ml",
                "--exclusive"
            ]
        );
    }

    #[test]
    fn overlay_prefers_the_stage_and_concatenates_extra_args() {
        let profile = SlurmResources {
            cpus: Some(2),
            mem: Some("4G".into()),
            partition: Some("cpu".into()),
            extra_args: vec!["--account=ml".into()],
            ..Default::default()
        };
        let stage = SlurmResources {
            cpus: Some(8),
            gpus: Some(1),
            extra_args: vec!["--qos=high".into()],
            ..Default::default()
        };
        let r = profile.overlay(&stage);
        assert_eq!(r.cpus, Some(8));
        assert_eq!(r.mem.as_deref(), Some("4G"));
        assert_eq!(r.gpus, Some(1));
        assert_eq!(r.partition.as_deref(), Some("cpu"));
        assert_eq!(r.extra_args, ["--account=ml", "--qos=high"]);
    }

    #[test]
    fn memory_forms() {
        for ok in ["0", "4000", "16G", "512M", "2T", "100k"] {
            assert!(valid_mem(ok), "{ok}");
        }
        for bad in ["", "G", "16GB", "1.5G", "-1", "4 G"] {
            assert!(!valid_mem(bad), "{bad}");
        }
    }

    #[test]
    fn time_forms() {
        for ok in [
            "30",
            "30:00",
            "2:00:00",
            "1-0",
            "1-12:30",
            "7-00:00:00",
            "UNLIMITED",
        ] {
            assert!(valid_time(ok), "{ok}");
        }
        for bad in ["", "1h", "1:2:3:4", "-1", "1-", "a-1", "1-2:3:4:5", "1.5"] {
            assert!(!valid_time(bad), "{bad}");
        }
    }

    #[test]
    fn reserved_and_malformed_extra_args_are_rejected() {
        for bad in [
            "--output=x",
            "-o",
            "-Jname",
            "--job-name=x",
            "--chdir=/",
            "account=ml",
        ] {
            let r = SlurmResources {
                extra_args: vec![bad.into()],
                ..Default::default()
            };
            let err = r.validate().unwrap_err().to_string();
            assert!(err.contains("extra_args"), "{bad}: {err}");
        }
        let r = SlurmResources {
            cpus: Some(0),
            ..Default::default()
        };
        assert!(r.validate().unwrap_err().to_string().contains("cpus"));
        let r = SlurmResources {
            partition: Some("a b".into()),
            ..Default::default()
        };
        assert!(r.validate().unwrap_err().to_string().contains("partition"));
    }
}
