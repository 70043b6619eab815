//! The prior stage on a feature file the test writes: projections, diagnostics, evaluation, artifacts.

use crate::common::Sandbox;

#[test]
fn prior_stage_trains_and_evaluates_on_a_feature_file() {
    let sb = Sandbox::new();
    // 1200 rows of 24-D features on a noisy 3-D subspace.
    let (n, d) = (1200usize, 24usize);
    let data: Vec<f32> = (0..n * d)
        .map(|k| {
            let (i, j) = (k / d, k % d);
            let (a, b, c) = (
                (i as f32 * 0.37).sin(),
                (i as f32 * 0.11).cos(),
                (i % 7) as f32 / 7.0,
            );
            a * (j as f32).cos()
                + b * (j as f32 * 0.5).sin()
                + c
                + 0.01 * ((k * 7919 % 101) as f32 / 101.0)
        })
        .collect();
    let feats = sb.dir.path().join("feats.npy");
    flowprior::features::write_npy(&feats, &data, &[n, d]).expect("write features");
    let sweep = format!(
        r#"
stages = ["prior"]
preset = "smoke"
[fixed]
prior.source = "file"
prior.path = "{}"
prior.dim = 8
prior.holdout = 200
prior.steps = 60
prior.warmup = 5
prior.eval_samples = 200
prior.diag_rows = 400
[axes]
prior.projection = ["random", "pca", "avgpool"]
"#,
        feats.display()
    );
    let f = sb.dir.path().join("p.toml");
    std::fs::write(&f, sweep).expect("write sweep");
    sb.ok(&["sweep", "run", f.to_str().unwrap()]);
    assert_eq!(
        sb.sql_value("SELECT COUNT(*) FROM runs WHERE stage = 'prior' AND status = 'finished'"),
        "3"
    );
    for key in [
        "eval/frechet",
        "eval/precision",
        "eval/recall",
        "eval/knn_log_radius_samples",
        "projection/distortion_cv",
        "diag/two_nn_dim",
        "diag/separation",
    ] {
        let n = sb.sql_value(&format!(
            "SELECT COUNT(*) FROM summary WHERE key = '{key}' AND value IS NOT NULL"
        ));
        assert_eq!(n, "3", "{key}");
    }
    // The data lie near a 3-D subspace: TwoNN sees far fewer than 8 dimensions after PCA to 8.
    let id: f64 = sb
        .sql_value("SELECT value FROM summary s JOIN runs r ON r.id = s.run_id WHERE s.key = 'diag/two_nn_dim' AND r.name LIKE '%pca%'")
        .parse()
        .unwrap();
    assert!(id < 6.0, "TwoNN {id}");
    for kind in ["prior", "projection_matrix", "targets", "source"] {
        assert_eq!(
            sb.sql_value(&format!(
                "SELECT COUNT(*) FROM artifacts WHERE kind = '{kind}'"
            )),
            "3",
            "{kind}"
        );
    }

    // The same sweep again reuses every prior; a changed feature file (same path) is new work.
    let again = sb.ok(&["sweep", "run", f.to_str().unwrap()]);
    assert!(again.contains("│ 0       │"), "{again}");
    let mut changed = data.clone();
    changed[0] += 1.0;
    flowprior::features::write_npy(&feats, &changed, &[n, d]).expect("rewrite features");
    let plan = sb.ok(&["sweep", "run", f.to_str().unwrap(), "--dry-run"]);
    assert!(plan.contains("dry run: 3 to run, 0 reused"), "{plan}");

    // A missing file: the stage fails naming it.
    let bad = std::fs::read_to_string(&f)
        .unwrap()
        .replace("feats.npy", "missing.npy");
    std::fs::write(&f, bad).expect("write");
    let (ok, out, _) = sb.run(&["sweep", "run", f.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        out.contains("cannot read feature file") && out.contains("missing.npy"),
        "{out}"
    );
}
