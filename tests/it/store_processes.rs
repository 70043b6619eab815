//! Several processes on one store, and a process killed mid-run.

use std::time::{Duration, Instant};

use crate::common::Sandbox;

#[test]
fn concurrent_writers_lose_no_metric_and_never_see_locked() {
    let sb = Sandbox::new();
    sb.ok(&["db", "init"]);
    let writers = 4;
    let points = 150;
    let children: Vec<_> = (0..writers)
        .map(|i| {
            sb.cmd()
                .args(["bench", "store-writer", "--name", &format!("w{i}")])
                .args(["--points", &points.to_string(), "--batch", "2"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn writer")
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().expect("writer output");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "writer failed: {err}");
        assert!(!err.to_lowercase().contains("locked"), "{err}");
    }
    assert_eq!(
        sb.sql_value("SELECT COUNT(*) FROM runs WHERE status = 'finished'"),
        writers.to_string()
    );
    let per_run = sb.ok(&[
        "sql",
        "SELECT run_id, COUNT(*) AS n FROM metrics GROUP BY run_id",
        "--format",
        "csv",
    ]);
    let counts: Vec<&str> = per_run
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap())
        .collect();
    assert_eq!(counts, vec![(2 * points).to_string(); writers]);
    // Summaries agree with the series: final value at the last step, every point counted.
    assert_eq!(
        sb.sql_value(&format!(
            "SELECT COUNT(*) FROM summary WHERE key = 'square' AND step = {} AND value = {} AND n = {points}",
            points - 1,
            (points - 1) * (points - 1)
        )),
        writers.to_string()
    );
}

/// A long-running writer (the same run each time it is started).
const VICTIM: [&str; 10] = [
    "bench",
    "store-writer",
    "--name",
    "victim",
    "--points",
    "100000000",
    "--batch",
    "5",
    "--sleep-ms",
    "2",
];

#[test]
fn sigkill_mid_run_leaves_a_consistent_store_and_a_stale_run() {
    let sb = Sandbox::new();
    sb.ok(&["db", "init"]);
    let mut child = sb
        .cmd()
        .args(VICTIM)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn writer");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n: i64 = sb
            .sql_value("SELECT COUNT(*) FROM metrics")
            .parse()
            .unwrap_or(0);
        if n >= 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the writer never logged anything"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().expect("SIGKILL"); // Child::kill sends SIGKILL on Unix
    child.wait().expect("reap");

    let check = sb.ok(&["db", "check"]);
    assert!(check.contains("integrity ok"), "{check}");
    // Every batch is one transaction: the series and the summary agree exactly.
    let series = sb.sql_value("SELECT COUNT(*) FROM metrics WHERE key = 'value'");
    assert_eq!(
        sb.sql_value("SELECT n FROM summary WHERE key = 'value'"),
        series
    );
    let max_step = sb.sql_value("SELECT MAX(step) FROM metrics WHERE key = 'value'");
    assert_eq!(
        sb.sql_value("SELECT step FROM summary WHERE key = 'value'"),
        max_step
    );
    assert_eq!(
        series.parse::<i64>().unwrap() % 5,
        0,
        "a batch was half-written"
    );
    assert_eq!(sb.sql_value("SELECT status FROM runs"), "running");

    // Its process on this host is gone: stale at once, whatever the heartbeat threshold (the rule
    // `sweep run` retakes by, and `sweep status` shows).
    for after in ["1", "3600"] {
        let stale = sb.ok(&["runs", "stale", "--after", after]);
        assert!(stale.contains("run 1 (bench-store victim)"), "{stale}");
    }

    // Retaken, the run starts a new attempt: the dead attempt's points move to attempt_metrics, and
    // the summary counts the new attempt's points only.
    let before: i64 = sb
        .sql_value("SELECT COUNT(*) FROM metrics")
        .parse()
        .expect("count");
    sb.ok(&[VICTIM.as_slice(), &["--stop-after", "40"]].concat());
    assert_eq!(sb.sql_value("SELECT attempts FROM runs WHERE id = 1"), "2");
    assert_eq!(
        sb.sql_value("SELECT COUNT(*) FROM attempt_metrics WHERE attempt = 1"),
        before.to_string()
    );
    assert_eq!(
        sb.sql_value("SELECT n FROM summary WHERE key = 'value'"),
        "40"
    );
    assert_eq!(
        sb.sql_value("SELECT COUNT(*) FROM metrics WHERE key = 'value'"),
        "40"
    );
    assert_eq!(
        sb.sql_value("SELECT group_concat(status, ' ') FROM (SELECT status FROM run_attempts ORDER BY attempt)"),
        "abandoned finished"
    );
}
