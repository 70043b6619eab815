//! Test databases on a real PostgreSQL server: `scripts/with-postgres.sh` starts a throw-away
//! cluster on loopback and names it in `FLOWPRIOR_TEST_PG`; each call here creates a new, empty
//! database on it. `just test` runs the tests that way; a bare `cargo test` without the variable runs
//! the SQLite half only and says so (and fails under `FLOWPRIOR_REQUIRE_PG=1`, as `just test` sets it).

use std::sync::atomic::{AtomicUsize, Ordering};

/// The variable naming the test server's superuser URL.
pub const TEST_PG_ENV: &str = "FLOWPRIOR_TEST_PG";

/// A new, empty database on the test server, as a `postgres://` URL; `None` when no server is named.
pub fn fresh_database() -> Option<String> {
    let admin = match std::env::var(TEST_PG_ENV) {
        Ok(url) if !url.is_empty() => url,
        _ => {
            assert!(
                std::env::var_os("FLOWPRIOR_REQUIRE_PG").is_none(),
                "FLOWPRIOR_REQUIRE_PG is set but {TEST_PG_ENV} is not: run the tests through \
                 scripts/with-postgres.sh (as `just test` does)"
            );
            eprintln!("{TEST_PG_ENV} not set: the PostgreSQL half of this test is skipped");
            return None;
        }
    };
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "fp_test_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    sqlx::any::install_default_drivers();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::AnyConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("cannot reach the test server {admin}: {e}"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        let _ = conn.close().await;
    });
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    Some(format!("{base}/{name}"))
}
