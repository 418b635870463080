//! `probe`: a diagnostic stage kind that trains nothing.
//!
//! It writes `value.txt` (its `value` param, then the `value.txt` of each input in input
//! order), sleeping `sleep_ms` per step for `steps` steps and recording the last finished
//! step in its checkpoint directory, so an interrupted probe resumes where it stopped. It
//! exists to check an executor (local or a cluster) and the cache rules cheaply: its
//! output depends only on `value` and its inputs, never on `note`.
//!
//! Fields named `x_*` are free-form labels: they change the fingerprint, never the
//! output, so a pipeline of probes can take any matrix shape (`matrix: { x_method:
//! [...], seed: [...] }`) to exercise the engine at scale. Any other unknown field is an
//! error, as for every kind.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_json::Value;

use crate::context::{Interrupted, StageContext};
use crate::declared::Inputs;
use crate::stage_kind::StageKind;

#[derive(Debug, Deserialize)]
#[serde(try_from = "RawParams")]
pub struct Params {
    /// Text written to `value.txt`. Default: empty.
    pub value: String,
    /// Ignored by the computation (changes the fingerprint, never the output). Default: empty.
    pub note: String,
    /// Number of steps. Default: 1.
    pub steps: u64,
    /// Milliseconds slept per step. Default: 0.
    pub sleep_ms: u64,
    /// Fail (with an error) after this many steps. Default: never.
    pub fail_at_step: Option<u64>,
    /// Labels (`x_*` fields): recorded in the fingerprint only. Default: none.
    pub labels: BTreeMap<String, Value>,
}

/// The params as written, before the `x_*` labels are checked.
#[derive(Deserialize)]
struct RawParams {
    #[serde(default)]
    value: String,
    #[serde(default)]
    note: String,
    #[serde(default = "one")]
    steps: u64,
    #[serde(default)]
    sleep_ms: u64,
    #[serde(default)]
    fail_at_step: Option<u64>,
    #[serde(flatten)]
    rest: BTreeMap<String, Value>,
}

impl TryFrom<RawParams> for Params {
    type Error = String;
    fn try_from(r: RawParams) -> Result<Params, String> {
        if let Some(k) = r.rest.keys().find(|k| !k.starts_with("x_")) {
            return Err(format!(
                "unknown field `{k}`, expected one of `value`, `note`, `steps`, `sleep_ms`, `fail_at_step` or a label `x_*`"
            ));
        }
        Ok(Params {
            value: r.value,
            note: r.note,
            steps: r.steps,
            sleep_ms: r.sleep_ms,
            fail_at_step: r.fail_at_step,
            labels: r.rest,
        })
    }
}

fn one() -> u64 {
    1
}

impl StageKind for Params {
    const VERSION: u32 = 1;

    /// Refuses step counts and sleeps that cannot be meant ([`crate::bounds`]).
    fn check(&self) -> Result<(), String> {
        use crate::bounds::{at_most, MAX_PROBE_STEPS, MAX_WAIT_SECS};
        let steps = usize::try_from(self.steps).unwrap_or(usize::MAX);
        at_most("steps", steps, MAX_PROBE_STEPS, "steps")?;
        let sleep = usize::try_from(self.sleep_ms).unwrap_or(usize::MAX);
        at_most("sleep_ms", sleep, MAX_WAIT_SECS as usize * 1000, "ms")
    }

    fn check_inputs(&self, _: &Inputs) -> Result<(), String> {
        Ok(())
    }

    fn run(&self, ctx: &StageContext) -> Result<()> {
        run(self, ctx)
    }
}

pub fn run(p: &Params, ctx: &StageContext) -> Result<()> {
    let ckpt = ctx.checkpoint_dir.join("step");
    let mut start = 0u64;
    if let Ok(s) = std::fs::read_to_string(&ckpt) {
        start = s
            .trim()
            .parse()
            .with_context(|| format!("corrupt checkpoint {}", ckpt.display()))?;
        ctx.progress.message(&format!("resumed from step {start}"));
    }
    ctx.progress.phase("probe", "step", p.steps);
    for step in start..p.steps {
        if ctx.should_stop() {
            return Err(Interrupted.into());
        }
        if p.fail_at_step == Some(step) {
            bail!("probe asked to fail at step {step}");
        }
        std::thread::sleep(Duration::from_millis(p.sleep_ms));
        std::fs::write(&ckpt, format!("{}\n", step + 1))?;
        ctx.progress.position(step + 1);
    }
    let mut text = p.value.clone();
    for refs in ctx.inputs.values() {
        for r in refs {
            let f = r.dir.join("value.txt");
            if f.exists() {
                text.push('\n');
                text.push_str(
                    &std::fs::read_to_string(&f)
                        .with_context(|| format!("reading {}", f.display()))?,
                );
            }
        }
    }
    std::fs::write(ctx.out_dir.join("value.txt"), text)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn labels_are_accepted_and_other_fields_rejected() {
        let p: Params =
            crate::kind::parse(&json!({"value": "v", "x_method": "glc", "x_strength": 0.5}))
                .unwrap();
        assert_eq!(p.labels.len(), 2);
        assert_eq!(p.steps, 1);
        let e = crate::kind::parse::<Params>(&json!({"colour": "red"})).unwrap_err();
        assert!(e.contains("unknown field `colour`"), "{e}");
        assert!(crate::kind::parse::<Params>(&json!({"steps": "many"})).is_err());
    }

    #[test]
    fn absurd_steps_and_sleeps_name_their_field() {
        use crate::kind::Kind;
        Kind::Probe
            .validate(&json!({"steps": 40, "sleep_ms": 300}))
            .unwrap();
        for (bad, field) in [
            (json!({"steps": 10_000_000_000u64}), "steps"),
            (json!({"sleep_ms": 86_400_000}), "sleep_ms"),
        ] {
            let e = Kind::Probe.validate(&bad).unwrap_err();
            assert!(e.starts_with(&format!("field `{field}`: ")), "{bad}: {e}");
        }
    }
}
