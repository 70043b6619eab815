//! `flowprior report NAME`: markdown tables and PNG figures of a sweep, built from the run store with
//! polars. The sweep file declares its tables (rows = axes, columns = summary metrics of a stage) and
//! figures; nothing is hard-coded per table. The same database always gives the same markdown, byte
//! for byte: rows follow the grid's order, numbers have fixed decimals, and no clock time is printed.

mod figures;
mod frame;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use polars::prelude::*;
use tabled::builder::Builder;
use tabled::settings::Style;

use crate::store::{RunInfo, RunStatus, Store};
use crate::sweep::plan::{toml_text, value_text};
use crate::sweep::spec::{Better, TableSpec};
use crate::sweep::{Plan, Sweep, SweepError};

pub use frame::SweepFrame;

/// Errors building a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Sweep(#[from] SweepError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("report table `{table}`: {message}")]
    Frame { table: String, message: String },
    #[error("cannot write {path}: {message}")]
    Write { path: PathBuf, message: String },
}

impl ReportError {
    fn frame(table: &str) -> impl Fn(PolarsError) -> ReportError + '_ {
        move |e| ReportError::Frame {
            table: table.to_string(),
            message: e.to_string(),
        }
    }
}

/// What a report wrote.
#[derive(Debug, Clone)]
pub struct ReportOutput {
    pub markdown: PathBuf,
    pub figures: Vec<PathBuf>,
    /// Cells without a finite value and rows missing from a table (what `report --check` refuses).
    pub gaps: Vec<String>,
}

/// Builds `out_dir/NAME.md` and its figures in `out_dir/NAME/`.
/// `data_dir` is where the sweep's stages read input files (see [`crate::sweep::load_registered`]).
pub fn build(
    store: &Store,
    name: &str,
    out_dir: &Path,
    data_dir: &Path,
) -> Result<ReportOutput, ReportError> {
    let (sweep, plan, runs) = crate::sweep::load_registered(store, name, data_dir)?;
    let frame = SweepFrame::load(store, &sweep, &plan, &runs)?;
    let fig_dir = out_dir.join(name);
    std::fs::create_dir_all(&fig_dir).map_err(|e| ReportError::Write {
        path: fig_dir.clone(),
        message: e.to_string(),
    })?;

    let mut md = String::new();
    let _ = writeln!(md, "# Sweep `{}`\n", sweep.name);
    if !sweep.description.is_empty() {
        let _ = writeln!(md, "{}\n", sweep.description);
    }
    let finished = runs
        .iter()
        .filter(|r| r.as_ref().is_some_and(|r| r.status == RunStatus::Finished))
        .count();
    if finished < plan.nodes.len() {
        let _ = writeln!(
            md,
            "**Incomplete:** {finished} of {} stage runs finished; cells without any finished run read n/a.\n",
            plan.nodes.len()
        );
    }
    let mut gaps = Vec::new();
    for t in &sweep.report.tables {
        md.push_str(&table(&frame, &sweep, &plan, t, &mut gaps)?);
    }
    let mut figs = Vec::new();
    if !sweep.report.figures.is_empty() {
        let _ = writeln!(md, "## Figures\n");
    }
    for f in &sweep.report.figures {
        let (path, title) = figures::draw(store, &frame, &sweep, &plan, f, &fig_dir)?;
        let rel = format!(
            "{name}/{}",
            path.file_name()
                .map(|s| s.to_string_lossy())
                .unwrap_or_default()
        );
        let _ = writeln!(md, "![{title}]({rel})\n");
        figs.push(path);
    }
    md.push_str(&provenance(&sweep, &plan, &runs));
    let path = out_dir.join(format!("{name}.md"));
    std::fs::write(&path, md).map_err(|e| ReportError::Write {
        path: path.clone(),
        message: e.to_string(),
    })?;
    Ok(ReportOutput {
        markdown: path,
        figures: figs,
        gaps,
    })
}

/// Formats a mean ± std cell.
fn cell(mean: Option<f64>, std: Option<f64>, n: i64, digits: usize) -> String {
    match mean {
        None => "n/a".into(),
        Some(m) if !m.is_finite() => format!("{m}"),
        Some(m) => match std {
            Some(s) if n > 1 && s.is_finite() => format!("{m:.digits$} ± {s:.digits$}"),
            _ => format!("{m:.digits$}"),
        },
    }
}

/// One declared table as markdown: rows = combinations of the row axes in grid order, columns =
/// metric mean ± std over seeds, the best mean of each column in bold.
fn table(
    frame: &SweepFrame,
    sweep: &Sweep,
    plan: &Plan,
    t: &TableSpec,
    gaps: &mut Vec<String>,
) -> Result<String, ReportError> {
    let err = ReportError::frame(&t.title);
    let mut lf = frame.df.clone().lazy();
    for (axis, v) in &t.filter {
        lf = lf.filter(col(axis.as_str()).eq(lit(toml_text(v))));
    }
    let keys: Vec<Expr> = t.rows.iter().map(|r| col(r.as_str())).collect();
    let mut aggs = Vec::new();
    for (j, c) in t.columns.iter().enumerate() {
        let src = SweepFrame::metric_column(sweep.metric_stage(c.stage.as_deref()), &c.metric);
        aggs.push(col(src.as_str()).mean().alias(format!("mean{j}")));
        aggs.push(col(src.as_str()).std(1).alias(format!("std{j}")));
        aggs.push(
            col(src.as_str())
                .count()
                .cast(DataType::Int64)
                .alias(format!("n{j}")),
        );
    }
    let df = if keys.is_empty() {
        lf.select(aggs).collect().map_err(&err)?
    } else {
        lf.group_by_stable(keys).agg(aggs).collect().map_err(&err)?
    };
    let get_f = |name: &str| -> Result<Vec<Option<f64>>, ReportError> {
        let c = df
            .column(name)
            .and_then(|c| c.cast(&DataType::Float64))
            .map_err(&err)?;
        let c = c.f64().map_err(&err)?;
        Ok((0..c.len()).map(|i| c.get(i)).collect())
    };
    let n_rows = df.height();
    let mut header: Vec<String> = t
        .rows
        .iter()
        .map(|r| r.rsplit('.').next().unwrap_or(r).to_string())
        .collect();
    let mut body: Vec<Vec<String>> = vec![Vec::new(); n_rows];
    for r in &t.rows {
        let c = df
            .column(r.as_str())
            .map_err(&err)?
            .str()
            .map_err(&err)?
            .clone();
        for (i, row) in body.iter_mut().enumerate() {
            row.push(c.get(i).unwrap_or("").to_string());
        }
    }
    // Every combination of the row axes that the grid has must be a row.
    let expected: BTreeSet<Vec<String>> = plan
        .points
        .iter()
        .filter(|p| p.matches(&t.filter))
        .map(|p| {
            t.rows
                .iter()
                .map(|r| p.label(r).unwrap_or_default())
                .collect()
        })
        .collect();
    if expected.len() != n_rows {
        gaps.push(format!(
            "table `{}`: {n_rows} rows, the grid has {}",
            t.title,
            expected.len()
        ));
    }
    let seeds = sweep.seeds.len() as i64;
    let mut short = false;
    for (j, c) in t.columns.iter().enumerate() {
        let label = c.label.clone().unwrap_or_else(|| c.metric.clone());
        header.push(match &c.group {
            Some(g) => format!("{g}: {label}"),
            None => label,
        });
        let means = get_f(&format!("mean{j}"))?;
        let stds = get_f(&format!("std{j}"))?;
        let ns = get_f(&format!("n{j}"))?;
        let finite = means.iter().flatten().filter(|m| m.is_finite());
        let best = match c.better {
            Better::Lower => finite.copied().reduce(f64::min),
            Better::Higher => finite.copied().reduce(f64::max),
            Better::None => None,
        };
        for i in 0..n_rows {
            let n = ns[i].unwrap_or(0.0) as i64;
            let allowed_gap = c.optional && means[i].is_none();
            if !(means[i].is_some_and(f64::is_finite) || allowed_gap) {
                gaps.push(format!(
                    "table `{}`, row `{}`, column `{}`: no finite value",
                    t.title,
                    body[i][..t.rows.len()].join(", "),
                    header.last().map(String::as_str).unwrap_or("")
                ));
            }
            let mut text = cell(means[i], stds[i], n, c.digits);
            if best.is_some() && means[i] == best && n_rows > 1 {
                text = format!("**{text}**");
            }
            if n > 0 && n < seeds {
                text.push_str(" †");
                short = true;
            }
            body[i].push(text);
        }
    }
    let mut b = Builder::default();
    b.push_record(header);
    for row in body {
        b.push_record(row);
    }
    let mut out = format!("## {}\n\n", t.title);
    if !t.filter.is_empty() {
        let pins: Vec<String> = t
            .filter
            .iter()
            .map(|(k, v)| format!("{k} = {}", toml_text(v)))
            .collect();
        let _ = writeln!(out, "Restricted to {}.\n", pins.join(", "));
    }
    let _ = writeln!(out, "{}\n", b.build().with(Style::markdown()));
    let _ = writeln!(
        out,
        "Mean ± standard deviation over {} seed{} ({}); best in bold.{}",
        seeds,
        if seeds == 1 { "" } else { "s" },
        sweep
            .seeds
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        if short {
            " † fewer seeds finished than declared."
        } else {
            ""
        }
    );
    if let Some(note) = &t.note {
        let _ = writeln!(out, "{note}");
    }
    out.push('\n');
    Ok(out)
}

/// Where the numbers come from: code revision, backends, data, priors, feature networks, scale.
fn provenance(sweep: &Sweep, plan: &Plan, runs: &[Option<RunInfo>]) -> String {
    let mut out = String::from("## Provenance\n\n");
    let distinct = |f: &dyn Fn(&RunInfo) -> Option<String>| -> String {
        let set: BTreeSet<String> = runs.iter().flatten().filter_map(f).collect();
        if set.is_empty() {
            "n/a".into()
        } else {
            set.into_iter().collect::<Vec<_>>().join(", ")
        }
    };
    let _ = writeln!(
        out,
        "- sweep: `{}` from `{}` (sha256 {})",
        sweep.name,
        sweep.file.display(),
        &crate::util::sha256_hex(sweep.text.as_bytes())[..16]
    );
    let _ = writeln!(out, "- scale preset: {}", sweep.preset.name());
    let _ = writeln!(
        out,
        "- stages: {}",
        sweep
            .stages
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(" -> ")
    );
    let axes: Vec<String> = sweep
        .axes
        .iter()
        .map(|a| {
            format!(
                "{} ({})",
                a.name(),
                a.values
                    .iter()
                    .map(value_text)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
        .collect();
    let _ = writeln!(
        out,
        "- grid: {} points; axes: {}; seeds: {}",
        plan.points.len(),
        if axes.is_empty() {
            "none".into()
        } else {
            axes.join("; ")
        },
        sweep
            .seeds
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let finished = runs
        .iter()
        .flatten()
        .filter(|r| r.status == RunStatus::Finished)
        .count();
    let _ = writeln!(
        out,
        "- stage runs: {} ({finished} finished)",
        plan.nodes.len()
    );
    let _ = writeln!(out, "- git revision: {}", distinct(&|r| r.git_rev.clone()));
    let _ = writeln!(out, "- backend: {}", distinct(&|r| r.backend.clone()));
    let mut keys: Vec<&'static str> = Vec::new();
    let mut values: std::collections::BTreeMap<&'static str, BTreeSet<String>> = Default::default();
    for n in &plan.nodes {
        for (k, v) in n.stage.provenance(&n.config) {
            if !keys.contains(&k) {
                keys.push(k);
            }
            values.entry(k).or_default().insert(v);
        }
    }
    for k in ["dataset", "prior source", "feature network"] {
        let v = values
            .get(k)
            .map(|s| s.iter().cloned().collect::<Vec<_>>().join("; "))
            .unwrap_or_else(|| "n/a (no stage of this sweep uses one)".into());
        let _ = writeln!(out, "- {k}: {v}");
    }
    for k in keys
        .iter()
        .filter(|k| !["dataset", "prior source", "feature network"].contains(k))
    {
        let v = values[k].iter().cloned().collect::<Vec<_>>().join("; ");
        let _ = writeln!(out, "- {k}: {v}");
    }
    out
}

#[cfg(test)]
mod tests;
