//! Table writers: CSV, LaTeX (booktabs) and Markdown, each starting with the provenance
//! comment. `write_all` writes `tables/<name>.{csv,tex,md}` under a directory.

use std::path::Path;

use anyhow::{Context, Result};

use crate::report::table::Table;

pub mod csv_out;
pub mod latex;
pub mod markdown;

/// Writes `dir/<name>.csv`, `.tex` and `.md`.
pub fn write_all(table: &Table, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (ext, text) in [
        ("csv", csv_out::render(table)?),
        ("tex", latex::render(table)),
        ("md", markdown::render(table)),
    ] {
        let path = dir.join(format!("{}.{ext}", table.name));
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
