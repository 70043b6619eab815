//! The report section of a sweep file (`[[report.tables]]`, `[[report.figures]]`) and its checks
//! against the sweep's axes and stages.

use serde::{Deserialize, Serialize};

use super::spec::{Axis, Problems};
use crate::stage::StageKind;

/// Which direction of a metric is better (the report bolds the best row).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    Lower,
    Higher,
    #[default]
    None,
}

/// One column of a report table: a summary metric of one stage's runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnSpec {
    /// Summary key (the final value of a series), e.g. `final/points_nll`.
    pub metric: String,
    /// Column header (default: the metric key).
    #[serde(default)]
    pub label: Option<String>,
    /// A header group, e.g. "w/o CFG" (printed as "group: label").
    #[serde(default)]
    pub group: Option<String>,
    /// Stage whose runs hold the metric (default: the sweep's last stage).
    #[serde(default)]
    pub stage: Option<String>,
    #[serde(default)]
    pub better: Better,
    /// Decimals printed.
    #[serde(default = "default_digits")]
    pub digits: usize,
    /// The metric exists only for some rows (e.g. mode counts of the mixtures): n/a is expected
    /// there and `report --check` does not count it as a gap.
    #[serde(default)]
    pub optional: bool,
    /// Row axes whose rows are compared only among themselves for this column (overrides the
    /// table's `compare_within`), e.g. a loss whose scale depends on the projection.
    #[serde(default)]
    pub compare_within: Option<Vec<String>>,
}

fn default_digits() -> usize {
    3
}

/// A declared table: one row per combination of the `rows` axes (mean ± std over seeds and over
/// nothing else: every other axis must be pinned by `where`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSpec {
    pub title: String,
    /// Axis names (`<stage>.<setting>`) whose values label the rows, outermost first.
    pub rows: Vec<String>,
    /// Axis values the table is restricted to.
    #[serde(default, rename = "where")]
    pub filter: toml::Table,
    pub columns: Vec<ColumnSpec>,
    /// A sentence printed under the table.
    #[serde(default)]
    pub note: Option<String>,
    /// Row axes whose values split the rows into groups that are compared (the best marked) only
    /// among themselves: rows that differ in these (e.g. different toy targets) are not comparable.
    #[serde(default)]
    pub compare_within: Vec<String>,
}

/// A declared figure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "lowercase")]
pub enum FigureSpec {
    /// Metric series over steps, one panel per metric, one line per value of the `by` axes (mean
    /// over seeds at each logged step); e.g. L_align vs NLL (paper Fig. 4).
    Curves {
        file: String,
        title: String,
        metrics: Vec<String>,
        #[serde(default)]
        by: Vec<String>,
        #[serde(default)]
        stage: Option<String>,
        #[serde(default, rename = "where")]
        filter: toml::Table,
    },
    /// A summary metric against a numeric axis (e.g. lambda), mean ± std over seeds, one line per
    /// value of the `by` axes.
    Versus {
        file: String,
        title: String,
        x: String,
        metric: String,
        #[serde(default)]
        by: Vec<String>,
        #[serde(default)]
        stage: Option<String>,
        #[serde(default)]
        log_x: bool,
        #[serde(default, rename = "where")]
        filter: toml::Table,
    },
}

/// What a report shows.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSpec {
    #[serde(default)]
    pub tables: Vec<TableSpec>,
    #[serde(default)]
    pub figures: Vec<FigureSpec>,
}

pub(super) fn check_report(
    report: &ReportSpec,
    axes: &[Axis],
    stages: &[StageKind],
    p: &mut Problems<'_>,
) {
    let axis_names: Vec<String> = axes.iter().map(Axis::name).collect();
    let known_axes = || {
        if axis_names.is_empty() {
            "the sweep has no axes".to_string()
        } else {
            format!("expected one of {}", axis_names.join(", "))
        }
    };
    let check_stage = |p: &mut Problems<'_>, key: &str, stage: &Option<String>| {
        if let Some(s) = stage {
            match StageKind::parse(s) {
                Some(k) if stages.contains(&k) => {}
                _ => p.add(key, format!("stage `{s}` is not in `stages`")),
            }
        }
    };
    let check_filter = |p: &mut Problems<'_>, key: &str, filter: &toml::Table| {
        for (axis, value) in filter {
            let k = format!("{key}.where.{axis}");
            let Some(a) = axes.iter().find(|a| &a.name() == axis) else {
                p.add(&k, format!("not an axis; {}", known_axes()));
                continue;
            };
            let v = super::plan::toml_text(value);
            if !a.values.iter().any(|x| super::plan::value_text(x) == v) {
                p.add(&k, format!("{v} is not one of the axis's values"));
            }
        }
    };
    let check_axes = |p: &mut Problems<'_>, key: &str, names: &[String]| {
        for r in names {
            if !axis_names.contains(r) {
                p.add(key, format!("`{r}` is not an axis; {}", known_axes()));
            }
        }
    };
    for (i, t) in report.tables.iter().enumerate() {
        let key = format!("report.tables[{i}]");
        if t.columns.is_empty() {
            p.add(&format!("{key}.columns"), "expected at least one column");
        }
        check_axes(p, &format!("{key}.rows"), &t.rows);
        check_filter(p, &key, &t.filter);
        let check_rows = |p: &mut Problems<'_>, k: &str, names: &[String]| {
            for a in names.iter().filter(|a| !t.rows.contains(a)) {
                p.add(k, format!("`{a}` is not one of the table's rows"));
            }
        };
        check_rows(p, &format!("{key}.compare_within"), &t.compare_within);
        for (j, c) in t.columns.iter().enumerate() {
            check_stage(p, &format!("{key}.columns[{j}].stage"), &c.stage);
            if let Some(w) = &c.compare_within {
                check_rows(p, &format!("{key}.columns[{j}].compare_within"), w);
            }
        }
        // Every axis is either a row key or pinned: a table never averages over an axis silently.
        for a in &axis_names {
            if !t.rows.contains(a) && !t.filter.contains_key(a) {
                p.add(
                    &format!("{key}.rows"),
                    format!("axis `{a}` is neither a row key nor pinned in `where`"),
                );
            }
        }
    }
    for (i, f) in report.figures.iter().enumerate() {
        let key = format!("report.figures[{i}]");
        match f {
            FigureSpec::Curves {
                file,
                metrics,
                by,
                stage,
                filter,
                ..
            } => {
                check_file(p, &key, file);
                if metrics.is_empty() {
                    p.add(&format!("{key}.metrics"), "expected at least one metric");
                }
                check_axes(p, &format!("{key}.by"), by);
                check_stage(p, &format!("{key}.stage"), stage);
                check_filter(p, &key, filter);
            }
            FigureSpec::Versus {
                file,
                x,
                by,
                stage,
                filter,
                ..
            } => {
                check_file(p, &key, file);
                match axes.iter().find(|a| &a.name() == x) {
                    None => p.add(
                        &format!("{key}.x"),
                        format!("`{x}` is not an axis; {}", known_axes()),
                    ),
                    Some(a) if !a.values.iter().all(|v| v.is_number()) => p.add(
                        &format!("{key}.x"),
                        format!("axis `{x}` must have numeric values"),
                    ),
                    Some(_) => {}
                }
                check_axes(p, &format!("{key}.by"), by);
                check_stage(p, &format!("{key}.stage"), stage);
                check_filter(p, &key, filter);
            }
        }
    }
}

fn check_file(p: &mut Problems<'_>, key: &str, file: &str) {
    let ok = file.ends_with(".png")
        && !file.contains('/')
        && !file.contains('\\')
        && !file.starts_with('.');
    if !ok {
        p.add(
            &format!("{key}.file"),
            format!("expected a plain file name ending in .png, got {file:?}"),
        );
    }
}
