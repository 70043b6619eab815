//! `flowprior sql "SELECT ..."`: one statement over a read-only connection.

use super::Cli;
use crate::store::{OutputFormat, Store};

#[derive(clap::Args, Debug)]
pub struct SqlArgs {
    /// The SQL statement. Tables: runs, params, metrics, summary, artifacts, sweeps, sweep_runs;
    /// view runs_wide (one row per run, p_<param> and m_<metric> columns).
    pub statement: String,
    #[arg(long, short, value_enum, default_value = "table")]
    pub format: OutputFormat,
}

pub fn run(cli: &Cli, args: &SqlArgs) -> anyhow::Result<()> {
    let path = cli.db_path();
    anyhow::ensure!(
        path.exists(),
        "no run store at {}: run a job first, or `flowprior db init`",
        path.display()
    );
    // Bring the runs_wide view up to date through a short-lived writable handle, then query through
    // a read-only one.
    let writable = Store::open(&path)?;
    writable.refresh_runs_wide()?;
    writable.close();
    let store = Store::open_read_only(&path)?;
    let result = store.query(&args.statement)?;
    print!("{}", result.render(args.format));
    if args.format == OutputFormat::Table {
        println!("({} rows)", result.rows.len());
    }
    Ok(())
}
