//! The library's top-level error: what a job can fail with.

use std::path::PathBuf;

/// Errors of flowprior's jobs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error(transparent)]
    Backend(#[from] crate::backend::BackendError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Features(#[from] crate::features::FeatureError),
    #[error("input {path}: {message}")]
    Input { path: PathBuf, message: String },
    #[error("cannot write {path}: {message}")]
    Write { path: PathBuf, message: String },
    #[error("training diverged at step {step}: {key} = {value}")]
    Diverged {
        step: usize,
        key: String,
        value: f64,
    },
}

impl Error {
    /// `map_err` adapter: any displayable failure to write `path`.
    pub fn write<E: std::fmt::Display>(path: &std::path::Path) -> impl Fn(E) -> Error + '_ {
        move |e| Error::Write {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    }

    /// Bad input in `path` (a file, or a stage's name for its configuration).
    pub fn input(path: &std::path::Path, message: String) -> Error {
        Error::Input {
            path: path.to_path_buf(),
            message,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
