//! Sweeps: declarative grids over stage settings, expanded into a DAG of stage runs that are cached
//! by configuration hash, run by one or more worker processes, resumable after any interruption.
//!
//! * [`spec`]: the sweep file and its validation;
//! * [`stages`]: the registry of stage kinds (what each needs, its presets, how it runs);
//! * [`plan`]: grid expansion into shared stage nodes;
//! * [`exec`]: registration in the run store and the worker loop.

pub mod estimate;
pub mod exec;
pub mod plan;
mod report_spec;
pub mod spec;

pub use crate::stage::StageKind;
pub use exec::{Counts, ExecOptions, NodeState, StoredSpec, WorkReport};
pub use plan::{Node, Plan, Point};
pub use spec::{Overrides, Scale, Sweep};

/// Errors of sweeps.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("cannot read sweep file {path}: {message}")]
    Read {
        path: std::path::PathBuf,
        message: String,
    },
    /// The sweep file is wrong: every problem found, one per line.
    #[error("invalid sweep:\n  {}", .0.join("\n  "))]
    Invalid(Vec<String>),
    #[error("no sweep named `{0}` in the store (run `flowprior sweep run sweeps/{0}.toml` first)")]
    Unknown(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Loads a sweep as it was last registered in the store (its file's text and overrides), with the run
/// of every node as registered: reports and status read what ran, even if an input file has changed
/// since (a new `sweep run` would plan new runs for it).
pub fn load_registered(
    store: &crate::store::Store,
    name: &str,
    data_dir: &std::path::Path,
) -> Result<(Sweep, Plan, Vec<Option<crate::store::RunInfo>>), SweepError> {
    let spec = store
        .sweep_spec(name)?
        .ok_or_else(|| SweepError::Unknown(name.to_string()))?;
    let stored: StoredSpec = serde_json::from_str(&spec)
        .map_err(|e| SweepError::Invalid(vec![format!("stored spec of sweep {name}: {e}")]))?;
    let sweep = Sweep::parse(&stored.toml, &stored.file, stored.overrides)?;
    let plan = Plan::expand(&sweep, data_dir)?;
    let rows = store.sweep_points(name)?;
    let mut ids: Vec<Option<i64>> = vec![None; plan.nodes.len()];
    for r in rows {
        let point = plan.points.get(r.point as usize);
        let stage = StageKind::parse(&r.stage);
        if let (Some(p), Some(k)) = (point, stage)
            && let Some(&node) = p.nodes.get(&k)
        {
            ids[node] = Some(r.run_id);
        }
    }
    let found = store.runs_by_id(&ids.iter().flatten().copied().collect::<Vec<_>>())?;
    let runs = ids
        .iter()
        .map(|id| id.and_then(|id| found.iter().find(|r| r.id == id).cloned()))
        .collect();
    Ok((sweep, plan, runs))
}

#[cfg(test)]
mod hash_pins;
#[cfg(test)]
mod tests;
