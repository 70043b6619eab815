//! What `flowprior sweep run --dry-run` prints: the plan (what runs, what is reused), what is missing,
//! and the estimated cost per worker count.

use std::collections::HashSet;

use tabled::builder::Builder;
use tabled::settings::Style;

use super::Cli;
use crate::jobs::Claim;
use crate::store::{RunInfo, RunStatus};
use crate::sweep::estimate::{Estimate, estimate};
use crate::sweep::exec::{self, NodeState};
use crate::sweep::{Plan, Sweep};
use crate::util::format_duration;

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

pub(super) fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or("");
    if line.len() > 100 {
        format!("{}...", &line[..line.floor_char_boundary(100)])
    } else {
        line.to_string()
    }
}

/// What a dry run says a node will do.
fn action(state: NodeState, run: Option<&RunInfo>) -> String {
    match (state, run) {
        (NodeState::Finished, Some(r)) => match r.git_rev.as_deref() {
            Some(rev) if rev != crate::provenance::revision() => {
                format!("reuse run {} (recorded by revision {rev})", r.id)
            }
            _ => format!("reuse run {}", r.id),
        },
        (NodeState::Ready | NodeState::Waiting, None) => "run (new)".into(),
        (NodeState::Ready | NodeState::Waiting, Some(r)) => match r.status {
            RunStatus::Failed => format!("retry run {}", r.id),
            RunStatus::Running => format!("retake run {} (its process is gone)", r.id),
            _ => format!("run {} (queued)", r.id),
        },
        (NodeState::Failed, Some(r)) => format!(
            "skip run {}: failed ({}); --retry-failed reruns it",
            r.id,
            first_line(r.error.as_deref().unwrap_or(""))
        ),
        (NodeState::Running, Some(r)) => format!(
            "running in process {} on {}",
            r.pid.unwrap_or_default(),
            r.host.as_deref().unwrap_or("?")
        ),
        (NodeState::Blocked, _) => "blocked: an input failed".into(),
        (s, _) => s.as_str().into(),
    }
}

/// "sweep NAME (FILE, PRESET preset, BACKEND backend): N grid points, M stage runs"
pub(super) fn headline(sweep: &Sweep, plan: &Plan) -> String {
    format!(
        "sweep {} ({}, {} preset, {} backend): {} grid points, {} stage runs",
        sweep.name,
        sweep.file.display(),
        sweep.preset.name(),
        sweep.backend.name(),
        plan.points.len(),
        plan.nodes.len()
    )
}

fn plan_table(
    plan: &Plan,
    runs: &[Option<RunInfo>],
    states: &[NodeState],
    estimates: &[Option<Estimate>],
) -> String {
    let mut b = Builder::default();
    b.push_record([
        "stage",
        "run name",
        "config hash",
        "points",
        "action",
        "est. time",
    ]);
    for (i, n) in plan.nodes.iter().enumerate() {
        b.push_record([
            n.stage.name().to_string(),
            n.spec.name.clone(),
            short(&n.hash).to_string(),
            n.users.to_string(),
            action(states[i], runs[i].as_ref()),
            match &estimates[i] {
                Some(Estimate {
                    seconds: Some(s), ..
                }) => format_duration(*s),
                Some(_) => "?".into(),
                None => String::new(),
            },
        ]);
    }
    b.build().with(Style::sharp()).to_string()
}

/// What the plan needs that is not there: input files that cannot be read, datasets missing from
/// the data folder.
fn missing_inputs(plan: &Plan, data_dir: &std::path::Path) -> Vec<String> {
    let mut problems = Vec::new();
    for n in &plan.nodes {
        let unreadable =
            crate::util::json_strings(&n.spec.config).any(|s| s == crate::util::UNREADABLE);
        if unreadable {
            problems.push(format!(
                "{}: an input file cannot be read (`flowprior data check` lists what is missing; \
                 `just data` fetches it)",
                n.spec.name
            ));
        }
        for d in n.stage.datasets(&n.config) {
            let folder = d.name();
            let absent: Vec<&str> = crate::data::catalog::EXPECTED_FILES
                .iter()
                .filter(|f| f.rel.starts_with(&format!("{folder}/")))
                .filter(|f| !data_dir.join(f.rel).is_file())
                .map(|f| f.rel)
                .collect();
            if !absent.is_empty() {
                problems.push(format!(
                    "{}: dataset {folder} is missing from {} ({}; `just data` fetches it)",
                    n.spec.name,
                    data_dir.display(),
                    absent.join(", ")
                ));
            }
        }
    }
    problems.dedup();
    problems
}

pub(super) fn dry_run(
    cli: &Cli,
    sweep: &Sweep,
    plan: &Plan,
    claim: Claim,
    workers: usize,
) -> anyhow::Result<()> {
    let store = cli.existing_store_if_any()?;
    let runs: Vec<Option<RunInfo>> = match &store {
        Some(s) => exec::lookup(s, plan)?,
        None => vec![None; plan.nodes.len()],
    };
    let states = exec::states(plan, &runs, claim, &HashSet::new());
    let to_run: Vec<usize> = (0..plan.nodes.len())
        .filter(|&i| matches!(states[i], NodeState::Ready | NodeState::Waiting))
        .collect();
    let mut estimates: Vec<Option<Estimate>> = vec![None; plan.nodes.len()];
    if let Some(s) = &store {
        let asked: Vec<(&str, &serde_json::Value)> = to_run
            .iter()
            .map(|&i| (plan.nodes[i].stage.name(), &plan.nodes[i].spec.config))
            .collect();
        for (&i, e) in to_run.iter().zip(estimate(s, &asked)?) {
            estimates[i] = Some(e);
        }
    } else {
        for &i in &to_run {
            estimates[i] = Some(Estimate {
                seconds: None,
                basis: "no store yet".into(),
            });
        }
    }
    println!("{}", headline(sweep, plan));
    println!("{}", plan_table(plan, &runs, &states, &estimates));
    let reused = states.iter().filter(|s| **s == NodeState::Finished).count();
    println!(
        "dry run: {} to run, {reused} reused, nothing written",
        to_run.len()
    );
    let known: Vec<f64> = estimates
        .iter()
        .flatten()
        .filter_map(|e| e.seconds)
        .collect();
    let unknown = to_run.len() - known.len();
    if !known.is_empty() {
        let total: f64 = known.iter().sum();
        let mut line = format!(
            "estimated time: {} of stage runs for the {} with an estimate (from finished runs like \
             them in the store; machine: {}, {} threads)",
            format_duration(total),
            known.len(),
            crate::provenance::cpu().unwrap_or_else(|| "unknown CPU".into()),
            crate::provenance::threads()
        );
        if workers > 1 {
            line.push_str(&format!(
                "; with {workers} workers at best about {} (waits for inputs not counted)",
                format_duration(total / workers as f64)
            ));
        }
        println!("{line}");
    }
    if unknown > 0 {
        println!(
            "no estimate for {unknown} stage run{}: no finished run like {} is recorded yet \
             (run one grid point first, e.g. with --seeds and a smaller grid, to calibrate)",
            if unknown == 1 { "" } else { "s" },
            if unknown == 1 { "it" } else { "them" }
        );
    }
    let problems = missing_inputs(plan, &cli.data_dir());
    for p in &problems {
        println!("missing input: {p}");
    }
    for b in plan.nodes.iter().map(|n| n.stage.backend(&n.config)) {
        if let Err(e) = b.ensure_compiled() {
            println!("backend: {e}");
        }
    }
    Ok(())
}
