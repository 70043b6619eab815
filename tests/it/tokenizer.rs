//! The tokenizer stage end to end on tiny data the test writes: a prior on a feature file, a plain
//! autoencoder measured under it (lambda = 0) and an aligned one (lambda > 0) from the same seed,
//! baselines, metrics, artifacts and the report.

use crate::common::{Sandbox, write_tiny_fashion_mnist};

fn summary(sb: &Sandbox, variant: &str, key: &str) -> f64 {
    let v = sb.sql_value(&format!(
        "SELECT s.value FROM summary s JOIN runs r ON r.id = s.run_id \
         WHERE r.stage = 'tokenizer' AND r.name LIKE '%autoencoder={variant} %' AND s.key = '{key}'"
    ));
    v.parse()
        .unwrap_or_else(|_| panic!("{variant} {key}: `{v}`"))
}

#[test]
fn aligned_tokenizer_ends_closer_to_its_prior_than_a_plain_one() {
    let sb = Sandbox::new();
    write_tiny_fashion_mnist(&sb.data(), 400, 60);
    sb.link_efficientnet();
    // Target features: four Gaussian clusters (std 0.3) in 4-D, centre i at 1.5 e_i - 0.5 (1 - e_i).
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let (n, d) = (1600usize, 4usize);
    let data: Vec<f32> = (0..n * d)
        .map(|k| {
            let (i, j) = (k / d, k % d);
            let centre = if (i % 4) == j { 1.5 } else { -0.5 };
            centre + 0.3 * rng.sample::<f32, _>(rand_distr::StandardNormal)
        })
        .collect();
    let feats = sb.dir.path().join("feats.npy");
    flowprior::features::write_npy(&feats, &data, &[n, d]).expect("write features");
    let sweep = format!(
        r#"
stages = ["classifier", "dino", "prior", "tokenizer"]
preset = "smoke"
seeds = [0]
[fixed]
classifier.train_size = 400
classifier.test_size = 60
dino.images = 48
dino.pooled = true
dino.batch = 8
prior.source = "file"
prior.path = "{}"
prior.dim = 4
prior.projection = "identity"
prior.holdout = 200
prior.steps = 600
tokenizer.test_size = 40
tokenizer.tokens = 4
tokenizer.channels = 4
tokenizer.width = 16
tokenizer.heads = 2
tokenizer.batch = 16
tokenizer.steps = 40
tokenizer.disc_start = 20
tokenizer.eval_every = 10
tokenizer.eval_images = 24
tokenizer.exact_tokens = 8
tokenizer.latent_images = 50
[variants.autoencoder]
AE = {{ tokenizer.lambda = 0.0 }}
Aligned = {{ tokenizer.lambda = 1.0 }}
KL = {{ tokenizer.lambda = 0.0, tokenizer.prior = false, tokenizer.regulariser = "kl" }}
SoftVQ = {{ tokenizer.lambda = 0.0, tokenizer.prior = false, tokenizer.regulariser = "softvq", tokenizer.codebook_size = 16, tokenizer.semantic_weight = 1.0, tokenizer.train_size = 48 }}
[[report.tables]]
title = "Reconstruction"
rows = ["autoencoder"]
columns = [
  {{ metric = "test/psnr", label = "PSNR", better = "higher" }},
  {{ metric = "rfid/classifier", label = "rFID", better = "lower" }},
  {{ metric = "align/l_align", label = "L_align", better = "lower", optional = true }},
]
"#,
        feats.display()
    );
    sb.run_sweep("t", &sweep);
    assert_eq!(
        sb.sql_value("SELECT COUNT(*) FROM runs WHERE stage = 'tokenizer' AND status = 'finished'"),
        "4"
    );
    // One prior, read by the two variants that set `prior`; the baselines read none.
    assert_eq!(
        sb.sql_value("SELECT COUNT(*) FROM runs WHERE stage = 'prior'"),
        "1"
    );

    // Same seed, same steps: the aligned tokens sit closer to the prior on every alignment measure.
    for key in ["align/l_align", "align/knn_nll"] {
        let (plain, aligned) = (summary(&sb, "AE", key), summary(&sb, "Aligned", key));
        assert!(aligned < plain, "{key}: aligned {aligned} vs plain {plain}");
    }
    assert!(summary(&sb, "Aligned", "align/flow_nll").is_finite());
    for v in ["AE", "Aligned", "KL", "SoftVQ"] {
        let psnr = summary(&sb, v, "test/psnr");
        assert!(psnr > 5.0 && psnr < 60.0, "{v} PSNR {psnr}");
        let ssim = summary(&sb, v, "test/ssim");
        assert!(ssim > -1.0 && ssim <= 1.0, "{v} SSIM {ssim}");
        assert!(summary(&sb, v, "rfid/classifier") >= 0.0);
    }
    for v in ["KL", "SoftVQ"] {
        assert!(summary(&sb, v, "ae/reg").is_finite(), "{v}");
    }
    // The semantic head's size is recorded (the generator rebuilds the model from it): the dino stage's
    // pooled EfficientNet features for SoftVQ, none for the others.
    assert_eq!(summary(&sb, "SoftVQ", "semantic/dim"), 1280.0);
    assert_eq!(summary(&sb, "AE", "semantic/dim"), 0.0);
    // SoftVQ's sample-level alignment reads the dino run (the only variant that does) and its loss,
    // -mean cos(head(mean token), feature), falls as the head learns.
    assert_eq!(
        sb.sql_value("SELECT COUNT(*) FROM runs WHERE stage = 'dino'"),
        "1"
    );
    let semantic = |agg: &str| -> f64 {
        sb.sql_value(&format!(
            "SELECT m.value FROM metrics m JOIN runs r ON r.id = m.run_id \
             WHERE r.name LIKE '%autoencoder=SoftVQ %' AND m.key = 'ae/semantic' \
             ORDER BY m.step {agg} LIMIT 1"
        ))
        .parse()
        .expect("ae/semantic logged")
    };
    let (first, last) = (semantic("ASC"), semantic("DESC"));
    assert!(
        (-1.0..=1.0).contains(&first) && last < first - 0.1,
        "semantic loss {first} -> {last}"
    );
    // Curves every 10 steps (0..40 and the end), adversarial loss after step 20.
    assert_eq!(
        sb.sql_value(
            "SELECT COUNT(*) FROM metrics m JOIN runs r ON r.id = m.run_id \
             WHERE r.name LIKE '%autoencoder=Aligned %' AND m.key = 'align/l_align'"
        ),
        "5"
    );
    assert_eq!(
        sb.sql_value(
            "SELECT MIN(m.step) FROM metrics m JOIN runs r ON r.id = m.run_id \
             WHERE r.name LIKE '%autoencoder=AE %' AND m.key = 'ae/adv'"
        ),
        "20"
    );

    // Artifacts: weights, latents [50, 4, 4] and labels, a PNG grid.
    let latents = sb.sql_value(
        "SELECT a.path FROM artifacts a JOIN runs r ON r.id = a.run_id \
         WHERE r.name LIKE '%autoencoder=Aligned %' AND a.kind = 'latents'",
    );
    let set = flowprior::features::read_features(std::path::Path::new(&latents), None)
        .expect("latents readable");
    assert_eq!((set.n, set.tokens, set.dim), (50, 4, 4));
    let png = sb.sql_value(
        "SELECT a.path FROM artifacts a JOIN runs r ON r.id = a.run_id \
         WHERE r.name LIKE '%autoencoder=KL %' AND a.kind = 'figure'",
    );
    let bytes = std::fs::read(&png).expect("png");
    assert_eq!(&bytes[1..4], b"PNG");
    assert_eq!(
        sb.sql_value("SELECT COUNT(*) FROM artifacts WHERE kind IN ('weights', 'labels') AND run_id IN (SELECT id FROM runs WHERE stage = 'tokenizer')"),
        "8"
    );

    // The report: one row per variant, in file order, n/a only where a column is optional.
    let out = sb.dir.path().join("reports");
    sb.ok(&["report", "t", "--out", out.to_str().unwrap(), "--check"]);
    let md = std::fs::read_to_string(out.join("t.md")).expect("report");
    let rows: Vec<&str> = md
        .lines()
        .filter(|l| {
            l.starts_with("| AE")
                || l.starts_with("| Aligned")
                || l.starts_with("| KL")
                || l.starts_with("| SoftVQ")
        })
        .collect();
    assert_eq!(rows.len(), 4, "{md}");
    assert!(rows[2].contains("n/a") && !rows[1].contains("n/a"), "{md}");
}
