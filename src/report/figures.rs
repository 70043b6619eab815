//! The report's declared figures: metric curves over steps and metric-vs-axis plots, as PNG.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{ReportError, SweepFrame};
use crate::plot::{Line, Panel};
use crate::store::Store;
use crate::sweep::spec::FigureSpec;
use crate::sweep::{Plan, Point, Sweep};

/// The points grouped by their values of the `by` axes, groups in grid order.
fn groups<'a>(
    points: impl Iterator<Item = &'a Point>,
    by: &[String],
) -> Vec<(String, Vec<&'a Point>)> {
    let mut out: Vec<(String, Vec<&Point>)> = Vec::new();
    for p in points {
        let label: Vec<String> = by.iter().filter_map(|b| p.label(b)).collect();
        let label = if label.is_empty() {
            "all".to_string()
        } else {
            label.join(", ")
        };
        match out.iter_mut().find(|(l, _)| *l == label) {
            Some((_, v)) => v.push(p),
            None => out.push((label, vec![p])),
        }
    }
    out
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n.max(1.0);
    let s = if v.len() > 1 {
        (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    (m, s)
}

/// Whether an axis is drawn on a log scale without being asked: learning rates and weights such as
/// lambda (named `*lr*` or `*lambda*`), and any positive axis spanning a factor of 10 or more.
pub fn auto_log_axis(name: &str, values: &[f64]) -> bool {
    let positive = !values.is_empty() && values.iter().all(|v| *v > 0.0 && v.is_finite());
    if !positive {
        return false;
    }
    let last = name.rsplit('.').next().unwrap_or(name);
    let (lo, hi) = values
        .iter()
        .fold((f64::INFINITY, 0f64), |(a, b), v| (a.min(*v), b.max(*v)));
    last.contains("lr") || last.contains("lambda") || hi / lo >= 10.0
}

/// Draws one figure; returns its path and title.
pub fn draw(
    store: &Store,
    frame: &SweepFrame,
    sweep: &Sweep,
    plan: &Plan,
    spec: &FigureSpec,
    dir: &Path,
) -> Result<(PathBuf, String), ReportError> {
    let (file, title, panels, x_label, log_x) = match spec {
        FigureSpec::Curves {
            file,
            title,
            metrics,
            by,
            stage,
            filter,
        } => {
            let stage = sweep.metric_stage(stage.as_deref());
            let pts = plan.points.iter().filter(|p| p.matches(filter));
            let groups = groups(pts, by);
            let mut panels = Vec::new();
            for metric in metrics {
                let mut lines = Vec::new();
                for (label, members) in &groups {
                    // Distinct runs of the stage in this group (points may share one).
                    let mut ids: Vec<i64> = members
                        .iter()
                        .filter_map(|p| frame.point_runs[p.index].get(&stage).copied())
                        .collect();
                    ids.sort_unstable();
                    ids.dedup();
                    let mut acc: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
                    for id in &ids {
                        for (step, v) in store.series(*id, metric)? {
                            acc.entry(step).or_default().push(v);
                        }
                    }
                    // Steps every run logged: the mean, with a band of one standard deviation
                    // across the runs (seeds).
                    let stats: Vec<(f64, (f64, f64))> = acc
                        .into_iter()
                        .filter(|(_, vs)| vs.len() == ids.len())
                        .map(|(s, vs)| (s as f64, mean_std(&vs)))
                        .collect();
                    lines.push(Line {
                        label: format!("{label} ({} runs, band: ± 1 sd)", ids.len()),
                        points: stats.iter().map(|(s, (m, _))| (*s, *m)).collect(),
                        err: (ids.len() > 1)
                            .then(|| stats.iter().map(|(_, (_, sd))| *sd).collect()),
                        band: true,
                    });
                }
                panels.push(Panel {
                    name: metric.clone(),
                    lines,
                });
            }
            (file, title, panels, "step".to_string(), false)
        }
        FigureSpec::Versus {
            file,
            title,
            x,
            metric,
            by,
            stage,
            log_x,
            filter,
        } => {
            let stage = sweep.metric_stage(stage.as_deref());
            let col = SweepFrame::metric_column(stage, metric);
            let values: Vec<Option<f64>> = frame
                .df
                .column(col.as_str())
                .and_then(|c| c.f64().map(|c| (0..c.len()).map(|i| c.get(i)).collect()))
                .map_err(ReportError::frame(title))?;
            let xi = sweep.axes.iter().position(|a| &a.name() == x);
            let pts = plan.points.iter().filter(|p| p.matches(filter));
            let mut lines = Vec::new();
            for (label, members) in groups(pts, by) {
                let mut by_x: Vec<(f64, Vec<f64>)> = Vec::new();
                for p in members {
                    let Some(xv) = xi.and_then(|i| p.labels[i].1.as_f64()) else {
                        continue;
                    };
                    let Some(v) = values[p.index].filter(|v| v.is_finite()) else {
                        continue;
                    };
                    match by_x.iter_mut().find(|(a, _)| *a == xv) {
                        Some((_, vs)) => vs.push(v),
                        None => by_x.push((xv, vec![v])),
                    }
                }
                by_x.sort_by(|a, b| a.0.total_cmp(&b.0));
                let stats: Vec<(f64, (f64, f64))> =
                    by_x.iter().map(|(x, vs)| (*x, mean_std(vs))).collect();
                lines.push(Line {
                    label,
                    points: stats.iter().map(|(x, (m, _))| (*x, *m)).collect(),
                    err: Some(stats.iter().map(|(_, (_, s))| *s).collect()),
                    band: false,
                });
            }
            let panels = vec![Panel {
                name: format!("{metric} (mean ± std over seeds)"),
                lines,
            }];
            let xs: Vec<f64> = xi
                .map(|i| {
                    plan.points
                        .iter()
                        .filter_map(|p| p.labels[i].1.as_f64())
                        .collect()
                })
                .unwrap_or_default();
            let log = *log_x || auto_log_axis(x, &xs);
            (file, title, panels, x.clone(), log)
        }
    };
    let path = dir.join(file);
    crate::plot::lines(&path, title, &x_label, &panels, log_x).map_err(|e| ReportError::Write {
        path: PathBuf::from(&e.path),
        message: e.message,
    })?;
    Ok((path, title.clone()))
}

#[cfg(test)]
mod tests {
    use super::auto_log_axis;

    #[test]
    fn rates_weights_and_wide_positive_axes_get_a_log_scale() {
        assert!(auto_log_axis("toy_align.align_lr", &[0.01, 0.03]));
        assert!(auto_log_axis(
            "tokenizer.lambda",
            &[0.001, 0.005, 0.01, 0.05]
        ));
        assert!(auto_log_axis("prior.width", &[16.0, 256.0]));
        assert!(!auto_log_axis("prior.width", &[64.0, 128.0]));
        assert!(!auto_log_axis("tokenizer.lambda", &[0.0, 0.01]));
        assert!(!auto_log_axis("shift", &[]));
    }
}
