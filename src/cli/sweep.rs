//! `flowprior sweep run FILE | status NAME | list`

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use tabled::builder::Builder;
use tabled::settings::Style;

use super::Cli;
use crate::backend::BackendKind;
use crate::jobs::Claim;
use crate::store::{DEFAULT_STALE_AFTER_S, RunInfo, RunStatus};
use crate::sweep::estimate::{Estimate, estimate};
use crate::sweep::exec::{self, ExecOptions, NodeState};
use crate::sweep::{Counts, Overrides, Plan, Scale, Sweep};
use crate::util::format_duration;

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
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The sweep file (TOML).
    pub file: PathBuf,
    /// Print the plan (what runs, what is reused) and stop; nothing is written.
    #[arg(long)]
    pub dry_run: bool,
    /// Worker processes claiming stages in parallel (this one included).
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Run again the stages that failed before.
    #[arg(long)]
    pub retry_failed: bool,
    /// Scale preset, overriding the file's `preset`.
    #[arg(long, value_enum)]
    pub preset: Option<Scale>,
    /// Backend, overriding the file's `backend`.
    #[arg(long, value_enum)]
    pub backend: Option<BackendKind>,
    /// Seeds, overriding the file's `seeds`, e.g. --seeds 0 or --seeds 0,1.
    #[arg(long, value_delimiter = ',')]
    pub seeds: Option<Vec<u64>>,
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

pub fn run(cli: &Cli, args: &SweepArgs) -> anyhow::Result<()> {
    match &args.command {
        SweepCommand::Run(a) => run_sweep(cli, a),
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

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or("");
    if line.len() > 100 {
        format!("{}...", &line[..line.floor_char_boundary(100)])
    } else {
        line.to_string()
    }
}

/// What a dry run says a node will do.
fn action(state: NodeState, run: Option<&RunInfo>) -> String {
    match (state, run) {
        (NodeState::Finished, Some(r)) => match r.git_rev.as_deref() {
            Some(rev) if rev != crate::provenance::revision() => {
                format!("reuse run {} (recorded by revision {rev})", r.id)
            }
            _ => format!("reuse run {}", r.id),
        },
        (NodeState::Ready | NodeState::Waiting, None) => "run (new)".into(),
        (NodeState::Ready | NodeState::Waiting, Some(r)) => match r.status {
            RunStatus::Failed => format!("retry run {}", r.id),
            RunStatus::Running => format!("retake run {} (its process is gone)", r.id),
            _ => format!("run {} (queued)", r.id),
        },
        (NodeState::Failed, Some(r)) => format!(
            "skip run {}: failed ({}); --retry-failed reruns it",
            r.id,
            first_line(r.error.as_deref().unwrap_or(""))
        ),
        (NodeState::Running, Some(r)) => format!(
            "running in process {} on {}",
            r.pid.unwrap_or_default(),
            r.host.as_deref().unwrap_or("?")
        ),
        (NodeState::Blocked, _) => "blocked: an input failed".into(),
        (s, _) => s.as_str().into(),
    }
}

/// "sweep NAME (FILE, PRESET preset, BACKEND backend): N grid points, M stage runs"
fn headline(sweep: &Sweep, plan: &Plan) -> String {
    format!(
        "sweep {} ({}, {} preset, {} backend): {} grid points, {} stage runs",
        sweep.name,
        sweep.file.display(),
        sweep.preset.name(),
        sweep.backend.name(),
        plan.points.len(),
        plan.nodes.len()
    )
}

fn plan_table(
    plan: &Plan,
    runs: &[Option<RunInfo>],
    states: &[NodeState],
    estimates: &[Option<Estimate>],
) -> String {
    let mut b = Builder::default();
    b.push_record([
        "stage",
        "run name",
        "config hash",
        "points",
        "action",
        "est. time",
    ]);
    for (i, n) in plan.nodes.iter().enumerate() {
        b.push_record([
            n.stage.name().to_string(),
            n.spec.name.clone(),
            short(&n.hash).to_string(),
            n.users.to_string(),
            action(states[i], runs[i].as_ref()),
            match &estimates[i] {
                Some(Estimate {
                    seconds: Some(s), ..
                }) => format_duration(*s),
                Some(_) => "?".into(),
                None => String::new(),
            },
        ]);
    }
    b.build().with(Style::sharp()).to_string()
}

/// What the plan needs that is not there: input files that cannot be read, datasets missing from
/// the data folder.
fn missing_inputs(plan: &Plan, data_dir: &std::path::Path) -> Vec<String> {
    let mut problems = Vec::new();
    for n in &plan.nodes {
        let unreadable =
            crate::util::json_strings(&n.spec.config).any(|s| s == crate::util::UNREADABLE);
        if unreadable {
            problems.push(format!(
                "{}: an input file cannot be read (`flowprior data check` lists what is missing; \
                 `just data` fetches it)",
                n.spec.name
            ));
        }
        for d in n.stage.datasets(&n.config) {
            let folder = d.name();
            let absent: Vec<&str> = crate::data::catalog::EXPECTED_FILES
                .iter()
                .filter(|f| f.rel.starts_with(&format!("{folder}/")))
                .filter(|f| !data_dir.join(f.rel).is_file())
                .map(|f| f.rel)
                .collect();
            if !absent.is_empty() {
                problems.push(format!(
                    "{}: dataset {folder} is missing from {} ({}; `just data` fetches it)",
                    n.spec.name,
                    data_dir.display(),
                    absent.join(", ")
                ));
            }
        }
    }
    problems.dedup();
    problems
}

fn dry_run(
    cli: &Cli,
    sweep: &Sweep,
    plan: &Plan,
    claim: Claim,
    workers: usize,
) -> anyhow::Result<()> {
    let db = cli.db_path();
    let store = if db.is_file() {
        Some(cli.open_existing_store()?)
    } else {
        None
    };
    let runs: Vec<Option<RunInfo>> = match &store {
        Some(s) => exec::lookup(s, plan)?,
        None => vec![None; plan.nodes.len()],
    };
    let states = exec::states(plan, &runs, claim, &HashSet::new());
    let to_run: Vec<usize> = (0..plan.nodes.len())
        .filter(|&i| matches!(states[i], NodeState::Ready | NodeState::Waiting))
        .collect();
    let mut estimates: Vec<Option<Estimate>> = vec![None; plan.nodes.len()];
    if let Some(s) = &store {
        let asked: Vec<(&str, &serde_json::Value)> = to_run
            .iter()
            .map(|&i| (plan.nodes[i].stage.name(), &plan.nodes[i].spec.config))
            .collect();
        for (&i, e) in to_run.iter().zip(estimate(s, &asked)?) {
            estimates[i] = Some(e);
        }
    } else {
        for &i in &to_run {
            estimates[i] = Some(Estimate {
                seconds: None,
                basis: "no store yet".into(),
            });
        }
    }
    println!("{}", headline(sweep, plan));
    println!("{}", plan_table(plan, &runs, &states, &estimates));
    let reused = states.iter().filter(|s| **s == NodeState::Finished).count();
    println!(
        "dry run: {} to run, {reused} reused, nothing written",
        to_run.len()
    );
    let known: Vec<f64> = estimates
        .iter()
        .flatten()
        .filter_map(|e| e.seconds)
        .collect();
    let unknown = to_run.len() - known.len();
    if !known.is_empty() {
        let total: f64 = known.iter().sum();
        let mut line = format!(
            "estimated time: {} of stage runs for the {} with an estimate (from finished runs like \
             them in the store; machine: {}, {} threads)",
            format_duration(total),
            known.len(),
            crate::provenance::cpu().unwrap_or_else(|| "unknown CPU".into()),
            crate::provenance::threads()
        );
        if workers > 1 {
            line.push_str(&format!(
                "; with {workers} workers at best about {} (waits for inputs not counted)",
                format_duration(total / workers as f64)
            ));
        }
        println!("{line}");
    }
    if unknown > 0 {
        println!(
            "no estimate for {unknown} stage run{}: no finished run like {} is recorded yet \
             (run one grid point first, e.g. with --seeds and a smaller grid, to calibrate)",
            if unknown == 1 { "" } else { "s" },
            if unknown == 1 { "it" } else { "them" }
        );
    }
    let problems = missing_inputs(plan, &cli.data_dir());
    for p in &problems {
        println!("missing input: {p}");
    }
    for b in plan.nodes.iter().map(|n| n.stage.backend(&n.config)) {
        if let Err(e) = b.ensure_compiled() {
            println!("backend: {e}");
        }
    }
    Ok(())
}

fn spawn_workers(cli: &Cli, args: &RunArgs, n: usize) -> anyhow::Result<Vec<std::process::Child>> {
    let exe = std::env::current_exe().context("cannot find the flowprior executable")?;
    let mut children = Vec::new();
    for _ in 0..n {
        let mut c = std::process::Command::new(&exe);
        c.arg("--db")
            .arg(cli.db_path())
            .arg("--data-dir")
            .arg(cli.data_dir())
            .args(["sweep", "run"])
            .arg(&args.file)
            .arg("--worker")
            .arg("--stale-after")
            .arg(args.stale_after.to_string())
            .arg("--divergence-factor")
            .arg(cli.divergence_factor.to_string());
        if args.retry_failed {
            c.arg("--retry-failed");
        }
        if let Some(p) = args.preset {
            c.args(["--preset", p.name()]);
        }
        if let Some(b) = args.backend {
            c.args(["--backend", b.name()]);
        }
        if let Some(seeds) = &args.seeds {
            let list: Vec<String> = seeds.iter().map(u64::to_string).collect();
            c.args(["--seeds", &list.join(",")]);
        }
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

fn run_sweep(cli: &Cli, args: &RunArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.workers >= 1, "--workers must be at least 1");
    anyhow::ensure!(
        args.stale_after.is_finite() && args.stale_after > 0.0,
        "--stale-after must be a positive number of seconds"
    );
    let overrides = Overrides {
        preset: args.preset,
        backend: args.backend,
        seeds: args.seeds.clone(),
    };
    let sweep = Sweep::load(&args.file, overrides)?;
    // Seeds given on the command line add to a registered sweep; a changed one is said to replace it.
    let (sweep, note) = if cli.db_path().is_file() {
        exec::reconcile(&cli.open_existing_store()?, sweep)?
    } else {
        (sweep, None)
    };
    if let Some(note) = note.filter(|_| !args.worker) {
        println!("{note}");
    }
    let plan = Plan::expand(&sweep, &cli.data_dir())?;
    let claim = Claim {
        stale_after_s: args.stale_after,
        ..cli.claim(args.retry_failed)?
    };
    if args.dry_run {
        return dry_run(cli, &sweep, &plan, claim, args.workers);
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
    let mut children = spawn_workers(cli, args, args.workers - 1)?;
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
    let runs = exec::fetch(&store, &ids)?;
    let states = exec::states(
        &plan,
        &runs,
        Claim {
            retry_failed: false,
            ..claim
        },
        &HashSet::new(),
    );
    print_outcome(&sweep, &plan, &runs, &states, &report)
}

fn print_outcome(
    sweep: &Sweep,
    plan: &Plan,
    runs: &[Option<RunInfo>],
    states: &[NodeState],
    report: &exec::WorkReport,
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
                .filter(|i| report.ran.contains(i))
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
