//! `flowprior bench ...`: each benchmark beside its reference measured in the same run (prior training
//! against PyTorch eager, exact k-NN against faiss-cpu, the step-time cost of L_align); the run store's
//! write throughput is in `bench_store`.

use std::time::Instant;

use super::Cli;
use super::bench_store::{store_bench, store_writer};

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: BenchCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// Several processes log metrics into one store at once; prints points/s and checks none is lost.
    Store {
        /// Writer processes started at once.
        #[arg(long, default_value_t = 4)]
        processes: usize,
        /// Steps each writer logs (two metric points per step).
        #[arg(long, default_value_t = 5000)]
        points: usize,
        /// Steps per write transaction.
        #[arg(long, default_value_t = 50)]
        batch: usize,
    },
    /// Flow-prior training steps/s on each compiled backend, side by side with the same model in
    /// PyTorch (eager) measured in the same run with the same thread count, on the device the backend uses.
    Prior {
        /// Sizes: `paper` (d 32, width 1024, 6 blocks, batch 256), `small` (d 32, width 256, 4 blocks,
        /// batch 256) or `both`.
        #[arg(long, default_value = "both")]
        size: String,
        /// Timed training steps per side at the paper size (the small size, a sixteenth of the work a
        /// step, runs 10 times as many).
        #[arg(long, default_value_t = 10)]
        steps: usize,
        /// Untimed steps first (allocation, kernel selection).
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
    /// Exact k-NN search throughput (queries/s) side by side with faiss-cpu IndexFlatL2 on the same
    /// arrays in the same run and thread count; also checks both find the same k-th distances.
    Knn {
        /// Query points.
        #[arg(long, default_value_t = 10_000)]
        queries: usize,
        /// Target points searched.
        #[arg(long, default_value_t = 100_000)]
        targets: usize,
        /// Dimension of the points.
        #[arg(long, default_value_t = 32)]
        dim: usize,
        /// Neighbours per query.
        #[arg(long, default_value_t = 5)]
        k: usize,
        /// Threads for both sides.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Python with faiss-cpu (default: .venv-bench/bin/python from `just faiss`, else python3).
        #[arg(long)]
        faiss_python: Option<std::path::PathBuf>,
    },
    /// The toy metrics' KDE log-density through a k-d tree with a kernel cut-off, beside the sum over
    /// every sample, on the same samples and points (every target without a closed-form density).
    Kde {
        /// KDE samples (the paper's toy: 100,000).
        #[arg(long, default_value_t = 100_000)]
        samples: usize,
        /// Bandwidth (the paper's toy: 0.1).
        #[arg(long, default_value_t = 0.1)]
        bandwidth: f64,
        /// Points drawn from the target, as the toy's free points (the paper: 1000).
        #[arg(long, default_value_t = 1000)]
        points: usize,
        /// The landscape grid's resolution over [-3, 3]^2, added to the points (the paper preset: 60).
        #[arg(long, default_value_t = 60)]
        grid: usize,
        /// Threads for both.
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
    /// The tokenizer stage's training step with lambda = 0 and lambda > 0 under a frozen prior, beside
    /// the same step in PyTorch eager, and what alignment adds against its floor (the prior's forward
    /// and input-gradient flops at the prior trainer's flop rate, measured in the same run).
    Align {
        /// Timed tokenizer steps per row.
        #[arg(long, default_value_t = 3)]
        steps: usize,
        /// Untimed steps first.
        #[arg(long, default_value_t = 1)]
        warmup: usize,
        /// Threads (rayon) for the CPU backend.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Only the rows whose tokenizer and prior, as printed, contain this text (e.g. `KL`,
        /// `paper`, `width 256`); given twice, rows must contain both. Every row when absent.
        #[arg(long, value_name = "TEXT")]
        only: Vec<String>,
        /// Backend (default: flex).
        #[arg(long, value_enum, default_value = "flex")]
        backend: crate::backend::BackendKind,
        /// Python with torch for the reference (default: .venv-torch/bin/python, else python3).
        #[arg(long)]
        torch_python: Option<std::path::PathBuf>,
    },
    /// The generators' training step and guided sampler (dit, mar) at the sweeps' size, beside the
    /// same in PyTorch eager.
    Generator {
        /// Timed steps per row.
        #[arg(long, default_value_t = 10)]
        steps: usize,
        /// Untimed steps first.
        #[arg(long, default_value_t = 2)]
        warmup: usize,
        /// Euler steps of the timed sampling chunk (per token for MAR); samples/s scale inversely.
        #[arg(long, default_value_t = 10)]
        sample_steps: usize,
        /// Threads (rayon) for the CPU backend.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Backend (default: flex).
        #[arg(long, value_enum, default_value = "flex")]
        backend: crate::backend::BackendKind,
        /// Python with torch for the reference (default: .venv-torch/bin/python, else python3).
        #[arg(long)]
        torch_python: Option<std::path::PathBuf>,
    },
    /// The feature networks' forward pass (the project classifier, EfficientNet-Lite0, the FID
    /// Inception-v3) on grey 28x28 images as rFID / FID and the dino stage run it, beside the same in
    /// PyTorch eager.
    Features {
        /// Images in the timed pass of the convolutional networks. The classifier's pass takes at
        /// least 10 000 (the test set rFID runs it over): 64 would be under a millisecond.
        #[arg(long, default_value_t = 64)]
        images: usize,
        /// Threads (rayon) for the CPU backend.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Backend (default: flex).
        #[arg(long, value_enum, default_value = "flex")]
        backend: crate::backend::BackendKind,
        /// Python with torch for the reference (default: .venv-torch/bin/python, else python3).
        #[arg(long)]
        torch_python: Option<std::path::PathBuf>,
    },
    /// The image trainers' steps (the vae, vq and classifier stages) at the cpu preset's sizes,
    /// beside the same steps in PyTorch eager.
    Trainers(super::bench_trainers::TrainersArgs),
    /// Every benchmark with a reference (prior, knn, kde, align, generator, features, trainers) at its
    /// default sizes, then one table of every ratio to its reference.
    All {
        /// Threads for every benchmark and its reference.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Python with torch for the references (default: .venv-torch/bin/python, else python3).
        #[arg(long)]
        torch_python: Option<std::path::PathBuf>,
    },
    /// One writer: a run that logs `points` metric points in batches of `batch`.
    StoreWriter {
        /// Run name (distinct writers need distinct names).
        #[arg(long)]
        name: String,
        /// Steps the run declares (two metric points per step).
        #[arg(long, default_value_t = 1000)]
        points: usize,
        /// Steps per write transaction.
        #[arg(long, default_value_t = 10)]
        batch: usize,
        /// Pause between batches, in milliseconds.
        #[arg(long, default_value_t = 0)]
        sleep_ms: u64,
        /// Finish the run after this many points (of `points`): a short retake of a long run.
        #[arg(long)]
        stop_after: Option<usize>,
    },
}

pub fn run(cli: &Cli, args: &BenchArgs) -> anyhow::Result<()> {
    match &args.command {
        BenchCommand::Knn {
            queries,
            targets,
            dim,
            k,
            threads,
            faiss_python,
        } => knn_bench(
            *queries,
            *targets,
            *dim,
            *k,
            *threads,
            faiss_python.as_deref(),
        ),
        BenchCommand::Kde {
            samples,
            bandwidth,
            points,
            grid,
            threads,
        } => kde_bench(*samples, *bandwidth, *points, *grid, *threads),
        BenchCommand::StoreWriter {
            name,
            points,
            batch,
            sleep_ms,
            stop_after,
        } => store_writer(
            cli,
            name,
            (*points, stop_after.unwrap_or(*points).min(*points)),
            *batch,
            *sleep_ms,
        ),
        BenchCommand::Store {
            processes,
            points,
            batch,
        } => store_bench(cli, *processes, *points, *batch),
        BenchCommand::Align {
            steps,
            warmup,
            threads,
            only,
            backend,
            torch_python,
        } => super::bench_align::align_bench(
            *steps,
            *warmup,
            *threads,
            only,
            *backend,
            &venv_python(torch_python.as_deref(), ".venv-torch"),
        ),
        BenchCommand::Trainers(a) => super::bench_trainers::trainers_bench(a),
        BenchCommand::All {
            threads,
            torch_python,
        } => super::bench_all::all(cli, *threads, torch_python.as_deref()),
        BenchCommand::Features {
            images,
            threads,
            backend,
            torch_python,
        } => super::bench_features::features_bench(
            *images,
            *threads,
            *backend,
            &venv_python(torch_python.as_deref(), ".venv-torch"),
            &cli.data_dir(),
        ),
        BenchCommand::Generator {
            steps,
            warmup,
            sample_steps,
            threads,
            backend,
            torch_python,
        } => super::bench_generator::generator_bench(
            *steps,
            *warmup,
            *sample_steps,
            *threads,
            *backend,
            &venv_python(torch_python.as_deref(), ".venv-torch"),
        ),
        BenchCommand::Prior {
            size,
            steps,
            warmup,
            threads,
            torch_python,
            backends,
        } => super::bench_prior::prior_bench(
            size,
            *steps,
            *warmup,
            *threads,
            torch_python.as_deref(),
            backends,
        ),
    }
}

/// A file of the project (a reference script, a venv): under the current directory when it is there
/// (a binary run from a checkout other than the one it was built in), else under the build's checkout.
fn project_file(rel: &str) -> std::path::PathBuf {
    let here = std::path::Path::new(rel);
    if here.exists() {
        here.to_path_buf()
    } else {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
    }
}

/// The Python to run a reference script with: the flag, else the project's venv, else python3.
pub(super) fn venv_python(flag: Option<&std::path::Path>, venv: &str) -> std::path::PathBuf {
    flag.map(|p| p.to_path_buf()).unwrap_or_else(|| {
        let p = project_file(&format!("{venv}/bin/python"));
        if p.exists() { p } else { "python3".into() }
    })
}

pub(super) fn kde_bench(
    samples: usize,
    bandwidth: f64,
    points: usize,
    grid: usize,
    threads: usize,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        samples > 0 && bandwidth > 0.0,
        "need at least one sample and a positive bandwidth"
    );
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()?;
    let rows = pool.install(|| crate::bench::kde::kde_bench(samples, bandwidth, points, grid));
    println!(
        "toy KDE log-density: {samples} samples, bandwidth {bandwidth}, {points} points + {grid} x {grid} grid, \
         {threads} thread(s), {}; tolerance {} nats",
        profile_name(),
        crate::toy::kde::KDE_TOLERANCE
    );
    let mut b = tabled::builder::Builder::default();
    b.push_record([
        "target",
        "points",
        "k-d tree",
        "every sample",
        "speed-up",
        "max error (nats)",
    ]);
    for r in &rows {
        super::bench_all::record(
            "kde",
            &format!("{:?} (k-d tree vs every sample)", r.target).to_lowercase(),
            Some(r.brute_s / r.tree_s),
        );
        b.push_record([
            format!("{:?}", r.target).to_lowercase(),
            r.points.to_string(),
            format!("{:.3} s", r.tree_s),
            format!("{:.3} s", r.brute_s),
            format!("{:.1}x", r.brute_s / r.tree_s),
            format!("{:.1e}", r.max_error),
        ]);
    }
    println!("{}", b.build().with(tabled::settings::Style::sharp()));
    Ok(())
}

pub(super) fn profile_name() -> &'static str {
    if cfg!(debug_assertions) {
        "dev profile"
    } else {
        "release profile"
    }
}

pub(super) fn knn_bench(
    nq: usize,
    nt: usize,
    dim: usize,
    k: usize,
    threads: usize,
    faiss_python: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    use rand::SeedableRng;
    use rand_distr::{Distribution, Normal};
    anyhow::ensure!(
        nq > 0 && nt >= k && dim > 0 && k > 0,
        "need queries, at least k targets, dim and k >= 1"
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let normal = Normal::new(0.0f32, 1.0)?;
    let q: Vec<f32> = (0..nq * dim).map(|_| normal.sample(&mut rng)).collect();
    let t: Vec<f32> = (0..nt * dim).map(|_| normal.sample(&mut rng)).collect();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()?;
    let start = Instant::now();
    let d = pool.install(|| crate::metrics::knn::knn_sq_dists(&q, &t, dim, k, false));
    let secs = start.elapsed().as_secs_f64();
    let ours_kth = d.chunks_exact(k).map(|r| f64::from(r[k - 1])).sum::<f64>() / nq as f64;

    let dir = tempfile_dir()?;
    let (qp, tp) = (dir.join("q.npy"), dir.join("t.npy"));
    crate::features::write_npy(&qp, &q, &[nq, dim])?;
    crate::features::write_npy(&tp, &t, &[nt, dim])?;
    let python = venv_python(faiss_python, ".venv-bench");
    let script = project_file("scripts/bench_knn.py");
    let out = std::process::Command::new(&python)
        .arg(&script)
        .arg(&qp)
        .arg(&tp)
        .args([k.to_string(), threads.to_string()])
        .output();
    let _ = std::fs::remove_dir_all(&dir);
    let reference: Result<serde_json::Value, String> = match out {
        Ok(o) if o.status.success() => serde_json::from_slice(&o.stdout).map_err(|e| e.to_string()),
        Ok(o) => Err(String::from_utf8_lossy(&o.stderr)
            .lines()
            .last()
            .unwrap_or("failed")
            .to_string()),
        Err(e) => Err(format!("{}: {e}", python.display())),
    };
    let profile = profile_name();
    println!(
        "exact k-NN: {nq} queries x {nt} targets, d = {dim}, k = {k}, {threads} thread(s), {profile}"
    );
    let ours_qps = nq as f64 / secs;
    println!(
        "flowprior (tiled sgemm + rayon): {ours_qps:.0} queries/s ({secs:.3} s), mean k-th sq. distance {ours_kth:.5}"
    );
    match reference {
        Ok(v) => {
            let fs = v["secs"].as_f64().unwrap_or(f64::NAN);
            let fk = v["mean_kth_sq"].as_f64().unwrap_or(f64::NAN);
            println!(
                "faiss-cpu {} IndexFlatL2: {:.0} queries/s ({fs:.3} s), mean k-th sq. distance {fk:.5}",
                v["faiss"].as_str().unwrap_or("?"),
                nq as f64 / fs
            );
            let ratio = ours_qps / (nq as f64 / fs);
            println!("ratio flowprior / faiss: {ratio:.2}");
            super::bench_all::record(
                "knn",
                &format!("{nq} queries x {nt} targets, d {dim}, k {k} (faiss-cpu)"),
                Some(ratio),
            );
            anyhow::ensure!(
                ((ours_kth - fk) / fk.max(1e-12)).abs() < 1e-3,
                "the two searches disagree on the k-th distances"
            );
        }
        Err(e) => {
            super::bench_all::record("knn", "(faiss-cpu not run)", None);
            println!("faiss-cpu reference not run ({e}); `just faiss` installs it")
        }
    }
    Ok(())
}

/// A fresh folder under the system temp dir.
fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!("flowprior-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

/// Runs a PyTorch reference script (`scripts/...`) with `args` and `threads` threads; its last line
/// of output is JSON with `steps_per_s`.
pub(super) fn run_reference(
    python: &std::path::Path,
    script: &str,
    args: &[String],
    threads: usize,
) -> Result<f64, String> {
    run_reference_rate(python, script, args, threads, "steps_per_s")
}

/// The named stage's configuration at `scale` (what a sweep at that preset runs).
pub(super) fn preset_config<T: serde::de::DeserializeOwned>(
    stage: &str,
    scale: crate::sweep::Scale,
) -> anyhow::Result<T> {
    Ok(serde_json::from_value(
        crate::sweep::StageKind::named(stage).defaults(scale),
    )?)
}

/// `ours / theirs` as text, or `-` with the reason kept in `failures`; the ratio is recorded for
/// `bench all`'s summary as the row `(benchmark, step)`.
pub(super) fn compare(
    (bench, step): (&str, &str),
    ours: f64,
    theirs: Result<f64, String>,
    failures: &mut Vec<String>,
) -> [String; 3] {
    super::bench_all::record(bench, step, theirs.as_ref().ok().map(|t| ours / t));
    match theirs {
        Ok(t) => [
            format!("{ours:.2}"),
            format!("{t:.2}"),
            format!("{:.2}x", ours / t),
        ],
        Err(e) => {
            failures.push(e);
            [format!("{ours:.2}"), "-".into(), "-".into()]
        }
    }
}

/// Runs a reference script and reads the rate `key` from the last line it prints (one JSON object).
pub(super) fn run_reference_rate(
    python: &std::path::Path,
    script: &str,
    args: &[String],
    threads: usize,
    key: &str,
) -> Result<f64, String> {
    let out = std::process::Command::new(python)
        .arg(project_file(script))
        .args(args)
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
    v[key]
        .as_f64()
        .ok_or_else(|| format!("no {key} in {line:?}"))
}
