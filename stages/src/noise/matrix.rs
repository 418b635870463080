//! The K×K transition matrix every noise model and estimator speaks in (row = true
//! class, column = observed class), and its JSON file form ([`MatrixFile`]) for the
//! matrices stages publish (`c_hat.json`, `t_final.json`, `class_similarity.json`).

use std::path::Path;

use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};

/// A row-major K×K matrix.
#[derive(Clone, Debug, PartialEq)]
pub struct Matrix {
    pub k: usize,
    pub data: Vec<f64>,
}

impl Matrix {
    pub fn zeros(k: usize) -> Matrix {
        Matrix {
            k,
            data: vec![0.0; k * k],
        }
    }
    pub fn identity(k: usize) -> Matrix {
        let mut m = Matrix::zeros(k);
        for i in 0..k {
            m.data[i * k + i] = 1.0;
        }
        m
    }
    pub fn at(&self, i: usize, j: usize) -> f64 {
        self.data[i * self.k + j]
    }
    pub fn set(&mut self, i: usize, j: usize, v: f64) {
        self.data[i * self.k + j] = v;
    }
    pub fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.k..(i + 1) * self.k]
    }
    /// Frobenius norm of `self - other`.
    pub fn frobenius_distance(&self, other: &Matrix) -> f64 {
        self.data
            .iter()
            .zip(&other.data)
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f64>()
            .sqrt()
    }
    /// Mean over rows of the L1 distance between corresponding rows.
    pub fn mean_row_l1_distance(&self, other: &Matrix) -> f64 {
        (0..self.k)
            .map(|i| {
                self.row(i)
                    .iter()
                    .zip(other.row(i))
                    .map(|(a, b)| (a - b).abs())
                    .sum::<f64>()
            })
            .sum::<f64>()
            / self.k as f64
    }
}

/// A K×K matrix as JSON (`c_hat.json`, `t_final.json`): `{"k": K, "rows": [[..], ..]}`,
/// row = true class, column = observed class.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MatrixFile {
    pub k: usize,
    pub rows: Vec<Vec<f64>>,
}

impl MatrixFile {
    pub fn from_matrix(m: &Matrix) -> MatrixFile {
        MatrixFile {
            k: m.k,
            rows: (0..m.k).map(|i| m.row(i).to_vec()).collect(),
        }
    }

    pub fn to_matrix(&self) -> Result<Matrix> {
        ensure!(
            self.rows.len() == self.k,
            "matrix file: {} rows for k = {}",
            self.rows.len(),
            self.k
        );
        ensure!(
            self.rows.iter().all(|r| r.len() == self.k),
            "matrix file: a row is not {} long",
            self.k
        );
        Ok(Matrix {
            k: self.k,
            data: self.rows.concat(),
        })
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        std::fs::write(path, serde_json::to_string_pretty(self)? + "\n")
            .with_context(|| format!("writing {}", path.display()))
    }

    pub fn load(path: &Path) -> Result<MatrixFile> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
    }
}
