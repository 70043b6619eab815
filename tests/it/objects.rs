//! Artifacts in an S3-compatible object store (a local moto server, `scripts/with-s3.sh`, as `just
//! test` runs the tests), with the runs in PostgreSQL: what a cluster without a shared file system
//! uses. Without the servers these tests say so and pass (`FLOWPRIOR_REQUIRE_PG=1` makes that a
//! failure; `just test` sets it).

use crate::common::Sandbox;
use crate::sweep::{sweep_text, write};

/// The test bucket's URL and a PostgreSQL sandbox, when both servers are there.
fn servers() -> Option<(String, Sandbox)> {
    let s3 = std::env::var("FLOWPRIOR_TEST_S3")
        .ok()
        .filter(|s| !s.is_empty());
    if s3.is_none() {
        assert!(
            std::env::var_os("FLOWPRIOR_REQUIRE_PG").is_none(),
            "FLOWPRIOR_TEST_S3 is not set: run the tests through scripts/with-s3.sh (as `just test` does)"
        );
        eprintln!("FLOWPRIOR_TEST_S3 not set: the object-store test is skipped");
        return None;
    }
    Some((s3?, Sandbox::postgres()?))
}

#[test]
fn priors_go_to_the_bucket_and_alignment_runs_fetch_them_from_there() {
    let Some((s3, sb)) = servers() else {
        return;
    };
    let prefix = format!("t{}", std::process::id());
    let store = format!("{s3}/{prefix}");
    let f = write(
        &sb,
        "bucket",
        &sweep_text(r#"["mixture", "moons"]"#, "[0.01]", "[0]", 60, ""),
    );
    let out = sb
        .cmd()
        .current_dir(sb.dir.path())
        .env("FLOWPRIOR_ARTIFACTS", &store)
        .args(["sweep", "run", f.to_str().unwrap(), "--workers", "2"])
        .output()
        .expect("sweep");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        sb.sql_i64("SELECT COUNT(*) FROM runs WHERE status = 'finished'"),
        4
    );
    // Each prior is an object addressed by its stage and configuration hash.
    let recorded = sb.ok(&[
        "sql",
        "SELECT a.path, r.config_hash FROM artifacts a JOIN runs r ON r.id = a.run_id \
         WHERE a.kind = 'prior' ORDER BY a.run_id",
        "--format",
        "csv",
    ]);
    let rows: Vec<&str> = recorded.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{recorded}");
    for row in rows {
        let (path, hash) = row.split_once(',').expect("two columns");
        assert!(
            path.starts_with(&format!("{store}/toy_prior/{hash}/run-")),
            "{path}"
        );
    }
    // The alignment runs read them through the cache (fetched, checked against the SHA-256).
    let cache = sb.dir.path().join("runs");
    let cached = walk(&cache)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("/cache/"))
        .count();
    assert!(cached >= 2, "fetched priors in {}", cache.display());
}

#[test]
fn a_bucket_that_does_not_exist_fails_the_run_clearly_and_keeps_its_metrics() {
    let Some((_, sb)) = servers() else {
        return;
    };
    let f = write(
        &sb,
        "nobucket",
        &sweep_text(r#"["mixture"]"#, "[0.01]", "[0]", 40, ""),
    );
    let out = sb
        .cmd()
        .current_dir(sb.dir.path())
        .env("FLOWPRIOR_ARTIFACTS", "s3://no-such-bucket-here/p")
        .args(["sweep", "run", f.to_str().unwrap()])
        .output()
        .expect("sweep");
    assert_upload_failed_keeping_metrics(&sb, &out, "s3://no-such-bucket-here/p");
}

#[test]
fn a_bucket_without_write_access_fails_the_run_clearly_and_keeps_its_metrics() {
    let Some((_, sb)) = servers() else {
        return;
    };
    let var =
        |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} (scripts/with-s3.sh sets it)"));
    let f = write(
        &sb,
        "readonly",
        &sweep_text(r#"["mixture"]"#, "[0.01]", "[0]", 40, ""),
    );
    let out = sb
        .cmd()
        .current_dir(sb.dir.path())
        .env("FLOWPRIOR_ARTIFACTS", "s3://flowprior-readonly/p")
        .env("AWS_ENDPOINT", var("FLOWPRIOR_TEST_S3_RO_ENDPOINT"))
        .env("AWS_ACCESS_KEY_ID", var("FLOWPRIOR_TEST_S3_RO_KEY"))
        .env("AWS_SECRET_ACCESS_KEY", var("FLOWPRIOR_TEST_S3_RO_SECRET"))
        .args(["sweep", "run", f.to_str().unwrap()])
        .output()
        .expect("sweep");
    assert_upload_failed_keeping_metrics(&sb, &out, "s3://flowprior-readonly/p");
    // The store's reason, in full on the run.
    let error = sb.sql_value("SELECT error FROM runs WHERE status = 'failed'");
    assert!(
        error.contains("AccessDenied") || error.contains("403"),
        "{error}"
    );
}

/// A sweep whose first upload, to `url`, failed: the command fails naming the destination, its one
/// run is recorded as failed, and the metrics logged before the upload are kept.
fn assert_upload_failed_keeping_metrics(sb: &Sandbox, out: &std::process::Output, url: &str) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "artifact store: cannot upload to {url}/toy_prior/"
        )),
        "{stdout}"
    );
    assert_eq!(
        sb.sql_i64("SELECT COUNT(*) FROM runs WHERE status = 'failed'"),
        1
    );
    assert!(
        sb.sql_i64("SELECT COUNT(*) FROM metrics") > 0,
        "what was logged is kept"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
