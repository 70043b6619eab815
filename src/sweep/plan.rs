//! Expansion of a sweep into a DAG of stage runs.
//!
//! Every grid point (a value of each axis, crossed, times each seed) needs one run of each stage.
//! A stage run is identified by its stage and the hash of its configuration, which includes its
//! inputs' hashes; points that need the same stage run share one node, so a prior trained once serves
//! every downstream setting that does not change it.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::SweepError;
use super::spec::Sweep;
use crate::stage::{SpecInput, StageKind};
use crate::store::RunSpec;

/// One stage run of the plan.
#[derive(Debug, Clone)]
pub struct Node {
    pub stage: StageKind,
    /// The stage's own configuration (without inputs).
    pub config: Value,
    /// Nodes this one reads, in `stage.inputs()` order.
    pub inputs: Vec<usize>,
    /// The run it is: stage, name, configuration with inputs, seed.
    pub spec: RunSpec,
    pub hash: String,
    /// How many grid points need it.
    pub users: usize,
}

/// One grid point: its axis values and seed, and the node of each stage.
#[derive(Debug, Clone)]
pub struct Point {
    pub index: usize,
    /// (axis name, value) in axis order.
    pub labels: Vec<(String, Value)>,
    pub seed: u64,
    pub nodes: BTreeMap<StageKind, usize>,
}

impl Point {
    /// The labels and the seed as one JSON object (stored with the sweep).
    pub fn labels_json(&self) -> Value {
        let mut m = serde_json::Map::new();
        for (k, v) in &self.labels {
            m.insert(k.clone(), v.clone());
        }
        m.insert("seed".into(), Value::from(self.seed));
        Value::Object(m)
    }

    /// The text of this point's value of `axis` (None: not an axis of the sweep).
    pub fn label(&self, axis: &str) -> Option<String> {
        self.labels
            .iter()
            .find(|(k, _)| k == axis)
            .map(|(_, v)| value_text(v))
    }

    /// Whether the point has the values a report's `where` table pins.
    pub fn matches(&self, filter: &toml::Table) -> bool {
        filter
            .iter()
            .all(|(axis, v)| self.label(axis) == Some(toml_text(v)))
    }

    /// "target=mixture, lr=0.01, seed=0" for messages.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={}", value_text(v)))
            .collect();
        parts.push(format!("seed={}", self.seed));
        parts.join(", ")
    }
}

/// A value as a label: strings without quotes.
pub fn value_text(v: &Value) -> String {
    v.as_str()
        .map(str::to_string)
        .unwrap_or_else(|| v.to_string())
}

/// A readable run name: the stage, the axis values it and its inputs depend on, and the seed.
fn node_name(sweep: &Sweep, stage: StageKind, point: &Point) -> String {
    let up = stage.upstream();
    let mut parts: Vec<String> = sweep
        .axes
        .iter()
        .zip(&point.labels)
        .filter(|(a, _)| a.stages().iter().any(|s| up.contains(s)))
        .map(|(a, (_, v))| format!("{}={}", a.short_name(), value_text(v)))
        .collect();
    parts.push(format!("seed={}", point.seed));
    format!("{} {}", stage.name(), parts.join(" "))
}

/// A TOML value (from a sweep file's `where`) as the same text as [`value_text`] of its JSON form.
pub fn toml_text(v: &toml::Value) -> String {
    value_text(&serde_json::to_value(v).unwrap_or_default())
}

/// The message of a grid point that a stage rejects.
fn impossible(sweep: &Sweep, point: &Point, stage: StageKind, why: &str) -> String {
    format!(
        "{}: the combination {} is impossible for stage `{}`: {why}",
        sweep.file.display(),
        point.describe(),
        stage.name()
    )
}

/// Drops from a point the runs nothing at that point reads, among stages that some listed stage
/// could read: an AE row's tokenizer reads no prior, so that point trains none; a prior on `qwen`
/// reads no `vae` run. A stage that no listed stage reads is always kept (it is a result itself).
fn prune_unread(sweep: &Sweep, point: &mut Point, nodes: &mut [Node]) {
    let readable = |k: StageKind| sweep.stages.iter().any(|t| t.inputs().contains(&k));
    for &stage in sweep.stages.iter().rev() {
        let Some(&node) = point.nodes.get(&stage) else {
            continue;
        };
        let read = point
            .nodes
            .values()
            .any(|&other| nodes[other].inputs.contains(&node));
        if readable(stage) && !read {
            point.nodes.remove(&stage);
            nodes[node].users -= 1;
        }
    }
}

/// Removes nodes no point uses and renumbers the rest (inputs of a used node are used).
fn drop_unused(plan: Plan) -> Plan {
    let mut new_index = vec![usize::MAX; plan.nodes.len()];
    let mut nodes = Vec::new();
    for (i, n) in plan.nodes.into_iter().enumerate() {
        if n.users > 0 {
            new_index[i] = nodes.len();
            nodes.push(n);
        }
    }
    for n in &mut nodes {
        for i in &mut n.inputs {
            *i = new_index[*i];
        }
    }
    let mut points = plan.points;
    for p in &mut points {
        for i in p.nodes.values_mut() {
            *i = new_index[*i];
        }
    }
    Plan { nodes, points }
}

/// The DAG of a sweep.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Nodes in dependency order (every input before its users).
    pub nodes: Vec<Node>,
    pub points: Vec<Point>,
}

impl Plan {
    /// Expands the grid. A combination that a stage rejects is reported with the point's values.
    /// `data_dir` is where stages read their input files (their content is part of a run's identity).
    pub fn expand(sweep: &Sweep, data_dir: &std::path::Path) -> Result<Plan, SweepError> {
        let env = crate::stage::SpecEnv::new(data_dir);
        let mut combos: Vec<Vec<(usize, usize)>> = vec![vec![]];
        for (ai, axis) in sweep.axes.iter().enumerate() {
            combos = combos
                .into_iter()
                .flat_map(|c| {
                    (0..axis.values.len()).map(move |vi| {
                        let mut c = c.clone();
                        c.push((ai, vi));
                        c
                    })
                })
                .collect();
        }
        let mut nodes: Vec<Node> = Vec::new();
        let mut index: HashMap<(StageKind, String), usize> = HashMap::new();
        let mut points = Vec::new();
        let mut problems = Vec::new();
        for combo in &combos {
            for &seed in &sweep.seeds {
                let labels: Vec<(String, Value)> = combo
                    .iter()
                    .map(|&(ai, vi)| (sweep.axes[ai].name(), sweep.axes[ai].values[vi].clone()))
                    .collect();
                let mut point = Point {
                    index: points.len(),
                    labels,
                    seed,
                    nodes: BTreeMap::new(),
                };
                for &stage in &sweep.stages {
                    let mut cfg = stage.defaults(sweep.preset);
                    let obj = cfg.as_object_mut().ok_or_else(|| {
                        SweepError::Invalid(vec![format!("stage {} has no settings", stage.name())])
                    })?;
                    // A deterministic stage has no seed: the seeds of a sweep share its one run.
                    if obj.contains_key("seed") {
                        obj.insert("seed".into(), Value::from(seed));
                    }
                    obj.insert(
                        "backend".into(),
                        Value::from(sweep.backend.name().to_string()),
                    );
                    for s in sweep.fixed.iter().filter(|s| s.stage == stage) {
                        obj.insert(s.field.clone(), s.value.clone());
                    }
                    for &(ai, vi) in combo {
                        for s in sweep.axes[ai].applied(vi, stage) {
                            obj.insert(s.field.clone(), s.value.clone());
                        }
                    }
                    if let Err(m) = stage.check(&cfg) {
                        problems.push(impossible(sweep, &point, stage, &m));
                        break;
                    }
                    let needs = stage.inputs_for(&cfg);
                    if let Some(missing) = needs.iter().find(|k| !point.nodes.contains_key(k)) {
                        problems.push(format!(
                            "{}: at {}, stage `{}` reads stage `{}`: add it to `stages`",
                            sweep.file.display(),
                            point.describe(),
                            stage.name(),
                            missing.name()
                        ));
                        break;
                    }
                    let inputs: Vec<usize> = needs
                        .iter()
                        .filter_map(|k| point.nodes.get(k).copied())
                        .collect();
                    let input_specs: Vec<SpecInput<'_>> = inputs
                        .iter()
                        .map(|&i| SpecInput {
                            config: &nodes[i].config,
                            hash: &nodes[i].hash,
                        })
                        .collect();
                    let spec = match stage.run_spec(&cfg, &input_specs, &env) {
                        Ok(spec) => spec,
                        Err(m) => {
                            problems.push(impossible(sweep, &point, stage, &m));
                            break;
                        }
                    };
                    let hash = spec.hash();
                    let id = *index.entry((stage, hash.clone())).or_insert_with(|| {
                        nodes.push(Node {
                            stage,
                            config: cfg,
                            inputs,
                            spec,
                            hash,
                            users: 0,
                        });
                        nodes.len() - 1
                    });
                    nodes[id].users += 1;
                    point.nodes.insert(stage, id);
                }
                prune_unread(sweep, &mut point, &mut nodes);
                points.push(point);
            }
        }
        if !problems.is_empty() {
            problems.truncate(20);
            return Err(SweepError::Invalid(problems));
        }
        // Names come from the first point that keeps a node (a pruned point may have made it).
        let mut named = vec![false; nodes.len()];
        for point in &points {
            for (&stage, &node) in &point.nodes {
                if !named[node] {
                    named[node] = true;
                    nodes[node].spec.name = node_name(sweep, stage, point);
                }
            }
        }
        Ok(drop_unused(Plan { nodes, points }))
    }

    /// The node of `stage` at every point, in point order.
    pub fn nodes_of(&self, stage: StageKind) -> Vec<usize> {
        self.points
            .iter()
            .filter_map(|p| p.nodes.get(&stage).copied())
            .collect()
    }
}
