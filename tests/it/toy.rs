//! `flowprior toy` end to end on the tiny preset.

use crate::common::Sandbox;

#[test]
fn tiny_toy_pulls_free_points_towards_the_target_and_records_everything() {
    let sb = Sandbox::new();
    let figs = sb.dir.path().join("figs");
    let args = [
        "toy",
        "--target",
        "mixture,moons",
        "--preset",
        "tiny",
        "--figures",
        figs.to_str().unwrap(),
    ];
    let out = sb.ok(&args);
    assert!(out.contains("mixture") && out.contains("moons"), "{out}");

    // Each target is two runs: its prior (toy_prior) and the free points under it (toy_align).
    let align_run = |t: &str| -> i64 {
        sb.sql_value(&format!(
            "SELECT id FROM runs WHERE stage = 'toy_align' AND name = 'toy_align/{t}'"
        ))
        .parse()
        .unwrap()
    };
    for target in ["mixture", "moons"] {
        let id = align_run(target);
        let get = |k: &str| -> f64 {
            sb.sql_value(&format!(
                "SELECT value FROM summary WHERE run_id = {id} AND key = '{k}'"
            ))
            .parse()
            .unwrap()
        };
        let (start, end, truth) = (
            get("final/start_nll"),
            get("final/points_nll"),
            get("final/true_nll"),
        );
        assert!(
            end < start - 0.5,
            "{target}: NLL {start} -> {end} (true samples {truth})"
        );
        let first_align: f64 = sb
            .sql_value(&format!("SELECT value FROM metrics WHERE run_id = {id} AND key = 'align/loss' ORDER BY step LIMIT 1"))
            .parse()
            .unwrap();
        assert!(
            get("final/align_loss") < first_align,
            "{target}: L_align must fall"
        );
        assert!(
            get("final/landscape_rank_corr") > 0.3,
            "{target}: L_align and NLL landscapes should agree"
        );
        for key in ["prior/loss", "align/loss", "align/nll", "align/flow_nll"] {
            let n: i64 = sb
                .sql_value(&format!(
                    "SELECT COUNT(*) FROM metrics JOIN runs ON runs.id = run_id \
                     WHERE runs.name IN ('toy_prior/{target}', 'toy_align/{target}') AND key = '{key}'"
                ))
                .parse()
                .unwrap();
            assert!(n >= 2, "{target}: series {key} has {n} points");
        }
        for f in [
            "points_on_nll.png",
            "align_landscape.png",
            "curves.png",
            "snapshots.png",
        ] {
            let bytes = std::fs::read(figs.join(target).join(f)).expect("figure written");
            assert!(
                bytes.starts_with(b"\x89PNG") && bytes.len() > 5_000,
                "{target}/{f} is not a real PNG"
            );
        }
    }
    // Mixture-only statistics.
    let modes: f64 = sb
        .sql_value(&format!(
            "SELECT value FROM summary WHERE run_id = {} AND key = 'final/modes_covered'",
            align_run("mixture")
        ))
        .parse()
        .unwrap();
    assert!((1.0..=5.0).contains(&modes));
    assert_eq!(
        sb.sql_value(&format!(
            "SELECT COUNT(*) FROM summary WHERE run_id = {} AND key = 'final/modes_covered'",
            align_run("moons")
        )),
        "0"
    );
    // Re-running reuses both runs.
    let again = sb.ok(&args);
    assert!(
        again.contains("mixture (reused)") && again.contains("moons (reused)"),
        "{again}"
    );
}
