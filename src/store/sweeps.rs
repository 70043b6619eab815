//! Sweeps in the store: registration (spec and grid points), their points, runs by identity, and
//! retaking runs whose process is gone.

use super::BindReal;
use super::runs::{RUN_COLUMNS, run_from_row};
use super::{Result, RunInfo, Store, sql_err};
use crate::util::now_unix;

/// One stored grid point's stage run.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SweepPointRow {
    pub point: i64,
    /// JSON object: axis name -> value, and "seed".
    pub labels: String,
    pub stage: String,
    pub run_id: i64,
}

impl Store {
    /// Records a sweep's spec and replaces its grid points (and its `sweep_runs` membership) in one
    /// transaction. Runs are never touched: a point dropped from the file keeps its runs.
    pub fn register_sweep(&self, name: &str, spec: &str, points: &[SweepPointRow]) -> Result<()> {
        let now = now_unix();
        let spec_hash = crate::util::sha256_hex(spec.as_bytes());
        self.block_on(async {
            let mut tx = self.begin_write().await?;
            sqlx::query(
                "INSERT INTO sweeps (name, spec, spec_hash, created_at, updated_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, spec_hash = excluded.spec_hash, \
                 updated_at = excluded.updated_at",
            )
            .bind(name)
            .bind(spec)
            .bind(&spec_hash)
            .bind(now)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            for table in ["sweep_points", "sweep_runs"] {
                sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table} WHERE sweep = $1")))
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
            }
            for p in points {
                sqlx::query(
                    "INSERT INTO sweep_points (sweep, point, labels, stage, run_id) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(name)
                .bind(p.point)
                .bind(&p.labels)
                .bind(&p.stage)
                .bind(p.run_id)
                .execute(&mut *tx)
                .await?;
                sqlx::query("INSERT INTO sweep_runs (sweep, run_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                    .bind(name)
                    .bind(p.run_id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await
        })
        .map_err(sql_err("register sweep"))
    }

    /// A sweep's stored spec, if it was registered.
    pub fn sweep_spec(&self, name: &str) -> Result<Option<String>> {
        self.block_on(async {
            sqlx::query_scalar::<_, String>("SELECT spec FROM sweeps WHERE name = $1")
                .bind(name)
                .fetch_optional(self.pool())
                .await
        })
        .map_err(sql_err("read sweep"))
    }

    /// Names of every registered sweep.
    pub fn sweep_names(&self) -> Result<Vec<String>> {
        self.block_on(async {
            sqlx::query_scalar::<_, String>("SELECT name FROM sweeps ORDER BY name")
                .fetch_all(self.pool())
                .await
        })
        .map_err(sql_err("list sweeps"))
    }

    /// A sweep's grid points, by point then stage.
    pub fn sweep_points(&self, name: &str) -> Result<Vec<SweepPointRow>> {
        self.block_on(async {
            sqlx::query_as::<_, SweepPointRow>(
                "SELECT point, labels, stage, run_id FROM sweep_points WHERE sweep = $1 ORDER BY point, stage",
            )
            .bind(name)
            .fetch_all(self.pool())
            .await
        })
        .map_err(sql_err("read sweep points"))
    }

    /// The run with this stage and configuration hash, if it exists.
    pub fn find_run(&self, stage: &str, config_hash: &str) -> Result<Option<RunInfo>> {
        let row = self
            .block_on(async {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {RUN_COLUMNS} FROM runs WHERE stage = $1 AND config_hash = $2"
                )))
                .bind(stage)
                .bind(config_hash)
                .fetch_optional(self.pool())
                .await
            })
            .map_err(sql_err("find run"))?;
        row.map(|r| run_from_row(&r).map_err(sql_err("decode run")))
            .transpose()
    }

    /// Runs by id (missing ids are left out).
    pub fn runs_by_id(&self, ids: &[i64]) -> Result<Vec<RunInfo>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let marks = (1..=chunk.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ");
            let rows = self
                .block_on(async {
                    let sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE id IN ({marks})");
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                    for id in chunk {
                        q = q.bind(id);
                    }
                    q.fetch_all(self.pool()).await
                })
                .map_err(sql_err("read runs"))?;
            for r in &rows {
                out.push(run_from_row(r).map_err(sql_err("decode run"))?);
            }
        }
        Ok(out)
    }

    /// Puts a `running` run whose process is known to be dead back to `queued`, only if it is still
    /// exactly as observed (same pid and heartbeat): of several workers that notice, one succeeds.
    pub fn requeue_dead(&self, run: &RunInfo) -> Result<bool> {
        let res = self
            .block_on(async {
                sqlx::query(
                    "UPDATE runs SET status = 'queued', error = $1 WHERE id = $2 AND status = 'running' \
                     AND pid IS NOT DISTINCT FROM $3 AND heartbeat_at IS NOT DISTINCT FROM $4",
                )
                .bind(format!(
                    "process {} on {} died while running it; requeued",
                    run.pid.unwrap_or_default(),
                    run.host.as_deref().unwrap_or("?")
                ))
                .bind(run.id)
                .bind(run.pid)
                .bind_real(run.heartbeat_at)
                .execute(self.pool())
                .await
            })
            .map_err(sql_err("requeue run"))?;
        Ok(res.rows_affected() == 1)
    }
}
