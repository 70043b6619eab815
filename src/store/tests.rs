//! Store behaviour, checked in-process on a temporary database.

use super::*;
use crate::store::metrics::params_from_config;
use crate::store::testing;

fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("sub/dir/t.db")).unwrap();
    (dir, store)
}

/// A new store on each engine: a SQLite file, and a PostgreSQL database when the test server is
/// there ([`testing::fresh_database`]).
fn temp_stores() -> Vec<(tempfile::TempDir, Store)> {
    let mut stores = vec![temp_store()];
    if let Some(url) = testing::fresh_database() {
        let dir = tempfile::tempdir().unwrap();
        stores.push((dir, Store::connect(&Location::Postgres(url)).unwrap()));
    }
    stores
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
        ..Default::default()
    }
}

#[test]
fn get_or_create_is_keyed_by_stage_and_canonical_config() {
    for (_d, s) in temp_stores() {
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
}

#[test]
fn lifecycle_claims_once_and_detects_stale_runs() {
    for (_d, s) in temp_stores() {
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
}

#[test]
fn summary_keeps_the_value_at_the_largest_step() {
    for (_d, s) in temp_stores() {
        let r = s.get_or_create_run(&spec(serde_json::json!({}))).unwrap();
        let p = |k: &str, step, v| MetricPoint::new(k, step, v);
        s.log_metrics(
            r.id,
            &[p("loss", 0, 4.0), p("loss", 2, 1.0), p("loss", 1, 0.5)],
        )
        .unwrap();
        // An older step arriving later does not replace the final value, but counts for min/max; it
        // replaces its step's point, so `n` (points in the series) stays 3.
        s.log_metrics(r.id, &[p("loss", 1, -2.0), p("acc", 5, f64::NAN)])
            .unwrap();
        let sum = s.summary(r.id).unwrap();
        let loss = sum.iter().find(|x| x.key == "loss").unwrap();
        assert_eq!(
            (loss.step, loss.value, loss.min, loss.max, loss.n),
            (2, Some(1.0), Some(-2.0), Some(4.0), 3)
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
}

#[test]
fn params_are_typed_and_write_once() {
    for (_d, s) in temp_stores() {
        let r = s.get_or_create_run(&spec(serde_json::json!({}))).unwrap();
        let cfg =
            serde_json::json!({"lr": 0.01, "model": {"width": 64}, "name": "x", "ema": false});
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
}

#[test]
fn runs_wide_has_params_and_final_metrics_as_columns() {
    for (_d, s) in temp_stores() {
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

#[test]
fn a_retaken_run_keeps_only_its_own_attempts_points() {
    for (_d, s) in temp_stores() {
        let r = s
            .get_or_create_run(&spec(serde_json::json!({"x": 2})))
            .unwrap();
        let first = s.claim_run(r.id, &env(), false, 60.0).unwrap();
        assert_eq!(first, Some(1));
        let pts = |n: i64, scale: f64| -> Vec<MetricPoint> {
            (0..n)
                .map(|i| MetricPoint::new("loss", i, scale * i as f64))
                .collect()
        };
        s.log_attempt_metrics(r.id, 1, &pts(30, 1.0)).unwrap();
        // The first attempt's process is taken for dead and the run retaken.
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(s.claim_run(r.id, &env(), false, 0.01).unwrap(), Some(2));
        assert!(s.series(r.id, "loss").unwrap().is_empty());
        assert!(s.summary(r.id).unwrap().is_empty());
        // The dead attempt can no longer write, finish or fail the run.
        for e in [
            s.log_attempt_metrics(r.id, 1, &pts(5, 9.0)).unwrap_err(),
            s.end_attempt(r.id, 1, RunStatus::Finished, None)
                .unwrap_err(),
            s.end_attempt(r.id, 1, RunStatus::Failed, Some("late"))
                .unwrap_err(),
        ] {
            assert!(
                matches!(e, StoreError::LostRun { run, attempt: 1, now: 2 } if run == r.id),
                "{e}"
            );
        }
        s.log_attempt_metrics(r.id, 2, &pts(20, 2.0)).unwrap();
        s.end_attempt(r.id, 2, RunStatus::Finished, None).unwrap();
        let loss = s.summary(r.id).unwrap().remove(0);
        assert_eq!(
            (loss.n, loss.step, loss.value, loss.max),
            (20, 19, Some(38.0), Some(38.0))
        );
        assert_eq!(s.series(r.id, "loss").unwrap().len(), 20);
        // Nothing was lost: the first attempt's 30 points are kept under its number.
        let kept = s
            .query("SELECT attempt, COUNT(*), MAX(value) FROM attempt_metrics GROUP BY attempt")
            .unwrap();
        assert_eq!(
            kept.rows,
            vec![vec![Cell::Int(1), Cell::Int(30), Cell::Real(29.0)]]
        );
        let attempts = s
            .query("SELECT attempt, status FROM run_attempts WHERE run_id = 1 ORDER BY attempt")
            .unwrap();
        assert_eq!(
            attempts.rows,
            vec![
                vec![Cell::Int(1), Cell::Text("abandoned".into())],
                vec![Cell::Int(2), Cell::Text("finished".into())],
            ]
        );
        // A finished run is not ended again by anyone.
        assert!(matches!(
            s.end_attempt(r.id, 2, RunStatus::Failed, Some("twice")),
            Err(StoreError::LostRun { .. })
        ));
        assert_eq!(s.run(r.id).unwrap().status, RunStatus::Finished);
    }
}

#[test]
fn concurrent_openers_of_a_new_store_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..50 {
        let path = dir.path().join(format!("r{round}/store.db"));
        let barrier = std::sync::Barrier::new(8);
        std::thread::scope(|sc| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    sc.spawn(|| {
                        barrier.wait();
                        Store::open(&path).map(|s| s.integrity_check())
                    })
                })
                .collect();
            for h in handles {
                let verdict = h.join().expect("opener thread");
                assert_eq!(
                    verdict.expect("open").expect("check"),
                    "ok",
                    "round {round}"
                );
            }
        });
    }
}

#[test]
fn a_store_from_a_newer_version_is_refused_with_what_to_do_and_left_as_it_is() {
    for (_d, s) in temp_stores() {
        s.get_or_create_run(&spec(serde_json::json!({"x": 1})))
            .unwrap();
        // What a later flowprior's migration leaves behind.
        s.block_on(
            sqlx::query(
                "INSERT INTO _sqlx_migrations (version, description, installed_on, success, \
                 checksum, execution_time) VALUES (29991231000000, 'future', '2999-12-31', true, $1, 0)",
            )
            .bind(vec![0u8; 48])
            .execute(s.pool()),
        )
        .unwrap();
        let location = s.location().clone();
        s.close();
        let e = Store::connect(&location).err().expect("refused");
        assert!(
            matches!(
                e,
                StoreError::NewerSchema {
                    version: 29991231000000,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("use a newer binary"), "{e}");
        // Nothing recorded was touched.
        let ro = Store::connect_existing(&location).unwrap();
        assert_eq!(
            ro.query("SELECT COUNT(*) FROM runs").unwrap().rows[0][0],
            Cell::Int(1)
        );
    }
}

#[test]
fn open_existing_refuses_a_missing_store_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no/such/dir/x.db");
    assert!(matches!(
        Store::open_existing(&path),
        Err(StoreError::Missing(_))
    ));
    assert!(!dir.path().join("no").exists());
}

mod guard {
    use super::*;
    use crate::store::{ActiveRun, DivergenceGuard};

    fn begin<'a>(s: &'a Store, x: i64) -> ActiveRun<'a> {
        ActiveRun::begin(s, &spec(serde_json::json!({ "x": x })), "flex", false)
            .unwrap()
            .unwrap()
    }

    #[test]
    fn a_non_finite_value_fails_the_run_with_its_key_and_step() {
        for (_d, s) in temp_stores() {
            for (x, bad) in [(1, f64::NAN), (2, f64::INFINITY), (3, f64::NEG_INFINITY)] {
                let mut run = begin(&s, x);
                run.log("train/grad_norm", 0, 1.0).unwrap();
                let e = run.log("train/grad_norm", 7, bad).unwrap_err();
                assert!(
                    matches!(&e, StoreError::NonFinite { key, step: 7, .. } if key == "train/grad_norm"),
                    "{e}"
                );
                let id = run.id();
                run.fail(&e.to_string()).unwrap();
                let info = s.run(id).unwrap();
                assert_eq!(info.status, RunStatus::Failed);
                assert!(info.error.unwrap().contains("train/grad_norm"));
                // The offending point is recorded (NaN as NULL) beside the ones before it.
                assert_eq!(s.series(id, "train/grad_norm").unwrap().len(), 2);
            }
        }
    }

    #[test]
    fn a_loss_far_above_its_early_median_diverges_and_the_guard_can_be_off() {
        for (_d, s) in temp_stores() {
            let mut run = begin(&s, 10);
            for (i, v) in [2.0, 1.9, 1.7, 1.5, 1.2, 100.0, 1500.0].iter().enumerate() {
                run.log("prior/loss", i as i64, *v).unwrap();
            }
            // 1500 was under 1000 times the median of the six before it (1.8); the median of the first
            // seven is 1.9, and 2500 is more than 1000 times that.
            let e = run.log("prior/loss", 7, 2500.0).unwrap_err();
            assert!(
                matches!(&e, StoreError::Diverged { key, step: 7, .. } if key == "prior/loss"),
                "{e}"
            );
            // Other keys are not guarded; a key whose last segment is not `loss` neither.
            run.log("prior/grad_norm", 7, 1e12).unwrap();
            run.log("prior/loss_scale", 0, 1.0).unwrap();
            run.log("prior/loss_scale", 1, 1e9).unwrap();
            run.finish().unwrap();

            // An explosion on the second step is caught too (the median of what was logged so far).
            let mut run = begin(&s, 11);
            run.log("gen/loss", 0, 2.0).unwrap();
            assert!(run.log("gen/loss", 1, 7.8e27).is_err());
            run.finish().unwrap();

            let mut run = begin(&s, 12);
            run.set_guard(DivergenceGuard::off());
            run.log("gen/loss", 0, 2.0).unwrap();
            run.log("gen/loss", 1, 7.8e27).unwrap();
            assert!(run.log("gen/loss", 2, f64::NAN).is_err());
            run.finish().unwrap();
        }
    }
}

mod postgres {
    use super::*;

    #[test]
    fn a_read_only_handle_refuses_writes_and_a_database_without_the_schema_is_missing() {
        let Some(url) = testing::fresh_database() else {
            return;
        };
        let location = Location::Postgres(url);
        // No schema yet: a read-only verb says there is no store, and creates nothing.
        assert!(matches!(
            Store::connect_existing(&location),
            Err(StoreError::Missing(_))
        ));
        let s = Store::connect(&location).unwrap();
        s.get_or_create_run(&spec(serde_json::json!({}))).unwrap();
        s.refresh_runs_wide().unwrap();
        let ro = Store::connect_existing(&location).unwrap();
        for stmt in [
            "DELETE FROM runs",
            "UPDATE runs SET name = 'x'",
            "DROP TABLE metrics",
            "CREATE TABLE t (x INTEGER)",
        ] {
            let e = ro.query(stmt).unwrap_err();
            assert!(matches!(e, StoreError::ReadOnly(_)), "{stmt}: {e}");
        }
        // Past the statement check, the session itself is read-only.
        assert!(
            ro.query("SELECT id FROM runs FOR UPDATE").is_err(),
            "a locking read in a read-only session"
        );
        assert_eq!(
            ro.query("SELECT COUNT(*) FROM runs_wide").unwrap().rows[0][0],
            Cell::Int(1)
        );
        assert_eq!(ro.integrity_check().unwrap(), "ok");
    }

    #[test]
    fn concurrent_writers_create_each_run_once_with_distinct_ids() {
        let Some(url) = testing::fresh_database() else {
            return;
        };
        let location = Location::Postgres(url);
        Store::connect(&location).unwrap().close();
        let barrier = std::sync::Barrier::new(8);
        let ids: Vec<Vec<i64>> = std::thread::scope(|sc| {
            let handles: Vec<_> = (0..8)
                .map(|w| {
                    let (barrier, location) = (&barrier, &location);
                    sc.spawn(move || {
                        let s = Store::connect(location).unwrap();
                        barrier.wait();
                        // Every writer asks for the same 20 runs, in a different order.
                        (0..20)
                            .map(|i| {
                                let x = (i * 7 + w * 3) % 20;
                                let r = s
                                    .get_or_create_run(&spec(serde_json::json!({ "x": x })))
                                    .unwrap();
                                (x, r.id)
                            })
                            .collect::<std::collections::BTreeMap<_, _>>()
                            .into_values()
                            .collect()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for other in &ids[1..] {
            assert_eq!(other, &ids[0], "every writer sees the same run per config");
        }
        let mut distinct = ids[0].clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct, (1..=20).collect::<Vec<_>>());
    }
}
