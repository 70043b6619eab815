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
        match format {
            OutputFormat::Table => self.to_table(),
            OutputFormat::Csv => self.to_csv(),
            OutputFormat::Json => self.to_json(),
        }
    }

    pub fn to_table(&self) -> String {
        let mut b = tabled::builder::Builder::default();
        b.push_record(self.columns.iter().cloned());
        for row in &self.rows {
            b.push_record(row.iter().map(Cell::to_text));
        }
        let mut t = b.build();
        t.with(tabled::settings::Style::sharp());
        t.to_string()
    }

    pub fn to_csv(&self) -> String {
        fn field(s: &str) -> String {
            if s.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", s.replace('"', "\"\""))
            } else {
                s.to_string()
            }
        }
        let mut out = String::new();
        out.push_str(
            &self
                .columns
                .iter()
                .map(|c| field(c))
                .collect::<Vec<_>>()
                .join(","),
        );
        out.push('\n');
        for row in &self.rows {
            out.push_str(
                &row.iter()
                    .map(|c| field(&c.to_text()))
                    .collect::<Vec<_>>()
                    .join(","),
            );
            out.push('\n');
        }
        out
    }

    pub fn to_json(&self) -> String {
        let rows: Vec<serde_json::Value> = self
            .rows
            .iter()
            .map(|row| {
                let mut obj = serde_json::Map::new();
                for (c, v) in self.columns.iter().zip(row) {
                    obj.insert(c.clone(), v.to_json());
                }
                serde_json::Value::Object(obj)
            })
            .collect();
        serde_json::to_string_pretty(&rows).unwrap_or_else(|_| "[]".into())
    }
}

fn decode_row(row: &sqlx::sqlite::SqliteRow) -> std::result::Result<Vec<Cell>, sqlx::Error> {
    (0..row.columns().len())
        .map(|i| {
            let raw = row.try_get_raw(i)?;
            if raw.is_null() {
                return Ok(Cell::Null);
            }
            let ty = raw.type_info().name().to_ascii_uppercase();
            Ok(match ty.as_str() {
                "INTEGER" | "INT" | "BIGINT" | "BOOLEAN" => Cell::Int(row.try_get(i)?),
                "REAL" | "DOUBLE" | "FLOAT" | "NUMERIC" => Cell::Real(row.try_get(i)?),
                "BLOB" => Cell::Blob(row.try_get(i)?),
                _ => Cell::Text(row.try_get(i)?),
            })
        })
        .collect()
}

impl Store {
    /// Runs one SQL statement and returns its rows. On a store opened with
    /// [`Store::open_read_only`], a statement that writes is refused with [`StoreError::ReadOnly`].
    pub fn query(&self, sql: &str) -> Result<QueryResult> {
        let sql = sql.to_string();
        let res = self.block_on(async {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .fetch_all(self.pool())
                .await?;
            let columns = match rows.first() {
                Some(r) => r.columns().iter().map(|c| c.name().to_string()).collect(),
                None => {
                    // No rows: still report the column names.
                    use sqlx::Executor;
                    let d = self
                        .pool()
                        .describe(sqlx::SqlSafeStr::into_sql_str(sqlx::AssertSqlSafe(sql)))
                        .await?;
                    d.columns().iter().map(|c| c.name().to_string()).collect()
                }
            };
            let rows = rows
                .iter()
                .map(decode_row)
                .collect::<std::result::Result<Vec<_>, _>>()?;
            Ok::<_, sqlx::Error>(QueryResult { columns, rows })
        });
        res.map_err(|e| {
            let text = e.to_string();
            if self.read_only && (text.contains("readonly") || text.contains("read-only")) {
                StoreError::ReadOnly(format!(
                    "the statement tries to write ({text}); use the library API or a migration to change data"
                ))
            } else {
                StoreError::Query(text)
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
