//! `probe`: a diagnostic stage kind that trains nothing.
//!
//! It writes `value.txt` (its `value` param, then the `value.txt` of each input in input
//! order), sleeping `sleep_ms` per step for `steps` steps and recording the last finished
//! step in its checkpoint directory, so an interrupted probe resumes where it stopped. It
//! exists to check an executor (local or a cluster) and the cache rules cheaply: its
//! output depends only on `value` and its inputs, never on `note`.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::{Interrupted, StageContext};

pub const VERSION: u32 = 1;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Text written to `value.txt`. Default: empty.
    #[serde(default)]
    pub value: String,
    /// Ignored by the computation (changes the fingerprint, never the output). Default: empty.
    #[serde(default)]
    pub note: String,
    /// Number of steps. Default: 1.
    #[serde(default = "one")]
    pub steps: u64,
    /// Milliseconds slept per step. Default: 0.
    #[serde(default)]
    pub sleep_ms: u64,
    /// Fail (with an error) after this many steps. Default: never.
    #[serde(default)]
    pub fail_at_step: Option<u64>,
}

fn one() -> u64 {
    1
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
