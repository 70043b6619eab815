//! Target feature sets: the matrices a flow prior is trained on. `[N, D]` (one vector per sample, e.g.
//! a token-embedding table) or `[N, L, D]` (L tokens per sample, e.g. spatial features), read from
//! `.npy`, `.safetensors` or `.parquet` files. Every reader names the file and the key in its errors.

mod npy;
mod parquet;
mod safetensors_file;

use std::path::{Path, PathBuf};

pub use npy::{read_npy, write_npy};

/// A feature matrix in f32, row-major: `n` samples of `tokens` x `dim` values.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureSet {
    pub data: Vec<f32>,
    pub n: usize,
    /// Tokens per sample (1 for an [N, D] matrix).
    pub tokens: usize,
    pub dim: usize,
}

impl FeatureSet {
    /// From a shape of 2 ([N, D]) or 3 ([N, L, D]) dimensions.
    pub fn from_shape(data: Vec<f32>, shape: &[usize]) -> Option<FeatureSet> {
        let (n, tokens, dim) = match *shape {
            [n, d] => (n, 1, d),
            [n, l, d] => (n, l, d),
            _ => return None,
        };
        (n * tokens * dim == data.len() && n > 0 && dim > 0).then_some(FeatureSet {
            data,
            n,
            tokens,
            dim,
        })
    }

    /// Every token as its own row: an [N * L, D] matrix (what a per-token prior is trained on).
    pub fn rows(&self) -> &[f32] {
        &self.data
    }

    pub fn n_rows(&self) -> usize {
        self.n * self.tokens
    }

    /// Multiplies every value by `1 / std` of all values (the public code's scaling of token tables).
    pub fn scale_to_unit_std(&mut self) -> f64 {
        let n = self.data.len() as f64;
        let mean = self.data.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let var = self
            .data
            .iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / n;
        let std = var.sqrt();
        if std > 0.0 {
            let k = (1.0 / std) as f32;
            self.data.iter_mut().for_each(|x| *x *= k);
        }
        std
    }
}

/// Errors reading feature files.
#[derive(Debug, thiserror::Error)]
pub enum FeatureError {
    #[error("cannot read feature file {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("{path}: {what}: expected {expected}, found {found}")]
    Format {
        path: PathBuf,
        what: String,
        expected: String,
        found: String,
    },
}

impl FeatureError {
    fn format(
        path: &Path,
        what: &str,
        expected: &str,
        found: impl std::fmt::Display,
    ) -> FeatureError {
        FeatureError::Format {
            path: path.to_path_buf(),
            what: what.to_string(),
            expected: expected.to_string(),
            found: found.to_string(),
        }
    }
}

/// The shape message shared by the readers.
const SHAPE: &str = "a matrix [N, D] or [N, L, D] with N, D >= 1";

fn shaped(
    path: &Path,
    what: &str,
    data: Vec<f32>,
    shape: &[usize],
) -> Result<FeatureSet, FeatureError> {
    FeatureSet::from_shape(data, shape)
        .ok_or_else(|| FeatureError::format(path, what, SHAPE, format!("shape {shape:?}")))
}

/// Reads a feature matrix from `path` by its extension: `.npy`; `.safetensors` (the tensor named `key`);
/// `.parquet` (the list column named `key`, or every numeric column when `key` is None).
pub fn read_features(path: &Path, key: Option<&str>) -> Result<FeatureSet, FeatureError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    match ext.as_str() {
        "npy" => read_npy(path),
        "safetensors" => {
            let key = key.ok_or_else(|| {
                FeatureError::format(
                    path,
                    "key",
                    "the name of the tensor to read",
                    "no key given",
                )
            })?;
            safetensors_file::read_tensor(path, key)
        }
        "parquet" => parquet::read_parquet(path, key),
        other => Err(FeatureError::format(
            path,
            "file type",
            ".npy, .safetensors or .parquet",
            format!("{other:?}"),
        )),
    }
}

#[cfg(test)]
mod tests;
