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
    let f = sb.run_sweep("p", &sweep);
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

#[test]
fn vae_and_vq_stages_feed_priors_on_their_latents_and_codebook() {
    let sb = Sandbox::new();
    crate::common::write_tiny_fashion_mnist(&sb.data(), 256, 64);
    let sweep = r#"
stages = ["vae", "vq", "prior"]
preset = "smoke"
[fixed]
vae.train_size = 256
vae.test_size = 64
vae.steps = 4
vae.batch = 32
vae.feature_images = 40
vq.train_size = 256
vq.test_size = 64
vq.steps = 4
vq.batch = 32
vq.codebook_size = 64
prior.dim = 4
prior.steps = 20
prior.warmup = 2
prior.holdout = 100
prior.eval_samples = 64
prior.diag_rows = 200
[axes]
prior.source = ["vae", "vq"]
prior.projection = ["random", "pca"]
"#;
    sb.run_sweep("lat", sweep);
    // One vae and one vq run serve two priors each.
    for (stage, n) in [("vae", "1"), ("vq", "1"), ("prior", "4")] {
        assert_eq!(
            sb.sql_value(&format!(
                "SELECT COUNT(*) FROM runs WHERE stage = '{stage}' AND status = 'finished'"
            )),
            n,
            "{stage}"
        );
    }
    // The vae prior trained on 40 images x 49 tokens of 8 channels; the vq prior on 64 codes.
    let rows = |source: &str| {
        sb.sql_value(&format!(
            "SELECT MAX(s.value) FROM summary s JOIN runs r ON r.id = s.run_id \
             WHERE s.key = 'source/rows' AND r.name LIKE 'prior source={source}%'"
        ))
    };
    assert_eq!(rows("vae"), "1960");
    assert_eq!(rows("vq"), "64");
    assert_eq!(
        sb.sql_value("SELECT COUNT(*) FROM summary WHERE key = 'test/psnr' AND value > 0"),
        "2"
    );
    // Each prior's identity names the run it read.
    let inputs = sb.sql_value(
        "SELECT COUNT(*) FROM runs WHERE stage = 'prior' AND (config LIKE '%\"inputs\":{\"vae\"%' OR config LIKE '%\"inputs\":{\"vq\"%')",
    );
    assert_eq!(inputs, "4");
}

#[test]
fn dino_stage_feeds_a_prior_with_efficientnet_features() {
    let sb = Sandbox::new();
    crate::common::write_tiny_fashion_mnist(&sb.data(), 64, 16);
    sb.link_efficientnet();
    let sweep = r#"
stages = ["dino", "prior"]
preset = "smoke"
[fixed]
dino.images = 40
dino.batch = 8
prior.source = "dino"
prior.dim = 8
prior.steps = 20
prior.warmup = 2
prior.holdout = 100
prior.eval_samples = 64
prior.diag_rows = 200
[axes]
dino.pooled = [false, true]
"#;
    sb.run_sweep("dino", sweep);
    assert_eq!(
        sb.sql_value("SELECT COUNT(*) FROM runs WHERE status = 'finished'"),
        "4"
    );
    // 40 images: 40 pooled vectors, or 40 x 49 spatial tokens, of 1280 dims.
    let got = sb.ok(&[
        "sql",
        "SELECT CAST(value AS INTEGER) FROM summary WHERE key = 'source/rows' ORDER BY value",
        "--format",
        "csv",
    ]);
    assert_eq!(
        got.lines().skip(1).collect::<Vec<_>>(),
        vec!["40", "1960"],
        "{got}"
    );
    assert_eq!(
        sb.sql_value("SELECT COUNT(*) FROM summary WHERE key = 'source/dim' AND value = 1280"),
        "2"
    );
}
