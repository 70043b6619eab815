//! Many workers on one sweep through a shared PostgreSQL run store, as on a cluster: `sweep submit
//! --script-only` registers the sweep and writes the Slurm batch script, then `sweep worker` processes
//! (what each array task runs) share the work; one is killed with SIGKILL mid-stage.

use crate::common::Sandbox;
use crate::sweep::{sweep_text, wait_for, write};

/// Registers sweep `name` from its text through `sweep submit --script-only`; returns the script.
fn register(sb: &Sandbox, name: &str, text: &str, workers: &str) -> String {
    let f = write(sb, name, text);
    let out = sb.ok(&[
        "sweep",
        "submit",
        f.to_str().unwrap(),
        "--slurm",
        "--workers",
        workers,
        "--script-only",
    ]);
    let path = out
        .lines()
        .find_map(|l| l.strip_prefix("batch script: "))
        .unwrap_or_else(|| panic!("no script path in\n{out}"));
    std::fs::read_to_string(path).expect("batch script")
}

#[test]
fn eight_workers_run_every_stage_exactly_once() {
    let Some(sb) = Sandbox::postgres() else {
        return;
    };
    let script = register(
        &sb,
        "eight",
        &sweep_text(
            r#"["mixture", "moons", "rings"]"#,
            "[0.01, 0.03]",
            "[0, 1]",
            60,
            "",
        ),
        "8",
    );
    assert!(script.contains("#SBATCH --array=0-7"), "{script}");
    assert!(script.contains("sweep worker 'eight'"), "{script}");
    // Registered, nothing run yet.
    assert_eq!(
        sb.sql_i64("SELECT COUNT(*) FROM runs WHERE status = 'queued'"),
        18
    );
    let children: Vec<_> = (0..8)
        .map(|_| {
            sb.cmd()
                .args(["sweep", "worker", "eight"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn worker")
        })
        .collect();
    let mut ran = 0;
    for c in children {
        let out = c.wait_with_output().expect("worker");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(out.status.success(), "{stdout}\n{stderr}");
        assert!(!stderr.to_lowercase().contains("lock"), "{stderr}");
        let line = stdout
            .lines()
            .find(|l| l.contains(" on sweep eight: ran "))
            .expect(&stdout);
        ran += line
            .split(": ran ")
            .nth(1)
            .and_then(|s| s.split(',').next())
            .and_then(|n| n.parse::<i64>().ok())
            .expect(line);
    }
    assert_eq!(ran, 18, "each stage run ran once, by one worker");
    assert_eq!(
        sb.sql_i64("SELECT COUNT(*) FROM runs WHERE status = 'finished' AND attempts = 1"),
        18
    );
    assert_eq!(sb.sql_i64("SELECT COUNT(*) FROM run_attempts"), 18);
    assert!(
        sb.sql_i64("SELECT COUNT(DISTINCT pid) FROM runs") >= 2,
        "work was shared"
    );
    // No metric point was lost: each series holds as many points as its summary counted.
    assert_eq!(
        sb.sql_i64(
            "SELECT COUNT(*) FROM summary s WHERE n <> (SELECT COUNT(*) FROM metrics m \
             WHERE m.run_id = s.run_id AND m.key = s.key)"
        ),
        0
    );
    let status = sb.ok(&["sweep", "status", "eight"]);
    assert!(
        status.contains("18 finished, 0 running, 0 failed"),
        "{status}"
    );
}

#[test]
fn a_worker_killed_mid_stage_loses_its_run_to_another_and_the_attempt_is_kept() {
    let Some(sb) = Sandbox::postgres() else {
        return;
    };
    register(
        &sb,
        "killed",
        &sweep_text(r#"["mixture", "moons"]"#, "[0.01]", "[0]", 800, ""),
        "2",
    );
    let mut first = sb
        .cmd()
        .args(["sweep", "worker", "killed"])
        .spawn()
        .expect("spawn");
    // Killed while a prior (800 steps) is running and has logged some points.
    wait_for(
        &sb,
        &mut first,
        "SELECT COUNT(*) FROM metrics m JOIN runs r ON r.id = m.run_id \
         WHERE r.status = 'running' AND r.stage = 'toy_prior'",
        2,
        120,
    );
    first.kill().expect("SIGKILL");
    first.wait().expect("reap");
    assert_eq!(
        sb.sql_i64("SELECT COUNT(*) FROM runs WHERE status = 'running'"),
        1
    );
    // As if the dead worker had run on another node: its process cannot be looked up from here, so
    // its run is retaken only when its lease (the heartbeat) is older than --stale-after.
    let url = sb.pg.clone().expect("a URL");
    let moved = std::process::Command::new("psql")
        .args([
            url.as_str(),
            "-qc",
            "UPDATE runs SET host = 'node-17' WHERE status = 'running'",
        ])
        .status()
        .expect("psql");
    assert!(moved.success());
    let last_beat: f64 = sb
        .sql_value("SELECT heartbeat_at FROM runs WHERE status = 'running'")
        .parse()
        .expect("a heartbeat");
    let out = sb.ok(&["sweep", "worker", "killed", "--stale-after", "4"]);
    let retaken: f64 = sb
        .sql_value("SELECT started_at FROM run_attempts WHERE attempt = 2")
        .parse()
        .expect("a second attempt");
    assert!(
        retaken - last_beat >= 4.0,
        "retaken {:.1} s after the last heartbeat, before the lease expired",
        retaken - last_beat
    );
    assert!(out.contains("the sweep: 4 of 4 finished"), "{out}");
    assert_eq!(
        sb.sql_i64("SELECT COUNT(*) FROM runs WHERE status = 'finished'"),
        4
    );
    assert_eq!(
        sb.sql_i64("SELECT COUNT(*) FROM runs WHERE attempts = 2"),
        1
    );
    assert_eq!(
        sb.sql_i64("SELECT COUNT(*) FROM run_attempts WHERE status = 'abandoned'"),
        1
    );
    // The dead attempt's points are kept apart from the series of the attempt that finished.
    assert!(sb.sql_i64("SELECT COUNT(*) FROM attempt_metrics WHERE attempt = 1") >= 2);
}

#[test]
fn a_worker_on_a_sweep_the_store_does_not_have_says_so() {
    let sb = Sandbox::new();
    sb.ok(&["db", "init"]);
    let (ok, _, err) = sb.run(&["sweep", "worker", "nosuch"]);
    assert!(!ok, "{err}");
    assert!(err.contains("nosuch"), "{err}");
}

#[test]
fn a_failing_stage_is_retried_up_to_the_attempt_limit_then_reported() {
    let sb = Sandbox::new();
    // A learning rate of 1e30 makes that prior's loss non-finite on every attempt.
    let text = sweep_text(r#"["mixture"]"#, "[0.01]", "[0]", 40, "")
        .replace("[axes]\n", "[axes]\ntoy_prior.prior_lr = [0.001, 1e30]\n")
        .replace(
            r#"rows = ["toy_prior.target", "toy_align.align_lr"]"#,
            r#"rows = ["toy_prior.target", "toy_align.align_lr", "toy_prior.prior_lr"]"#,
        );
    let f = write(&sb, "retried", &text);
    let (ok, out, err) = sb.run(&["sweep", "run", f.to_str().unwrap(), "--max-attempts", "3"]);
    assert!(!ok, "the failure is final after 3 attempts\n{out}\n{err}");
    assert!(out.contains("failed: toy_prior prior_lr=1e+30"), "{out}");
    assert_eq!(
        sb.sql_i64("SELECT attempts FROM runs WHERE status = 'failed'"),
        3
    );
    assert_eq!(
        sb.sql_i64("SELECT COUNT(*) FROM run_attempts WHERE status = 'failed'"),
        3
    );
    // The healthy branch ran once.
    assert_eq!(
        sb.sql_i64("SELECT COUNT(*) FROM runs WHERE status = 'finished' AND attempts = 1"),
        2
    );
    // Run again with the same limit: nothing more is tried.
    let (ok, _, _) = sb.run(&["sweep", "run", f.to_str().unwrap(), "--max-attempts", "3"]);
    assert!(!ok);
    assert_eq!(sb.sql_i64("SELECT MAX(attempts) FROM runs"), 3);
}
