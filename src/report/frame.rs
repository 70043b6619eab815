//! A sweep as a polars DataFrame: one row per grid point, its axis values (as text), its seed, and the
//! summary metrics the report needs from each stage's finished run.

use std::collections::{BTreeMap, HashMap};

use polars::prelude::*;

use super::ReportError;
use crate::store::{RunInfo, RunStatus, Store};
use crate::sweep::plan::value_text;
use crate::sweep::spec::FigureSpec;
use crate::sweep::{Plan, StageKind, Sweep};

/// One row per grid point.
pub struct SweepFrame {
    pub df: DataFrame,
    /// The finished run of each stage at each point.
    pub point_runs: Vec<BTreeMap<StageKind, i64>>,
}

impl SweepFrame {
    /// Name of the column holding `metric` of `stage`'s runs.
    pub fn metric_column(stage: StageKind, metric: &str) -> String {
        format!("{}:{metric}", stage.name())
    }

    /// Every (stage, metric) the report's tables and figures read.
    fn needed(sweep: &Sweep) -> Vec<(StageKind, String)> {
        let mut out: Vec<(StageKind, String)> = Vec::new();
        let mut add = |s: StageKind, m: &str| {
            if !out.iter().any(|(a, b)| *a == s && b == m) {
                out.push((s, m.to_string()));
            }
        };
        for t in &sweep.report.tables {
            for c in &t.columns {
                add(sweep.metric_stage(c.stage.as_deref()), &c.metric);
            }
        }
        for f in &sweep.report.figures {
            if let FigureSpec::Versus { metric, stage, .. } = f {
                add(sweep.metric_stage(stage.as_deref()), metric);
            }
        }
        out
    }

    pub fn load(
        store: &Store,
        sweep: &Sweep,
        plan: &Plan,
        runs: &[Option<RunInfo>],
    ) -> Result<SweepFrame, ReportError> {
        let err = ReportError::frame("data");
        let finished = |node: usize| {
            runs[node]
                .as_ref()
                .filter(|r| r.status == RunStatus::Finished)
                .map(|r| r.id)
        };
        let point_runs: Vec<BTreeMap<StageKind, i64>> = plan
            .points
            .iter()
            .map(|p| {
                p.nodes
                    .iter()
                    .filter_map(|(s, &n)| finished(n).map(|id| (*s, id)))
                    .collect()
            })
            .collect();
        // Final values of every run in one query (the store's summary table, never the series).
        let summaries: HashMap<i64, HashMap<String, f64>> = store
            .all_summaries()?
            .into_iter()
            .map(|(id, kv)| {
                let kv = kv
                    .into_iter()
                    .map(|(k, v)| (k, v.unwrap_or(f64::NAN)))
                    .collect();
                (id, kv)
            })
            .collect();
        let mut columns = vec![
            Column::new(
                "point".into(),
                plan.points
                    .iter()
                    .map(|p| p.index as i64)
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "seed".into(),
                plan.points
                    .iter()
                    .map(|p| p.seed as i64)
                    .collect::<Vec<_>>(),
            ),
        ];
        for (ai, a) in sweep.axes.iter().enumerate() {
            let v: Vec<String> = plan
                .points
                .iter()
                .map(|p| value_text(&p.labels[ai].1))
                .collect();
            columns.push(Column::new(a.name().as_str().into(), v));
        }
        for (stage, metric) in Self::needed(sweep) {
            let v: Vec<Option<f64>> = point_runs
                .iter()
                .map(|m| {
                    m.get(&stage)
                        .and_then(|id| summaries.get(id))
                        .and_then(|s| s.get(&metric).copied())
                })
                .collect();
            columns.push(Column::new(
                Self::metric_column(stage, &metric).as_str().into(),
                v,
            ));
        }
        let df = DataFrame::new(plan.points.len(), columns).map_err(err)?;
        Ok(SweepFrame { df, point_runs })
    }
}
