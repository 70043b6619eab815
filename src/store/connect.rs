//! Opening a run store's connections: SQLite and PostgreSQL URLs and session settings, the pool,
//! migrations (with a store from a newer version told apart), and binding helpers both engines need.

use std::path::{Path, PathBuf};

use sqlx::any::AnyPoolOptions;
use sqlx::{Any, AnyConnection, AnyPool, Executor};

use super::{BUSY_TIMEOUT, Engine, Location, PG_CONNECT_TIMEOUT, Result, StoreError};

/// Binds an optional float as a DOUBLE PRECISION value or NULL on either engine. sqlx 0.9's `Any`
/// driver hands a NULL `f64` to PostgreSQL as a `float4` NULL (and a NULL `f32` as `float8`), which
/// PostgreSQL then rejects against a statement prepared with `float8`; a NULL is therefore bound as
/// the `f32` NULL that arrives as `float8` (SQLite: a NULL either way). The PostgreSQL store tests
/// cover it.
pub(crate) trait BindReal {
    fn bind_real(self, v: Option<f64>) -> Self;
}

impl<'q> BindReal for sqlx::query::Query<'q, Any, sqlx::any::AnyArguments> {
    fn bind_real(self, v: Option<f64>) -> Self {
        match v {
            Some(x) => self.bind(x),
            None => self.bind(None::<f32>),
        }
    }
}

pub(super) fn runtime() -> Result<tokio::runtime::Runtime> {
    sqlx::any::install_default_drivers();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("flowprior-store")
        .enable_all()
        .build()
        .map_err(StoreError::Runtime)
}

/// How a connection is set up once opened.
#[derive(Clone, Copy)]
pub(super) enum Mode {
    /// Reads and writes.
    Write,
    /// Refuses writes (SQLite `query_only`, PostgreSQL read-only transactions).
    Read,
    /// SQLite only: the file cannot change under us (results shipped read-only).
    Immutable,
}

/// The `sqlite://` URL of `path` in `mode` (`rwc`, `ro`), percent-encoded so that any file name
/// survives URL parsing.
pub(super) fn sqlite_url(path: &Path, mode: &str) -> String {
    let text = path.to_string_lossy();
    let mut encoded = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"/._-~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("sqlite://{encoded}?mode={mode}")
}

/// The statements each new connection runs before it is used.
fn session_setup(engine: Engine, mode: Mode) -> String {
    match engine {
        Engine::Sqlite => {
            let mut s = format!(
                "PRAGMA busy_timeout = {}; PRAGMA foreign_keys = ON;",
                BUSY_TIMEOUT.as_millis()
            );
            match mode {
                Mode::Write => {
                    s.push_str(" PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
                }
                Mode::Read | Mode::Immutable => s.push_str(" PRAGMA query_only = ON;"),
            }
            s
        }
        Engine::Postgres => {
            let mut s = format!(
                "SET lock_timeout = '{}s'; SET client_min_messages = warning;",
                BUSY_TIMEOUT.as_secs()
            );
            if !matches!(mode, Mode::Write) {
                s.push_str(" SET default_transaction_read_only = on;");
            }
            s
        }
    }
}

pub(super) fn connect(
    rt: &tokio::runtime::Runtime,
    location: &Location,
    url: &str,
    mode: Mode,
    max_connections: u32,
) -> Result<AnyPool> {
    let setup = session_setup(location.engine(), mode);
    let open_err = |source| StoreError::Open {
        store: location.to_string(),
        source,
    };
    if location.engine() == Engine::Postgres {
        // One connection first, so that the server's own reason (refused, no such database, bad
        // credentials) is what the user reads, not the pool's timeout.
        use sqlx::Connection;
        rt.block_on(async {
            let conn = tokio::time::timeout(PG_CONNECT_TIMEOUT, AnyConnection::connect(url))
                .await
                .map_err(|_| sqlx::Error::PoolTimedOut)??;
            conn.close().await
        })
        .map_err(open_err)?;
    }
    rt.block_on(
        AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(match location.engine() {
                Engine::Sqlite => BUSY_TIMEOUT,
                // A server that does not answer is an error within seconds, not a minute.
                Engine::Postgres => PG_CONNECT_TIMEOUT,
            })
            .after_connect(move |conn: &mut AnyConnection, _meta| {
                let setup = setup.clone();
                Box::pin(async move {
                    conn.execute(sqlx::AssertSqlSafe(setup)).await?;
                    Ok(())
                })
            })
            .connect(url),
    )
    .map_err(open_err)
}

pub(super) fn migrate(
    rt: &tokio::runtime::Runtime,
    pool: &AnyPool,
    location: &Location,
) -> Result<()> {
    let migrator = sqlx::migrate!("./migrations");
    rt.block_on(migrator.run(pool))
        .map_err(|source| match source {
            sqlx::migrate::MigrateError::VersionMissing(version) => StoreError::NewerSchema {
                store: location.to_string(),
                version,
                known: migrator.iter().map(|m| m.version).max().unwrap_or(0),
            },
            source => StoreError::Migrate {
                store: location.to_string(),
                source,
            },
        })
}

/// The exclusive lock taken while a store is created and migrated: `<db>.lock` beside the database.
/// Released when the returned file is dropped.
pub(super) fn open_lock(path: &Path) -> Result<std::fs::File> {
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
