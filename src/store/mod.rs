//! The run store: every run, its configuration, parameters, metric series, final values and artifacts,
//! in SQLite through sqlx.
//!
//! * Migrations in `migrations/` are embedded at compile time and applied on open.
//! * WAL journal, `synchronous = NORMAL` and a busy timeout; every write transaction starts with
//!   `BEGIN IMMEDIATE`, so concurrent writers queue on the lock instead of failing with
//!   "database is locked" on a read-to-write upgrade.
//! * The library API is synchronous: a [`Store`] owns a small tokio runtime and blocks on it, so
//!   training loops, rayon code and polars never run inside an async context.

mod active;
mod export;
mod metrics;
mod query;
mod runs;
mod statement;
mod sweeps;
mod view;

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

pub use active::{
    ActiveRun, DEFAULT_DIVERGENCE_FACTOR, DEFAULT_STALE_AFTER_S, DivergenceGuard, HEARTBEAT_EVERY,
};
pub use export::{ExportFormat, ExportTable};
pub use metrics::{ArtifactRef, MetricPoint, ParamValue, SummaryRow};
pub use query::{Cell, OutputFormat, QueryResult, RowWriter, format_real};
pub use runs::{ArtifactRow, RunDetail, RunEnv, RunInfo, RunSpec, RunStatus, process_alive};
pub use statement::{READ_KEYWORDS, check_read_statement};
pub use sweeps::SweepPointRow;

/// Environment variable naming the database file (the `--db` flag wins over it).
pub const DB_ENV: &str = "FLOWPRIOR_DB";
/// Where the store lives when neither `--db` nor `FLOWPRIOR_DB` says otherwise.
pub const DEFAULT_DB: &str = "runs/flowprior.db";
/// How long a connection waits on a locked database before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

/// Errors of the run store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the run store {path}: {source}")]
    Open { path: PathBuf, source: sqlx::Error },
    #[error("cannot create {path} for the run store: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot apply the migrations to {path}: {source}")]
    Migrate {
        path: PathBuf,
        source: sqlx::migrate::MigrateError,
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
    Missing(PathBuf),
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
    pool: SqlitePool,
    path: PathBuf,
    read_only: bool,
}

/// The database path: the flag, else `FLOWPRIOR_DB`, else `runs/flowprior.db`.
pub fn resolve_db_path(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    match std::env::var(DB_ENV) {
        Ok(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(DEFAULT_DB),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("flowprior-store")
        .enable_all()
        .build()
        .map_err(StoreError::Runtime)
}

impl Store {
    /// Opens (creating if needed) the store at `path` and applies pending migrations. Safe under any
    /// number of processes starting at once: creation, the switch to WAL and the migrations happen
    /// under an exclusive lock on the sidecar file `<path>.lock`, so one process migrates and the
    /// others wait for it, then find nothing left to do.
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let rt = runtime()?;
        let _guard = open_lock(path)?;
        let options = connect_options(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true);
        let pool = connect(&rt, options, 4, path)?;
        rt.block_on(async { sqlx::migrate!("./migrations").run(&pool).await })
            .map_err(|source| StoreError::Migrate {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Store {
            rt,
            pool,
            path: path.to_path_buf(),
            read_only: false,
        })
    }

    /// Opens an existing store with a read-only connection (`SQLITE_OPEN_READONLY` and
    /// `PRAGMA query_only`): any statement that writes fails.
    pub fn open_read_only(path: &Path) -> Result<Store> {
        let rt = runtime()?;
        let options = connect_options(path)
            .read_only(true)
            .create_if_missing(false)
            .pragma("query_only", "ON");
        let pool = connect(&rt, options, 1, path)?;
        Ok(Store {
            rt,
            pool,
            path: path.to_path_buf(),
            read_only: true,
        })
    }

    /// Opens a store that must already exist ([`StoreError::Missing`] otherwise), read-only, for the
    /// verbs that only read. When the file or its folder cannot be written (results shipped read-only),
    /// SQLite cannot create the WAL's shared-memory file, so the store is opened as immutable instead.
    pub fn open_existing(path: &Path) -> Result<Store> {
        if !path.is_file() {
            return Err(StoreError::Missing(path.to_path_buf()));
        }
        let store = Store::open_read_only(path)?;
        if store.integrity_probe().is_ok() {
            return Ok(store);
        }
        store.close();
        let rt = runtime()?;
        let options = connect_options(path)
            .read_only(true)
            .immutable(true)
            .create_if_missing(false)
            .pragma("query_only", "ON");
        let pool = connect(&rt, options, 1, path)?;
        let store = Store {
            rt,
            pool,
            path: path.to_path_buf(),
            read_only: true,
        };
        store.integrity_probe()?;
        Ok(store)
    }

    /// Whether the store answers a read (the schema is there and the file can be read).
    fn integrity_probe(&self) -> Result<()> {
        self.block_on(async {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM sqlite_master")
                .fetch_one(&self.pool)
                .await
        })
        .map(|_| ())
        .map_err(|source| StoreError::Open {
            path: self.path.clone(),
            source,
        })
    }

    /// Whether this handle refuses writes.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where runs of this store keep their files: beside the database, named after it
    /// (`runs/flowprior.db` -> `runs/flowprior.artifacts/`), so two stores never share run folders.
    pub fn artifacts_dir(&self) -> PathBuf {
        self.path.with_extension("artifacts")
    }

    pub(crate) fn block_on<F: std::future::Future>(&self, fut: F) -> F::Output {
        self.rt.block_on(fut)
    }

    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Runs `PRAGMA integrity_check` and returns its verdict ("ok" when sound).
    pub fn integrity_check(&self) -> Result<String> {
        self.block_on(async {
            sqlx::query_scalar::<_, String>("PRAGMA integrity_check")
                .fetch_one(&self.pool)
                .await
        })
        .map_err(sql_err("integrity check"))
    }

    /// Closes the pool, checkpointing the WAL.
    pub fn close(self) {
        let Store { rt, pool, .. } = self;
        rt.block_on(pool.close());
    }
}

fn connect(
    rt: &tokio::runtime::Runtime,
    options: SqliteConnectOptions,
    max_connections: u32,
    path: &Path,
) -> Result<SqlitePool> {
    rt.block_on(
        SqlitePoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(BUSY_TIMEOUT)
            .connect_with(options),
    )
    .map_err(|source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    })
}

/// The exclusive lock taken while a store is created and migrated: `<db>.lock` beside the database.
/// Released when the returned file is dropped.
fn open_lock(path: &Path) -> Result<std::fs::File> {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let lock_path = PathBuf::from(name);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|source| StoreError::CreateDir {
            path: lock_path.clone(),
            source,
        })?;
    file.lock().map_err(|source| StoreError::CreateDir {
        path: lock_path,
        source,
    })?;
    Ok(file)
}

fn connect_options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .busy_timeout(BUSY_TIMEOUT)
}

#[cfg(test)]
mod tests;
