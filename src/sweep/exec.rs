//! Running a plan: registering its runs in the store, then a worker loop that claims stages whose
//! inputs are finished, runs them, and carries on past failures with whatever does not depend on them.
//!
//! Several worker processes may run the same plan against the same store: a stage run is claimed by
//! an atomic update of its row (see [`Store::start_run`]), so no stage ever runs twice at once. A run
//! left `running` by a process that died is retaken: at once when that process was on this host and
//! no longer exists, otherwise when its heartbeat is older than the staleness threshold.

use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::SweepError;
use super::plan::Plan;
use super::spec::Sweep;
use crate::jobs::Claim;
use crate::stage::{StageCtx, StageInput, StageRun};
use crate::store::{RunInfo, RunStatus, Store, SweepPointRow};

/// Settings of a worker.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    pub claim: Claim,
    pub data_dir: PathBuf,
    pub device: Option<String>,
    /// How often a worker waiting on other processes looks at the store again.
    pub poll: Duration,
}

/// What the stored spec of a sweep holds: the file's text and the overrides it ran with, so that a
/// report expands exactly the grid that ran.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct StoredSpec {
    pub file: PathBuf,
    pub toml: String,
    pub overrides: super::spec::Overrides,
}

/// Reconciles `sweep` with the registration of the same name, if any. With the same file text, preset
/// and backend, its seeds become the union of the registered ones and its own, so that running with
/// other `--seeds` adds them to the sweep (and to its report) instead of dropping the earlier ones.
/// Otherwise the new sweep will replace the registration, and the note says what the report stops
/// showing (the earlier runs stay in the store). Returns the sweep to plan and that note.
pub fn reconcile(store: &Store, sweep: Sweep) -> Result<(Sweep, Option<String>), SweepError> {
    let Some(spec) = store.sweep_spec(&sweep.name)? else {
        return Ok((sweep, None));
    };
    let stored: StoredSpec = serde_json::from_str(&spec).map_err(|e| {
        SweepError::Invalid(vec![format!("stored spec of sweep {}: {e}", sweep.name)])
    })?;
    let old = Sweep::parse(&stored.toml, &stored.file, stored.overrides)?;
    if old.text != sweep.text || old.preset != sweep.preset || old.backend != sweep.backend {
        let what = if old.text != sweep.text {
            "its file changed".to_string()
        } else if old.preset != sweep.preset {
            format!("preset {} -> {}", old.preset.name(), sweep.preset.name())
        } else {
            format!("backend {} -> {}", old.backend.name(), sweep.backend.name())
        };
        let note = format!(
            "note: sweep {} was registered differently before ({what}); its status and report now follow \
             this run's grid, and the earlier runs stay in the store (run the earlier form again to \
             report it)",
            sweep.name
        );
        return Ok((sweep, Some(note)));
    }
    let mut seeds = old.seeds.clone();
    seeds.extend(sweep.seeds.iter().filter(|s| !old.seeds.contains(s)));
    if seeds == sweep.seeds {
        return Ok((sweep, None));
    }
    let added: Vec<String> = sweep
        .seeds
        .iter()
        .filter(|s| !old.seeds.contains(s))
        .map(u64::to_string)
        .collect();
    let list: Vec<String> = seeds.iter().map(u64::to_string).collect();
    let note = (!added.is_empty()).then(|| {
        format!(
            "seeds {} added to sweep {} (now {})",
            added.join(", "),
            sweep.name,
            list.join(", ")
        )
    });
    let overrides = super::Overrides {
        seeds: Some(seeds),
        ..sweep.overrides.clone()
    };
    let merged = Sweep::parse(&sweep.text, &sweep.file, overrides)?;
    Ok((merged, note))
}

/// Creates (or finds) the run of every node, and records the sweep's spec and grid points.
/// Returns the run id of each node.
pub fn register(store: &Store, sweep: &Sweep, plan: &Plan) -> Result<Vec<i64>, SweepError> {
    let mut ids = Vec::with_capacity(plan.nodes.len());
    for node in &plan.nodes {
        ids.push(store.get_or_create_run(&node.spec)?.id);
    }
    let mut rows = Vec::new();
    for p in &plan.points {
        let labels = crate::util::canonical_json(&p.labels_json());
        for (stage, &node) in &p.nodes {
            rows.push(SweepPointRow {
                point: p.index as i64,
                labels: labels.clone(),
                stage: stage.name().to_string(),
                run_id: ids[node],
            });
        }
    }
    let spec = StoredSpec {
        file: sweep.file.clone(),
        toml: sweep.text.clone(),
        overrides: sweep.overrides.clone(),
    };
    let spec =
        serde_json::to_string(&spec).map_err(|e| SweepError::Invalid(vec![e.to_string()]))?;
    store.register_sweep(&sweep.name, &spec, &rows)?;
    Ok(ids)
}

/// Where each node stands, as one worker sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    Finished,
    Failed,
    /// An input failed: it cannot run.
    Blocked,
    /// Another live process runs it.
    Running,
    /// Its inputs are finished and it can be claimed now.
    Ready,
    /// Its inputs are not finished yet.
    Waiting,
    /// This worker tried and could not start it (the error is in the worker's report).
    Skipped,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Finished => "finished",
            NodeState::Failed => "failed",
            NodeState::Blocked => "blocked",
            NodeState::Running => "running",
            NodeState::Ready => "ready",
            NodeState::Waiting => "waiting",
            NodeState::Skipped => "skipped",
        }
    }

    fn hopeless(self) -> bool {
        matches!(
            self,
            NodeState::Failed | NodeState::Blocked | NodeState::Skipped
        )
    }
}

/// Counts over the plan's nodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub finished: usize,
    pub failed: usize,
    pub blocked: usize,
    pub running: usize,
    pub left: usize,
}

impl Counts {
    pub fn of(states: &[NodeState]) -> Counts {
        let mut c = Counts::default();
        for s in states {
            match s {
                NodeState::Finished => c.finished += 1,
                NodeState::Failed | NodeState::Skipped => c.failed += 1,
                NodeState::Blocked => c.blocked += 1,
                NodeState::Running => c.running += 1,
                NodeState::Ready | NodeState::Waiting => c.left += 1,
            }
        }
        c
    }

    pub fn done(&self) -> usize {
        self.finished + self.failed + self.blocked
    }
}

/// The state of every node, given its run (in node order), the claim rules, and what this worker
/// already attempted.
pub fn states(
    plan: &Plan,
    runs: &[Option<RunInfo>],
    claim: Claim,
    attempted: &HashSet<usize>,
) -> Vec<NodeState> {
    let host = crate::util::host_name();
    let mut out: Vec<NodeState> = Vec::with_capacity(plan.nodes.len());
    for (i, node) in plan.nodes.iter().enumerate() {
        let inputs: Vec<NodeState> = node.inputs.iter().map(|&j| out[j]).collect();
        let inputs_done = inputs.iter().all(|s| *s == NodeState::Finished);
        let state = match runs.get(i).and_then(|r| r.as_ref()) {
            Some(r) if r.status == RunStatus::Finished => NodeState::Finished,
            _ if inputs.iter().any(|s| s.hopeless()) => NodeState::Blocked,
            Some(r) if r.status == RunStatus::Failed => {
                // Retried on request (once per worker) or automatically below the attempt limit.
                if (claim.retry_failed && !attempted.contains(&i))
                    || r.attempts < claim.max_attempts
                {
                    if inputs_done {
                        NodeState::Ready
                    } else {
                        NodeState::Waiting
                    }
                } else {
                    NodeState::Failed
                }
            }
            Some(r) if r.status == RunStatus::Running => {
                let (stale, gone) = r.liveness(claim.stale_after_s, &host);
                if (stale || gone) && inputs_done {
                    NodeState::Ready
                } else {
                    NodeState::Running
                }
            }
            _ if attempted.contains(&i) => NodeState::Skipped,
            _ if inputs_done => NodeState::Ready,
            _ => NodeState::Waiting,
        };
        out.push(state);
    }
    out
}

/// Every node's final state once the workers have ended: what the store says, with nothing left to
/// retry (failed runs count as failed, whatever the claim's retry rules).
pub fn settled_states(
    store: &Store,
    plan: &Plan,
    run_ids: &[i64],
    claim: Claim,
) -> Result<(Vec<Option<RunInfo>>, Vec<NodeState>), SweepError> {
    let runs = fetch(store, run_ids)?;
    let claim = Claim {
        retry_failed: false,
        max_attempts: 1,
        ..claim
    };
    let states = states(plan, &runs, claim, &HashSet::new());
    Ok((runs, states))
}

/// What one worker did.
#[derive(Debug, Default)]
pub struct WorkReport {
    /// Nodes this worker ran to the end.
    pub ran: Vec<usize>,
    /// Nodes this worker attempted that failed, with the error.
    pub failed: Vec<(usize, String)>,
}

/// The worker loop: until nothing is left that this worker can run or wait for.
pub fn work(
    store: &Store,
    plan: &Plan,
    run_ids: &[i64],
    opts: &ExecOptions,
) -> Result<WorkReport, SweepError> {
    let ctx = StageCtx {
        store,
        data_dir: opts.data_dir.clone(),
        device: opts.device.clone(),
        claim: opts.claim,
    };
    let mut attempted: HashSet<usize> = HashSet::new();
    let mut report = WorkReport::default();
    loop {
        let runs = fetch(store, run_ids)?;
        let st = states(plan, &runs, opts.claim, &attempted);
        let Some(i) = st.iter().position(|s| *s == NodeState::Ready) else {
            let pending = st
                .iter()
                .any(|s| matches!(s, NodeState::Running | NodeState::Waiting));
            if pending {
                std::thread::sleep(opts.poll);
                continue;
            }
            return Ok(report);
        };
        attempted.insert(i);
        let node = &plan.nodes[i];
        // A run left `running` by a dead process is retaken by the stage's job itself
        // (`ActiveRun::begin_with`), whoever starts it.
        // Ready means every input is finished, so each has its run.
        let inputs: Vec<StageInput<'_>> = node
            .inputs
            .iter()
            .filter_map(|&j| {
                runs[j].as_ref().map(|r| StageInput {
                    config: &plan.nodes[j].config,
                    hash: &plan.nodes[j].hash,
                    run: r.id,
                })
            })
            .collect();
        tracing::info!(stage = node.stage.name(), run = run_ids[i], "stage starts");
        crate::progress::set_context(&format!("run {} {}", run_ids[i], node.spec.name));
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
            node.stage.run(&ctx, &node.config, &inputs)
        }));
        crate::progress::set_context("");
        match result {
            Ok(Ok(StageRun::Ran(_))) => report.ran.push(i),
            Ok(Ok(StageRun::Taken(_))) => {}
            Ok(Err(e)) => {
                tracing::warn!(stage = node.stage.name(), run = run_ids[i], error = %e, "stage failed");
                report.failed.push((i, e.to_string()));
            }
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panic".into());
                report.failed.push((i, format!("panicked: {msg}")));
            }
        }
    }
}

/// The run of every node found by its identity (stage, configuration hash), without creating any:
/// what a dry run, `sweep status` and reports read.
pub fn lookup(store: &Store, plan: &Plan) -> Result<Vec<Option<RunInfo>>, SweepError> {
    Ok(plan
        .nodes
        .iter()
        .map(|n| store.find_run(n.stage.name(), &n.hash))
        .collect::<Result<_, _>>()?)
}

/// The run of every node, in node order.
pub fn fetch(store: &Store, run_ids: &[i64]) -> Result<Vec<Option<RunInfo>>, SweepError> {
    let runs = store.runs_by_id(run_ids)?;
    let by_id: std::collections::HashMap<i64, RunInfo> =
        runs.into_iter().map(|r| (r.id, r)).collect();
    Ok(run_ids.iter().map(|id| by_id.get(id).cloned()).collect())
}
