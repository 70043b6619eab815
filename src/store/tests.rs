//! Store behaviour, checked in-process on a temporary database.

use super::*;
use crate::store::metrics::params_from_config;

fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("sub/dir/t.db")).unwrap();
    (dir, store)
}

fn spec(cfg: serde_json::Value) -> RunSpec {
    RunSpec {
        stage: "demo".into(),
        name: "demo".into(),
        config: cfg,
        seed: Some(3),
    }
}

fn env() -> RunEnv {
    RunEnv {
        host: "h".into(),
        pid: 1,
        git_rev: None,
        backend: "flex".into(),
    }
}

#[test]
fn get_or_create_is_keyed_by_stage_and_canonical_config() {
    let (_d, s) = temp_store();
    let a = s
        .get_or_create_run(&spec(serde_json::json!({"a": 1, "b": {"c": 2, "d": 3}})))
        .unwrap();
    let b = s
        .get_or_create_run(&spec(serde_json::json!({"b": {"d": 3, "c": 2}, "a": 1})))
        .unwrap();
    assert_eq!(a.id, b.id);
    assert_eq!(a.status, RunStatus::Queued);
    let c = s
        .get_or_create_run(&spec(serde_json::json!({"a": 2})))
        .unwrap();
    assert_eq!(c.id, a.id + 1);
    let mut other_stage = spec(serde_json::json!({"a": 1, "b": {"c": 2, "d": 3}}));
    other_stage.stage = "other".into();
    assert_ne!(s.get_or_create_run(&other_stage).unwrap().id, a.id);
}

#[test]
fn lifecycle_claims_once_and_detects_stale_runs() {
    let (_d, s) = temp_store();
    let r = s
        .get_or_create_run(&spec(serde_json::json!({"x": 1})))
        .unwrap();
    assert!(s.start_run(r.id, &env(), false, 60.0).unwrap());
    // A second claimer is refused while the heartbeat is fresh...
    assert!(!s.start_run(r.id, &env(), false, 60.0).unwrap());
    assert!(s.stale_runs(60.0).unwrap().is_empty());
    // ...and a run whose heartbeat is older than the threshold is stale and can be retaken.
    std::thread::sleep(std::time::Duration::from_millis(30));
    assert_eq!(s.stale_runs(0.01).unwrap().len(), 1);
    assert!(s.start_run(r.id, &env(), false, 0.01).unwrap());
    assert_eq!(s.run(r.id).unwrap().attempts, 2);
    s.fail_run(r.id, "boom").unwrap();
    let failed = s.run(r.id).unwrap();
    assert_eq!(
        (failed.status, failed.error.as_deref()),
        (RunStatus::Failed, Some("boom"))
    );
    assert!(!s.start_run(r.id, &env(), false, 60.0).unwrap());
    assert!(s.start_run(r.id, &env(), true, 60.0).unwrap());
    s.finish_run(r.id).unwrap();
    assert_eq!(s.run(r.id).unwrap().status, RunStatus::Finished);
    assert!(s.run(r.id).unwrap().error.is_none());
    assert!(!s.start_run(r.id, &env(), true, 0.0).unwrap());
    assert!(matches!(
        s.start_run(999, &env(), false, 1.0),
        Err(StoreError::NoSuchRun(999))
    ));
}

#[test]
fn summary_keeps_the_value_at_the_largest_step() {
    let (_d, s) = temp_store();
    let r = s.get_or_create_run(&spec(serde_json::json!({}))).unwrap();
    let p = |k: &str, step, v| MetricPoint::new(k, step, v);
    s.log_metrics(
        r.id,
        &[p("loss", 0, 4.0), p("loss", 2, 1.0), p("loss", 1, 0.5)],
    )
    .unwrap();
    // An older step arriving later does not replace the final value, but counts for min/max.
    s.log_metrics(r.id, &[p("loss", 1, -2.0), p("acc", 5, f64::NAN)])
        .unwrap();
    let sum = s.summary(r.id).unwrap();
    let loss = sum.iter().find(|x| x.key == "loss").unwrap();
    assert_eq!(
        (loss.step, loss.value, loss.min, loss.max, loss.n),
        (2, Some(1.0), Some(-2.0), Some(4.0), 4)
    );
    let acc = sum.iter().find(|x| x.key == "acc").unwrap();
    assert_eq!((acc.value, acc.min), (None, None));
    // Re-logging step 1 replaced its value in the series.
    assert_eq!(
        s.series(r.id, "loss").unwrap(),
        vec![(0, 4.0), (1, -2.0), (2, 1.0)]
    );
    assert!(s.series(r.id, "acc").unwrap()[0].1.is_nan());
}

#[test]
fn params_are_typed_and_write_once() {
    let (_d, s) = temp_store();
    let r = s.get_or_create_run(&spec(serde_json::json!({}))).unwrap();
    let cfg = serde_json::json!({"lr": 0.01, "model": {"width": 64}, "name": "x", "ema": false});
    s.set_params(r.id, &params_from_config(&cfg)).unwrap();
    s.set_params(r.id, &params_from_config(&cfg)).unwrap(); // same values: fine
    let e = s
        .set_params(r.id, &[("lr".into(), ParamValue::Real(0.02))])
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("`lr` of run 1 is write-once: it is already 0.01"),
        "{e}"
    );
    let got = s.params(r.id).unwrap();
    assert_eq!(got.len(), 4);
    assert!(got.contains(&("model.width".into(), ParamValue::Int(64))));
    assert!(got.contains(&("ema".into(), ParamValue::Bool(false))));
    assert!(got.contains(&("lr".into(), ParamValue::Real(0.01))));
}

#[test]
fn runs_wide_has_params_and_final_metrics_as_columns() {
    let (_d, s) = temp_store();
    for (i, lr) in [0.1, 0.2].iter().enumerate() {
        let r = s
            .get_or_create_run(&spec(serde_json::json!({"lr": lr, "opt": "adam"})))
            .unwrap();
        s.start_run(r.id, &env(), false, 60.0).unwrap();
        s.set_params(
            r.id,
            &params_from_config(&serde_json::json!({"lr": lr, "opt": "adam"})),
        )
        .unwrap();
        s.log_metrics(r.id, &[MetricPoint::new("test/acc", 1, 0.5 + i as f64)])
            .unwrap();
        s.finish_run(r.id).unwrap();
    }
    let q = s
        .query("SELECT id, p_lr, p_opt, m_test_acc FROM runs_wide ORDER BY id")
        .unwrap();
    assert_eq!(q.columns, vec!["id", "p_lr", "p_opt", "m_test_acc"]);
    assert_eq!(
        q.rows[1],
        vec![
            Cell::Int(2),
            Cell::Real(0.2),
            Cell::Text("adam".into()),
            Cell::Real(1.5)
        ]
    );
}

#[test]
fn read_only_store_refuses_writes() {
    let (d, s) = temp_store();
    s.get_or_create_run(&spec(serde_json::json!({}))).unwrap();
    let ro = Store::open_read_only(&d.path().join("sub/dir/t.db")).unwrap();
    for stmt in [
        "DELETE FROM runs",
        "UPDATE runs SET name = 'x'",
        "DROP TABLE metrics",
        "CREATE TABLE t (x)",
    ] {
        let e = ro.query(stmt).unwrap_err();
        assert!(matches!(e, StoreError::ReadOnly(_)), "{stmt}: {e}");
    }
    assert_eq!(
        ro.query("SELECT COUNT(*) FROM runs").unwrap().rows[0][0],
        Cell::Int(1)
    );
}
