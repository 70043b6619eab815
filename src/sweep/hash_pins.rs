//! Run identities are the store's keys: a change that moves a configuration hash makes every store
//! recorded before it rerun its stages. This test pins the hash of every stage run of representative
//! sweeps (copies of the project's sweep files in `testdata/`, so that editing `sweeps/` does not
//! move them), at the smoke and small presets, against the values recorded in
//! `testdata/hashes.txt`. On a mismatch it writes what it computed to `target/hashes.actual.txt`:
//! a refactor must leave the file unchanged; a deliberate identity change updates it.

use std::fmt::Write as _;
use std::path::Path;

use super::{Overrides, Plan, Scale, Sweep};

const SWEEPS: [(&str, &str); 6] = [
    ("smoke", include_str!("testdata/smoke.toml")),
    ("toy", include_str!("testdata/toy.toml")),
    ("priors", include_str!("testdata/priors.toml")),
    ("table1", include_str!("testdata/table1.toml")),
    ("ablations", include_str!("testdata/ablations.toml")),
    ("generators", include_str!("testdata/generators.toml")),
];

/// `sweep preset stage name hash`, one line per stage run, in plan order. Input files are looked up
/// in a folder that does not exist, so their content identity is the fixed `unreadable`.
fn listing() -> String {
    let mut out = String::new();
    for (name, text) in SWEEPS {
        for preset in [Scale::Smoke, Scale::Cpu, Scale::Small] {
            let overrides = Overrides {
                preset: Some(preset),
                ..Default::default()
            };
            let path = format!("sweeps/{name}.toml");
            let sweep = Sweep::parse(text, Path::new(&path), overrides)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let plan = Plan::expand(&sweep, Path::new("/nonexistent-flowprior-data"))
                .unwrap_or_else(|e| panic!("{name} at {}: {e}", preset.name()));
            for n in &plan.nodes {
                let _ = writeln!(
                    out,
                    "{name} {} {} [{}] {}",
                    preset.name(),
                    n.stage.name(),
                    n.spec.name,
                    n.hash
                );
            }
        }
    }
    out
}

#[test]
fn every_stage_kinds_run_identities_are_unchanged() {
    let expected = include_str!("testdata/hashes.txt");
    let actual = listing();
    if actual != expected {
        let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/hashes.actual.txt");
        let _ = std::fs::write(&out, &actual);
        let first = actual
            .lines()
            .zip(expected.lines())
            .find(|(a, e)| a != e)
            .map(|(a, e)| format!("first difference:\n  now:    {a}\n  pinned: {e}"))
            .unwrap_or_else(|| {
                format!(
                    "{} lines now, {} pinned",
                    actual.lines().count(),
                    expected.lines().count()
                )
            });
        panic!(
            "run identities changed ({first}); computed listing in {}",
            out.display()
        );
    }
    // Every stage kind is covered.
    for kind in super::StageKind::all() {
        assert!(
            expected.contains(&format!(" {} [", kind.name())),
            "no pinned run of stage {}",
            kind.name()
        );
    }
}
