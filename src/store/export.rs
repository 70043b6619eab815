//! `flowprior runs export`: tables of the store as CSV or Parquet files, through polars.

use std::path::Path;

use polars::prelude::*;

use super::{Cell, QueryResult, Result, Store, StoreError};

/// File format of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    Csv,
    Parquet,
}

/// What to export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportTable {
    /// One row per run, parameters and final metrics as columns (the `runs_wide` view).
    Runs,
    /// Every metric point: run_id, key, step, value, logged_at.
    Metrics,
    /// Every parameter, one row each.
    Params,
    /// Final value per run and metric.
    Summary,
    /// Files produced by runs.
    Artifacts,
}

impl ExportTable {
    fn sql(self) -> &'static str {
        match self {
            ExportTable::Runs => "SELECT * FROM runs_wide ORDER BY id",
            ExportTable::Metrics => {
                "SELECT run_id, key, step, value, logged_at FROM metrics ORDER BY run_id, key, step"
            }
            ExportTable::Params => {
                "SELECT run_id, key, kind, int_value, real_value, text_value FROM params ORDER BY run_id, key"
            }
            ExportTable::Summary => {
                "SELECT run_id, key, step, value, min_value, max_value, n FROM summary ORDER BY run_id, key"
            }
            ExportTable::Artifacts => {
                "SELECT run_id, kind, path, sha256, bytes, created_at FROM artifacts ORDER BY run_id, kind, path"
            }
        }
    }
}

/// Converts a query result to a DataFrame: a column whose values are all integers is Int64, all
/// numbers Float64, anything else String; NULL stays null.
pub fn to_dataframe(q: &QueryResult) -> PolarsResult<DataFrame> {
    let mut columns = Vec::with_capacity(q.columns.len());
    for (j, name) in q.columns.iter().enumerate() {
        let cells = q.rows.iter().map(|r| &r[j]);
        let all_int = cells
            .clone()
            .all(|c| matches!(c, Cell::Null | Cell::Int(_)));
        let all_num = cells
            .clone()
            .all(|c| matches!(c, Cell::Null | Cell::Int(_) | Cell::Real(_)));
        let col = if all_int {
            let v: Vec<Option<i64>> = cells
                .map(|c| if let Cell::Int(i) = c { Some(*i) } else { None })
                .collect();
            Column::new(name.as_str().into(), v)
        } else if all_num {
            let v: Vec<Option<f64>> = cells
                .map(|c| match c {
                    Cell::Int(i) => Some(*i as f64),
                    Cell::Real(r) => Some(*r),
                    _ => None,
                })
                .collect();
            Column::new(name.as_str().into(), v)
        } else {
            let v: Vec<Option<String>> = cells
                .map(|c| {
                    if let Cell::Null = c {
                        None
                    } else {
                        Some(c.to_text())
                    }
                })
                .collect();
            Column::new(name.as_str().into(), v)
        };
        columns.push(col);
    }
    DataFrame::new(q.rows.len(), columns)
}

/// Writes a DataFrame as CSV or Parquet.
pub fn write_dataframe(df: &mut DataFrame, path: &Path, format: ExportFormat) -> PolarsResult<()> {
    let file = std::fs::File::create(path)?;
    match format {
        ExportFormat::Csv => CsvWriter::new(file).include_header(true).finish(df),
        ExportFormat::Parquet => ParquetWriter::new(file).finish(df).map(|_| ()),
    }
}

impl Store {
    /// Exports one table of the store to `path`; returns the number of rows written.
    pub fn export(&self, table: ExportTable, format: ExportFormat, path: &Path) -> Result<usize> {
        self.refresh_runs_wide()?;
        let q = self.query(table.sql())?;
        let err = |e: PolarsError| StoreError::Export {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        let mut df = to_dataframe(&q).map_err(err)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Export {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        }
        write_dataframe(&mut df, path, format).map_err(err)?;
        Ok(q.rows.len())
    }
}
