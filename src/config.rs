//! Loading job configurations from TOML files, with errors that name the file, the key and what was
//! expected. Command-line flags override file values.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// Errors reading a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("{path}: `{key}` {message}")]
    Value {
        path: PathBuf,
        key: String,
        message: String,
    },
}

/// Reads a TOML file into `T` (whose serde attributes reject unknown keys), reporting the offending
/// key and position on error.
pub fn load_toml<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_toml(&text, path)
}

/// Parses TOML text as `T`; `path` is only used in messages.
pub fn parse_toml<T: DeserializeOwned>(text: &str, path: &Path) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let mut message = e.message().trim().to_string();
        if let Some(span) = e.span() {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            message = format!("line {line}: {message}");
        }
        ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        }
    })
}

/// The first key of `pairs` whose value is zero, as an error.
pub fn positive_counts(pairs: &[(&str, usize)]) -> std::result::Result<(), String> {
    match pairs.iter().find(|(_, v)| *v == 0) {
        Some((k, _)) => Err(format!("`{k}` must be at least 1")),
        None => Ok(()),
    }
}

/// The first key of `pairs` whose value is not a finite positive number, as an error.
pub fn positive_rates(pairs: &[(&str, f64)]) -> std::result::Result<(), String> {
    match pairs.iter().find(|(_, v)| !(v.is_finite() && *v > 0.0)) {
        Some((k, v)) => Err(format!("`{k}` must be a positive number, got {v}")),
        None => Ok(()),
    }
}

/// The first key of `pairs` whose value is not in [0, 1), as an error.
pub fn fractions(pairs: &[(&str, f64)]) -> std::result::Result<(), String> {
    match pairs.iter().find(|(_, v)| !(0.0..1.0).contains(v)) {
        Some((k, v)) => Err(format!("`{k}` must be in [0, 1), got {v}")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Demo {
        steps: usize,
        lr: f64,
    }

    #[test]
    fn unknown_keys_and_wrong_types_name_file_line_and_key() {
        let p = Path::new("sweeps/x.toml");
        let e = parse_toml::<Demo>("steps = 3\nlr = 0.1\nlrr = 2\n", p)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("sweeps/x.toml: line 3"), "{e}");
        assert!(
            e.contains("unknown field `lrr`") && e.contains("expected"),
            "{e}"
        );
        let e = parse_toml::<Demo>("steps = \"many\"\nlr = 0.1\n", p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 1") && e.contains("invalid type"), "{e}");
    }
}
