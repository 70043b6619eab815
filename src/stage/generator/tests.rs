//! The generator stage: its configuration's checks and identities, and training on tiny data.

use super::*;
use crate::models::cond::ADAM_BETA2_DEFAULT;
use crate::models::mar::MaskRatio;

#[test]
fn mar_settings_are_rejected_for_dit_and_checked_for_mar() {
    let dit = GeneratorConfig {
        buffer: Some(2),
        ..GeneratorConfig::default()
    };
    let err = dit.validate().expect_err("dit takes no buffer");
    assert!(err.contains("`buffer`") && err.contains("\"mar\""), "{err}");
    let mar = GeneratorConfig {
        generator: GeneratorKind::Mar,
        ..dit
    };
    assert_eq!(mar.validate(), Ok(()));
    let bad = GeneratorConfig {
        mask_min: Some(1.5),
        ..mar.clone()
    };
    assert!(
        bad.validate()
            .expect_err("mask_min > 1")
            .contains("mask_min")
    );
    let bad = GeneratorConfig {
        iters: Some(0),
        ..mar.clone()
    };
    assert!(bad.validate().expect_err("iters 0").contains("iters"));
    let bad = GeneratorConfig {
        pos_std: Some(0.0),
        ..mar.clone()
    };
    assert!(bad.validate().expect_err("pos_std 0").contains("pos_std"));
    assert_eq!(mar.mar_shape(16, 16, 10).pos_std, 0.02);
    // Mask ratios: MAR's by default (mask_min 0.7 unless set), the cosine ones without a bound.
    assert_eq!(mar.mask_ratio(), MaskRatio::Mar { min: 0.7 });
    let cosine = GeneratorConfig {
        mask: Some(MaskSchedule::Cosine),
        ..mar.clone()
    };
    assert_eq!(cosine.validate(), Ok(()));
    assert_eq!(cosine.mask_ratio(), MaskRatio::Cosine);
    let bad = GeneratorConfig {
        mask_min: Some(0.2),
        ..cosine.clone()
    };
    assert!(bad.validate().expect_err("bound").contains("mask_min"));
    let bad = GeneratorConfig {
        generator: GeneratorKind::Dit,
        buffer: None,
        ..cosine
    };
    assert!(bad.validate().expect_err("dit").contains("`mask`"));
    // Adam's epsilon: per-generator defaults, a set value wins, and it must be positive.
    assert_eq!(GeneratorConfig::default().adam_eps(), 1e-8);
    assert_eq!(mar.adam_eps(), 1e-4);
    let set = GeneratorConfig {
        adam_eps: Some(1e-6),
        ..mar.clone()
    };
    assert_eq!(set.adam_eps(), 1e-6);
    let bad = GeneratorConfig {
        adam_eps: Some(0.0),
        ..mar.clone()
    };
    assert!(bad.validate().expect_err("eps 0").contains("adam_eps"));
    // MAR's optimiser settings: either generator takes them; beta2 below 1, a positive clip.
    assert_eq!(mar.adam_beta2(), ADAM_BETA2_DEFAULT);
    for generator in [GeneratorKind::Dit, GeneratorKind::Mar] {
        let set = GeneratorConfig {
            generator,
            adam_beta2: Some(0.95),
            grad_clip: Some(3.0),
            ..GeneratorConfig::default()
        };
        assert_eq!(set.validate(), Ok(()));
        let train = set.train_config();
        assert_eq!((train.adam_beta2, train.grad_clip), (0.95, Some(3.0)));
    }
    let unset = GeneratorConfig::default().train_config();
    assert_eq!(
        (unset.adam_beta2, unset.grad_clip),
        (ADAM_BETA2_DEFAULT, None)
    );
    for (beta2, clip, field) in [(1.0, None, "adam_beta2"), (0.9, Some(-1.0), "grad_clip")] {
        let bad = GeneratorConfig {
            adam_beta2: Some(beta2),
            grad_clip: clip,
            ..mar.clone()
        };
        assert!(bad.validate().expect_err(field).contains(field));
    }
}

#[test]
fn unset_mar_settings_leave_the_identity_of_dit_runs_unchanged() {
    // Runs recorded before the settings existed are found again: unset ones are not serialised.
    let json = serde_json::to_value(GeneratorConfig::default()).expect("json");
    let keys: Vec<&str> = json
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    for k in OPTIONAL_SETTINGS {
        assert!(!keys.contains(k), "{k} in {keys:?}");
    }
    // Every optional setting is a field of the configuration.
    for k in OPTIONAL_SETTINGS {
        // The enumerated settings take a name (not their default), the others a number.
        let named = [("mask", "cosine"), ("cfg_schedule", "constant")];
        let name = named.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
        let value = name.map_or("1".to_string(), |v| format!("\"{v}\""));
        let text = format!("generator = \"mar\"\n{k} = {value}\n");
        let mut full = serde_json::to_value(GeneratorConfig::default()).expect("json");
        let extra: serde_json::Value = toml::from_str(&text).expect("toml");
        for (key, v) in extra.as_object().expect("table") {
            full[key] = v.clone();
        }
        let cfg: GeneratorConfig = serde_json::from_value(full).expect("known field");
        let back = serde_json::to_value(&cfg).expect("json");
        if let Some(v) = name {
            assert_eq!(back[*k].as_str(), Some(v), "{k}");
        } else {
            assert_eq!(back[*k].as_f64(), Some(1.0), "{k}");
        }
    }
    assert!(keys.contains(&"generator") && keys.contains(&"width"));
}

#[test]
fn mar_runs_carry_the_tiled_gradient_key_and_dit_runs_do_not() {
    let weights = std::collections::BTreeMap::new();
    let key = crate::jobs::TILED_GRADIENT_KEY;
    let dit = GeneratorConfig::default();
    assert_eq!(dit.generator, GeneratorKind::Dit);
    assert!(dit.run_spec("c", "t", &weights).config.get(key).is_none());
    let mar = GeneratorConfig {
        generator: GeneratorKind::Mar,
        ..GeneratorConfig::default()
    };
    assert_eq!(
        mar.run_spec("c", "t", &weights).config[key],
        serde_json::Value::Bool(true)
    );
    let one_draw = GeneratorConfig {
        flow_mul: Some(1),
        ..mar
    };
    assert!(
        one_draw
            .run_spec("c", "t", &weights)
            .config
            .get(key)
            .is_none()
    );
}
