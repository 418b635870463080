//! `MatrixFile`: the JSON form of a K×K matrix that training kinds write (`c_hat.json`,
//! `t_final.json`, `class_similarity.json`): `{"k": K, "data": [K*K numbers, row-major]}`.

use std::path::Path;

use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};

use crate::noise::Matrix;

/// Estimated corruption matrix C (row = true class, column = observed class).
pub const C_HAT_FILE: &str = "c_hat.json";
/// Learned transition matrix T at the end of training, in the orientation of `true_c`.
pub const T_FINAL_FILE: &str = "t_final.json";
/// Class similarity of learned soft labels: row i = mean learned label of class i.
pub const CLASS_SIMILARITY_FILE: &str = "class_similarity.json";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatrixFile {
    pub k: usize,
    pub data: Vec<f64>,
}

impl MatrixFile {
    pub fn from_matrix(m: &Matrix) -> MatrixFile {
        MatrixFile {
            k: m.k,
            data: m.data.clone(),
        }
    }

    pub fn to_matrix(&self) -> Matrix {
        Matrix {
            k: self.k,
            data: self.data.clone(),
        }
    }

    /// Writes `dir/file` (pretty JSON, same bytes for the same matrix).
    pub fn save(m: &Matrix, dir: &Path, file: &str) -> Result<()> {
        let path = dir.join(file);
        let text = serde_json::to_string(&MatrixFile::from_matrix(m))? + "\n";
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    }

    /// Reads `dir/file`, checking that `data` has K*K finite entries.
    pub fn load(dir: &Path, file: &str) -> Result<Matrix> {
        let path = dir.join(file);
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let f: MatrixFile = serde_json::from_slice(&bytes)
            .with_context(|| format!("parsing {}", path.display()))?;
        ensure!(
            f.data.len() == f.k * f.k,
            "{}: field `data` has {} entries, expected k*k = {}",
            path.display(),
            f.data.len(),
            f.k * f.k
        );
        ensure!(
            f.data.iter().all(|x| x.is_finite()),
            "{}: field `data` holds a non-finite value",
            path.display()
        );
        Ok(f.to_matrix())
    }

    /// Reads `dir/file` if it exists.
    pub fn load_opt(dir: &Path, file: &str) -> Result<Option<Matrix>> {
        if dir.join(file).exists() {
            MatrixFile::load(dir, file).map(Some)
        } else {
            Ok(None)
        }
    }
}
