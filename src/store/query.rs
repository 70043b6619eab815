//! Ad-hoc SQL over the store (`flowprior sql`), with table, CSV and JSON output.

use sqlx::{Column, Row, TypeInfo, ValueRef};

use super::{Result, Store, StoreError};

/// One value of a query result.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Cell {
    /// Text for tables and CSV; NULL is empty.
    pub fn to_text(&self) -> String {
        match self {
            Cell::Null => String::new(),
            Cell::Int(v) => v.to_string(),
            Cell::Real(v) => format_real(*v),
            Cell::Text(s) => s.clone(),
            Cell::Blob(b) => format!("x'{}'", hex::encode(b)),
        }
    }

    fn to_json(&self) -> serde_json::Value {
        match self {
            Cell::Null => serde_json::Value::Null,
            Cell::Int(v) => serde_json::Value::from(*v),
            Cell::Real(v) => serde_json::Number::from_f64(*v)
                .map(serde_json::Value::Number)
                .unwrap_or_else(|| serde_json::Value::String(format_real(*v))),
            Cell::Text(s) => serde_json::Value::String(s.clone()),
            Cell::Blob(b) => serde_json::Value::String(hex::encode(b)),
        }
    }
}

/// Shortest text that reads back to the same f64.
pub fn format_real(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "inf".into() } else { "-inf".into() }
    } else {
        format!("{v}")
    }
}

/// Column names and rows of a query.
#[derive(Debug, Clone, Default)]
pub struct QueryResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

/// How `flowprior sql` prints a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Table,
    Csv,
    Json,
}

impl QueryResult {
    pub fn render(&self, format: OutputFormat) -> String {
        let mut out = Vec::new();
        let mut w = RowWriter::new(&mut out, format, usize::MAX);
        let written = w
            .columns(&self.columns)
            .and_then(|_| self.rows.iter().try_for_each(|r| w.row(r)))
            .and_then(|_| w.finish());
        debug_assert!(written.is_ok(), "writing to a Vec cannot fail");
        String::from_utf8_lossy(&out).into_owned()
    }

    pub fn to_table(&self) -> String {
        self.render(OutputFormat::Table)
    }

    pub fn to_csv(&self) -> String {
        self.render(OutputFormat::Csv)
    }

    pub fn to_json(&self) -> String {
        self.render(OutputFormat::Json)
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Writes a result row by row: CSV and JSON as the rows come (constant memory, any row count); the
/// table keeps at most `table_limit` rows, since it must measure every row before printing, and says
/// how many it left out.
pub struct RowWriter<W: std::io::Write> {
    out: W,
    format: OutputFormat,
    columns: Vec<String>,
    table_rows: Vec<Vec<String>>,
    table_limit: usize,
    rows: u64,
}

impl<W: std::io::Write> RowWriter<W> {
    pub fn new(out: W, format: OutputFormat, table_limit: usize) -> Self {
        RowWriter {
            out,
            format,
            columns: Vec::new(),
            table_rows: Vec::new(),
            table_limit,
            rows: 0,
        }
    }

    /// The column names; called once, before any row.
    pub fn columns(&mut self, columns: &[String]) -> std::io::Result<()> {
        self.columns = columns.to_vec();
        match self.format {
            OutputFormat::Csv => {
                let head: Vec<String> = columns.iter().map(|c| csv_field(c)).collect();
                writeln!(self.out, "{}", head.join(","))
            }
            OutputFormat::Json => write!(self.out, "["),
            OutputFormat::Table => Ok(()),
        }
    }

    pub fn row(&mut self, row: &[Cell]) -> std::io::Result<()> {
        self.rows += 1;
        match self.format {
            OutputFormat::Csv => {
                let fields: Vec<String> = row.iter().map(|c| csv_field(&c.to_text())).collect();
                writeln!(self.out, "{}", fields.join(","))
            }
            OutputFormat::Json => {
                let mut obj = serde_json::Map::new();
                for (c, v) in self.columns.iter().zip(row) {
                    obj.insert(c.clone(), v.to_json());
                }
                let sep = if self.rows == 1 { "" } else { "," };
                let text = serde_json::to_string(&serde_json::Value::Object(obj))
                    .map_err(std::io::Error::other)?;
                write!(self.out, "{sep}\n  {text}")
            }
            OutputFormat::Table => {
                if self.table_rows.len() < self.table_limit {
                    self.table_rows
                        .push(row.iter().map(Cell::to_text).collect());
                }
                Ok(())
            }
        }
    }

    /// Rows seen so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Ends the output (the table is printed here, with its row count and any cut) and flushes it.
    pub fn finish(&mut self) -> std::io::Result<()> {
        self.write_end()?;
        self.out.flush()
    }

    fn write_end(&mut self) -> std::io::Result<()> {
        match self.format {
            OutputFormat::Csv => Ok(()),
            OutputFormat::Json => {
                if self.rows == 0 {
                    writeln!(self.out, "]")
                } else {
                    writeln!(self.out, "\n]")
                }
            }
            OutputFormat::Table if self.rows == 0 => {
                // A table of a header alone draws no closing border: name the columns instead.
                writeln!(self.out, "columns: {}", self.columns.join(", "))?;
                writeln!(self.out, "(0 rows)")
            }
            OutputFormat::Table => {
                let mut b = tabled::builder::Builder::default();
                b.push_record(self.columns.iter().cloned());
                for r in self.table_rows.drain(..) {
                    b.push_record(r);
                }
                let mut t = b.build();
                t.with(tabled::settings::Style::sharp());
                writeln!(self.out, "{t}")?;
                let shown = self.rows.min(self.table_limit as u64);
                if shown < self.rows {
                    writeln!(
                        self.out,
                        "({} rows; the first {shown} shown: use --format csv or json for all, or \
                         --max-rows)",
                        self.rows
                    )
                } else {
                    writeln!(
                        self.out,
                        "({} row{})",
                        self.rows,
                        if self.rows == 1 { "" } else { "s" }
                    )
                }
            }
        }
    }
}

fn decode_row(row: &sqlx::any::AnyRow) -> std::result::Result<Vec<Cell>, sqlx::Error> {
    (0..row.columns().len())
        .map(|i| {
            let raw = row.try_get_raw(i)?;
            if raw.is_null() {
                return Ok(Cell::Null);
            }
            let ty = raw.type_info().name().to_ascii_uppercase();
            Ok(match ty.as_str() {
                "INTEGER" | "SMALLINT" | "BIGINT" => Cell::Int(row.try_get(i)?),
                "BOOLEAN" => Cell::Int(i64::from(row.try_get::<bool, _>(i)?)),
                "REAL" | "DOUBLE" => Cell::Real(row.try_get(i)?),
                "BLOB" => Cell::Blob(row.try_get(i)?),
                _ => Cell::Text(row.try_get(i)?),
            })
        })
        .collect()
}

/// Why streaming a query stopped.
enum StreamError {
    Sql(sqlx::Error),
    Sink(std::io::Error),
}

impl Store {
    /// Runs one SQL statement and returns its rows. On a store opened with
    /// [`Store::open_read_only`], a statement that writes is refused with [`StoreError::ReadOnly`].
    pub fn query(&self, sql: &str) -> Result<QueryResult> {
        let mut result = QueryResult::default();
        self.query_each(
            sql,
            |cols| {
                result.columns = cols.to_vec();
                Ok(())
            },
            |row| {
                result.rows.push(row);
                Ok(())
            },
        )?;
        Ok(result)
    }

    /// Runs one SQL statement and hands its column names, then each row as it arrives, to the
    /// callbacks (rows are never all held at once). Returns the number of rows. On a read-only store
    /// the statement is first checked to be exactly one statement that reads
    /// ([`super::statement::check_read_statement`]); nothing else reaches SQLite.
    pub fn query_each(
        &self,
        sql: &str,
        mut on_columns: impl FnMut(&[String]) -> std::io::Result<()>,
        mut on_row: impl FnMut(Vec<Cell>) -> std::io::Result<()>,
    ) -> Result<u64> {
        use futures_util::TryStreamExt;
        use sqlx::{Executor, Statement};
        if self.read_only {
            super::statement::check_read_statement(sql)?;
        }
        let res = self.block_on(async {
            // Column names even when there are no rows.
            let described = self
                .pool()
                .prepare(sqlx::SqlSafeStr::into_sql_str(sqlx::AssertSqlSafe(
                    sql.to_string(),
                )))
                .await
                .map(|d| {
                    d.columns()
                        .iter()
                        .map(|c| c.name().to_string())
                        .collect::<Vec<_>>()
                });
            let mut announced = false;
            if let Ok(cols) = &described {
                on_columns(cols).map_err(StreamError::Sink)?;
                announced = true;
            }
            let mut stream = sqlx::query(sqlx::AssertSqlSafe(sql.to_string())).fetch(self.pool());
            let mut n = 0u64;
            while let Some(row) = stream.try_next().await.map_err(StreamError::Sql)? {
                if !announced {
                    let cols: Vec<String> =
                        row.columns().iter().map(|c| c.name().to_string()).collect();
                    on_columns(&cols).map_err(StreamError::Sink)?;
                    announced = true;
                }
                on_row(decode_row(&row).map_err(StreamError::Sql)?).map_err(StreamError::Sink)?;
                n += 1;
            }
            if !announced {
                // Neither described nor any row: report the description's own error.
                described.map_err(StreamError::Sql)?;
            }
            Ok::<_, StreamError>(n)
        });
        res.map_err(|e| match e {
            StreamError::Sink(e) => StoreError::Query(format!("cannot write the result: {e}")),
            StreamError::Sql(e) => {
                let text = e.to_string();
                if self.read_only && (text.contains("readonly") || text.contains("read-only")) {
                    StoreError::ReadOnly(format!(
                        "the statement tries to write ({text}); use the library API or a migration to change data"
                    ))
                } else {
                    StoreError::Query(text)
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_fields_that_need_it() {
        let q = QueryResult {
            columns: vec!["a".into(), "b".into()],
            rows: vec![
                vec![Cell::Text("x,y".into()), Cell::Real(0.5)],
                vec![Cell::Null, Cell::Int(3)],
            ],
        };
        assert_eq!(q.to_csv(), "a,b\n\"x,y\",0.5\n,3\n");
        assert_eq!(
            q.to_json().replace([' ', '\n'], ""),
            r#"[{"a":"x,y","b":0.5},{"a":null,"b":3}]"#
        );
    }
}
