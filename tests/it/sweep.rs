//! `flowprior sweep` and `flowprior report` end to end on tiny toy sweeps.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::common::Sandbox;

/// A tiny toy sweep: a second or two per stage.
pub(crate) fn sweep_text(
    targets: &str,
    lrs: &str,
    seeds: &str,
    prior_steps: usize,
    extra: &str,
) -> String {
    format!(
        r#"
stages = ["toy_prior", "toy_align"]
preset = "smoke"
seeds = {seeds}

[fixed]
toy_prior.width = 32
toy_prior.prior_steps = {prior_steps}
toy_align.points = 64
toy_align.align_steps = 20
toy_align.eval_every = 10
toy_align.exact_points = 8
toy_align.exact_steps = 4
toy_align.kde_samples = 500
toy_align.grid = 8
toy_align.landscape_draws = 1
{extra}

[axes]
toy_prior.target = {targets}
toy_align.align_lr = {lrs}

[[report.tables]]
title = "Toy"
rows = ["toy_prior.target", "toy_align.align_lr"]
columns = [
  {{ metric = "final/points_nll", label = "points NLL", better = "lower" }},
  {{ metric = "final/coverage", label = "coverage", better = "higher" }},
  {{ metric = "prior/loss", stage = "toy_prior", label = "prior loss" }},
]

[[report.figures]]
kind = "versus"
file = "nll_vs_lr.png"
title = "NLL vs lr"
x = "toy_align.align_lr"
metric = "final/points_nll"
by = ["toy_prior.target"]
"#
    )
}

pub(crate) fn write(sb: &Sandbox, name: &str, text: &str) -> PathBuf {
    let dir = sb.dir.path().join("sweeps");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(&p, text).expect("write sweep");
    p
}

#[test]
fn sweeps_share_upstream_runs_add_only_new_points_and_report() {
    let sb = Sandbox::new();
    let a = write(
        &sb,
        "alpha",
        &sweep_text(r#"["mixture"]"#, "[0.01, 0.03]", "[0]", 60, ""),
    );
    let a = a.to_str().unwrap();
    // Dry run: a plan, nothing written.
    let plan = sb.ok(&["sweep", "run", a, "--dry-run"]);
    assert!(
        plan.contains("dry run: 3 to run, 0 reused, nothing written"),
        "{plan}"
    );
    assert!(!sb.db().exists(), "a dry run must not create the store");

    let out = sb.ok(&["sweep", "run", a]);
    assert!(out.contains("toy_prior"), "{out}");
    assert_eq!(
        sb.sql_i64("SELECT COUNT(*) FROM runs WHERE status = 'finished'"),
        3
    );

    // A second sweep sharing the prior: it is reused, not retrained.
    let b = write(
        &sb,
        "beta",
        &sweep_text(r#"["mixture"]"#, "[0.05]", "[0]", 60, ""),
    );
    let b = b.to_str().unwrap();
    let plan = sb.ok(&["sweep", "run", b, "--dry-run"]);
    assert!(plan.contains("reuse run 1"), "{plan}");
    assert!(plan.contains("dry run: 1 to run, 1 reused"), "{plan}");
    sb.ok(&["sweep", "run", b]);
    assert_eq!(
        sb.sql_i64("SELECT COUNT(*) FROM runs WHERE stage = 'toy_prior'"),
        1
    );
    assert_eq!(sb.sql_i64("SELECT attempts FROM runs WHERE id = 1"), 1);
    assert_eq!(sb.sql_i64("SELECT COUNT(*) FROM runs"), 4);

    // Changing a setting under the same sweep name adds new runs, never reuses the old ones.
    let changed = sweep_text(
        r#"["mixture"]"#,
        "[0.01, 0.03]",
        "[0]",
        60,
        "toy_align.flow_mul = 2",
    );
    std::fs::write(a, changed).expect("rewrite");
    let plan = sb.ok(&["sweep", "run", a, "--dry-run"]);
    assert!(plan.contains("dry run: 2 to run, 1 reused"), "{plan}");
    sb.ok(&["sweep", "run", a]);
    assert_eq!(sb.sql_i64("SELECT COUNT(*) FROM runs"), 6);
    assert_eq!(
        sb.sql_i64("SELECT COUNT(*) FROM sweep_points WHERE sweep = 'alpha'"),
        4,
        "the sweep's points are the current file's"
    );
    // Running it again runs nothing.
    let again = sb.ok(&["sweep", "run", a]);
    assert!(again.contains("│ 0       │"), "{again}");
    assert_eq!(sb.sql_i64("SELECT MAX(attempts) FROM runs"), 1);

    // Status, then the report: every row and column, finite numbers, the same bytes twice.
    let status = sb.ok(&["sweep", "status", "alpha"]);
    assert!(
        status.contains("3 finished, 0 running, 0 failed"),
        "{status}"
    );
    let reports = sb.dir.path().join("reports");
    let r = reports.to_str().unwrap();
    let checked = sb.ok(&["report", "alpha", "--out", r, "--check"]);
    assert!(checked.contains("check: every expected row"), "{checked}");
    let md = std::fs::read_to_string(reports.join("alpha.md")).expect("report");
    for row in ["| mixture | 0.01", "| mixture | 0.03"] {
        let line = md
            .lines()
            .find(|l| l.starts_with(row))
            .unwrap_or_else(|| panic!("{row} in\n{md}"));
        let cells: Vec<&str> = line
            .split('|')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        assert_eq!(cells.len(), 5, "{line}");
        for c in &cells[2..] {
            let v: f64 = c
                .trim_matches('*')
                .split_whitespace()
                .next()
                .unwrap()
                .parse()
                .expect("number");
            assert!(v.is_finite(), "{line}");
        }
    }
    assert!(md.contains("| target  | align_lr | points NLL"), "{md}");
    sb.ok(&["report", "alpha", "--out", r]);
    assert_eq!(
        md,
        std::fs::read_to_string(reports.join("alpha.md")).expect("report")
    );
    let png = std::fs::read(reports.join("alpha/nll_vs_lr.png")).expect("figure");
    assert!(png.starts_with(b"\x89PNG"));
}

#[test]
fn a_bad_sweep_file_exits_2_naming_file_and_key_and_writes_nothing() {
    let sb = Sandbox::new();
    let text = sweep_text(
        r#"["mixture", "nowhere"]"#,
        "[]",
        "[0]",
        60,
        "toy_prior.widht = 3",
    );
    let f = write(&sb, "bad", &text);
    let out = sb
        .cmd()
        .args(["sweep", "run", f.to_str().unwrap()])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for part in [
        "bad.toml: `fixed.toy_prior.widht`: unknown setting of stage `toy_prior`",
        "bad.toml: `axes.toy_align.align_lr`: expected a non-empty list of values",
        "bad.toml: `axes.toy_prior.target[1]`: unknown variant `nowhere`",
    ] {
        assert!(err.contains(part), "missing {part:?} in\n{err}");
    }
    assert!(!sb.db().exists(), "nothing may be written");
}

#[test]
fn failed_stages_are_recorded_and_the_rest_carries_on() {
    let sb = Sandbox::new();
    // A learning rate of 1e30 makes the prior's loss non-finite: that prior fails, its alignment run
    // is blocked, and the other branch finishes.
    let text = sweep_text(r#"["mixture"]"#, "[0.01]", "[0]", 40, "")
        .replace("toy_prior.width = 32", "toy_prior.width = 32\n")
        .replace("[axes]\n", "[axes]\ntoy_prior.prior_lr = [0.001, 1e30]\n")
        .replace(
            r#"rows = ["toy_prior.target", "toy_align.align_lr"]"#,
            r#"rows = ["toy_prior.target", "toy_align.align_lr", "toy_prior.prior_lr"]"#,
        );
    let f = write(&sb, "faulty", &text);
    let (ok, out, err) = sb.run(&["sweep", "run", f.to_str().unwrap()]);
    assert!(!ok, "a sweep with a failure exits non-zero\n{out}\n{err}");
    assert!(
        out.contains("failed: toy_prior prior_lr=1e+30 target=mixture seed=0"),
        "{out}"
    );
    assert!(err.contains("1 failed, 1 blocked"), "{err}");
    assert_eq!(
        sb.sql_i64("SELECT COUNT(*) FROM runs WHERE status = 'finished'"),
        2
    );
    assert_eq!(
        sb.sql_i64("SELECT COUNT(*) FROM runs WHERE status = 'failed' AND error LIKE '%diverged%'"),
        1
    );
    let status = sb.ok(&["sweep", "status", "faulty"]);
    assert!(status.contains("blocked"), "{status}");
    // The report still comes out, with n/a for the blocked point.
    let r = sb.dir.path().join("reports");
    sb.ok(&["report", "faulty", "--out", r.to_str().unwrap()]);
    let (ok, _, err) = sb.run(&["report", "faulty", "--out", r.to_str().unwrap(), "--check"]);
    assert!(!ok && err.contains("no finite value"), "{err}");
    let md = std::fs::read_to_string(r.join("faulty.md")).expect("report");
    assert!(
        md.contains("n/a") && md.contains("**Incomplete:** 2 of 4"),
        "{md}"
    );
}

/// Polls until `q` returns at least `n` (or panics after `secs`, or when `child`, the sweep being
/// watched, has exited: its stderr, inherited, says why); before the store exists it counts -1.
pub(crate) fn wait_for(sb: &Sandbox, child: &mut std::process::Child, q: &str, n: i64, secs: u64) {
    let t = Instant::now();
    let poll = || {
        let (ok, out, _) = sb.run(&["sql", q, "--format", "csv"]);
        if ok {
            out.lines()
                .nth(1)
                .and_then(|l| l.parse().ok())
                .unwrap_or(-1)
        } else {
            -1
        }
    };
    while poll() < n {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the sweep exited ({status}) before `{q}` reached {n}");
        }
        assert!(
            t.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {q}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_killed_sweep_resumes_with_every_run_exactly_once() {
    let sb = Sandbox::new();
    let f = write(
        &sb,
        "resume",
        &sweep_text(r#"["mixture", "moons"]"#, "[0.01]", "[0, 1]", 800, ""),
    );
    let f = f.to_str().unwrap();
    let mut child = sb.cmd().args(["sweep", "run", f]).spawn().expect("spawn");
    // Kill it while a prior (800 steps, the long stage: a 20-step alignment run may finish between
    // the query and the kill) is running, after at least one run has finished (one query, so that
    // the state seen is one moment's).
    wait_for(
        &sb,
        &mut child,
        "SELECT (SELECT COUNT(*) FROM runs WHERE status = 'finished') >= 1 \
         AND (SELECT COUNT(*) FROM runs WHERE status = 'running' AND stage = 'toy_prior') >= 1",
        1,
        120,
    );
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    let finished_before = sb.sql_i64("SELECT COUNT(*) FROM runs WHERE status = 'finished'");
    assert!(finished_before < 8, "the sweep was killed before the end");
    assert_eq!(
        sb.sql_i64("SELECT COUNT(*) FROM runs WHERE status = 'running'"),
        1
    );

    // The same command again: the dead process's stage is retaken at once, the rest finishes.
    let out = sb.ok(&["sweep", "run", f]);
    assert!(out.contains("grid points"), "{out}");
    assert_eq!(sb.sql_i64("SELECT COUNT(*) FROM runs"), 8);
    assert_eq!(
        sb.sql_i64("SELECT COUNT(*) FROM runs WHERE status = 'finished'"),
        8
    );
    // Finished runs were never rerun; only the killed one has a second attempt.
    assert_eq!(
        sb.sql_i64("SELECT COUNT(*) FROM runs WHERE attempts = 1"),
        7
    );
    assert_eq!(
        sb.sql_i64("SELECT COUNT(*) FROM runs WHERE attempts = 2"),
        1
    );
    // Every alignment run has its final metrics and its series.
    assert_eq!(
        sb.sql_i64("SELECT COUNT(DISTINCT run_id) FROM summary s JOIN runs r ON r.id = s.run_id \
                    WHERE r.stage = 'toy_align' AND s.key = 'final/points_nll' AND s.value IS NOT NULL"
        ),
        4
    );
    assert_eq!(
        sb.sql_i64(
            "SELECT COUNT(DISTINCT run_id) FROM metrics m JOIN runs r ON r.id = m.run_id \
                    WHERE r.stage = 'toy_prior' AND m.key = 'prior/loss'"
        ),
        4
    );
    assert!(sb.ok(&["db", "check"]).contains("integrity ok"));
}

#[test]
fn parallel_workers_never_run_a_stage_twice() {
    let sb = Sandbox::new();
    let f = write(
        &sb,
        "par",
        &sweep_text(r#"["mixture", "moons"]"#, "[0.01, 0.03]", "[0]", 150, ""),
    );
    let out = sb.ok(&["sweep", "run", f.to_str().unwrap(), "--workers", "3"]);
    assert_eq!(sb.sql_i64("SELECT COUNT(*) FROM runs"), 6);
    // The summary's "ran now" counts the runs of every worker, not only the first process's.
    let rows: Vec<Vec<&str>> = out
        .lines()
        .filter(|l| l.starts_with("│ toy_"))
        .map(|l| {
            l.split('│')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect()
        })
        .collect();
    assert_eq!(rows.len(), 2, "{out}");
    for r in &rows {
        assert_eq!(r.len(), 6, "{out}");
        assert_eq!(r[1], r[5], "every run of the stage ran now: {out}");
    }
    assert_eq!(
        sb.sql_i64("SELECT COUNT(*) FROM runs WHERE status = 'finished' AND attempts = 1"),
        6
    );
    assert!(
        sb.sql_i64("SELECT COUNT(DISTINCT pid) FROM runs") >= 2,
        "work was shared"
    );
}

/// `stage run` runs one stage outside a sweep, planning and reusing its inputs as a sweep does: the
/// runs it records are the ones `flowprior toy` and sweeps find by configuration.
#[test]
fn one_stage_runs_alone_and_shares_runs_with_sweeps_and_commands() {
    let sb = Sandbox::new();
    let run = |extra: &[&str]| {
        let mut a = vec![
            "stage",
            "run",
            "toy_align",
            "--set",
            "toy_prior.target=moons",
        ];
        a.extend_from_slice(extra);
        sb.ok(&a)
    };
    let first = run(&[]);
    assert!(
        first.contains("│ toy_prior │ 1   │") && first.contains("ran"),
        "{first}"
    );
    let again = run(&[]);
    assert_eq!(again.matches("reused").count(), 2, "{again}");
    let other = run(&["--set", "align_lr=0.05"]);
    assert!(
        other.contains("│ toy_prior │ 1   │ toy_prior seed=0 │ finished │ reused"),
        "{other}"
    );
    // The same configuration through `flowprior toy`: reused, nothing trained.
    let toy = sb.ok(&["toy", "--target", "moons", "--preset", "smoke"]);
    assert!(toy.contains("moons (reused)"), "{toy}");
    assert_eq!(sb.sql_i64("SELECT COUNT(*) FROM runs"), 3);
    let (ok, _, err) = sb.run(&["stage", "run", "toy_align", "--set", "nokey"]);
    assert!(!ok && err.contains("expected KEY=VALUE"), "{err}");
}
