//! A report on a fixture database whose numbers are known: the table equals a hand computation, and
//! building it twice gives the same bytes.

use std::path::Path;

use crate::store::{MetricPoint, RunEnv, Store};
use crate::sweep::{Overrides, Plan, Sweep, exec};

const SWEEP: &str = r#"
description = "fixture"
stages = ["toy_prior", "toy_align"]
preset = "smoke"
seeds = [0, 1]

[axes]
toy_prior.target = ["mixture", "moons"]

[[report.tables]]
title = "Fixture table"
rows = ["toy_prior.target"]
columns = [
  { metric = "final/points_nll", label = "NLL", better = "lower" },
  { metric = "final/coverage", label = "cov", group = "free points", better = "higher", digits = 2 },
  { metric = "prior/loss", stage = "toy_prior", label = "prior loss" },
]

[[report.figures]]
kind = "curves"
file = "curves.png"
title = "curves"
metrics = ["align/nll"]
by = ["toy_prior.target"]
"#;

/// Registers the fixture sweep and records, for each point, the given final NLL and coverage of its
/// align run and a prior loss of its prior run; `skip` leaves one align run unfinished.
fn fixture(dir: &Path, skip: Option<usize>) -> Store {
    let store = Store::open(&dir.join("fixture.db")).expect("store");
    let sweep = Sweep::parse(
        SWEEP,
        Path::new("sweeps/fixture.toml"),
        Overrides::default(),
    )
    .expect("valid sweep");
    let plan = Plan::expand(&sweep, Path::new("data")).expect("plan");
    let ids = exec::register(&store, &sweep, &plan).expect("register");
    let env = RunEnv {
        host: "fixture-host".into(),
        pid: 1,
        git_rev: Some("0123456789ab".into()),
        backend: "flex".into(),
        build: Some("flowprior 0.1.0 release [flex]".into()),
        cpu: Some("Fixture CPU (avx2)".into()),
        threads: Some(2),
        gpu: None,
    };
    // Points: (mixture, 0), (mixture, 1), (moons, 0), (moons, 1).
    let nll = [1.0, 3.0, 2.0, 2.5];
    let cov = [0.5, 0.7, 0.9, 0.8];
    for (i, p) in plan.points.iter().enumerate() {
        let prior = ids[p.nodes[&crate::sweep::StageKind::named("toy_prior")]];
        let align = ids[p.nodes[&crate::sweep::StageKind::named("toy_align")]];
        if store.start_run(prior, &env, false, 60.0).expect("start") {
            store
                .log_metrics(
                    prior,
                    &[MetricPoint::new("prior/loss", 9, 1.25 + i as f64 / 4.0)],
                )
                .expect("log");
            store.finish_run(prior).expect("finish");
        }
        assert!(store.start_run(align, &env, false, 60.0).expect("start"));
        let points: Vec<MetricPoint> = (0..3)
            .map(|s| MetricPoint::new("align/nll", s * 10, nll[i] + (2 - s) as f64))
            .chain([
                MetricPoint::new("final/points_nll", 30, nll[i]),
                MetricPoint::new("final/coverage", 30, cov[i]),
            ])
            .collect();
        store.log_metrics(align, &points).expect("log");
        if skip != Some(i) {
            store.finish_run(align).expect("finish");
        }
    }
    store
}

#[test]
fn table_matches_a_hand_computation_and_is_byte_identical() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = fixture(dir.path(), None);
    let a =
        super::build(&store, "fixture", &dir.path().join("a"), Path::new("data")).expect("report");
    let b =
        super::build(&store, "fixture", &dir.path().join("b"), Path::new("data")).expect("report");
    let text = std::fs::read_to_string(&a.markdown).expect("read");
    assert_eq!(text, std::fs::read_to_string(&b.markdown).expect("read"));
    // The whole report as a reader sees it (src/report/snapshots/).
    insta::assert_snapshot!("fixture_report", text);
    // mixture: NLL (1, 3) -> 2 ± sqrt(2); cov (0.5, 0.7) -> 0.6 ± 0.141; prior loss (1.25, 1.5).
    // moons: NLL (2, 2.5) -> 2.25 ± 0.354; cov (0.9, 0.8) -> 0.85 ± 0.071; prior loss (1.75, 2.0).
    // NLL: 2.000 vs 2.250 is within the spread (1.414 + 0.354): not marked. Coverage: 0.85 beats 0.60
    // by 0.25 > 0.141 + 0.071: marked.
    assert_eq!(
        cells(&text, "| target "),
        ["target", "NLL", "free points: cov", "prior loss"]
    );
    assert_eq!(
        cells(&text, "| mixture "),
        ["mixture", "2.000 ± 1.414", "0.60 ± 0.14", "1.375 ± 0.177"]
    );
    assert_eq!(
        cells(&text, "| moons "),
        ["moons", "2.250 ± 0.354", "**0.85 ± 0.07**", "1.875 ± 0.177"]
    );
    assert!(
        text.contains(
            "Mean ± standard deviation over 2 seeds (0, 1), n = 2 per cell unless marked."
        )
    );
    assert!(text.contains(
        "Bold: the best value among comparable rows (compared: all rows), only where it beats each"
    ));
    // Every reported metric is defined, and a smoke sweep says it is not a result.
    for key in ["`final/points_nll`:", "`final/coverage`:", "`prior/loss`:"] {
        assert!(text.contains(key), "no definition of {key}");
    }
    assert!(text.contains("**Smoke preset: not results.**"));
    for line in [
        "- scale preset: smoke",
        "- code revision (of the binary that ran each stage): 0123456789ab",
        "- build: flowprior 0.1.0 release [flex]",
        "- backend: flex",
        "- machine: Fixture CPU (avx2); threads: 2; GPU: n/a",
        "- stage runs: 8 (8 finished)",
        "- dataset: 2-D toy target `mixture` (generated); 2-D toy target `moons` (generated)",
        "- feature network: none",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    assert!(!text.contains("Incomplete"));
    assert!(a.gaps.is_empty(), "{:?}", a.gaps);
    assert!(text.contains("![curves](fixture/curves.png)"));
    let png = std::fs::read(&a.figures[0]).expect("figure");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 5_000);
}

#[test]
fn unfinished_runs_are_marked_not_averaged_in() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = fixture(dir.path(), Some(3));
    let out = super::build(&store, "fixture", dir.path(), Path::new("data")).expect("report");
    let text = std::fs::read_to_string(out.markdown).expect("read");
    assert!(
        text.contains("**Incomplete:** 7 of 8 stage runs finished"),
        "{text}"
    );
    // moons has one finished seed: its value alone, flagged, and nothing is marked best (one seed
    // cannot beat the spread).
    assert_eq!(
        cells(&text, "| moons "),
        ["moons", "2.000 †", "0.90 †", "1.875 ± 0.177"]
    );
    assert!(
        text.lines()
            .filter(|l| l.starts_with('|'))
            .all(|l| !l.contains("**")),
        "{text}"
    );
    assert!(text.contains("† fewer seeds finished than declared."));
    assert!(
        out.gaps.is_empty(),
        "one seed is a value, not a gap: {:?}",
        out.gaps
    );
}

/// The trimmed cells of the first markdown table row that starts with `prefix`.
fn cells(text: &str, prefix: &str) -> Vec<String> {
    let line = text
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no row {prefix:?} in\n{text}"));
    line.trim_matches('|')
        .split('|')
        .map(|c| c.trim().to_string())
        .collect()
}

#[test]
fn the_best_row_is_marked_only_among_comparable_rows_and_beyond_the_spread() {
    use super::{Better, best_rows};
    let m = |v: &[f64]| v.iter().map(|x| Some(*x)).collect::<Vec<_>>();
    let one = vec![String::new(); 3];
    // Clear winner (lower is better), two seeds each.
    assert_eq!(
        best_rows(
            &m(&[1.0, 2.0, 3.0]),
            &m(&[0.1, 0.1, 0.1]),
            &[2, 2, 2],
            &one,
            Better::Lower
        ),
        [true, false, false]
    );
    // Within the spread of the runner-up: nothing.
    assert_eq!(
        best_rows(
            &m(&[1.0, 1.3, 3.0]),
            &m(&[0.1, 0.25, 0.1]),
            &[2, 2, 2],
            &one,
            Better::Lower
        ),
        [false, false, false]
    );
    // One seed anywhere in the group: nothing.
    assert_eq!(
        best_rows(
            &m(&[1.0, 2.0, 3.0]),
            &m(&[0.1, 0.1, 0.1]),
            &[2, 1, 2],
            &one,
            Better::Lower
        ),
        [false, false, false]
    );
    // Groups: each compared on its own (higher is better); a group of one row marks nothing.
    let groups: Vec<String> = ["a", "a", "b"].iter().map(|s| s.to_string()).collect();
    assert_eq!(
        best_rows(
            &m(&[5.0, 9.0, 100.0]),
            &m(&[0.5, 0.5, 0.5]),
            &[3, 3, 3],
            &groups,
            Better::Higher
        ),
        [false, true, false]
    );
    assert_eq!(
        best_rows(
            &m(&[1.0, 9.0, 3.0]),
            &m(&[0.1, 0.1, 0.1]),
            &[2, 2, 2],
            &one,
            Better::None
        ),
        [false, false, false]
    );
}
