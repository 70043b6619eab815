//! The run store: every run, its configuration, parameters, metric series, final values and artifacts,
//! in SQLite (a file, the default) or PostgreSQL (a server several hosts share), through sqlx.
//!
//! * One set of SQL serves both engines: sqlx's `Any` driver, `$N` parameters (SQLite reads them as
//!   numbered parameters too), and the schema in `migrations/` written in the subset both accept. The
//!   migrations are embedded at compile time and applied on open.
//! * SQLite: WAL journal, `synchronous = NORMAL` and a busy timeout; every write transaction starts
//!   with `BEGIN IMMEDIATE`, so concurrent writers queue on the lock instead of failing with
//!   "database is locked" on a read-to-write upgrade. PostgreSQL: every write transaction first takes
//!   one transaction-scoped advisory lock, the same one-writer-at-a-time discipline, so the store's
//!   read-then-write steps (a new run's id, a claim) never race; readers are not blocked.
//! * The library API is synchronous: a [`Store`] owns a small tokio runtime and blocks on it, so
//!   training loops, rayon code and polars never run inside an async context.

mod active;
mod connect;
mod export;
mod location;
mod metrics;
mod objects;
mod query;
mod runs;
mod statement;
mod sweeps;
#[doc(hidden)]
pub mod testing;
mod view;

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::{Any, AnyPool, Transaction};

pub(crate) use connect::BindReal;
use connect::{Mode, connect, migrate, open_lock, runtime, sqlite_url};

pub use active::{
    ActiveRun, DEFAULT_DIVERGENCE_FACTOR, DEFAULT_STALE_AFTER_S, DivergenceGuard, HEARTBEAT_EVERY,
};
pub use export::{ExportFormat, ExportTable};
pub use location::{ARTIFACTS_ENV, Engine, Location};
pub use metrics::{ArtifactRef, MetricPoint, ParamValue, SummaryRow};
pub use query::{Cell, OutputFormat, QueryResult, RowWriter, format_real};
pub use runs::{ArtifactRow, Retry, RunDetail, RunEnv, RunInfo, RunSpec, RunStatus, process_alive};
pub use statement::{READ_KEYWORDS, check_read_statement};
pub use sweeps::SweepPointRow;

/// Environment variable naming the store (the `--db` flag wins over it): a SQLite file path or
/// `sqlite://` URL, or a `postgres://` URL.
pub const DB_ENV: &str = "FLOWPRIOR_DB";
/// Where the store lives when neither `--db` nor `FLOWPRIOR_DB` says otherwise.
pub const DEFAULT_DB: &str = "runs/flowprior.db";
/// How long a connection waits on a locked database before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long opening a PostgreSQL store keeps trying to reach the server.
pub const PG_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The key of the PostgreSQL advisory lock that write transactions take (any constant will do; this
/// one spells "flowprio" in ASCII, so it is unlikely to meet another application's).
const PG_WRITE_LOCK: i64 = 0x666c_6f77_7072_696f;

/// Errors of the run store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the run store {store}: {source}")]
    Open { store: String, source: sqlx::Error },
    #[error("cannot create {path} for the run store: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot apply the migrations to {store}: {source}")]
    Migrate {
        store: String,
        source: sqlx::migrate::MigrateError,
    },
    #[error(
        "the run store {store} was written by a newer flowprior: it has schema migration {version}, \
         which this binary does not know (its latest is {known}); use a newer binary, or another --db"
    )]
    NewerSchema {
        store: String,
        version: i64,
        known: i64,
    },
    #[error("run store {what}: {source}")]
    Sql {
        what: &'static str,
        source: sqlx::Error,
    },
    #[error("no run with id {0} in the store")]
    NoSuchRun(i64),
    #[error(
        "run {run} is no longer held by attempt {attempt}: attempt {now} took it over (this process was \
         taken for dead); nothing more is recorded from this attempt"
    )]
    LostRun { run: i64, attempt: i64, now: i64 },
    #[error("run {run} diverged: {key} = {value} at step {step} (not a finite number)")]
    NonFinite {
        run: i64,
        key: String,
        step: i64,
        value: f64,
    },
    #[error(
        "run {run} diverged: {key} = {value:e} at step {step}, more than {factor} times its early median \
         {median:e} (the divergence guard, `--divergence-factor`)"
    )]
    Diverged {
        run: i64,
        key: String,
        step: i64,
        value: f64,
        median: f64,
        factor: f64,
    },
    #[error("no run store at {0}: run a job first, or `flowprior db init`")]
    Missing(String),
    #[error(
        "parameter `{key}` of run {run} is write-once: it is already {existing}, refusing to set it to {new}"
    )]
    ParamConflict {
        run: i64,
        key: String,
        existing: String,
        new: String,
    },
    #[error("`flowprior sql` is read-only: {0}")]
    ReadOnly(String),
    #[error("query failed: {0}")]
    Query(String),
    #[error("cannot read artifact {path}: {source}")]
    Artifact {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("export to {path} failed: {message}")]
    Export { path: PathBuf, message: String },
    #[error("artifact store: {0}")]
    Objects(String),
    #[error("cannot start the store's runtime: {0}")]
    Runtime(std::io::Error),
}

pub type Result<T> = std::result::Result<T, StoreError>;

pub(crate) fn sql_err(what: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Sql { what, source }
}

/// A handle on the run store. Cheap to share by reference across threads.
pub struct Store {
    rt: tokio::runtime::Runtime,
    pool: AnyPool,
    location: Location,
    read_only: bool,
    /// Where artifacts are uploaded when `FLOWPRIOR_ARTIFACTS` names an object store.
    objects: Option<objects::Objects>,
}

/// The store's address: the flag, else `FLOWPRIOR_DB`, else `runs/flowprior.db`.
pub fn resolve_db(flag: Option<&str>) -> Location {
    if let Some(s) = flag {
        return Location::parse(s);
    }
    match std::env::var(DB_ENV) {
        Ok(s) if !s.is_empty() => Location::parse(&s),
        _ => Location::parse(DEFAULT_DB),
    }
}

impl Store {
    /// The handle over an open pool; a writable one uploads artifacts to the object store
    /// `FLOWPRIOR_ARTIFACTS` names, if it names one.
    fn assemble(
        rt: tokio::runtime::Runtime,
        pool: AnyPool,
        location: Location,
        read_only: bool,
    ) -> Result<Store> {
        let objects = if read_only {
            None
        } else {
            objects::Objects::from_env()?
        };
        Ok(Store {
            rt,
            pool,
            location,
            read_only,
            objects,
        })
    }

    /// Opens (creating if needed) the store at `location` and applies pending migrations.
    pub fn connect(location: &Location) -> Result<Store> {
        match location {
            Location::Sqlite(path) => Store::open(path),
            Location::Postgres(url) => {
                let rt = runtime()?;
                let pool = connect(&rt, location, url, Mode::Write, 4)?;
                migrate(&rt, &pool, location)?;
                Store::assemble(rt, pool, location.clone(), false)
            }
        }
    }

    /// Opens a store that must already exist ([`StoreError::Missing`] otherwise), read-only, for the
    /// verbs that only read.
    pub fn connect_existing(location: &Location) -> Result<Store> {
        match location {
            Location::Sqlite(path) => Store::open_existing(path),
            Location::Postgres(url) => {
                let rt = runtime()?;
                let pool = connect(&rt, location, url, Mode::Read, 1)?;
                let store = Store::assemble(rt, pool, location.clone(), true)?;
                let has_schema = store
                    .block_on(async {
                        sqlx::query_scalar::<_, i64>(
                            "SELECT COUNT(*) FROM information_schema.tables \
                             WHERE table_schema = current_schema() AND table_name = 'runs'",
                        )
                        .fetch_one(&store.pool)
                        .await
                    })
                    .map_err(|source| StoreError::Open {
                        store: location.to_string(),
                        source,
                    })?;
                if has_schema == 0 {
                    store.close();
                    return Err(StoreError::Missing(location.to_string()));
                }
                Ok(store)
            }
        }
    }

    /// Opens (creating if needed) the SQLite store at `path` and applies pending migrations. Safe
    /// under any number of processes starting at once: creation, the switch to WAL and the migrations
    /// happen under an exclusive lock on the sidecar file `<path>.lock`, so one process migrates and
    /// the others wait for it, then find nothing left to do.
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let location = Location::Sqlite(path.to_path_buf());
        let rt = runtime()?;
        let _guard = open_lock(path)?;
        let pool = connect(&rt, &location, &sqlite_url(path, "rwc"), Mode::Write, 4)?;
        migrate(&rt, &pool, &location)?;
        Store::assemble(rt, pool, location, false)
    }

    /// Opens an existing SQLite store with a read-only connection (`mode=ro` and
    /// `PRAGMA query_only`): any statement that writes fails.
    pub fn open_read_only(path: &Path) -> Result<Store> {
        let location = Location::Sqlite(path.to_path_buf());
        let rt = runtime()?;
        let pool = connect(&rt, &location, &sqlite_url(path, "ro"), Mode::Read, 1)?;
        Store::assemble(rt, pool, location, true)
    }

    /// Opens a SQLite store that must already exist ([`StoreError::Missing`] otherwise), read-only.
    /// When the file or its folder cannot be written (results shipped read-only), SQLite cannot
    /// create the WAL's shared-memory file, so the store is opened as immutable instead.
    pub fn open_existing(path: &Path) -> Result<Store> {
        if !path.is_file() {
            return Err(StoreError::Missing(path.display().to_string()));
        }
        let store = Store::open_read_only(path)?;
        if store.integrity_probe().is_ok() {
            return Ok(store);
        }
        store.close();
        let location = Location::Sqlite(path.to_path_buf());
        let rt = runtime()?;
        let url = format!("{}&immutable=true", sqlite_url(path, "ro"));
        let pool = connect(&rt, &location, &url, Mode::Immutable, 1)?;
        let store = Store::assemble(rt, pool, location, true)?;
        store.integrity_probe()?;
        Ok(store)
    }

    /// Whether the store answers a read (the schema is there and the file can be read).
    fn integrity_probe(&self) -> Result<()> {
        self.block_on(async {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM runs")
                .fetch_one(&self.pool)
                .await
        })
        .map(|_| ())
        .map_err(|source| StoreError::Open {
            store: self.location.to_string(),
            source,
        })
    }

    /// Whether this handle refuses writes.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Where the store is.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The database engine.
    pub fn engine(&self) -> Engine {
        self.location.engine()
    }

    /// Where runs of this store keep their files ([`Location::artifacts_dir`]).
    pub fn artifacts_dir(&self) -> PathBuf {
        self.location.artifacts_dir()
    }

    pub(crate) fn block_on<F: std::future::Future>(&self, fut: F) -> F::Output {
        self.rt.block_on(fut)
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// A write transaction, holding the store's one write lock until it ends (SQLite: `BEGIN
    /// IMMEDIATE`; PostgreSQL: a transaction-scoped advisory lock).
    pub(crate) async fn begin_write(&self) -> sqlx::Result<Transaction<'static, Any>> {
        match self.engine() {
            Engine::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Engine::Postgres => {
                let mut tx = self.pool.begin().await?;
                sqlx::query("SELECT 1 FROM (SELECT pg_advisory_xact_lock($1)) AS held")
                    .bind(PG_WRITE_LOCK)
                    .execute(&mut *tx)
                    .await?;
                Ok(tx)
            }
        }
    }

    /// Checks the store's consistency and returns the verdict ("ok" when sound). SQLite: `PRAGMA
    /// integrity_check`. PostgreSQL (which checks its own pages): every table of the schema reads.
    pub fn integrity_check(&self) -> Result<String> {
        self.block_on(async {
            match self.engine() {
                Engine::Sqlite => {
                    sqlx::query_scalar::<_, String>("PRAGMA integrity_check")
                        .fetch_one(&self.pool)
                        .await
                }
                Engine::Postgres => {
                    for table in [
                        "sweeps",
                        "runs",
                        "sweep_runs",
                        "params",
                        "metrics",
                        "summary",
                        "artifacts",
                        "sweep_points",
                        "run_attempts",
                        "attempt_metrics",
                    ] {
                        sqlx::query(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
                            .fetch_one(&self.pool)
                            .await?;
                    }
                    Ok("ok".to_string())
                }
            }
        })
        .map_err(sql_err("integrity check"))
    }

    /// A local file holding the artifact recorded at `path` with SHA-256 `sha`: `path` itself when it is
    /// a local file, else the object fetched into this host's cache (`cache/` under
    /// [`Store::artifacts_dir`]). The caller checks the SHA-256 of what it gets.
    pub fn local_artifact(&self, path: &str, sha: &str) -> Result<PathBuf> {
        if !objects::is_object_url(path) {
            return Ok(PathBuf::from(path));
        }
        let cache = self.artifacts_dir().join("cache");
        match &self.objects {
            Some(o) if o.holds(path) => self.block_on(o.fetch(path, sha, &cache)),
            // Recorded by a worker configured with another store: open that one.
            _ => {
                let o = objects::Objects::open(objects::store_of(path)?)?;
                self.block_on(o.fetch(path, sha, &cache))
            }
        }
    }

    /// Closes the pool (SQLite: checkpointing the WAL).
    pub fn close(self) {
        let Store { rt, pool, .. } = self;
        rt.block_on(pool.close());
    }
}

#[cfg(test)]
mod tests;
