//! Where a run store lives: a SQLite file (a path, or a `sqlite://` URL) or a PostgreSQL database (a
//! `postgres://` / `postgresql://` URL), as `--db` or `FLOWPRIOR_DB` name it.

use std::fmt;
use std::path::{Path, PathBuf};

/// The database engine behind a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Sqlite => "sqlite",
            Engine::Postgres => "postgres",
        }
    }
}

/// A run store's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A SQLite database file.
    Sqlite(PathBuf),
    /// A PostgreSQL database, by its connection URL (credentials included, never displayed).
    Postgres(String),
}

/// Environment variable naming where artifacts of a PostgreSQL store's runs are written (a SQLite
/// store keeps them beside its file).
pub const ARTIFACTS_ENV: &str = "FLOWPRIOR_ARTIFACTS";

impl Location {
    /// Reads `--db` / `FLOWPRIOR_DB`: a `postgres://` or `postgresql://` URL is PostgreSQL; a
    /// `sqlite://PATH` or `sqlite:PATH` URL (query string dropped) or anything else is a SQLite file
    /// path.
    pub fn parse(s: &str) -> Location {
        let lower = s.to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            return Location::Postgres(s.to_string());
        }
        let path = s
            .strip_prefix("sqlite://")
            .or_else(|| s.strip_prefix("sqlite:"))
            .map(|rest| rest.split('?').next().unwrap_or(rest))
            .unwrap_or(s);
        Location::Sqlite(PathBuf::from(path))
    }

    /// The address as given (credentials included), for handing to a child process through
    /// `FLOWPRIOR_DB` (never on its command line, where other users could read it).
    pub fn as_given(&self) -> String {
        match self {
            Location::Sqlite(p) => p.to_string_lossy().into_owned(),
            Location::Postgres(url) => url.clone(),
        }
    }

    pub fn engine(&self) -> Engine {
        match self {
            Location::Sqlite(_) => Engine::Sqlite,
            Location::Postgres(_) => Engine::Postgres,
        }
    }

    /// The SQLite file, when the store is one.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            Location::Sqlite(p) => Some(p),
            Location::Postgres(_) => None,
        }
    }

    /// The database's name in a PostgreSQL URL (`postgres://host/NAME?...`), `postgres` when the URL
    /// names none.
    fn postgres_database(url: &str) -> String {
        let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
        let after_host = after_scheme.split_once('/').map_or("", |(_, rest)| rest);
        let name = after_host.split(['?', '#']).next().unwrap_or("");
        if name.is_empty() {
            "postgres".to_string()
        } else {
            name.to_string()
        }
    }

    /// Where runs of this store keep their files. SQLite: beside the database, named after it
    /// (`runs/flowprior.db` -> `runs/flowprior.artifacts/`), so two stores never share run folders.
    /// PostgreSQL: `$FLOWPRIOR_ARTIFACTS` when set, else `runs/DATABASE.artifacts/` under the
    /// working directory (workers on several hosts need that folder on a shared file system).
    pub fn artifacts_dir(&self) -> PathBuf {
        match self {
            Location::Sqlite(p) => p.with_extension("artifacts"),
            Location::Postgres(url) => match std::env::var(ARTIFACTS_ENV) {
                // An object store URL: this folder is then the local working copy and cache.
                Ok(dir) if !dir.is_empty() && !super::objects::is_object_url(&dir) => {
                    PathBuf::from(dir)
                }
                _ => PathBuf::from("runs")
                    .join(format!("{}.artifacts", Self::postgres_database(url))),
            },
        }
    }

    /// The PostgreSQL URL with its password replaced by `***`, for messages and logs.
    fn redacted(url: &str) -> String {
        let Some((scheme, rest)) = url.split_once("://") else {
            return url.to_string();
        };
        let (authority, tail) = match rest.find(['/', '?']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        match authority.rsplit_once('@') {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
                None => url.to_string(),
            },
            None => url.to_string(),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Sqlite(p) => write!(f, "{}", p.display()),
            Location::Postgres(url) => f.write_str(&Location::redacted(url)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_paths_and_urls() {
        assert_eq!(
            Location::parse("runs/x.db"),
            Location::Sqlite("runs/x.db".into())
        );
        assert_eq!(
            Location::parse("sqlite://runs/x.db?mode=rwc"),
            Location::Sqlite("runs/x.db".into())
        );
        assert_eq!(
            Location::parse("sqlite:/tmp/a.db"),
            Location::Sqlite("/tmp/a.db".into())
        );
        let pg = Location::parse("postgresql://u:secret@db.example:5433/sweeps?sslmode=disable");
        assert_eq!(pg.engine(), Engine::Postgres);
        assert_eq!(pg.sqlite_path(), None);
        assert_eq!(
            pg.to_string(),
            "postgresql://u:***@db.example:5433/sweeps?sslmode=disable"
        );
        assert_eq!(
            Location::parse("postgres://host/db").to_string(),
            "postgres://host/db"
        );
    }

    #[test]
    fn artifacts_sit_beside_the_file_or_under_the_database_name() {
        assert_eq!(
            Location::parse("runs/x.db").artifacts_dir(),
            PathBuf::from("runs/x.artifacts")
        );
        assert_eq!(
            Location::postgres_database("postgres://u@h:1/sweeps?a=b"),
            "sweeps"
        );
        assert_eq!(Location::postgres_database("postgres://u@h:1"), "postgres");
    }
}
