//! `flowprior bench store`: write throughput of the run store with several processes at once, and
//! `flowprior bench store-writer`, the single writer it spawns (also used by the tests).

use std::time::{Duration, Instant};

use anyhow::Context;

use super::Cli;
use crate::jobs::bench_prior::PriorBench;
use crate::store::{ActiveRun, MetricPoint, RunSpec};

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: BenchCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// Several processes log metrics into one store at once; prints points/s and checks none is lost.
    Store {
        #[arg(long, default_value_t = 4)]
        processes: usize,
        #[arg(long, default_value_t = 5000)]
        points: usize,
        #[arg(long, default_value_t = 50)]
        batch: usize,
    },
    /// Flow-prior training steps/s on each compiled backend, side by side with the same model in
    /// PyTorch (CPU, eager) measured in the same run with the same thread count.
    Prior {
        /// Sizes: `paper` (d 32, width 1024, 6 blocks, batch 256), `small` (d 32, width 256, 4 blocks,
        /// batch 256) or `both`.
        #[arg(long, default_value = "both")]
        size: String,
        #[arg(long, default_value_t = 10)]
        steps: usize,
        #[arg(long, default_value_t = 3)]
        warmup: usize,
        /// Threads for both sides (rayon for Burn's CPU backend, torch.set_num_threads for PyTorch).
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Python with torch for the reference (default: .venv-torch/bin/python, else python3).
        #[arg(long)]
        torch_python: Option<std::path::PathBuf>,
        /// Backends to measure (default: every compiled one).
        #[arg(long, value_enum, value_delimiter = ',')]
        backends: Vec<crate::backend::BackendKind>,
    },
    /// One writer: a run that logs `points` metric points in batches of `batch`.
    StoreWriter {
        /// Run name (distinct writers need distinct names).
        #[arg(long)]
        name: String,
        #[arg(long, default_value_t = 1000)]
        points: usize,
        #[arg(long, default_value_t = 10)]
        batch: usize,
        /// Pause between batches, in milliseconds.
        #[arg(long, default_value_t = 0)]
        sleep_ms: u64,
    },
}

pub fn run(cli: &Cli, args: &BenchArgs) -> anyhow::Result<()> {
    match &args.command {
        BenchCommand::StoreWriter {
            name,
            points,
            batch,
            sleep_ms,
        } => store_writer(cli, name, *points, *batch, *sleep_ms),
        BenchCommand::Store {
            processes,
            points,
            batch,
        } => store_bench(cli, *processes, *points, *batch),
        BenchCommand::Prior {
            size,
            steps,
            warmup,
            threads,
            torch_python,
            backends,
        } => prior_bench(
            size,
            *steps,
            *warmup,
            *threads,
            torch_python.as_deref(),
            backends,
        ),
    }
}

fn store_writer(
    cli: &Cli,
    name: &str,
    points: usize,
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
    let run = ActiveRun::begin(&store, &spec, "none", true)?
        .with_context(|| format!("run {name:?} is already finished or held by a live process"))?;
    let id = run.id();
    let mut step = 0usize;
    while step < points {
        let n = batch.min(points - step);
        let chunk: Vec<MetricPoint> = (step..step + n)
            .flat_map(|s| {
                let x = s as f64;
                [
                    MetricPoint::new("value", s as i64, x),
                    MetricPoint::new("square", s as i64, x * x),
                ]
            })
            .collect();
        store.log_metrics(id, &chunk)?;
        step += n;
        if sleep_ms > 0 {
            std::thread::sleep(Duration::from_millis(sleep_ms));
        }
    }
    run.finish()?;
    println!("run {id}: {points} steps logged");
    Ok(())
}

fn store_bench(cli: &Cli, processes: usize, points: usize, batch: usize) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find the flowprior executable")?;
    let db = cli.db_path();
    let tag = format!("{}-{}", std::process::id(), crate::util::now_unix() as u64);
    let started = Instant::now();
    let children: Vec<_> = (0..processes)
        .map(|i| {
            std::process::Command::new(&exe)
                .arg("--db")
                .arg(&db)
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

fn torch_reference(
    python: &std::path::Path,
    b: &PriorBench,
    threads: usize,
) -> Result<f64, String> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/bench_prior.py");
    let out = std::process::Command::new(python)
        .arg(&script)
        .args([b.dim, b.width, b.depth, b.batch, b.steps, b.warmup, threads].map(|v| v.to_string()))
        .env("OMP_NUM_THREADS", threads.to_string())
        .env("MKL_NUM_THREADS", threads.to_string())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "PyTorch reference failed: {}",
            err.lines().last().unwrap_or("")
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or("");
    let v: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("bad reference output {line:?}: {e}"))?;
    v["steps_per_s"]
        .as_f64()
        .ok_or_else(|| format!("no steps_per_s in {line:?}"))
}

fn prior_bench(
    size: &str,
    steps: usize,
    warmup: usize,
    threads: usize,
    torch_python: Option<&std::path::Path>,
    backends: &[crate::backend::BackendKind],
) -> anyhow::Result<()> {
    use crate::backend::{BackendKind, DeviceSpec, run_job};
    let sizes: Vec<(&str, PriorBench)> = {
        let paper = PriorBench {
            dim: 32,
            width: 1024,
            depth: 6,
            batch: 256,
            steps,
            warmup,
        };
        let small = PriorBench {
            dim: 32,
            width: 256,
            depth: 4,
            batch: 256,
            steps,
            warmup,
        };
        match size {
            "paper" => vec![("paper", paper)],
            "small" => vec![("small", small)],
            "both" => vec![("small", small), ("paper", paper)],
            other => anyhow::bail!("--size {other:?}: expected paper, small or both"),
        }
    };
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build_global();
    let backends: Vec<BackendKind> = if backends.is_empty() {
        BackendKind::compiled()
    } else {
        backends.to_vec()
    };
    let python = torch_python.map(|p| p.to_path_buf()).unwrap_or_else(|| {
        let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-torch/bin/python");
        if venv.exists() {
            venv
        } else {
            "python3".into()
        }
    });
    let profile = if cfg!(debug_assertions) {
        "dev profile"
    } else {
        "release profile"
    };
    let mut b = tabled::builder::Builder::default();
    b.push_record(["size", "backend", "steps/s", "PyTorch CPU steps/s", "ratio"]);
    for (name, bench) in &sizes {
        let reference = torch_reference(&python, bench, threads);
        let ref_text = match &reference {
            Ok(v) => format!("{v:.2}"),
            Err(e) => {
                eprintln!("{e}");
                "unavailable".into()
            }
        };
        for backend in &backends {
            let device = DeviceSpec::parse(*backend, None)?;
            let label = format!(
                "{name} (d {}, w {}, {} blocks, batch {})",
                bench.dim, bench.width, bench.depth, bench.batch
            );
            match run_job(*backend, device, *bench) {
                Ok(v) => {
                    let ratio = reference
                        .as_ref()
                        .map(|r| format!("{:.2}x", v / r))
                        .unwrap_or_else(|_| "-".into());
                    b.push_record([
                        label,
                        backend.name().into(),
                        format!("{v:.2}"),
                        ref_text.clone(),
                        ratio,
                    ]);
                }
                Err(e) => b.push_record([
                    label,
                    backend.name().into(),
                    format!("error: {e}"),
                    ref_text.clone(),
                    "-".into(),
                ]),
            }
        }
    }
    println!(
        "flow-prior training step (flow-matching loss + Adam), {threads} thread(s), {steps} timed steps after {warmup} warm-up, flowprior {profile}"
    );
    println!("{}", b.build().with(tabled::settings::Style::sharp()));
    Ok(())
}
