//! How long a stage run will take, before it runs: from the wall time of finished runs of the same
//! stage recorded in the store. A run "like" another has the same integer, text and boolean settings
//! (sizes, kinds, backend) and may differ in seeds, real-valued settings (rates, weights) and inputs,
//! which do not change its cost. Failing that, runs that differ only in their step counts too are
//! scaled by the ratio of steps. Runs recorded on this machine's CPU and thread count are preferred.

use serde_json::Value;

use crate::store::{RunInfo, RunStatus, Store, StoreError};

/// Top-level settings that count training steps (their cost is proportional to them).
const STEP_KEYS: [&str; 3] = ["steps", "prior_steps", "align_steps"];
/// Settings that never change a run's cost.
const FREE_KEYS: [&str; 4] = [
    "seed",
    "inputs",
    crate::jobs::TILED_GRADIENT_KEY,
    crate::jobs::EMA_START_KEY,
];

/// An estimated wall time, and what it rests on.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    pub seconds: Option<f64>,
    pub basis: String,
}

/// The configuration with what does not change the cost removed (and the step counts, when
/// `drop_steps`), as canonical text.
fn signature(config: &Value, drop_steps: bool) -> String {
    fn strip(v: &Value, top: bool, drop_steps: bool) -> Option<Value> {
        match v {
            Value::Object(map) => Some(Value::Object(
                map.iter()
                    .filter(|(k, _)| {
                        !(top
                            && (FREE_KEYS.contains(&k.as_str())
                                || (drop_steps && STEP_KEYS.contains(&k.as_str()))))
                    })
                    .filter_map(|(k, v)| strip(v, false, drop_steps).map(|v| (k.clone(), v)))
                    .collect(),
            )),
            Value::Number(n) if n.is_f64() => None,
            other => Some(other.clone()),
        }
    }
    strip(config, true, drop_steps)
        .map(|v| crate::util::canonical_json(&v))
        .unwrap_or_default()
}

/// Training steps of a configuration (the sum of its step settings), if it has any.
fn steps(config: &Value) -> Option<f64> {
    let total: f64 = STEP_KEYS
        .iter()
        .filter_map(|k| config.get(*k).and_then(Value::as_f64))
        .sum();
    (total > 0.0).then_some(total)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// A finished run's signatures (exact and without step counts), steps and wall time, and whether it
/// ran on this machine's CPU and thread count. Signatures are computed once per run.
struct Past {
    exact: String,
    loose: String,
    steps: Option<f64>,
    seconds: f64,
    here: bool,
}

impl Past {
    fn new(config: &Value, seconds: f64, here: bool) -> Past {
        Past {
            exact: signature(config, false),
            loose: signature(config, true),
            steps: steps(config),
            seconds,
            here,
        }
    }
}

/// Estimates for the given (stage name, configuration) pairs.
pub fn estimate(store: &Store, nodes: &[(&str, &Value)]) -> Result<Vec<Estimate>, StoreError> {
    let (cpu, threads) = (crate::provenance::cpu(), crate::provenance::threads());
    let mut by_stage: std::collections::HashMap<String, Vec<Past>> = Default::default();
    for (stage, _) in nodes {
        if by_stage.contains_key(*stage) {
            continue;
        }
        let past = store
            .list_runs(Some(RunStatus::Finished), Some(stage))?
            .into_iter()
            .filter_map(|r: RunInfo| {
                let seconds = r.ended_at? - r.started_at?;
                let config: Value = serde_json::from_str(&r.config).ok()?;
                let here = r.cpu == cpu && r.threads == Some(threads);
                Some(Past::new(&config, seconds, here))
            })
            .filter(|p| p.seconds.is_finite() && p.seconds >= 0.0)
            .collect();
        by_stage.insert(stage.to_string(), past);
    }
    Ok(nodes
        .iter()
        .map(|(stage, config)| one(&by_stage[*stage], config))
        .collect())
}

fn one(past: &[Past], config: &Value) -> Estimate {
    // This machine's runs when there are any like this one, else any machine's.
    let pick = |like: &dyn Fn(&Past) -> bool| -> (Vec<&Past>, bool) {
        let here: Vec<&Past> = past.iter().filter(|p| p.here && like(p)).collect();
        if here.is_empty() {
            (past.iter().filter(|p| like(p)).collect(), false)
        } else {
            (here, true)
        }
    };
    let whose = |here: bool| if here { "" } else { " on another machine" };
    let exact = signature(config, false);
    let (same, here) = pick(&|p| p.exact == exact);
    if !same.is_empty() {
        return Estimate {
            seconds: Some(median(same.iter().map(|p| p.seconds).collect())),
            basis: format!("{} like it{}", plural(same.len()), whose(here)),
        };
    }
    let loose = signature(config, true);
    let (scaled, here) = pick(&|p| p.loose == loose && p.steps.is_some());
    if let (false, Some(n)) = (scaled.is_empty(), steps(config)) {
        let per_step = median(
            scaled
                .iter()
                .filter_map(|p| p.steps.map(|s| p.seconds / s))
                .collect(),
        );
        return Estimate {
            seconds: Some(per_step * n),
            basis: format!(
                "{} with other step counts, scaled{}",
                plural(scaled.len()),
                whose(here)
            ),
        };
    }
    Estimate {
        seconds: None,
        basis: "no similar run recorded".into(),
    }
}

fn plural(n: usize) -> String {
    format!("{n} run{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn past(config: Value, seconds: f64, here: bool) -> Past {
        Past::new(&config, seconds, here)
    }

    #[test]
    fn runs_differing_in_seed_rates_or_inputs_are_alike_and_steps_scale() {
        let p = vec![
            past(
                json!({"steps": 100, "width": 64, "lr": 0.1, "seed": 0}),
                10.0,
                true,
            ),
            past(
                json!({"steps": 100, "width": 64, "lr": 0.3, "seed": 1}),
                14.0,
                true,
            ),
            past(
                json!({"steps": 100, "width": 64, "lr": 0.3, "seed": 2}),
                30.0,
                false,
            ),
            past(
                json!({"steps": 100, "width": 128, "lr": 0.1, "seed": 0}),
                50.0,
                true,
            ),
        ];
        // Same sizes, another seed and rate: the median of this machine's two such runs.
        let e = one(
            &p,
            &json!({"steps": 100, "width": 64, "lr": 0.01, "seed": 9, "inputs": {"a": "x"}}),
        );
        assert_eq!(e.seconds, Some(12.0));
        assert_eq!(e.basis, "2 runs like it");
        // Four times the steps: scaled from the per-step time of the same sizes (0.12 s/step).
        let e = one(
            &p,
            &json!({"steps": 400, "width": 64, "lr": 0.01, "seed": 0}),
        );
        assert!((e.seconds.unwrap() - 48.0).abs() < 1e-9, "{e:?}");
        assert!(e.basis.contains("scaled"));
        // Another width: nothing alike.
        let e = one(
            &p,
            &json!({"steps": 100, "width": 256, "lr": 0.1, "seed": 0}),
        );
        assert_eq!(e.seconds, None);
        // Only another machine's run: used, and said so.
        let q = vec![past(json!({"steps": 10, "width": 8}), 3.0, false)];
        let e = one(&q, &json!({"steps": 10, "width": 8}));
        assert_eq!(
            (e.seconds, e.basis.as_str()),
            (Some(3.0), "1 run like it on another machine")
        );
    }
}
