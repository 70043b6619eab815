//! `flowprior report NAME`

use std::path::PathBuf;

use super::Cli;

#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// The sweep's name (its file stem).
    pub name: String,
    /// Folder for NAME.md and the NAME/ figures.
    #[arg(long, default_value = "reports")]
    pub out: PathBuf,
    /// Fail unless every expected row is present and every cell holds a finite number (CI).
    #[arg(long)]
    pub check: bool,
}

pub fn run(cli: &Cli, args: &ReportArgs) -> anyhow::Result<()> {
    let store = cli.open_existing_store()?;
    let out = crate::report::build(&store, &args.name, &args.out, &cli.data_dir())?;
    println!("report: {}", out.markdown.display());
    for f in &out.figures {
        println!("figure: {}", f.display());
    }
    for g in &out.gaps {
        eprintln!("gap: {g}");
    }
    anyhow::ensure!(
        !args.check || out.gaps.is_empty(),
        "report {}: {} gaps (rows or values missing)",
        args.name,
        out.gaps.len()
    );
    if args.check {
        println!("check: every expected row and column holds a finite number");
    }
    Ok(())
}
