//! `flowprior sweep worker NAME` and `flowprior sweep submit FILE --slurm`: a sweep worked on by many
//! processes on many hosts, all claiming stage runs from one run store (PostgreSQL, or SQLite on one
//! host). Scheduling is the cluster's: `submit` writes a Slurm job array whose tasks are workers.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use super::Cli;
use crate::jobs::Claim;
use crate::store::{DB_ENV, DEFAULT_STALE_AFTER_S};
use crate::sweep::exec::{self, ExecOptions};
use crate::sweep::{Counts, Plan};

#[derive(clap::Args, Debug)]
pub struct WorkerArgs {
    /// The registered sweep's name (`flowprior sweep list`).
    pub name: String,
    /// Threads this worker computes with.
    #[arg(long, env = "FLOWPRIOR_THREADS", default_value_t = 1)]
    pub threads: usize,
    /// Run again the stages that failed before (once per worker).
    #[arg(long)]
    pub retry_failed: bool,
    /// Attempts a stage gets before its failure is final (1: never retried automatically).
    #[arg(long, env = "FLOWPRIOR_MAX_ATTEMPTS", default_value_t = 1)]
    pub max_attempts: i64,
    /// Device: cpu, cuda, cuda:N.
    #[arg(long)]
    pub device: Option<String>,
    /// A running stage whose heartbeat is older than this many seconds is retaken (its worker is taken
    /// for dead: the lease has expired).
    #[arg(long, default_value_t = DEFAULT_STALE_AFTER_S)]
    pub stale_after: f64,
}

#[derive(clap::Args, Debug)]
pub struct SubmitArgs {
    /// The sweep file (TOML).
    pub file: PathBuf,
    /// Submit to Slurm: a job array of `--workers` tasks, each a `sweep worker`.
    #[arg(long, required = true)]
    pub slurm: bool,
    /// Worker tasks in the array.
    #[arg(long, default_value_t = 4)]
    pub workers: usize,
    /// Threads (and Slurm CPUs) per worker.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    #[command(flatten)]
    pub overrides: super::sweep::OverrideArgs,
    /// Heartbeat age after which a worker is taken for dead and its stage retaken.
    #[arg(long, default_value_t = DEFAULT_STALE_AFTER_S)]
    pub stale_after: f64,
    /// Attempts a stage gets before its failure is final (1: never retried automatically).
    #[arg(long, default_value_t = 1)]
    pub max_attempts: i64,
    /// Register the sweep and write the batch script, but do not call sbatch (prints the script's path).
    #[arg(long)]
    pub script_only: bool,
    /// Options passed to sbatch as they are (after `--`), e.g. -- --partition=gpu --time=04:00:00.
    #[arg(last = true)]
    pub sbatch_args: Vec<String>,
}

/// One worker on a registered sweep: claims ready stage runs until nothing is left to run or wait for.
pub fn worker(cli: &Cli, args: &WorkerArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.threads > 0, "--threads must be at least 1");
    anyhow::ensure!(
        args.stale_after.is_finite() && args.stale_after > 0.0,
        "--stale-after must be a positive number of seconds"
    );
    super::set_threads(args.threads);
    let store = cli.open_existing_store()?;
    // A worker writes: reopen the store it found for writing.
    drop(store);
    let store = cli.open_store()?;
    let (_sweep, plan, runs) =
        crate::sweep::load_registered(&store, &args.name, &cli.data_dir())
            .with_context(|| format!("sweep worker on `{}` in {}", args.name, store.location()))?;
    for b in plan.nodes.iter().map(|n| n.stage.backend(&n.config)) {
        b.ensure_compiled()?;
    }
    let ids: Vec<i64> = plan
        .nodes
        .iter()
        .zip(&runs)
        .map(|(n, r)| match r {
            Some(r) => Ok(r.id),
            None => store.get_or_create_run(&n.spec).map(|r| r.id),
        })
        .collect::<Result<_, _>>()?;
    anyhow::ensure!(args.max_attempts >= 1, "--max-attempts must be at least 1");
    let claim = Claim {
        stale_after_s: args.stale_after,
        max_attempts: args.max_attempts,
        ..cli.claim(args.retry_failed)?
    };
    let opts = ExecOptions {
        claim,
        data_dir: cli.data_dir(),
        device: args.device.clone(),
        poll: Duration::from_millis(500),
    };
    let who = format!("worker {}:{}", crate::util::host_name(), std::process::id());
    tracing::info!(sweep = args.name, nodes = plan.nodes.len(), "{who} starts");
    let report = exec::work(&store, &plan, &ids, &opts)?;
    let (_, states) = exec::settled_states(&store, &plan, &ids, claim)?;
    let c = Counts::of(&states);
    println!(
        "{who} on sweep {}: ran {}, failed {}; the sweep: {} of {} finished, {} failed, {} blocked",
        args.name,
        report.ran.len(),
        report.failed.len(),
        c.finished,
        plan.nodes.len(),
        c.failed,
        c.blocked
    );
    for (i, e) in &report.failed {
        println!(
            "failed: {} (run {}): {}",
            plan.nodes[*i].spec.name,
            ids[*i],
            super::sweep_dry_run::first_line(e)
        );
    }
    Ok(())
}

/// Registers the sweep and submits a Slurm job array of workers on it.
pub fn submit(cli: &Cli, args: &SubmitArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.workers > 0, "--workers must be at least 1");
    anyhow::ensure!(args.threads > 0, "--threads must be at least 1");
    let (sweep, note) = super::sweep::load_reconciled(cli, &args.file, &args.overrides)?;
    if let Some(note) = note {
        println!("{note}");
    }
    let plan = Plan::expand(&sweep, &cli.data_dir())?;
    let store = cli.open_store()?;
    exec::register(&store, &sweep, &plan)?;
    let dir = store
        .artifacts_dir()
        .parent()
        .map_or_else(|| PathBuf::from("slurm"), |p| p.join("slurm"));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dir = dir.canonicalize().unwrap_or(dir);
    let exe = std::env::current_exe().context("cannot find the flowprior executable")?;
    let data_dir = cli.data_dir();
    let data_dir = data_dir.canonicalize().unwrap_or(data_dir);
    let script = slurm_script(&SlurmJob {
        sweep: &sweep.name,
        workers: args.workers,
        threads: args.threads,
        stale_after: args.stale_after,
        max_attempts: args.max_attempts,
        exe: &exe,
        data_dir: &data_dir,
        log_dir: &dir,
    });
    let path = dir.join(format!(
        "{}-{}.sbatch",
        sweep.name,
        crate::util::now_unix() as u64
    ));
    std::fs::write(&path, script).with_context(|| format!("cannot write {}", path.display()))?;
    println!(
        "sweep {}: {} stage runs registered in {}",
        sweep.name,
        plan.nodes.len(),
        store.location()
    );
    if args.script_only {
        println!("batch script: {}", path.display());
        return Ok(());
    }
    let out = std::process::Command::new("sbatch")
        .arg("--parsable")
        .args(&args.sbatch_args)
        .arg(&path)
        // The workers read the store's address from the environment sbatch exports to them.
        .env(DB_ENV, cli.db().as_given())
        .output()
        .context("cannot run sbatch (is Slurm installed here?)")?;
    anyhow::ensure!(
        out.status.success(),
        "sbatch refused {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let job = stdout.trim().split(';').next().unwrap_or("").to_string();
    println!(
        "submitted: Slurm job {job}, an array of {} workers ({}); follow it with `flowprior sweep status {}`",
        args.workers,
        path.display(),
        sweep.name
    );
    Ok(())
}

/// What a Slurm batch script of workers needs.
pub struct SlurmJob<'a> {
    pub sweep: &'a str,
    pub workers: usize,
    pub threads: usize,
    pub stale_after: f64,
    pub max_attempts: i64,
    pub exe: &'a Path,
    pub data_dir: &'a Path,
    pub log_dir: &'a Path,
}

/// A word quoted for the shell (single quotes).
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The sbatch script: a job array whose tasks each run one `sweep worker`.
pub fn slurm_script(job: &SlurmJob<'_>) -> String {
    let log = job.log_dir.join(format!("{}-%A_%a.out", job.sweep));
    format!(
        "#!/bin/bash\n\
         #SBATCH --job-name=flowprior-{name}\n\
         #SBATCH --array=0-{last}\n\
         #SBATCH --ntasks=1\n\
         #SBATCH --cpus-per-task={threads}\n\
         #SBATCH --output={log}\n\
         # Written by `flowprior sweep submit`. Each array task is one worker: it claims ready stage runs\n\
         # of sweep {name} from the run store until none is left, renewing its lease (heartbeat) while it\n\
         # runs one; a task that dies loses its lease after {stale} s and its stage is retaken. The store's\n\
         # address comes from FLOWPRIOR_DB, which sbatch exports from the submitting environment.\n\
         set -euo pipefail\n\
         exec {exe} --data-dir {data} sweep worker {qname} --threads {threads} --stale-after {stale} \
         --max-attempts {max}\n",
        name = job.sweep,
        qname = sh_quote(job.sweep),
        last = job.workers - 1,
        threads = job.threads,
        log = log.display(),
        stale = job.stale_after,
        max = job.max_attempts,
        exe = sh_quote(&job.exe.to_string_lossy()),
        data = sh_quote(&job.data_dir.to_string_lossy()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_batch_script_is_an_array_of_workers_with_quoted_paths() {
        let s = slurm_script(&SlurmJob {
            sweep: "table1",
            workers: 8,
            threads: 2,
            stale_after: 60.0,
            max_attempts: 3,
            exe: Path::new("/opt/fp/bin/flowprior"),
            data_dir: Path::new("/shared/it's data"),
            log_dir: Path::new("/shared/runs/slurm"),
        });
        assert!(s.starts_with("#!/bin/bash\n#SBATCH --job-name=flowprior-table1\n"));
        assert!(s.contains("#SBATCH --array=0-7\n"), "{s}");
        assert!(s.contains("#SBATCH --cpus-per-task=2\n"), "{s}");
        assert!(
            s.contains("#SBATCH --output=/shared/runs/slurm/table1-%A_%a.out\n"),
            "{s}"
        );
        assert!(
            s.contains(
                "exec '/opt/fp/bin/flowprior' --data-dir '/shared/it'\\''s data' sweep worker \
                 'table1' --threads 2 --stale-after 60 --max-attempts 3\n"
            ),
            "{s}"
        );
        assert!(!s.contains("postgres://"), "no credentials in the script");
    }
}
