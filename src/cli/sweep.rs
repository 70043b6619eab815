//! `flowprior sweep run FILE | status NAME | list` (`worker` and `submit`: sweep_cluster.rs)

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use tabled::builder::Builder;
use tabled::settings::Style;

use super::Cli;
use super::sweep_dry_run::{dry_run, first_line, headline};
use crate::backend::BackendKind;
use crate::jobs::Claim;
use crate::store::{DEFAULT_STALE_AFTER_S, RunInfo, RunStatus};
use crate::sweep::exec::{self, ExecOptions, NodeState};
use crate::sweep::{Counts, Overrides, Plan, Scale, Sweep};

#[derive(clap::Args, Debug)]
pub struct SweepArgs {
    #[command(subcommand)]
    pub command: SweepCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum SweepCommand {
    /// Run a sweep file: every stage of every grid point not finished yet.
    Run(RunArgs),
    /// Where a sweep stands: each stage run's status.
    Status {
        /// The sweep's name (its file stem).
        name: String,
    },
    /// Registered sweeps.
    List,
    /// Work on a registered sweep from any host: claim ready stage runs from the run store until
    /// none is left (start as many as you like, anywhere the store and the data can be reached).
    Worker(super::sweep_cluster::WorkerArgs),
    /// Register a sweep and submit workers on it to a cluster scheduler (a Slurm job array).
    Submit(super::sweep_cluster::SubmitArgs),
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The sweep file (TOML).
    pub file: PathBuf,
    /// Print the plan (what runs, what is reused) and stop; nothing is written.
    #[arg(long)]
    pub dry_run: bool,
    /// Worker processes claiming stages in parallel (this one included). Default: one per core
    /// (docs/sweeps.md, "Workers and threads": measured fastest).
    #[arg(long, env = "FLOWPRIOR_WORKERS")]
    pub workers: Option<usize>,
    /// Threads each worker computes with. Default: the cores shared out among the workers (at least
    /// one each).
    #[arg(long, env = "FLOWPRIOR_THREADS")]
    pub threads: Option<usize>,
    /// Run again the stages that failed before.
    #[arg(long)]
    pub retry_failed: bool,
    /// Attempts a stage gets before its failure is final: a failed stage is retried automatically
    /// while it has had fewer (1: never).
    #[arg(long, env = "FLOWPRIOR_MAX_ATTEMPTS", default_value_t = 1)]
    pub max_attempts: i64,
    #[command(flatten)]
    pub overrides: OverrideArgs,
    /// Device: cpu, cuda, cuda:N.
    #[arg(long)]
    pub device: Option<String>,
    /// A running stage whose heartbeat is older than this many seconds is retaken (one whose process
    /// on this host is gone is retaken at once).
    #[arg(long, default_value_t = DEFAULT_STALE_AFTER_S)]
    pub stale_after: f64,
    /// Internal: run as a worker of a parent `sweep run` (no registration, no output).
    #[arg(long, hide = true)]
    pub worker: bool,
}

/// What the command line overrides of a sweep file.
#[derive(clap::Args, Debug, Clone)]
pub struct OverrideArgs {
    /// Scale preset, overriding the file's `preset`.
    #[arg(long, value_enum)]
    pub preset: Option<Scale>,
    /// Backend, overriding the file's `backend`.
    #[arg(long, value_enum)]
    pub backend: Option<BackendKind>,
    /// Seeds, overriding the file's `seeds`, e.g. --seeds 0 or --seeds 0,1.
    #[arg(long, value_delimiter = ',')]
    pub seeds: Option<Vec<u64>>,
}

impl OverrideArgs {
    /// The same overrides as flags, for a worker process.
    fn to_args(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(p) = self.preset {
            out.extend(["--preset".to_string(), p.name().to_string()]);
        }
        if let Some(b) = self.backend {
            out.extend(["--backend".to_string(), b.name().to_string()]);
        }
        if let Some(seeds) = &self.seeds {
            let list: Vec<String> = seeds.iter().map(u64::to_string).collect();
            out.extend(["--seeds".to_string(), list.join(",")]);
        }
        out
    }
}

/// Loads the sweep file with the command line's overrides and reconciles it with the same sweep
/// registered in the store, if any (seeds add to it; a changed file replaces it): the sweep, and a
/// note for the user when something changed.
pub(super) fn load_reconciled(
    cli: &Cli,
    file: &std::path::Path,
    overrides: &OverrideArgs,
) -> anyhow::Result<(Sweep, Option<String>)> {
    let sweep = Sweep::load(
        file,
        Overrides {
            preset: overrides.preset,
            backend: overrides.backend,
            seeds: overrides.seeds.clone(),
        },
    )?;
    Ok(match cli.existing_store_if_any()? {
        Some(store) => exec::reconcile(&store, sweep)?,
        None => (sweep, None),
    })
}

pub fn run(cli: &Cli, args: &SweepArgs) -> anyhow::Result<()> {
    match &args.command {
        SweepCommand::Run(a) => run_sweep(cli, a),
        SweepCommand::Worker(a) => super::sweep_cluster::worker(cli, a),
        SweepCommand::Submit(a) => super::sweep_cluster::submit(cli, a),
        SweepCommand::Status { name } => status(cli, name),
        SweepCommand::List => {
            let store = cli.open_existing_store()?;
            for name in store.sweep_names()? {
                println!("{name}");
            }
            Ok(())
        }
    }
}

fn spawn_workers(
    cli: &Cli,
    args: &RunArgs,
    n: usize,
    threads: usize,
) -> anyhow::Result<Vec<std::process::Child>> {
    let exe = std::env::current_exe().context("cannot find the flowprior executable")?;
    let mut children = Vec::new();
    for _ in 0..n {
        let mut c = std::process::Command::new(&exe);
        c.env(crate::store::DB_ENV, cli.db().as_given())
            .arg("--data-dir")
            .arg(cli.data_dir())
            .args(["sweep", "run"])
            .arg(&args.file)
            .arg("--worker")
            .args(["--threads", &threads.to_string()])
            .arg("--stale-after")
            .arg(args.stale_after.to_string())
            .args(["--max-attempts", &args.max_attempts.to_string()])
            .arg("--divergence-factor")
            .arg(cli.divergence_factor.to_string());
        if args.retry_failed {
            c.arg("--retry-failed");
        }
        c.args(args.overrides.to_args());
        if let Some(d) = &args.device {
            c.args(["--device", d]);
        }
        for _ in 0..cli.verbose {
            c.arg("-v");
        }
        c.stdout(std::process::Stdio::null());
        children.push(c.spawn().context("cannot start a worker process")?);
    }
    Ok(children)
}

/// Workers and threads per worker: as given, else one worker per core and the cores shared out.
pub fn split_cores(
    cores: usize,
    workers: Option<usize>,
    threads: Option<usize>,
) -> anyhow::Result<(usize, usize)> {
    anyhow::ensure!(workers != Some(0), "--workers must be at least 1");
    anyhow::ensure!(threads != Some(0), "--threads must be at least 1");
    let cores = cores.max(1);
    let workers = workers.unwrap_or(cores);
    Ok((workers, threads.unwrap_or((cores / workers).max(1))))
}

fn run_sweep(cli: &Cli, args: &RunArgs) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let (workers, threads) = split_cores(cores, args.workers, args.threads)?;
    // Every process of the sweep computes with `threads` threads (the workers are told so).
    super::set_threads(threads);
    anyhow::ensure!(
        args.stale_after.is_finite() && args.stale_after > 0.0,
        "--stale-after must be a positive number of seconds"
    );
    // Seeds given on the command line add to a registered sweep; a changed one is said to replace it.
    let (sweep, note) = load_reconciled(cli, &args.file, &args.overrides)?;
    if let Some(note) = note.filter(|_| !args.worker) {
        println!("{note}");
    }
    let plan = Plan::expand(&sweep, &cli.data_dir())?;
    anyhow::ensure!(args.max_attempts >= 1, "--max-attempts must be at least 1");
    let claim = Claim {
        stale_after_s: args.stale_after,
        max_attempts: args.max_attempts,
        ..cli.claim(args.retry_failed)?
    };
    if args.dry_run {
        return dry_run(cli, &sweep, &plan, claim, workers);
    }
    for b in plan.nodes.iter().map(|n| n.stage.backend(&n.config)) {
        b.ensure_compiled()?;
    }
    let store = cli.open_store()?;
    let opts = ExecOptions {
        claim,
        data_dir: cli.data_dir(),
        device: args.device.clone(),
        poll: Duration::from_millis(500),
    };
    if args.worker {
        crate::jobs::hide_progress();
        let ids: Vec<i64> = plan
            .nodes
            .iter()
            .map(|n| store.get_or_create_run(&n.spec).map(|r| r.id))
            .collect::<Result<_, _>>()?;
        exec::work(&store, &plan, &ids, &opts)?;
        return Ok(());
    }
    let ids = exec::register(&store, &sweep, &plan)?;
    tracing::info!(
        sweep = sweep.name,
        points = plan.points.len(),
        nodes = plan.nodes.len(),
        "sweep registered"
    );
    tracing::info!(workers, threads, "workers and threads per worker");
    // What was finished before the workers start: the summary's "ran now" is every run finished
    // since, by any of this command's workers (or by workers elsewhere that share the store).
    let finished_before: HashSet<usize> = exec::fetch(&store, &ids)?
        .iter()
        .enumerate()
        .filter(|(_, r)| r.as_ref().is_some_and(|r| r.status == RunStatus::Finished))
        .map(|(i, _)| i)
        .collect();
    let mut children = spawn_workers(cli, args, workers - 1, threads)?;
    // Styled and labelled before it joins the drawing (its first frame is drawn at once).
    let overall = indicatif::ProgressBar::hidden();
    overall.set_length(plan.nodes.len() as u64);
    overall.set_style(
        indicatif::ProgressStyle::with_template(if crate::progress::on_terminal() {
            "{msg:>16} [{bar:30}] {pos}/{len} stages, {prefix}"
        } else {
            "{msg}: {pos}/{len} stages, {prefix}"
        })
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    overall.set_message(format!("sweep {}", sweep.name));
    overall.set_prefix("starting");
    let overall = crate::jobs::progress().insert(0, overall);
    let show = |c: Counts| {
        overall.set_position(c.done() as u64);
        overall.set_prefix(format!(
            "{} running, {} failed, {} blocked, {} left",
            c.running, c.failed, c.blocked, c.left
        ));
    };
    let done = std::sync::atomic::AtomicBool::new(false);
    let report = std::thread::scope(|s| {
        // The overall bar follows every worker's progress, also while this process runs a stage.
        s.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(runs) = exec::fetch(&store, &ids) {
                    show(Counts::of(&exec::states(
                        &plan,
                        &runs,
                        claim,
                        &HashSet::new(),
                    )));
                }
                std::thread::sleep(Duration::from_millis(700));
            }
        });
        let r = exec::work(&store, &plan, &ids, &opts);
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        r
    });
    for c in &mut children {
        let _ = c.wait();
    }
    overall.finish_and_clear();
    let report = report?;
    // The final word is the store's, after every worker has ended.
    let (runs, states) = exec::settled_states(&store, &plan, &ids, claim)?;
    print_outcome(&sweep, &plan, &runs, &states, &report, &finished_before)
}

fn print_outcome(
    sweep: &Sweep,
    plan: &Plan,
    runs: &[Option<RunInfo>],
    states: &[NodeState],
    report: &exec::WorkReport,
    finished_before: &HashSet<usize>,
) -> anyhow::Result<()> {
    let mut b = Builder::default();
    b.push_record(["stage", "runs", "finished", "failed", "blocked", "ran now"]);
    for &stage in &sweep.stages {
        let idx: Vec<usize> = (0..plan.nodes.len())
            .filter(|&i| plan.nodes[i].stage == stage)
            .collect();
        let count = |s: NodeState| idx.iter().filter(|&&i| states[i] == s).count();
        b.push_record([
            stage.name().to_string(),
            idx.len().to_string(),
            count(NodeState::Finished).to_string(),
            (count(NodeState::Failed) + count(NodeState::Skipped)).to_string(),
            count(NodeState::Blocked).to_string(),
            idx.iter()
                .filter(|&i| states[*i] == NodeState::Finished && !finished_before.contains(i))
                .count()
                .to_string(),
        ]);
    }
    println!("sweep {}: {} grid points", sweep.name, plan.points.len());
    println!("{}", b.build().with(Style::sharp()));
    let c = Counts::of(states);
    for (i, s) in states.iter().enumerate() {
        if matches!(s, NodeState::Failed | NodeState::Skipped) {
            // The error recorded on the run, else (a stage that could not even start) this worker's.
            let recorded = runs[i].as_ref().and_then(|r| r.error.clone());
            let mine = report
                .failed
                .iter()
                .find(|(j, _)| *j == i)
                .map(|(_, e)| e.clone());
            let err = recorded.or(mine).unwrap_or_default();
            let id = runs[i]
                .as_ref()
                .map_or("-".to_string(), |r| r.id.to_string());
            println!(
                "failed: {} (run {id}): {}",
                plan.nodes[i].spec.name,
                first_line(&err)
            );
        }
    }
    anyhow::ensure!(
        c.failed == 0 && c.blocked == 0 && c.running == 0 && c.left == 0,
        "sweep {}: {} of {} stage runs finished; {} failed, {} blocked, {} running elsewhere, {} left \
         (run again to resume; --retry-failed reruns failures)",
        sweep.name,
        c.finished,
        plan.nodes.len(),
        c.failed,
        c.blocked,
        c.running,
        c.left
    );
    Ok(())
}

fn status(cli: &Cli, name: &str) -> anyhow::Result<()> {
    let store = cli.open_existing_store()?;
    let (sweep, plan, runs) = crate::sweep::load_registered(&store, name, &cli.data_dir())?;
    let claim = Claim::new(false);
    let states = exec::states(&plan, &runs, claim, &HashSet::new());
    let mut b = Builder::default();
    b.push_record(["stage", "run", "name", "status", "attempts", "error"]);
    for (i, n) in plan.nodes.iter().enumerate() {
        let r = runs[i].as_ref();
        b.push_record([
            n.stage.name().to_string(),
            r.map(|r| r.id.to_string()).unwrap_or_else(|| "-".into()),
            n.spec.name.clone(),
            match (states[i], r) {
                (NodeState::Running, Some(_)) => "running".to_string(),
                (NodeState::Ready | NodeState::Waiting, Some(r))
                    if r.status == RunStatus::Running =>
                {
                    "running (stale: process gone)".to_string()
                }
                (NodeState::Ready | NodeState::Waiting, _) => "queued".to_string(),
                (s, _) => s.as_str().to_string(),
            },
            r.map(|r| r.attempts.to_string()).unwrap_or_default(),
            r.and_then(|r| r.error.as_deref())
                .map(first_line)
                .unwrap_or_default(),
        ]);
    }
    println!("{}", headline(&sweep, &plan));
    println!("{}", b.build().with(Style::sharp()));
    let c = Counts::of(&states);
    println!(
        "{} finished, {} running, {} failed, {} blocked, {} left",
        c.finished, c.running, c.failed, c.blocked, c.left
    );
    Ok(())
}

/// Whether an error (anywhere in its chain) is a bad sweep file: exit code 2.
pub fn is_invalid_input(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<crate::sweep::SweepError>(),
            Some(crate::sweep::SweepError::Invalid(_) | crate::sweep::SweepError::Read { .. })
        )
    })
}

#[cfg(test)]
mod tests {
    use super::split_cores;

    #[test]
    fn cores_are_shared_out_among_workers() {
        assert_eq!(split_cores(2, None, None).expect("ok"), (2, 1));
        assert_eq!(split_cores(2, Some(1), None).expect("ok"), (1, 2));
        assert_eq!(split_cores(8, Some(3), None).expect("ok"), (3, 2));
        assert_eq!(split_cores(2, Some(4), None).expect("ok"), (4, 1));
        assert_eq!(split_cores(2, None, Some(2)).expect("ok"), (2, 2));
        assert!(split_cores(2, Some(0), None).is_err());
        assert!(split_cores(2, None, Some(0)).is_err());
    }
}
