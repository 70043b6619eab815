//! `flowprior stage list | run KIND`: any one stage outside a sweep. `stage run` plans the stage and
//! the stages it reads exactly as a one-point sweep would (same configurations, same run identities),
//! reuses every finished run, runs what is missing, and records everything in the store.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use tabled::builder::Builder;
use tabled::settings::Style;

use super::{BackendArgs, Cli};
use crate::stage::{Scale, StageKind};
use crate::sweep::exec::{self, ExecOptions, NodeState};
use crate::sweep::{Overrides, Plan, Sweep};

#[derive(clap::Args, Debug)]
pub struct StageArgs {
    #[command(subcommand)]
    pub command: StageCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum StageCommand {
    /// Every stage kind, with the stages it reads.
    List,
    /// Run one stage (and the stages it reads, reusing finished runs) at a preset, with settings.
    Run(StageRunArgs),
}

#[derive(clap::Args, Debug)]
pub struct StageRunArgs {
    /// The stage kind (see `flowprior stage list`).
    pub kind: String,
    /// Scale preset of every stage involved.
    #[arg(long, value_enum, default_value = "smoke")]
    pub preset: Scale,
    /// A setting, `key=value` for the stage itself or `stage.key=value` for a stage it reads; the
    /// value is TOML (`lr=0.001`, `rfid=["classifier"]`), a bare word is a string. Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub settings: Vec<String>,
    /// Seed of every stage involved.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Run again the runs that failed before (finished runs are always reused).
    #[arg(long)]
    pub retry_failed: bool,
    /// Print what would run and what is reused; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub backend: BackendArgs,
}

pub fn run(cli: &Cli, args: &StageArgs) -> anyhow::Result<()> {
    match &args.command {
        StageCommand::List => {
            let mut b = Builder::default();
            b.push_record(["stage", "reads"]);
            for k in StageKind::all() {
                let reads: Vec<&str> = k.inputs().into_iter().map(StageKind::name).collect();
                b.push_record([
                    k.name().to_string(),
                    if reads.is_empty() {
                        "-".to_string()
                    } else {
                        reads.join(", ")
                    },
                ]);
            }
            println!("{}", b.build().with(Style::sharp()));
            Ok(())
        }
        StageCommand::Run(a) => run_stage(cli, a),
    }
}

/// The one-point sweep file that `stage run` plans: the stage, every stage it may read, the preset,
/// the seed, the backend, and the settings as `[fixed]`.
pub fn sweep_text(
    kind: StageKind,
    preset: Scale,
    seed: u64,
    backend: Option<&str>,
    settings: &[String],
) -> anyhow::Result<String> {
    let mut stages = kind.upstream();
    stages.sort();
    let mut doc = toml::Table::new();
    doc.insert(
        "stages".into(),
        toml::Value::Array(
            stages
                .iter()
                .map(|s| toml::Value::String(s.name().into()))
                .collect(),
        ),
    );
    doc.insert("preset".into(), toml::Value::String(preset.name().into()));
    doc.insert(
        "seeds".into(),
        toml::Value::Array(vec![toml::Value::Integer(seed as i64)]),
    );
    if let Some(b) = backend {
        doc.insert("backend".into(), toml::Value::String(b.into()));
    }
    let mut fixed = toml::Table::new();
    for s in settings {
        let (key, value) = s.split_once('=').ok_or_else(|| {
            anyhow::anyhow!("--set {s:?}: expected KEY=VALUE, e.g. --set lr=0.001")
        })?;
        let key = key.trim();
        let (stage, setting) = match key.split_once('.') {
            Some((st, k)) if StageKind::parse(st).is_some() => (st.to_string(), k.to_string()),
            _ => (kind.name().to_string(), key.to_string()),
        };
        // A TOML value when it parses as one, else the text itself.
        let value = toml::from_str::<toml::Table>(&format!("v = {}", value.trim()))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(value.trim().to_string()));
        fixed
            .entry(stage)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .map(|t| t.insert(setting, value));
    }
    if !fixed.is_empty() {
        doc.insert("fixed".into(), toml::Value::Table(fixed));
    }
    Ok(toml::to_string(&doc)?)
}

fn run_stage(cli: &Cli, args: &StageRunArgs) -> anyhow::Result<()> {
    let kind = StageKind::parse(&args.kind).ok_or_else(|| {
        anyhow::anyhow!(
            "no stage `{}`: expected one of {}",
            args.kind,
            StageKind::names()
        )
    })?;
    let backend = args.backend.backend.map(|b| b.name());
    let text = sweep_text(kind, args.preset, args.seed, backend, &args.settings)?;
    let file = Path::new("stage-run").join(format!("{}.toml", kind.name()));
    let sweep = Sweep::parse(&text, &file, Overrides::default())?;
    let plan = Plan::expand(&sweep, &cli.data_dir())?;
    for b in plan.nodes.iter().map(|n| n.stage.backend(&n.config)) {
        b.ensure_compiled()?;
    }
    let claim = cli.claim(args.retry_failed)?;
    if args.dry_run {
        let runs = match cli.existing_store_if_any()? {
            Some(store) => exec::lookup(&store, &plan)?,
            None => vec![None; plan.nodes.len()],
        };
        let states = exec::states(&plan, &runs, claim, &HashSet::new());
        for (i, n) in plan.nodes.iter().enumerate() {
            let what = match (states[i], &runs[i]) {
                (NodeState::Finished, Some(r)) => format!("reuse run {}", r.id),
                (s, _) => s.as_str().to_string(),
            };
            println!("{}: {what}", n.spec.name);
        }
        println!("dry run: nothing written");
        return Ok(());
    }
    let store = cli.open_store()?;
    let ids: Vec<i64> = plan
        .nodes
        .iter()
        .map(|n| store.get_or_create_run(&n.spec).map(|r| r.id))
        .collect::<Result<_, _>>()?;
    let opts = ExecOptions {
        claim,
        data_dir: cli.data_dir(),
        device: args.backend.device.clone(),
        poll: Duration::from_millis(500),
    };
    let report = exec::work(&store, &plan, &ids, &opts)?;
    let runs = exec::fetch(&store, &ids)?;
    let mut b = Builder::default();
    b.push_record(["stage", "run", "name", "status", "this command"]);
    for (i, n) in plan.nodes.iter().enumerate() {
        b.push_record([
            n.stage.name().to_string(),
            ids[i].to_string(),
            n.spec.name.clone(),
            runs[i]
                .as_ref()
                .map_or("-".to_string(), |r| r.status.as_str().to_string()),
            if report.ran.contains(&i) {
                "ran".to_string()
            } else if report.failed.iter().any(|(j, _)| *j == i) {
                "failed".to_string()
            } else {
                "reused".to_string()
            },
        ]);
    }
    println!("{}", b.build().with(Style::sharp()));
    for (i, e) in &report.failed {
        println!("failed: {}: {e}", plan.nodes[*i].spec.name);
    }
    anyhow::ensure!(
        report.failed.is_empty(),
        "{} stage run(s) failed",
        report.failed.len()
    );
    if let Some(i) = plan.nodes.iter().rposition(|n| n.stage == kind) {
        println!("see it with: flowprior runs show {}", ids[i]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_become_fixed_values_of_the_stage_or_the_named_one() {
        let kind = StageKind::named("toy_align");
        let text = sweep_text(
            kind,
            Scale::Smoke,
            3,
            None,
            &[
                "align_lr=0.05".into(),
                "toy_prior.target=moons".into(),
                "toy_prior.prior_steps = 40".into(),
            ],
        )
        .expect("text");
        let doc: toml::Table = toml::from_str(&text).expect("toml");
        assert_eq!(doc["stages"].as_array().map(Vec::len), Some(2));
        assert_eq!(doc["seeds"][0].as_integer(), Some(3));
        assert_eq!(doc["fixed"]["toy_align"]["align_lr"].as_float(), Some(0.05));
        assert_eq!(doc["fixed"]["toy_prior"]["target"].as_str(), Some("moons"));
        assert_eq!(
            doc["fixed"]["toy_prior"]["prior_steps"].as_integer(),
            Some(40)
        );
        assert!(sweep_text(kind, Scale::Smoke, 0, None, &["nokey".into()]).is_err());
    }
}
