//! Run lifecycle: get-or-create by configuration hash, claim/start, heartbeat, finish, fail, stale runs.

use serde::Serialize;

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

impl TryFrom<String> for RunStatus {
    type Error = String;

    fn try_from(s: String) -> std::result::Result<RunStatus, String> {
        RunStatus::parse(&s).ok_or_else(|| format!("unknown run status {s:?}"))
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
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct RunInfo {
    pub id: i64,
    pub stage: String,
    pub name: String,
    pub config: String,
    pub config_hash: String,
    #[sqlx(try_from = "String")]
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
    /// The binary's version, profile and compiled backends (see [`crate::provenance::build`]).
    pub build: Option<String>,
    pub cpu: Option<String>,
    pub threads: Option<i64>,
    pub gpu: Option<String>,
}

impl RunInfo {
    /// Whether a `running` run's process is gone, as (stale, gone): `stale` when its heartbeat is
    /// older than `stale_after_s` seconds, `gone` when it ran on `host` (this machine) in a process
    /// that no longer exists. Either means it can be retaken.
    pub fn liveness(&self, stale_after_s: f64, host: &str) -> (bool, bool) {
        let stale = self
            .heartbeat_at
            .is_none_or(|h| now_unix() - h > stale_after_s);
        let gone = self.host.as_deref() == Some(host)
            && self
                .pid
                .is_some_and(|p| p != i64::from(std::process::id()) && !process_alive(p));
        (stale, gone)
    }
}

/// Whether process `pid` exists on this host (a zombie counts as gone). Unknown: true.
pub fn process_alive(pid: i64) -> bool {
    if cfg!(target_os = "linux") {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => {
                let state = stat
                    .rsplit_once(')')
                    .and_then(|(_, rest)| rest.trim_start().chars().next());
                !matches!(state, Some('Z') | Some('X'))
            }
            Err(_) => false,
        }
    } else {
        true
    }
}

/// One file a run produced (a row of `artifacts`).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ArtifactRow {
    pub kind: String,
    pub path: String,
    pub sha256: String,
    pub bytes: i64,
}

/// A run with everything recorded about it except the raw series.
#[derive(Debug, Clone, Serialize)]
pub struct RunDetail {
    pub run: RunInfo,
    pub params: Vec<(String, super::ParamValue)>,
    pub summary: Vec<super::SummaryRow>,
    pub artifacts: Vec<ArtifactRow>,
    pub sweeps: Vec<String>,
}

pub(super) const RUN_COLUMNS: &str = "id, stage, name, config, config_hash, status, created_at, started_at, \
    ended_at, heartbeat_at, attempts, host, pid, git_rev, backend, seed, error, build, cpu, threads, gpu";

pub(super) fn run_from_row(row: &sqlx::any::AnyRow) -> std::result::Result<RunInfo, sqlx::Error> {
    sqlx::FromRow::from_row(row)
}

/// Whether a claim takes a failed run again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Never: a failed run stays failed.
    Never,
    /// Always (`--retry-failed`).
    Always,
    /// While the run has had fewer than this many attempts (`--max-attempts`).
    UpTo(i64),
}

impl Retry {
    /// A failed run is claimed when its attempts are below this.
    fn attempts_below(self) -> i64 {
        match self {
            Retry::Never => 0,
            Retry::Always => i64::MAX,
            Retry::UpTo(n) => n,
        }
    }
}

impl From<bool> for Retry {
    fn from(retry_failed: bool) -> Retry {
        if retry_failed {
            Retry::Always
        } else {
            Retry::Never
        }
    }
}

/// Where and how a run executes, recorded when it starts.
#[derive(Debug, Clone, Default)]
pub struct RunEnv {
    pub host: String,
    pub pid: i64,
    pub git_rev: Option<String>,
    pub backend: String,
    pub build: Option<String>,
    pub cpu: Option<String>,
    pub threads: Option<i64>,
    pub gpu: Option<String>,
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, <sqlx::Any as sqlx::Database>::Arguments>;

/// Binds the environment's columns in their one order: host, pid, git_rev, backend, build, cpu,
/// threads, gpu (the order of every statement that records them).
fn bind_env<'q>(q: AnyQuery<'q>, env: &'q RunEnv) -> AnyQuery<'q> {
    q.bind(&env.host)
        .bind(env.pid)
        .bind(&env.git_rev)
        .bind(&env.backend)
        .bind(&env.build)
        .bind(&env.cpu)
        .bind(env.threads)
        .bind(&env.gpu)
}

impl RunEnv {
    /// This process on this host, with this binary's revision and build and this machine's CPU,
    /// thread count and (on CUDA) GPU.
    pub fn current(backend: &str) -> RunEnv {
        use crate::provenance as p;
        RunEnv {
            host: crate::util::host_name(),
            pid: i64::from(std::process::id()),
            git_rev: Some(p::revision().to_string()),
            backend: backend.to_string(),
            build: Some(p::build()),
            cpu: p::cpu(),
            threads: Some(p::threads()),
            gpu: p::gpu(backend),
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
            let mut tx = self.begin_write().await?;
            sqlx::query(
                "INSERT INTO runs (id, stage, name, config, config_hash, status, created_at, seed) \
                 SELECT COALESCE(MAX(id), 0) + 1, $1, $2, $3, $4, 'queued', $5, $6 FROM runs WHERE true \
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
                "SELECT {RUN_COLUMNS} FROM runs WHERE stage = $1 AND config_hash = $2"
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

    /// Claims a run for execution: `queued` runs, `failed` ones as `retry` allows (`true`: always,
    /// `false`: never, [`Retry::UpTo`]: while it has had fewer attempts), and `running` ones whose
    /// heartbeat is older than `stale_after_s` seconds (their process died). Returns false when
    /// another process holds it or it has finished. See [`Store::claim_run`].
    pub fn start_run(
        &self,
        id: i64,
        env: &RunEnv,
        retry: impl Into<Retry>,
        stale_after_s: f64,
    ) -> Result<bool> {
        Ok(self.claim_run(id, env, retry, stale_after_s)?.is_some())
    }

    /// [`Store::start_run`], returning the new attempt's number when the run was claimed. In the same
    /// transaction the earlier attempt (if any) is closed in `run_attempts` (`abandoned` when it was
    /// still marked running) and its metric points move from `metrics` to `attempt_metrics`, and its
    /// summary rows are dropped: the run's series and summary are the new attempt's alone.
    pub fn claim_run(
        &self,
        id: i64,
        env: &RunEnv,
        retry: impl Into<Retry>,
        stale_after_s: f64,
    ) -> Result<Option<i64>> {
        let below = retry.into().attempts_below();
        let now = now_unix();
        let attempt = self
            .block_on(async {
                let mut tx = self.begin_write().await?;
                let update = sqlx::query(
                    "UPDATE runs SET status = 'running', started_at = $1, heartbeat_at = $2, ended_at = NULL, \
                     error = NULL, attempts = attempts + 1, host = $3, pid = $4, git_rev = $5, backend = $6, \
                     build = $7, cpu = $8, threads = $9, gpu = $10 WHERE id = $11 AND (status = 'queued' OR (status = 'failed' AND attempts < $12) \
                     OR (status = 'running' AND (heartbeat_at IS NULL OR heartbeat_at < $13)))",
                )
                .bind(now)
                .bind(now);
                let res = bind_env(update, env)
                .bind(id)
                .bind(below)
                .bind(now - stale_after_s)
                .execute(&mut *tx)
                .await?;
                if res.rows_affected() != 1 {
                    tx.rollback().await?;
                    return Ok(None);
                }
                let attempt: i64 = sqlx::query_scalar("SELECT attempts FROM runs WHERE id = $1")
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?;
                sqlx::query(
                    "UPDATE run_attempts SET status = 'abandoned', ended_at = $1 \
                     WHERE run_id = $2 AND status = 'running'",
                )
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO attempt_metrics (run_id, attempt, key, step, value, logged_at) \
                     SELECT run_id, $1, key, step, value, logged_at FROM metrics WHERE run_id = $2 \
                     ON CONFLICT (run_id, attempt, key, step) DO NOTHING",
                )
                .bind(attempt - 1)
                .bind(id)
                .execute(&mut *tx)
                .await?;
                for table in ["metrics", "summary"] {
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DELETE FROM {table} WHERE run_id = $1"
                    )))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                }
                let insert = sqlx::query(
                    "INSERT INTO run_attempts (run_id, attempt, status, started_at, host, pid, git_rev, backend, \
                     build, cpu, threads, gpu) VALUES ($1, $2, 'running', $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                     ON CONFLICT (run_id, attempt) DO UPDATE SET \
                     status = 'running', started_at = excluded.started_at, ended_at = NULL, error = NULL, \
                     host = excluded.host, pid = excluded.pid, git_rev = excluded.git_rev, backend = excluded.backend, \
                     build = excluded.build, cpu = excluded.cpu, threads = excluded.threads, gpu = excluded.gpu",
                )
                .bind(id)
                .bind(attempt)
                .bind(now);
                bind_env(insert, env).execute(&mut *tx).await?;
                tx.commit().await?;
                Ok::<_, sqlx::Error>(Some(attempt))
            })
            .map_err(sql_err("start run"))?;
        if attempt.is_none() {
            self.run(id)?; // NoSuchRun when it does not exist
        }
        Ok(attempt)
    }

    /// Records that the run's process is alive.
    pub fn heartbeat(&self, id: i64) -> Result<()> {
        self.block_on(async {
            sqlx::query("UPDATE runs SET heartbeat_at = $1 WHERE id = $2 AND status = 'running'")
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
        self.end_run(id, None, RunStatus::Finished, None)?;
        self.refresh_runs_wide()
    }

    /// Marks the run failed with its error text. Everything it logged stays.
    pub fn fail_run(&self, id: i64, error: &str) -> Result<()> {
        self.end_run(id, None, RunStatus::Failed, Some(error))?;
        self.refresh_runs_wide()
    }

    /// Ends attempt `attempt` of the run as `status` (finished or failed). Fenced: when the run is no
    /// longer running under that attempt (a later attempt took it over, its process having been taken
    /// for dead), nothing is written and the result is [`StoreError::LostRun`], so a run never
    /// completes twice.
    pub fn end_attempt(
        &self,
        id: i64,
        attempt: i64,
        status: RunStatus,
        error: Option<&str>,
    ) -> Result<()> {
        self.end_run(id, Some(attempt), status, error)?;
        self.refresh_runs_wide()
    }

    fn end_run(
        &self,
        id: i64,
        attempt: Option<i64>,
        status: RunStatus,
        error: Option<&str>,
    ) -> Result<()> {
        let now = now_unix();
        let updated = self
            .block_on(async {
                let mut tx = self.begin_write().await?;
                let res = sqlx::query(
                    "UPDATE runs SET status = $1, ended_at = $2, heartbeat_at = $3, error = $4 \
                     WHERE id = $5 AND ($6 IS NULL OR (attempts = $7 AND status = 'running'))",
                )
                .bind(status.as_str())
                .bind(now)
                .bind(now)
                .bind(error)
                .bind(id)
                .bind(attempt)
                .bind(attempt)
                .execute(&mut *tx)
                .await?;
                if res.rows_affected() == 1 {
                    sqlx::query(
                        "UPDATE run_attempts SET status = $1, ended_at = $2, error = $3 \
                         WHERE run_id = $4 AND attempt = (SELECT attempts FROM runs WHERE id = $5)",
                    )
                    .bind(status.as_str())
                    .bind(now)
                    .bind(error)
                    .bind(id)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok::<_, sqlx::Error>(res.rows_affected() == 1)
            })
            .map_err(sql_err("end run"))?;
        if updated {
            return Ok(());
        }
        let run = self.run(id)?; // NoSuchRun when it does not exist
        Err(StoreError::LostRun {
            run: id,
            attempt: attempt.unwrap_or(run.attempts),
            now: run.attempts,
        })
    }

    /// One run by id.
    pub fn run(&self, id: i64) -> Result<RunInfo> {
        let row = self
            .block_on(async {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {RUN_COLUMNS} FROM runs WHERE id = $1"
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
                    "SELECT {RUN_COLUMNS} FROM runs WHERE ($1 IS NULL OR status = $2) \
                     AND ($3 IS NULL OR stage = $4) ORDER BY id DESC"
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

    /// Runs marked `running` whose process is gone: their heartbeat is older than `max_age_s`
    /// seconds, or they ran on this host in a process that no longer exists ([`RunInfo::liveness`],
    /// the rule a sweep retakes runs by).
    pub fn stale_runs(&self, max_age_s: f64) -> Result<Vec<RunInfo>> {
        let host = crate::util::host_name();
        Ok(self
            .list_runs(Some(RunStatus::Running), None)?
            .into_iter()
            .rev()
            .filter(|r| {
                let (stale, gone) = r.liveness(max_age_s, &host);
                stale || gone
            })
            .collect())
    }

    /// Everything about a run except its raw series.
    pub fn run_detail(&self, id: i64) -> Result<RunDetail> {
        let run = self.run(id)?;
        let params = self.params(id)?;
        let summary = self.summary(id)?;
        let (artifacts, sweeps) = self
            .block_on(async {
                let a = sqlx::query_as::<_, ArtifactRow>(
                    "SELECT kind, path, sha256, bytes FROM artifacts WHERE run_id = $1 ORDER BY kind, path",
                )
                .bind(id)
                .fetch_all(self.pool())
                .await?;
                let s = sqlx::query_scalar::<_, String>(
                    "SELECT sweep FROM sweep_runs WHERE run_id = $1 ORDER BY sweep",
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
