//! `flowprior bench store`: write throughput of the run store with several processes at once, and
//! `flowprior bench store-writer`, the single writer it spawns (also used by the tests and `just chaos`).

use super::Cli;
use crate::store::{ActiveRun, MetricPoint, RunSpec};
use anyhow::Context;
use std::time::{Duration, Instant};

/// `points` = (the run's declared points, the points written before finishing).
pub fn store_writer(
    cli: &Cli,
    name: &str,
    (points, written): (usize, usize),
    batch: usize,
    sleep_ms: u64,
) -> anyhow::Result<()> {
    anyhow::ensure!(batch > 0, "--batch must be at least 1");
    let store = cli.open_store()?;
    let spec = RunSpec {
        stage: "bench-store".into(),
        name: name.to_string(),
        config: serde_json::json!({"name": name, "points": points, "batch": batch}),
        seed: None,
    };
    let mut run = ActiveRun::begin(&store, &spec, "none", true)?
        .with_context(|| format!("run {name:?} is already finished or held by a live process"))?;
    let id = run.id();
    let mut step = 0usize;
    while step < written {
        let n = batch.min(written - step);
        let chunk: Vec<MetricPoint> = (step..step + n)
            .flat_map(|s| {
                let x = s as f64;
                [
                    MetricPoint::new("value", s as i64, x),
                    MetricPoint::new("square", s as i64, x * x),
                ]
            })
            .collect();
        run.log_points(&chunk)?;
        step += n;
        if sleep_ms > 0 {
            std::thread::sleep(Duration::from_millis(sleep_ms));
        }
    }
    run.finish()?;
    println!("run {id}: {written} steps logged");
    Ok(())
}

pub fn store_bench(cli: &Cli, processes: usize, points: usize, batch: usize) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find the flowprior executable")?;
    let db = cli.db().as_given();
    let tag = format!("{}-{}", std::process::id(), crate::util::now_unix() as u64);
    let started = Instant::now();
    let children: Vec<_> = (0..processes)
        .map(|i| {
            std::process::Command::new(&exe)
                .env(crate::store::DB_ENV, &db)
                .args([
                    "bench",
                    "store-writer",
                    "--name",
                    &format!("bench-{tag}-{i}"),
                ])
                .args([
                    "--points",
                    &points.to_string(),
                    "--batch",
                    &batch.to_string(),
                ])
                .stdout(std::process::Stdio::null())
                .spawn()
                .context("cannot start a writer process")
        })
        .collect::<anyhow::Result<_>>()?;
    let mut failed = 0;
    for mut c in children {
        if !c.wait().map(|s| s.success()).unwrap_or(false) {
            failed += 1;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let store = cli.open_store()?;
    let q = store.query(&format!(
        "SELECT COUNT(*) FROM metrics m JOIN runs r ON r.id = m.run_id WHERE r.name LIKE 'bench-{tag}-%'"
    ))?;
    let stored = match q.rows.first().and_then(|r| r.first()) {
        Some(crate::store::Cell::Int(n)) => *n as usize,
        _ => 0,
    };
    let expected = processes * points * 2;
    println!(
        "{processes} processes x {points} steps x 2 metrics, batches of {batch}: {stored}/{expected} points stored \
         in {secs:.2}s = {:.0} points/s ({failed} writer(s) failed)",
        stored as f64 / secs
    );
    anyhow::ensure!(
        failed == 0 && stored == expected,
        "points were lost or writers failed"
    );
    Ok(())
}
