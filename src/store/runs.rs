//! Run lifecycle: get-or-create by configuration hash, claim/start, heartbeat, finish, fail, stale runs.

use serde::Serialize;
use sqlx::Row;

use super::{Result, Store, StoreError, sql_err};
use crate::util::{config_hash, now_unix};

/// Status of a run, as stored in `runs.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Queued,
    Running,
    Finished,
    Failed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Finished => "finished",
            RunStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<RunStatus> {
        Some(match s {
            "queued" => RunStatus::Queued,
            "running" => RunStatus::Running,
            "finished" => RunStatus::Finished,
            "failed" => RunStatus::Failed,
            _ => return None,
        })
    }
}

/// What identifies a run: its stage and its configuration (hashed canonically, key order ignored).
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub stage: String,
    pub name: String,
    pub config: serde_json::Value,
    pub seed: Option<i64>,
}

impl RunSpec {
    pub fn hash(&self) -> String {
        config_hash(&self.config)
    }
}

/// One row of `runs`.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    pub id: i64,
    pub stage: String,
    pub name: String,
    pub config: String,
    pub config_hash: String,
    pub status: RunStatus,
    pub created_at: f64,
    pub started_at: Option<f64>,
    pub ended_at: Option<f64>,
    pub heartbeat_at: Option<f64>,
    pub attempts: i64,
    pub host: Option<String>,
    pub pid: Option<i64>,
    pub git_rev: Option<String>,
    pub backend: Option<String>,
    pub seed: Option<i64>,
    pub error: Option<String>,
}

/// A run with everything recorded about it except the raw series.
#[derive(Debug, Clone, Serialize)]
pub struct RunDetail {
    pub run: RunInfo,
    pub params: Vec<(String, super::ParamValue)>,
    pub summary: Vec<super::SummaryRow>,
    pub artifacts: Vec<(String, String, String, i64)>,
    pub sweeps: Vec<String>,
}

pub(super) const RUN_COLUMNS: &str = "id, stage, name, config, config_hash, status, created_at, started_at, \
    ended_at, heartbeat_at, attempts, host, pid, git_rev, backend, seed, error";

pub(super) fn run_from_row(
    row: &sqlx::sqlite::SqliteRow,
) -> std::result::Result<RunInfo, sqlx::Error> {
    let status: String = row.try_get("status")?;
    Ok(RunInfo {
        id: row.try_get("id")?,
        stage: row.try_get("stage")?,
        name: row.try_get("name")?,
        config: row.try_get("config")?,
        config_hash: row.try_get("config_hash")?,
        status: RunStatus::parse(&status).ok_or_else(|| sqlx::Error::ColumnDecode {
            index: "status".into(),
            source: format!("unknown run status {status:?}").into(),
        })?,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        ended_at: row.try_get("ended_at")?,
        heartbeat_at: row.try_get("heartbeat_at")?,
        attempts: row.try_get("attempts")?,
        host: row.try_get("host")?,
        pid: row.try_get("pid")?,
        git_rev: row.try_get("git_rev")?,
        backend: row.try_get("backend")?,
        seed: row.try_get("seed")?,
        error: row.try_get("error")?,
    })
}

/// Where and how a run executes, recorded when it starts.
#[derive(Debug, Clone)]
pub struct RunEnv {
    pub host: String,
    pub pid: i64,
    pub git_rev: Option<String>,
    pub backend: String,
}

impl RunEnv {
    /// This process on this host, with the working tree's git revision.
    pub fn current(backend: &str) -> RunEnv {
        RunEnv {
            host: crate::util::host_name(),
            pid: i64::from(std::process::id()),
            git_rev: crate::util::git_revision(),
            backend: backend.to_string(),
        }
    }
}

impl Store {
    /// Returns the run with this stage and configuration hash, creating it (status `queued`) if it
    /// does not exist. Safe against concurrent callers: exactly one row is ever created.
    pub fn get_or_create_run(&self, spec: &RunSpec) -> Result<RunInfo> {
        let hash = spec.hash();
        let config = crate::util::canonical_json(&spec.config);
        self.block_on(async {
            let mut tx = self.pool().begin_with("BEGIN IMMEDIATE").await?;
            sqlx::query(
                "INSERT INTO runs (id, stage, name, config, config_hash, status, created_at, seed) \
                 SELECT COALESCE(MAX(id), 0) + 1, ?, ?, ?, ?, 'queued', ?, ? FROM runs WHERE true \
                 ON CONFLICT (stage, config_hash) DO NOTHING",
            )
            .bind(&spec.stage)
            .bind(&spec.name)
            .bind(&config)
            .bind(&hash)
            .bind(now_unix())
            .bind(spec.seed)
            .execute(&mut *tx)
            .await?;
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE stage = ? AND config_hash = ?"
            )))
            .bind(&spec.stage)
            .bind(&hash)
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            run_from_row(&row)
        })
        .map_err(sql_err("get-or-create run"))
    }

    /// Claims a run for execution: `queued` runs, `failed` ones when `retry_failed`, and `running`
    /// ones whose heartbeat is older than `stale_after_s` seconds (their process died). Returns false
    /// when another process holds it or it has finished.
    pub fn start_run(
        &self,
        id: i64,
        env: &RunEnv,
        retry_failed: bool,
        stale_after_s: f64,
    ) -> Result<bool> {
        let now = now_unix();
        let res = self
            .block_on(async {
                sqlx::query(
                    "UPDATE runs SET status = 'running', started_at = ?, heartbeat_at = ?, ended_at = NULL, \
                     error = NULL, attempts = attempts + 1, host = ?, pid = ?, git_rev = ?, backend = ? \
                     WHERE id = ? AND (status = 'queued' OR (status = 'failed' AND ?) \
                     OR (status = 'running' AND (heartbeat_at IS NULL OR heartbeat_at < ?)))",
                )
                .bind(now)
                .bind(now)
                .bind(&env.host)
                .bind(env.pid)
                .bind(&env.git_rev)
                .bind(&env.backend)
                .bind(id)
                .bind(retry_failed)
                .bind(now - stale_after_s)
                .execute(self.pool())
                .await
            })
            .map_err(sql_err("start run"))?;
        if res.rows_affected() == 0 {
            self.run(id)?; // NoSuchRun when it does not exist
        }
        Ok(res.rows_affected() == 1)
    }

    /// Records that the run's process is alive.
    pub fn heartbeat(&self, id: i64) -> Result<()> {
        self.block_on(async {
            sqlx::query("UPDATE runs SET heartbeat_at = ? WHERE id = ? AND status = 'running'")
                .bind(now_unix())
                .bind(id)
                .execute(self.pool())
                .await
        })
        .map_err(sql_err("heartbeat"))?;
        Ok(())
    }

    /// Marks the run finished and refreshes the `runs_wide` view.
    pub fn finish_run(&self, id: i64) -> Result<()> {
        self.end_run(id, RunStatus::Finished, None)?;
        self.refresh_runs_wide()
    }

    /// Marks the run failed with its error text. Everything it logged stays.
    pub fn fail_run(&self, id: i64, error: &str) -> Result<()> {
        self.end_run(id, RunStatus::Failed, Some(error))?;
        self.refresh_runs_wide()
    }

    fn end_run(&self, id: i64, status: RunStatus, error: Option<&str>) -> Result<()> {
        let now = now_unix();
        let res = self
            .block_on(async {
                sqlx::query(
                    "UPDATE runs SET status = ?, ended_at = ?, heartbeat_at = ?, error = ? WHERE id = ?",
                )
                .bind(status.as_str())
                .bind(now)
                .bind(now)
                .bind(error)
                .bind(id)
                .execute(self.pool())
                .await
            })
            .map_err(sql_err("end run"))?;
        if res.rows_affected() == 0 {
            return Err(StoreError::NoSuchRun(id));
        }
        Ok(())
    }

    /// One run by id.
    pub fn run(&self, id: i64) -> Result<RunInfo> {
        let row = self
            .block_on(async {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {RUN_COLUMNS} FROM runs WHERE id = ?"
                )))
                .bind(id)
                .fetch_optional(self.pool())
                .await
            })
            .map_err(sql_err("read run"))?;
        match row {
            Some(row) => run_from_row(&row).map_err(sql_err("decode run")),
            None => Err(StoreError::NoSuchRun(id)),
        }
    }

    /// Runs, newest first, optionally filtered by status and stage.
    pub fn list_runs(
        &self,
        status: Option<RunStatus>,
        stage: Option<&str>,
    ) -> Result<Vec<RunInfo>> {
        let rows = self
            .block_on(async {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {RUN_COLUMNS} FROM runs WHERE (? IS NULL OR status = ?) \
                     AND (? IS NULL OR stage = ?) ORDER BY id DESC"
                )))
                .bind(status.map(RunStatus::as_str))
                .bind(status.map(RunStatus::as_str))
                .bind(stage)
                .bind(stage)
                .fetch_all(self.pool())
                .await
            })
            .map_err(sql_err("list runs"))?;
        rows.iter()
            .map(|r| run_from_row(r).map_err(sql_err("decode run")))
            .collect()
    }

    /// Runs marked `running` whose heartbeat is older than `max_age_s` seconds: their process is gone.
    pub fn stale_runs(&self, max_age_s: f64) -> Result<Vec<RunInfo>> {
        let cutoff = now_unix() - max_age_s;
        let rows = self
            .block_on(async {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {RUN_COLUMNS} FROM runs WHERE status = 'running' \
                     AND (heartbeat_at IS NULL OR heartbeat_at < ?) ORDER BY id"
                )))
                .bind(cutoff)
                .fetch_all(self.pool())
                .await
            })
            .map_err(sql_err("stale runs"))?;
        rows.iter()
            .map(|r| run_from_row(r).map_err(sql_err("decode run")))
            .collect()
    }

    /// Everything about a run except its raw series.
    pub fn run_detail(&self, id: i64) -> Result<RunDetail> {
        let run = self.run(id)?;
        let params = self.params(id)?;
        let summary = self.summary(id)?;
        let (artifacts, sweeps) = self
            .block_on(async {
                let a = sqlx::query_as::<_, (String, String, String, i64)>(
                    "SELECT kind, path, sha256, bytes FROM artifacts WHERE run_id = ? ORDER BY kind, path",
                )
                .bind(id)
                .fetch_all(self.pool())
                .await?;
                let s = sqlx::query_scalar::<_, String>(
                    "SELECT sweep FROM sweep_runs WHERE run_id = ? ORDER BY sweep",
                )
                .bind(id)
                .fetch_all(self.pool())
                .await?;
                Ok((a, s))
            })
            .map_err(sql_err("run detail"))?;
        Ok(RunDetail {
            run,
            params,
            summary,
            artifacts,
            sweeps,
        })
    }
}
