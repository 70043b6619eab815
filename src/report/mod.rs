//! `flowprior report NAME`: markdown tables and PNG figures of a sweep, built from the run store with
//! polars. The sweep file declares its tables (rows = axes, columns = summary metrics of a stage) and
//! figures; nothing is hard-coded per table. The same database always gives the same markdown, byte
//! for byte: rows follow the grid's order, numbers have fixed decimals, and no clock time is printed.

mod figures;
mod frame;
pub mod glossary;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use polars::prelude::*;
use tabled::builder::Builder;
use tabled::settings::Style;

use crate::store::{RunInfo, RunStatus, Store};
use crate::sweep::plan::{toml_text, value_text};
pub use crate::sweep::spec::Better;
use crate::sweep::spec::TableSpec;
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
    if sweep.preset == crate::sweep::Scale::Smoke {
        let _ = writeln!(
            md,
            "> **Smoke preset: not results.** Every stage ran at the `smoke` sizes, chosen to exercise \
             the pipeline in minutes (tiny models, few steps). These numbers check that everything \
             runs; they must not be read as findings or compared with the paper.\n"
        );
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
    md.push_str(&metric_definitions(&sweep));
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

/// The definitions of every metric the report's tables show, in order of first appearance.
fn metric_definitions(sweep: &Sweep) -> String {
    let mut keys: Vec<&str> = Vec::new();
    for t in &sweep.report.tables {
        for c in &t.columns {
            if !keys.contains(&c.metric.as_str()) {
                keys.push(&c.metric);
            }
        }
    }
    if keys.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "## Metrics

",
    );
    for k in keys {
        let d = glossary::define(k).unwrap_or("(no definition recorded for this key)");
        let _ = writeln!(out, "- `{k}`: {d}");
    }
    out.push('\n');
    out
}

/// The sentence under a table that says what bold means there.
fn bold_rule(compared: &[(String, Vec<String>)], seeds: i64) -> String {
    let short = |a: &String| a.rsplit('.').next().unwrap_or(a).to_string();
    let rows_of = |within: &[String]| {
        format!(
            "rows of the same {}",
            within.iter().map(short).collect::<Vec<_>>().join(" and ")
        )
    };
    // One scope for every compared column, or each column's own.
    let scope = match compared.first() {
        Some((_, first)) if compared.iter().all(|(_, w)| w == first) => {
            if first.is_empty() {
                "all rows".to_string()
            } else {
                rows_of(first)
            }
        }
        _ => compared
            .iter()
            .map(|(col, w)| {
                if w.is_empty() {
                    format!("`{col}`: all rows")
                } else {
                    format!("`{col}`: {}", rows_of(w))
                }
            })
            .collect::<Vec<_>>()
            .join("; "),
    };
    if seeds < 2 {
        format!(
            "Nothing is marked best: with one seed a difference cannot be told from seed noise \
             (compared: {scope})."
        )
    } else {
        format!(
            "Bold: the best value among comparable rows (compared: {scope}), only where it beats each \
             of them by more than the sum of their standard deviations over seeds."
        )
    }
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

/// Which rows of a column are marked best: within each group of comparable rows (`groups[i]` names
/// row i's group), the row with the best mean, when it and every other row of the group with a value
/// have at least two seeds and it beats each of them by more than the sum of the two standard
/// deviations. With one seed, or a difference within the spread across seeds, nothing is marked.
pub fn best_rows(
    means: &[Option<f64>],
    stds: &[Option<f64>],
    ns: &[i64],
    groups: &[String],
    better: Better,
) -> Vec<bool> {
    let mut marked = vec![false; means.len()];
    if better == Better::None {
        return marked;
    }
    let mut seen: Vec<&String> = Vec::new();
    for g in groups {
        if seen.contains(&g) {
            continue;
        }
        seen.push(g);
        let rows: Vec<usize> = (0..means.len())
            .filter(|&i| &groups[i] == g && means[i].is_some_and(f64::is_finite))
            .collect();
        if rows.len() < 2 || rows.iter().any(|&i| ns[i] < 2) {
            continue;
        }
        let key = |i: usize| means[i].unwrap_or(f64::NAN);
        let best = rows.iter().copied().reduce(|a, b| {
            let better_b = match better {
                Better::Lower => key(b) < key(a),
                _ => key(b) > key(a),
            };
            if better_b { b } else { a }
        });
        let Some(best) = best else { continue };
        let sd = |i: usize| stds[i].filter(|s| s.is_finite()).unwrap_or(f64::INFINITY);
        let clear = rows
            .iter()
            .filter(|&&i| i != best)
            .all(|&i| (key(best) - key(i)).abs() > sd(best) + sd(i));
        marked[best] = clear;
    }
    marked
}

/// One declared table as markdown: rows = combinations of the row axes in grid order, columns =
/// metric mean ± std over seeds, the best of comparable rows in bold (see [`best_rows`]).
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
    // (column, the axes it is compared within) of every column that marks a best value.
    let mut compared: Vec<(String, Vec<String>)> = Vec::new();
    for (j, c) in t.columns.iter().enumerate() {
        let label = c.label.clone().unwrap_or_else(|| c.metric.clone());
        header.push(match &c.group {
            Some(g) => format!("{g}: {label}"),
            None => label,
        });
        let means = get_f(&format!("mean{j}"))?;
        let stds = get_f(&format!("std{j}"))?;
        let ns: Vec<i64> = get_f(&format!("n{j}"))?
            .iter()
            .map(|n| n.unwrap_or(0.0) as i64)
            .collect();
        let within = c.compare_within.as_ref().unwrap_or(&t.compare_within);
        let groups: Vec<String> = (0..n_rows)
            .map(|i| {
                within
                    .iter()
                    .filter_map(|a| t.rows.iter().position(|r| r == a))
                    .map(|k| body[i][k].as_str())
                    .collect::<Vec<_>>()
                    .join("\u{1f}")
            })
            .collect();
        let best = best_rows(&means, &stds, &ns, &groups, c.better);
        if c.better != Better::None {
            compared.push((header.last().cloned().unwrap_or_default(), within.clone()));
        }
        for i in 0..n_rows {
            let n = ns[i];
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
            if best[i] {
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
        "Mean ± standard deviation over {} seed{} ({}), n = {seeds} per cell unless marked.{}",
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
    if !compared.is_empty() {
        let _ = writeln!(out, "{}", bold_rule(&compared, seeds));
    }
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
    let _ = writeln!(
        out,
        "- code revision (of the binary that ran each stage): {}",
        distinct(&|r| r.git_rev.clone())
    );
    let _ = writeln!(out, "- build: {}", distinct(&|r| r.build.clone()));
    let _ = writeln!(out, "- backend: {}", distinct(&|r| r.backend.clone()));
    let _ = writeln!(
        out,
        "- machine: {}; threads: {}; GPU: {}",
        distinct(&|r| r.cpu.clone()),
        distinct(&|r| r.threads.map(|t| t.to_string())),
        distinct(&|r| r.gpu.clone())
    );
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
