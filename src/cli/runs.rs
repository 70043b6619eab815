//! `flowprior runs list|show|stale|export`

use std::path::PathBuf;

use anyhow::Context;
use tabled::builder::Builder;
use tabled::settings::Style;

use super::Cli;
use crate::store::{ExportFormat, ExportTable, RunStatus, Store, format_real};
use crate::util::{format_duration, format_utc, now_unix};

#[derive(clap::Args, Debug)]
pub struct RunsArgs {
    #[command(subcommand)]
    pub command: RunsCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum RunsCommand {
    /// One line per run, newest first, with its final metric values.
    List {
        /// Only runs with this status (queued, running, finished, failed).
        #[arg(long)]
        status: Option<String>,
        /// Only runs of this stage.
        #[arg(long)]
        stage: Option<String>,
    },
    /// Everything recorded about one run.
    Show {
        /// The run's id (the first column of `runs list`).
        id: i64,
    },
    /// Runs marked running whose process is gone: heartbeat older than --after seconds, or run on
    /// this host by a process that has ended (the rule `sweep run` retakes runs by).
    Stale {
        /// Seconds without a heartbeat after which a running run counts as dead.
        #[arg(long, default_value_t = crate::store::DEFAULT_STALE_AFTER_S)]
        after: f64,
    },
    /// Write a table of the store to a CSV or Parquet file.
    Export {
        #[arg(long, value_enum, default_value = "csv")]
        format: ExportFormat,
        /// Which table: runs (one row per run, params and final metrics as columns), metrics,
        /// params, summary, artifacts.
        #[arg(long, value_enum, default_value = "runs")]
        table: ExportTable,
        /// Output file (default: export/<table>.<csv|parquet> in the store's folder, e.g.
        /// runs/export/runs.csv for the default store).
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
}

pub fn run(cli: &Cli, args: &RunsArgs) -> anyhow::Result<()> {
    let store = cli.open_existing_store()?;
    match &args.command {
        RunsCommand::List { status, stage } => {
            let status = match status.as_deref() {
                Some(s) => Some(RunStatus::parse(s).with_context(|| {
                    format!("--status {s:?}: expected one of queued, running, finished, failed")
                })?),
                None => None,
            };
            print!("{}", list_table(&store, status, stage.as_deref())?);
        }
        RunsCommand::Show { id } => print!("{}", show_text(&store, *id)?),
        RunsCommand::Stale { after } => {
            let stale = store.stale_runs(*after)?;
            if stale.is_empty() {
                println!(
                    "no stale runs (none with a heartbeat older than {after}s or an ended process on this host)"
                );
            }
            for r in stale {
                let age = r
                    .heartbeat_at
                    .map(|h| now_unix() - h)
                    .unwrap_or(f64::INFINITY);
                println!(
                    "run {} ({} {}) on {} pid {}: last heartbeat {} ago",
                    r.id,
                    r.stage,
                    r.name,
                    r.host.as_deref().unwrap_or("?"),
                    r.pid.map(|p| p.to_string()).unwrap_or_else(|| "?".into()),
                    format_duration(age)
                );
            }
        }
        RunsCommand::Export { format, table, out } => {
            let ext = match format {
                ExportFormat::Csv => "csv",
                ExportFormat::Parquet => "parquet",
            };
            let name = format!("{table:?}").to_lowercase();
            let path = out.clone().unwrap_or_else(|| {
                cli.db()
                    .sqlite_path()
                    .and_then(|p| p.parent())
                    .map(|p| p.join("export"))
                    .unwrap_or_else(|| PathBuf::from("export"))
                    .join(format!("{name}.{ext}"))
            });
            let n = store.export(*table, *format, &path)?;
            println!("wrote {n} rows of {name} to {}", path.display());
        }
    }
    Ok(())
}

fn list_table(
    store: &Store,
    status: Option<RunStatus>,
    stage: Option<&str>,
) -> anyhow::Result<String> {
    let runs = store.list_runs(status, stage)?;
    if runs.is_empty() {
        let all = store.list_runs(None, None)?;
        if all.is_empty() {
            return Ok("no runs recorded yet\n".into());
        }
        let mut stages: Vec<&str> = all.iter().map(|r| r.stage.as_str()).collect();
        stages.sort_unstable();
        stages.dedup();
        if let Some(s) = stage.filter(|s| !stages.contains(s)) {
            anyhow::bail!(
                "--stage {s:?}: no run of that stage; the store has runs of: {}",
                stages.join(", ")
            );
        }
        return Ok(format!(
            "no runs match (the store has {} run{})\n",
            all.len(),
            if all.len() == 1 { "" } else { "s" }
        ));
    }
    let summaries = store.all_summaries()?;
    let mut b = Builder::default();
    b.push_record([
        "id",
        "stage",
        "name",
        "status",
        "backend",
        "seed",
        "started (UTC)",
        "took",
        "final metrics",
    ]);
    let now = now_unix();
    for r in &runs {
        let took = match (r.started_at, r.ended_at) {
            (Some(s), Some(e)) => format_duration(e - s),
            (Some(s), None) => format!("{} so far", format_duration(now - s)),
            _ => "-".into(),
        };
        let finals = summaries
            .get(&r.id)
            .map(|kv| headline(kv))
            .unwrap_or_default();
        b.push_record([
            r.id.to_string(),
            r.stage.clone(),
            r.name.clone(),
            r.status.as_str().to_string(),
            r.backend.clone().unwrap_or_else(|| "-".into()),
            r.seed.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
            r.started_at.map(format_utc).unwrap_or_else(|| "-".into()),
            took,
            finals,
        ]);
    }
    let mut t = b.build();
    t.with(Style::sharp());
    Ok(format!("{t}\n"))
}

/// At most four final values for the listing, headline keys (`final/`, `test/`) first; the rest is
/// counted (`runs show ID` has them all).
fn headline(kv: &[(String, Option<f64>)]) -> String {
    const SHOWN: usize = 4;
    let rank = |k: &str| {
        if k.starts_with("final/") || k.starts_with("test/") {
            0
        } else {
            1
        }
    };
    let mut keys: Vec<&(String, Option<f64>)> = kv.iter().collect();
    keys.sort_by_key(|(k, _)| rank(k));
    let mut parts: Vec<String> = keys
        .iter()
        .take(SHOWN)
        .map(|(k, v)| format!("{k}={}", v.map(short).unwrap_or_else(|| "NaN".into())))
        .collect();
    if kv.len() > SHOWN {
        parts.push(format!("(+{} more)", kv.len() - SHOWN));
    }
    parts.join(" ")
}

fn short(v: f64) -> String {
    if v != 0.0 && (v.abs() >= 1e5 || v.abs() < 1e-3) {
        format!("{v:.3e}")
    } else {
        format!("{v:.4}")
    }
}

fn show_text(store: &Store, id: i64) -> anyhow::Result<String> {
    let d = store.run_detail(id)?;
    let r = &d.run;
    let mut out = String::new();
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let time = |v: Option<f64>| v.map(format_utc).unwrap_or_else(|| "-".into());
    out.push_str(&format!(
        "run {}  {}  [{}]\n",
        r.id,
        r.name,
        r.status.as_str()
    ));
    out.push_str(&format!("stage      {}\n", r.stage));
    out.push_str(&format!(
        "config     {} (hash {})\n",
        r.config,
        &r.config_hash[..12.min(r.config_hash.len())]
    ));
    out.push_str(&format!("backend    {}\n", opt(&r.backend)));
    out.push_str(&format!(
        "seed       {}\n",
        r.seed.map(|s| s.to_string()).unwrap_or_else(|| "-".into())
    ));
    out.push_str(&format!(
        "host       {} (pid {})\n",
        opt(&r.host),
        r.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into())
    ));
    out.push_str(&format!("revision   {}\n", opt(&r.git_rev)));
    out.push_str(&format!("build      {}\n", opt(&r.build)));
    out.push_str(&format!(
        "machine    {}, {} threads{}\n",
        opt(&r.cpu),
        r.threads
            .map(|t| t.to_string())
            .unwrap_or_else(|| "?".into()),
        r.gpu
            .as_ref()
            .map(|g| format!(", GPU {g}"))
            .unwrap_or_default()
    ));
    out.push_str(&format!("created    {}\n", time(Some(r.created_at))));
    out.push_str(&format!("started    {}\n", time(r.started_at)));
    out.push_str(&format!("ended      {}\n", time(r.ended_at)));
    out.push_str(&format!("heartbeat  {}\n", time(r.heartbeat_at)));
    out.push_str(&format!("attempts   {}\n", r.attempts));
    if !d.sweeps.is_empty() {
        out.push_str(&format!("sweeps     {}\n", d.sweeps.join(", ")));
    }
    if let Some(e) = &r.error {
        out.push_str(&format!("error      {e}\n"));
    }
    if !d.params.is_empty() {
        let mut b = Builder::default();
        b.push_record(["param", "value"]);
        for (k, v) in &d.params {
            b.push_record([k.clone(), v.to_string()]);
        }
        out.push_str(&format!("{}\n", b.build().with(Style::sharp())));
    }
    if !d.summary.is_empty() {
        let mut b = Builder::default();
        b.push_record(["metric", "final", "at step", "min", "max", "points"]);
        let f = |v: Option<f64>| v.map(format_real).unwrap_or_else(|| "NaN".into());
        for s in &d.summary {
            b.push_record([
                s.key.clone(),
                f(s.value),
                s.step.to_string(),
                f(s.min),
                f(s.max),
                s.n.to_string(),
            ]);
        }
        out.push_str(&format!("{}\n", b.build().with(Style::sharp())));
    }
    if !d.artifacts.is_empty() {
        let mut b = Builder::default();
        b.push_record(["artifact", "path", "sha256", "bytes"]);
        for crate::store::ArtifactRow {
            kind,
            path,
            sha256: sha,
            bytes,
        } in &d.artifacts
        {
            b.push_record([
                kind.clone(),
                path.clone(),
                sha[..16.min(sha.len())].to_string(),
                bytes.to_string(),
            ]);
        }
        out.push_str(&format!("{}\n", b.build().with(Style::sharp())));
    }
    Ok(out)
}
