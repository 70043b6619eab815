//! Typed write-once parameters, metric series with their per-run summary, and artifacts.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use sqlx::Row;

use super::{BindReal, Result, Store, StoreError, sql_err};
use crate::util::{now_unix, sha256_file};

/// Final metric values (key, value) of every run, by run id.
pub type FinalValues = BTreeMap<i64, Vec<(String, Option<f64>)>>;

/// One point of a metric series.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricPoint {
    pub key: String,
    pub step: i64,
    pub value: f64,
}

impl MetricPoint {
    pub fn new(key: impl Into<String>, step: i64, value: f64) -> MetricPoint {
        MetricPoint {
            key: key.into(),
            step,
            value,
        }
    }
}

/// A typed parameter value.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ParamValue {
    Int(i64),
    Real(f64),
    Text(String),
    Bool(bool),
}

impl ParamValue {
    fn kind(&self) -> &'static str {
        match self {
            ParamValue::Int(_) => "int",
            ParamValue::Real(_) => "real",
            ParamValue::Text(_) => "text",
            ParamValue::Bool(_) => "bool",
        }
    }
}

impl std::fmt::Display for ParamValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParamValue::Int(v) => write!(f, "{v}"),
            ParamValue::Real(v) => write!(f, "{v}"),
            ParamValue::Text(v) => write!(f, "{v:?}"),
            ParamValue::Bool(v) => write!(f, "{v}"),
        }
    }
}

/// Flattens a JSON configuration into dotted parameter keys (`model.width` = 64). Arrays become JSON
/// text; nulls are skipped.
pub fn params_from_config(config: &serde_json::Value) -> Vec<(String, ParamValue)> {
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, ParamValue)>) {
        use serde_json::Value as J;
        let key = |k: &str| {
            if prefix.is_empty() {
                k.to_string()
            } else {
                format!("{prefix}.{k}")
            }
        };
        match v {
            J::Object(map) => {
                for (k, v) in map {
                    walk(&key(k), v, out);
                }
            }
            J::Null => {}
            J::Bool(b) => out.push((prefix.to_string(), ParamValue::Bool(*b))),
            J::Number(n) => match n.as_i64() {
                Some(i) => out.push((prefix.to_string(), ParamValue::Int(i))),
                None => out.push((
                    prefix.to_string(),
                    ParamValue::Real(n.as_f64().unwrap_or(f64::NAN)),
                )),
            },
            J::String(s) => out.push((prefix.to_string(), ParamValue::Text(s.clone()))),
            J::Array(_) => out.push((prefix.to_string(), ParamValue::Text(v.to_string()))),
        }
    }
    let mut out = Vec::new();
    walk("", config, &mut out);
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Final value of one metric of one run.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct SummaryRow {
    pub key: String,
    pub step: i64,
    /// None when the last value was NaN.
    pub value: Option<f64>,
    #[sqlx(rename = "min_value")]
    pub min: Option<f64>,
    #[sqlx(rename = "max_value")]
    pub max: Option<f64>,
    pub n: i64,
}

fn finite_or_none(v: f64) -> Option<f64> {
    if v.is_nan() { None } else { Some(v) }
}

impl Store {
    /// Records parameters. Write-once: setting a key again to the same value is a no-op, to a
    /// different value is [`StoreError::ParamConflict`] (and nothing of this call is written).
    pub fn set_params(&self, run: i64, params: &[(String, ParamValue)]) -> Result<()> {
        let outcome: std::result::Result<Option<StoreError>, sqlx::Error> = self.block_on(async {
            let mut tx = self.begin_write().await?;
            for (key, value) in params {
                let (i, r, t): (Option<i64>, Option<f64>, Option<String>) = match value {
                    ParamValue::Int(v) => (Some(*v), None, None),
                    ParamValue::Bool(v) => (Some(i64::from(*v)), None, None),
                    ParamValue::Real(v) => (None, Some(*v), None),
                    ParamValue::Text(v) => (None, None, Some(v.clone())),
                };
                sqlx::query(
                    "INSERT INTO params (run_id, key, kind, int_value, real_value, text_value) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (run_id, key) DO NOTHING",
                )
                .bind(run)
                .bind(key)
                .bind(value.kind())
                .bind(i)
                .bind_real(r)
                .bind(&t)
                .execute(&mut *tx)
                .await?;
                let row = sqlx::query(
                    "SELECT kind, int_value, real_value, text_value FROM params WHERE run_id = $1 AND key = $2",
                )
                .bind(run)
                .bind(key)
                .fetch_one(&mut *tx)
                .await?;
                let existing = param_from_row(&row)?;
                let same = match (&existing, value) {
                    (ParamValue::Real(a), ParamValue::Real(b)) => a.to_bits() == b.to_bits() || a == b,
                    (a, b) => a == b,
                };
                if !same {
                    tx.rollback().await?;
                    return Ok(Some(StoreError::ParamConflict {
                        run,
                        key: key.clone(),
                        existing: existing.to_string(),
                        new: value.to_string(),
                    }));
                }
            }
            tx.commit().await?;
            Ok(None)
        });
        match outcome.map_err(sql_err("set params"))? {
            Some(conflict) => Err(conflict),
            None => Ok(()),
        }
    }

    /// The run's parameters, by key.
    pub fn params(&self, run: i64) -> Result<Vec<(String, ParamValue)>> {
        let rows = self
            .block_on(async {
                sqlx::query(
                    "SELECT key, kind, int_value, real_value, text_value FROM params WHERE run_id = $1 ORDER BY key",
                )
                .bind(run)
                .fetch_all(self.pool())
                .await
            })
            .map_err(sql_err("read params"))?;
        rows.iter()
            .map(|row| Ok((row.try_get::<String, _>("key")?, param_from_row(row)?)))
            .collect::<std::result::Result<Vec<_>, sqlx::Error>>()
            .map_err(sql_err("decode params"))
    }

    /// Appends a batch of metric points in one transaction and updates the run's summary
    /// (final value = value at the largest step; min and max over every value logged; `n` = points
    /// in the series). A point logged again at the same (key, step) replaces the earlier value. NaN is
    /// stored as NULL.
    pub fn log_metrics(&self, run: i64, points: &[MetricPoint]) -> Result<()> {
        self.log_metrics_fenced(run, None, points)
    }

    /// [`Store::log_metrics`] for attempt `attempt` of the run: when a later attempt has taken the
    /// run over, nothing is written and the result is [`StoreError::LostRun`].
    pub fn log_attempt_metrics(
        &self,
        run: i64,
        attempt: i64,
        points: &[MetricPoint],
    ) -> Result<()> {
        self.log_metrics_fenced(run, Some(attempt), points)
    }

    fn log_metrics_fenced(
        &self,
        run: i64,
        attempt: Option<i64>,
        points: &[MetricPoint],
    ) -> Result<()> {
        if points.is_empty() {
            return Ok(());
        }
        struct Acc {
            step: i64,
            value: f64,
            min: Option<f64>,
            max: Option<f64>,
            n: i64,
        }
        let now = now_unix();
        let held = self
            .block_on(async {
                let mut tx = self.begin_write().await?;
                if let Some(attempt) = attempt {
                    let now_held: Option<i64> = sqlx::query_scalar(
                        "SELECT attempts FROM runs WHERE id = $1 AND status = 'running'",
                    )
                    .bind(run)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if now_held != Some(attempt) {
                        tx.rollback().await?;
                        return Ok(false);
                    }
                }
                let mut per_key: BTreeMap<&str, Acc> = BTreeMap::new();
                for p in points {
                    let inserted = sqlx::query(
                        "INSERT INTO metrics (run_id, key, step, value, logged_at) VALUES ($1, $2, $3, $4, $5) \
                         ON CONFLICT (run_id, key, step) DO NOTHING",
                    )
                    .bind(run)
                    .bind(&p.key)
                    .bind(p.step)
                    .bind_real(finite_or_none(p.value))
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                        == 1;
                    if !inserted {
                        sqlx::query(
                            "UPDATE metrics SET value = $1, logged_at = $2 WHERE run_id = $3 AND key = $4 AND step = $5",
                        )
                        .bind_real(finite_or_none(p.value))
                        .bind(now)
                        .bind(run)
                        .bind(&p.key)
                        .bind(p.step)
                        .execute(&mut *tx)
                        .await?;
                    }
                    let acc = per_key.entry(p.key.as_str()).or_insert(Acc {
                        step: p.step,
                        value: p.value,
                        min: None,
                        max: None,
                        n: 0,
                    });
                    if p.step >= acc.step {
                        acc.step = p.step;
                        acc.value = p.value;
                    }
                    if !p.value.is_nan() {
                        acc.min = Some(acc.min.map_or(p.value, |m| m.min(p.value)));
                        acc.max = Some(acc.max.map_or(p.value, |m| m.max(p.value)));
                    }
                    acc.n += i64::from(inserted);
                }
                for (key, acc) in &per_key {
                    sqlx::query(
                        "INSERT INTO summary (run_id, key, step, value, min_value, max_value, n, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (run_id, key) DO UPDATE SET \
                         value = CASE WHEN excluded.step >= summary.step THEN excluded.value ELSE summary.value END, \
                         step = CASE WHEN excluded.step >= summary.step THEN excluded.step ELSE summary.step END, \
                         min_value = CASE WHEN summary.min_value IS NULL OR excluded.min_value < summary.min_value \
                                     THEN excluded.min_value ELSE summary.min_value END, \
                         max_value = CASE WHEN summary.max_value IS NULL OR excluded.max_value > summary.max_value \
                                     THEN excluded.max_value ELSE summary.max_value END, \
                         n = summary.n + excluded.n, updated_at = excluded.updated_at",
                    )
                    .bind(run)
                    .bind(*key)
                    .bind(acc.step)
                    .bind_real(finite_or_none(acc.value))
                    .bind_real(acc.min)
                    .bind_real(acc.max)
                    .bind(acc.n)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
                sqlx::query("UPDATE runs SET heartbeat_at = $1 WHERE id = $2 AND status = 'running'")
                    .bind(now)
                    .bind(run)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok::<_, sqlx::Error>(true)
            })
            .map_err(sql_err("log metrics"))?;
        if held {
            return Ok(());
        }
        let info = self.run(run)?;
        Err(StoreError::LostRun {
            run,
            attempt: attempt.unwrap_or(info.attempts),
            now: info.attempts,
        })
    }

    /// The final values of every metric of a run.
    pub fn summary(&self, run: i64) -> Result<Vec<SummaryRow>> {
        self.block_on(async {
            sqlx::query_as::<_, SummaryRow>(
                    "SELECT key, step, value, min_value, max_value, n FROM summary WHERE run_id = $1 ORDER BY key",
                )
            .bind(run)
            .fetch_all(self.pool())
            .await
        })
        .map_err(sql_err("read summary"))
    }

    /// One metric series of a run, ordered by step (NaN where NULL was stored).
    pub fn series(&self, run: i64, key: &str) -> Result<Vec<(i64, f64)>> {
        let rows = self
            .block_on(async {
                sqlx::query_as::<_, SeriesPoint>(
                    "SELECT step, value FROM metrics WHERE run_id = $1 AND key = $2 ORDER BY step",
                )
                .bind(run)
                .bind(key)
                .fetch_all(self.pool())
                .await
            })
            .map_err(sql_err("read series"))?;
        Ok(rows
            .into_iter()
            .map(|p| (p.step, p.value.unwrap_or(f64::NAN)))
            .collect())
    }

    /// Records a file produced by a run, with its SHA-256 and size.
    pub fn add_artifact(&self, run: i64, kind: &str, path: &Path) -> Result<String> {
        let (sha, bytes) = sha256_file(path).map_err(|source| StoreError::Artifact {
            path: path.to_path_buf(),
            source,
        })?;
        // With an object store, the file is uploaded and its URL recorded instead of the local path.
        let path_text = match &self.objects {
            Some(objects) => {
                let info = self.run(run)?;
                self.block_on(objects.upload(path, &info.stage, &info.config_hash, run, kind))?
            }
            None => path.to_string_lossy().into_owned(),
        };
        self.block_on(async {
            sqlx::query(
                "INSERT INTO artifacts (run_id, kind, path, sha256, bytes, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (run_id, kind, path) DO UPDATE SET sha256 = excluded.sha256, \
                 bytes = excluded.bytes, created_at = excluded.created_at",
            )
            .bind(run)
            .bind(kind)
            .bind(&path_text)
            .bind(&sha)
            .bind(bytes as i64)
            .bind(now_unix())
            .execute(self.pool())
            .await
        })
        .map_err(sql_err("add artifact"))?;
        Ok(sha)
    }
}

impl Store {
    /// The (path, sha256) a run recorded as its artifact of `kind` (the first by path when several).
    pub fn artifact(&self, run: i64, kind: &str) -> Result<Option<ArtifactRef>> {
        self.block_on(async {
            sqlx::query_as::<_, ArtifactRef>(
                "SELECT path, sha256 FROM artifacts WHERE run_id = $1 AND kind = $2 ORDER BY path LIMIT 1",
            )
            .bind(run)
            .bind(kind)
            .fetch_optional(self.pool())
            .await
        })
        .map_err(sql_err("read artifact"))
    }

    /// Final values of every run, by run id (one query over `summary`, never the series).
    pub fn all_summaries(&self) -> Result<FinalValues> {
        let rows = self
            .block_on(async {
                sqlx::query_as::<_, SummaryEntry>(
                    "SELECT run_id, key, value FROM summary ORDER BY run_id, key",
                )
                .fetch_all(self.pool())
                .await
            })
            .map_err(sql_err("read summaries"))?;
        let mut out: BTreeMap<i64, Vec<(String, Option<f64>)>> = BTreeMap::new();
        for r in rows {
            out.entry(r.run_id).or_default().push((r.key, r.value));
        }
        Ok(out)
    }
}

/// One point of a metric series as stored (NULL for a value that was not finite).
#[derive(sqlx::FromRow)]
struct SeriesPoint {
    step: i64,
    value: Option<f64>,
}

/// Where a run's artifact of one kind lies, and its recorded SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ArtifactRef {
    pub path: String,
    pub sha256: String,
}

/// One final value of one run (a row of `summary`).
#[derive(sqlx::FromRow)]
struct SummaryEntry {
    run_id: i64,
    key: String,
    value: Option<f64>,
}

fn param_from_row(row: &sqlx::any::AnyRow) -> std::result::Result<ParamValue, sqlx::Error> {
    let kind: String = row.try_get("kind")?;
    Ok(match kind.as_str() {
        "int" => ParamValue::Int(
            row.try_get::<Option<i64>, _>("int_value")?
                .unwrap_or_default(),
        ),
        "bool" => ParamValue::Bool(
            row.try_get::<Option<i64>, _>("int_value")?
                .unwrap_or_default()
                != 0,
        ),
        "real" => ParamValue::Real(
            row.try_get::<Option<f64>, _>("real_value")?
                .unwrap_or(f64::NAN),
        ),
        _ => ParamValue::Text(
            row.try_get::<Option<String>, _>("text_value")?
                .unwrap_or_default(),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_flattens_to_dotted_typed_params() {
        let cfg = serde_json::json!({"lr": 0.5, "model": {"width": 64, "act": "silu"}, "ema": true,
                                     "sizes": [1, 2], "none": null});
        let p = params_from_config(&cfg);
        assert_eq!(
            p,
            vec![
                ("ema".into(), ParamValue::Bool(true)),
                ("lr".into(), ParamValue::Real(0.5)),
                ("model.act".into(), ParamValue::Text("silu".into())),
                ("model.width".into(), ParamValue::Int(64)),
                ("sizes".into(), ParamValue::Text("[1,2]".into())),
            ]
        );
    }
}
