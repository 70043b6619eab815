//! Feature matrices from Parquet (read with polars): a list column of equal-length float lists (one row
//! per sample), or, without a key, every column numeric (one column per dimension).

use std::path::Path;

use polars::prelude::*;

use super::{FeatureError, FeatureSet, shaped};

fn f32_values(s: &Series, path: &Path, what: &str) -> Result<Vec<f32>, FeatureError> {
    let cast = s
        .cast(&DataType::Float32)
        .map_err(|e| FeatureError::format(path, what, "numbers", format!("{} ({e})", s.dtype())))?;
    let ca = cast
        .f32()
        .map_err(|e| FeatureError::format(path, what, "numbers", e))?;
    (0..ca.len())
        .map(|i| {
            ca.get(i).ok_or_else(|| {
                FeatureError::format(path, what, "no missing values", format!("null at row {i}"))
            })
        })
        .collect()
}

pub fn read_parquet(path: &Path, key: Option<&str>) -> Result<FeatureSet, FeatureError> {
    let file = std::fs::File::open(path).map_err(|e| FeatureError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let df = ParquetReader::new(file)
        .finish()
        .map_err(|e| FeatureError::Read {
            path: path.to_path_buf(),
            message: format!("not a readable parquet file: {e}"),
        })?;
    match key {
        Some(key) => {
            let what = format!("column `{key}`");
            let col = df.column(key).map_err(|_| {
                let names: Vec<String> = df
                    .get_column_names()
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
                FeatureError::format(
                    path,
                    &what,
                    "a column of the file",
                    format!("no such column; columns: {}", names.join(", ")),
                )
            })?;
            let list = col.list().map_err(|_| {
                FeatureError::format(path, &what, "a list of numbers per row", col.dtype())
            })?;
            let mut data = Vec::new();
            let mut dim = None;
            for i in 0..list.len() {
                let row = list.get_as_series(i).ok_or_else(|| {
                    FeatureError::format(path, &what, "no missing rows", format!("null at row {i}"))
                })?;
                let v = f32_values(&row, path, &what)?;
                match dim {
                    None => dim = Some(v.len()),
                    Some(d) if d != v.len() => {
                        return Err(FeatureError::format(
                            path,
                            &what,
                            &format!("every row of length {d}"),
                            format!("length {} at row {i}", v.len()),
                        ));
                    }
                    _ => {}
                }
                data.extend(v);
            }
            let shape = [list.len(), dim.unwrap_or(0)];
            shaped(path, &what, data, &shape)
        }
        None => {
            let (n, d) = (df.height(), df.width());
            let mut data = vec![0f32; n * d];
            for (j, c) in df.columns().iter().enumerate() {
                let what = format!("column `{}`", c.name());
                let v = f32_values(c.as_materialized_series(), path, &what)?;
                for (i, x) in v.into_iter().enumerate() {
                    data[i * d + j] = x;
                }
            }
            shaped(path, "columns", data, &[n, d])
        }
    }
}
