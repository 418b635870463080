//! The K×K matrices training kinds write beside their metrics (`c_hat.json`,
//! `t_final.json`, `class_similarity.json`), in the one JSON form of
//! [`crate::noise::MatrixFile`]: `{"k": K, "rows": [[..], ..]}`, row = true class.

use std::path::Path;

use anyhow::{ensure, Context, Result};

use crate::noise::Matrix;

pub use crate::outputs::{CLASS_SIMILARITY_FILE, C_HAT_FILE, T_FINAL_FILE};

/// Writes `dir/file`.
pub fn save(m: &Matrix, dir: &Path, file: &str) -> Result<()> {
    crate::noise::MatrixFile::from_matrix(m).save(&dir.join(file))
}

/// Reads `dir/file`, checking that it is K×K with finite entries.
pub fn load(dir: &Path, file: &str) -> Result<Matrix> {
    let path = dir.join(file);
    let m = crate::noise::MatrixFile::load(&path)?
        .to_matrix()
        .with_context(|| format!("reading {}", path.display()))?;
    ensure!(
        m.data.iter().all(|x| x.is_finite()),
        "{}: a matrix entry is not finite",
        path.display()
    );
    Ok(m)
}

/// Reads `dir/file` if it exists.
pub fn load_opt(dir: &Path, file: &str) -> Result<Option<Matrix>> {
    if dir.join(file).exists() {
        load(dir, file).map(Some)
    } else {
        Ok(None)
    }
}
