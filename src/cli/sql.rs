//! `flowprior sql "SELECT ..."`: one statement over a read-only connection, streamed to stdout.

use super::Cli;
use crate::store::{OutputFormat, RowWriter, Store};

/// Rows the table format shows at most by default.
pub const DEFAULT_MAX_ROWS: usize = 10_000;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Exactly one statement that reads (SELECT, WITH, VALUES, EXPLAIN, or a \
PRAGMA that sets nothing); anything else is refused before it reaches the database.\n\
csv and json stream their rows as they come, in constant memory, however many there are; the table \
format must measure its rows first, so it shows at most --max-rows of them and says how many it \
left out."
)]
pub struct SqlArgs {
    /// The SQL statement. Tables: runs, params, metrics, summary, artifacts, sweeps, sweep_runs,
    /// sweep_points, run_attempts, attempt_metrics; view runs_wide (one row per run, p_<param> and
    /// m_<metric> columns).
    pub statement: String,
    /// Output format: table (at most --max-rows rows), csv or json (every row, streamed).
    #[arg(long, short, value_enum, default_value = "table")]
    pub format: OutputFormat,
    /// The most rows the table format shows.
    #[arg(long, default_value_t = DEFAULT_MAX_ROWS)]
    pub max_rows: usize,
}

pub fn run(cli: &Cli, args: &SqlArgs) -> anyhow::Result<()> {
    let location = cli.db();
    if let Some(path) = location.sqlite_path().filter(|p| !p.is_file()) {
        return Err(crate::store::StoreError::Missing(path.display().to_string()).into());
    }
    // Refuse what will not be run before touching the store at all.
    crate::store::check_read_statement(&args.statement)?;
    // Bring the runs_wide view up to date through a short-lived writable handle, then query through
    // a read-only one. A store that cannot be written (shipped read-only) keeps the view it has.
    if let Err(e) = Store::connect(&location).and_then(|w| {
        let r = w.refresh_runs_wide();
        w.close();
        r
    }) {
        tracing::warn!(error = %e, "runs_wide not refreshed: the store cannot be written");
    }
    let store = cli.open_existing_store()?;
    let stdout = std::io::stdout().lock();
    let w = std::cell::RefCell::new(RowWriter::new(
        std::io::BufWriter::new(stdout),
        args.format,
        args.max_rows,
    ));
    store.query_each(
        &args.statement,
        |c| w.borrow_mut().columns(c),
        |r| w.borrow_mut().row(&r),
    )?;
    w.borrow_mut().finish()?;
    Ok(())
}
