//! `train_mlc`: placeholder until the kind is implemented.

use anyhow::{bail, Result};
use serde::Deserialize;

use crate::StageContext;

pub const VERSION: u32 = 1;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {}

pub fn run(_p: &Params, _ctx: &StageContext) -> Result<()> {
    bail!("kind train_mlc is not implemented yet")
}
