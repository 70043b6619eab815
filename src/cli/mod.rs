//! The `flowprior` command line: one module per subcommand. Errors are reported here with context
//! (anyhow); the library below returns typed errors.

mod bench;
mod bench_align;
mod bench_all;
mod bench_features;
mod bench_generator;
mod bench_prior;
mod bench_store;
mod bench_trainers;
mod classifier;
mod data;
mod report;
mod runs;
mod sql;
mod stage;
mod sweep;
mod sweep_cluster;
mod sweep_dry_run;
mod toy;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::backend::{BackendKind, DeviceSpec};
use crate::store::{Location, Store, StoreError, resolve_db};

#[derive(Parser, Debug)]
#[command(
    name = "flowprior",
    version = crate::provenance::VERSION,
    about = "Latent-space alignment with flow priors: runs, sweeps, reports"
)]
pub struct Cli {
    /// Run store: a SQLite file (or sqlite:// URL), or a postgres:// URL. Default: $FLOWPRIOR_DB,
    /// else runs/flowprior.db.
    #[arg(long, global = true, value_name = "FILE|URL")]
    pub db: Option<String>,
    /// Data folder. Default: $FLOWPRIOR_DATA, else data/.
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Divergence guard: a run fails when a training loss (a metric key ending in `/loss`) exceeds
    /// this many times the median of its first 10 values; 0 turns the guard off. A NaN or infinite
    /// logged value always fails the run.
    #[arg(long, global = true, env = "FLOWPRIOR_DIVERGENCE_FACTOR", value_name = "K",
          default_value_t = crate::store::DEFAULT_DIVERGENCE_FACTOR)]
    pub divergence_factor: f64,
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train the MLP classifier on a dataset and record the run (the feature network of FID-like metrics).
    Classifier(classifier::ClassifierArgs),
    /// 2-D toy experiments (paper Fig. 3, 5, 6): train a flow prior per target, align free points.
    Toy(toy::ToyArgs),
    /// Sweeps: run a grid of stages (cached, resumable, parallel workers), see where one stands.
    Sweep(sweep::SweepArgs),
    /// Markdown tables and figures of a sweep, from the run store (reports/NAME.md, reports/NAME/).
    Report(report::ReportArgs),
    /// Past runs: list, show, stale, export.
    Runs(runs::RunsArgs),
    /// Any one stage outside a sweep (its inputs planned and reused as a sweep would).
    Stage(stage::StageArgs),
    /// Run one read-only SQL statement against the store.
    Sql(sql::SqlArgs),
    /// Datasets and weights: check what is present.
    Data(data::DataArgs),
    /// The run store itself.
    Db(DbArgs),
    /// Backends compiled into this binary.
    Backends,
    /// Benchmarks.
    Bench(bench::BenchArgs),
}

#[derive(clap::Args, Debug)]
pub struct DbArgs {
    #[command(subcommand)]
    pub command: DbCommand,
}

#[derive(Subcommand, Debug)]
pub enum DbCommand {
    /// Create the store (or migrate it to the current schema) and print where it is.
    Init,
    /// Check the database file's integrity.
    Check,
}

/// `--backend` and `--device`, shared by every subcommand that trains.
#[derive(clap::Args, Debug, Clone)]
pub struct BackendArgs {
    /// Backend: flex (CPU, default), cuda, tch. Overrides the config file's `backend` key.
    #[arg(long, env = "FLOWPRIOR_BACKEND", value_enum)]
    pub backend: Option<BackendKind>,
    /// Device: cpu, cuda, cuda:N (default: the backend's own).
    #[arg(long, value_name = "DEVICE")]
    pub device: Option<String>,
}

impl BackendArgs {
    /// The backend (flag, else config, else flex) and device, checked against this binary.
    pub fn resolve(&self, from_config: BackendKind) -> anyhow::Result<(BackendKind, DeviceSpec)> {
        let backend = self.backend.unwrap_or(from_config);
        backend.ensure_compiled()?;
        let device = DeviceSpec::parse(backend, self.device.as_deref())?;
        Ok((backend, device))
    }
}

impl Cli {
    /// The run store's address (`--db`, else `$FLOWPRIOR_DB`, else `runs/flowprior.db`).
    pub fn db(&self) -> Location {
        resolve_db(self.db.as_deref())
    }

    pub fn data_dir(&self) -> PathBuf {
        crate::data::catalog::resolve_data_dir(self.data_dir.as_deref())
    }

    pub fn open_store(&self) -> anyhow::Result<Store> {
        Ok(Store::connect(&self.db())?)
    }

    /// The store for a verb that only reads: it must exist (a mistyped `--db` is an error, not a new
    /// empty store), and it is opened read-only (a store in a read-only folder can still be read).
    pub fn open_existing_store(&self) -> anyhow::Result<Store> {
        Ok(Store::connect_existing(&self.db())?)
    }

    /// The store read-only when it exists, `None` when there is none yet (a SQLite file not created,
    /// a PostgreSQL database without the schema).
    pub fn existing_store_if_any(&self) -> anyhow::Result<Option<Store>> {
        match Store::connect_existing(&self.db()) {
            Ok(store) => Ok(Some(store)),
            Err(StoreError::Missing(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The divergence guard of `--divergence-factor`, checked.
    pub fn guard(&self) -> anyhow::Result<crate::store::DivergenceGuard> {
        let k = self.divergence_factor;
        anyhow::ensure!(
            k.is_finite() && k >= 0.0,
            "--divergence-factor {k}: expected a factor >= 0 (0 turns the guard off)"
        );
        Ok(crate::store::DivergenceGuard {
            factor: k,
            ..Default::default()
        })
    }

    /// Which runs a job of this invocation may claim, with its divergence guard.
    pub fn claim(&self, retry_failed: bool) -> anyhow::Result<crate::jobs::Claim> {
        Ok(crate::jobs::Claim::new(retry_failed).with_guard(self.guard()?))
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("flowprior={default},warn"))
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    if !crate::heap::keep_freed_memory() {
        tracing::debug!("the allocator's defaults stay (no glibc mallopt)");
    }
    match dispatch(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            if sweep::is_invalid_input(&e) {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// A line for a finished run that is reused rather than run again, when another build recorded it:
/// `note: run 3 was recorded by revision abc (this binary: def); reused, as its configuration is the same`.
pub fn reuse_note(store: &Store, run: i64) -> Option<String> {
    let info = store.run(run).ok()?;
    let this = crate::provenance::revision();
    let rev = info.git_rev.as_deref().unwrap_or("unknown");
    (rev != this).then(|| {
        format!(
            "note: run {run} was recorded by revision {rev} (this binary: {this}); reused, as its \
             configuration is the same (--retry-failed does not rerun finished runs: remove it from the \
             store or change a setting to run it again)"
        )
    })
}

/// The error and its causes on one line, each cause once: a cause whose text the line already holds
/// (a library error that prints its source) is not repeated.
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out
}

fn dispatch(cli: &Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Classifier(args) => classifier::run(cli, args),
        Command::Toy(args) => toy::run(cli, args),
        Command::Sweep(args) => sweep::run(cli, args),
        Command::Report(args) => report::run(cli, args),
        Command::Runs(args) => runs::run(cli, args),
        Command::Sql(args) => sql::run(cli, args),
        Command::Stage(args) => stage::run(cli, args),
        Command::Data(args) => data::run(cli, args),
        Command::Bench(args) => bench::run(cli, args),
        Command::Db(args) => {
            let store = cli.open_store()?;
            match args.command {
                DbCommand::Init => {
                    store.refresh_runs_wide()?;
                    println!("run store ready: {}", store.location());
                }
                DbCommand::Check => {
                    let verdict = store.integrity_check()?;
                    println!("{}: integrity {verdict}", store.location());
                    anyhow::ensure!(verdict == "ok", "integrity check failed");
                }
            }
            Ok(())
        }
        Command::Backends => {
            for b in [BackendKind::Flex, BackendKind::Cuda, BackendKind::Tch] {
                let state = if b.is_compiled() {
                    "compiled in"
                } else {
                    "not compiled"
                };
                println!("{:<5} {state} (cargo feature `{}`)", b.name(), b.feature());
            }
            Ok(())
        }
    }
}

/// Sets the process's compute threads (once per process).
pub(crate) fn set_threads(threads: usize) {
    if rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .is_err()
        && rayon::current_num_threads() != threads
    {
        tracing::warn!(
            threads,
            "the thread pool was already set up; --threads not applied"
        );
    }
}
