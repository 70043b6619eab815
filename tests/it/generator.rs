//! The generator stage end to end on tiny data the test writes: a tokenizer, a DiT and a MAR on its
//! latents, generation metrics without and with classifier-free guidance, artifacts and the report's
//! columns.

use crate::common::{Sandbox, write_tiny_fashion_mnist};

#[test]
fn generator_scores_samples_with_and_without_guidance() {
    let sb = Sandbox::new();
    write_tiny_fashion_mnist(&sb.data(), 300, 60);
    let sweep = r#"
stages = ["classifier", "tokenizer", "generator"]
preset = "smoke"
seeds = [0]
[fixed]
classifier.train_size = 300
classifier.test_size = 60
tokenizer.lambda = 0.0
tokenizer.prior = false
tokenizer.test_size = 40
tokenizer.tokens = 4
tokenizer.channels = 4
tokenizer.width = 16
tokenizer.heads = 2
tokenizer.batch = 16
tokenizer.steps = 30
tokenizer.eval_every = 10
tokenizer.eval_images = 16
tokenizer.latent_images = 300
generator.steps = 60
generator.samples = 60
generator.test_size = 60
generator.is_splits = 2
generator.sample_steps = 5
[axes]
generator.generator = ["dit", "mar"]
generator.cfg_scale = [1.5, 3.0]
[[report.tables]]
title = "Generation"
rows = ["generator.generator", "generator.cfg_scale"]
columns = [
  { metric = "gen/fid_classifier", label = "FID", group = "w/o CFG", better = "lower" },
  { metric = "gen_cfg/fid_classifier", label = "FID", group = "w/ CFG", better = "lower" },
  { metric = "gen_cfg/is_classifier", label = "IS", group = "w/ CFG", better = "higher" },
]
"#;
    sb.run_sweep("g", sweep);
    // One tokenizer serves both generators and guidance scales.
    assert_eq!(
        sb.sql_value("SELECT COUNT(*) FROM runs WHERE stage = 'tokenizer'"),
        "1"
    );
    assert_eq!(
        sb.sql_value("SELECT COUNT(*) FROM runs WHERE stage = 'generator' AND status = 'finished'"),
        "4"
    );
    let names =
        sb.sql_value("SELECT group_concat(name, ' | ') FROM runs WHERE stage = 'generator'");
    for kind in ["dit", "mar"] {
        let value = |scale: &str, key: &str| -> f64 {
            sb.sql_value(&format!(
                "SELECT s.value FROM summary s JOIN runs r ON r.id = s.run_id \
             WHERE r.stage = 'generator' AND r.name LIKE '%generator={kind} %' \
             AND r.name LIKE '%cfg_scale={scale} %' AND s.key = '{key}'"
            ))
            .parse()
            .unwrap_or_else(|_| panic!("{kind} {scale} {key} in {names}"))
        };
        for scale in ["1.5", "3.0"] {
            for prefix in ["gen", "gen_cfg"] {
                let fid = value(scale, &format!("{prefix}/fid_classifier"));
                let is = value(scale, &format!("{prefix}/is_classifier"));
                let p = value(scale, &format!("{prefix}/precision_classifier"));
                let r = value(scale, &format!("{prefix}/recall_classifier"));
                assert!(fid.is_finite() && fid >= 0.0, "{scale} {prefix} FID {fid}");
                // 10 classes: the Inception Score lies in [1, 10].
                assert!(
                    (1.0 - 1e-9..=10.0).contains(&is),
                    "{scale} {prefix} IS {is}"
                );
                assert!((0.0..=1.0).contains(&p) && (0.0..=1.0).contains(&r));
            }
            assert!(value(scale, "ref/is_classifier") >= 1.0);
            // MAR logs how much its conditions depend on the class; the DiT has no such path.
            let signal = sb.sql_value(&format!(
                "SELECT COUNT(*) FROM summary s JOIN runs r ON r.id = s.run_id \
             WHERE r.stage = 'generator' AND r.name LIKE '%generator={kind} %' \
             AND r.name LIKE '%cfg_scale={scale} %' AND s.key = 'gen/class_signal'"
            ));
            assert_eq!(signal, if kind == "mar" { "1" } else { "0" }, "{kind}");
            if kind == "mar" {
                assert!(value(scale, "gen/class_signal") >= 0.0);
            }
            assert_eq!(value(scale, "gen_cfg/scale"), scale.parse::<f64>().unwrap());
        }
        // The unguided samples come from the same noise and network for both runs' seeds: only the
        // guided ones differ between the two scales.
        assert_eq!(
            value("1.5", "gen/fid_classifier"),
            value("3.0", "gen/fid_classifier")
        );
        assert_ne!(
            value("1.5", "gen_cfg/fid_classifier"),
            value("3.0", "gen_cfg/fid_classifier")
        );
    }
    // Loss series, weights and a sample grid per run.
    assert!(
        sb.sql_value(
            "SELECT COUNT(*) FROM metrics m JOIN runs r ON r.id = m.run_id \
             WHERE r.stage = 'generator' AND m.key = 'gen/loss'"
        )
        .parse::<i64>()
        .unwrap()
            >= 4 * 30
    );
    let png = sb.sql_value(
        "SELECT a.path FROM artifacts a JOIN runs r ON r.id = a.run_id \
         WHERE r.stage = 'generator' AND a.kind = 'figure' LIMIT 1",
    );
    assert_eq!(&std::fs::read(&png).expect("png")[1..4], b"PNG");
    let out = sb.dir.path().join("reports");
    sb.ok(&["report", "g", "--out", out.to_str().unwrap(), "--check"]);
    let md = std::fs::read_to_string(out.join("g.md")).expect("report");
    assert!(
        md.contains("w/o CFG: FID") && md.contains("w/ CFG: IS"),
        "{md}"
    );
}
