//! The run store on PostgreSQL: the same verbs as on SQLite, through `--db postgres://...`, against a
//! real server (`scripts/with-postgres.sh`, as `just test` runs the tests). Without one, these tests
//! say so and pass (`FLOWPRIOR_REQUIRE_PG=1` makes that a failure; `just test` sets it).

use crate::common::Sandbox;
use crate::sweep::{sweep_text, write};

#[test]
fn a_sweep_with_three_workers_records_each_run_once_and_every_verb_reads_it() {
    let Some(sb) = Sandbox::postgres() else {
        return;
    };
    // Before anything is recorded, a reading verb says there is no store.
    let (ok, _, err) = sb.run(&["runs", "list"]);
    assert!(!ok && err.contains("no run store at postgres://"), "{err}");

    let f = write(
        &sb,
        "pg",
        &sweep_text(r#"["mixture", "moons"]"#, "[0.01, 0.03]", "[0]", 100, ""),
    );
    let f = f.to_str().unwrap();
    sb.ok(&["sweep", "run", f, "--workers", "3"]);
    assert_eq!(sb.sql_value("SELECT COUNT(*) FROM runs"), "6");
    assert_eq!(
        sb.sql_value("SELECT COUNT(*) FROM runs WHERE status = 'finished' AND attempts = 1"),
        "6"
    );
    assert_eq!(
        sb.sql_value("SELECT COUNT(*) FROM run_attempts WHERE status = 'finished'"),
        "6"
    );
    // Every point of every series is there: the summary's count equals the rows.
    assert_eq!(
        sb.sql_value(
            "SELECT COUNT(*) FROM summary s WHERE n <> (SELECT COUNT(*) FROM metrics m \
             WHERE m.run_id = s.run_id AND m.key = s.key)"
        ),
        "0"
    );
    // A second pass finds nothing to do.
    let again = sb.ok(&["sweep", "run", f]);
    assert!(
        again.contains("6 reused") || again.contains("reused 6") || again.contains("│ 0 "),
        "{again}"
    );
    assert_eq!(sb.sql_value("SELECT MAX(attempts) FROM runs"), "1");

    let list = sb.ok(&["runs", "list"]);
    assert_eq!(list.matches("finished").count(), 6, "{list}");
    let show = sb.ok(&["runs", "show", "1"]);
    assert!(show.contains("toy_prior"), "{show}");
    let wide = sb.ok(&[
        "sql",
        "SELECT id, p_target, m_final_points_nll FROM runs_wide WHERE stage = 'toy_align' ORDER BY id",
        "--format",
        "csv",
    ]);
    assert_eq!(wide.lines().count(), 5, "{wide}");
    let (ok, _, err) = sb.run(&["sql", "DELETE FROM runs"]);
    assert!(!ok && err.contains("read-only"), "{err}");
    let status = sb.ok(&["sweep", "status", "pg"]);
    assert!(
        status.contains("6 finished, 0 running, 0 failed"),
        "{status}"
    );
    let reports = sb.dir.path().join("reports");
    let r = reports.to_str().unwrap();
    let checked = sb.ok(&["report", "pg", "--out", r, "--check"]);
    assert!(checked.contains("check: every expected row"), "{checked}");
    let md = std::fs::read_to_string(reports.join("pg.md")).expect("report");
    assert!(md.contains("| moons"), "{md}");
    let out = sb.dir.path().join("m.csv");
    sb.ok(&[
        "runs",
        "export",
        "--format",
        "csv",
        "--table",
        "metrics",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        std::fs::read_to_string(&out)
            .expect("export")
            .lines()
            .count()
            > 10
    );
    assert!(sb.ok(&["db", "check"]).contains("integrity ok"));
    // Artifacts went to $FLOWPRIOR_ARTIFACTS, with their paths recorded.
    assert!(!sb.db().exists());
    let recorded = sb.sql_value("SELECT path FROM artifacts ORDER BY run_id LIMIT 1");
    assert!(
        recorded.starts_with(sb.dir.path().join("artifacts").to_str().unwrap()),
        "{recorded}"
    );
    assert!(std::path::Path::new(&recorded).is_file(), "{recorded}");
}

#[test]
fn a_wrong_password_is_refused_clearly_and_never_printed() {
    let Some(sb) = Sandbox::postgres() else {
        return;
    };
    let url = sb.pg.clone().expect("a URL");
    let (user, rest) = url.split_once('@').expect("user@host");
    let wrong = format!(
        "{}:not-the-password@{rest}",
        user.rsplit_once(':').expect("password").0
    );
    let bad = Sandbox {
        pg: Some(wrong),
        ..Sandbox::new()
    };
    let (ok, _, err) = bad.run(&["runs", "list"]);
    assert!(!ok, "{err}");
    assert!(err.contains("password authentication failed"), "{err}");
    assert!(err.contains("postgres:***@127.0.0.1"), "{err}");
    assert!(!err.contains("not-the-password"), "{err}");
}

#[test]
fn an_unreachable_server_is_a_clear_error() {
    let sb = Sandbox {
        pg: Some("postgres://nobody@127.0.0.1:9/none".into()),
        ..Sandbox::new()
    };
    let (ok, _, err) = sb.run(&["runs", "list"]);
    assert!(!ok, "{err}");
    assert!(
        err.contains("cannot open the run store postgres://nobody@127.0.0.1:9/none"),
        "{err}"
    );
}
