//! `flowprior toy`

use std::path::PathBuf;

use anyhow::Context;
use tabled::builder::Builder;
use tabled::settings::Style;

use super::{BackendArgs, Cli};
use crate::backend::run_job;
use crate::jobs::JobRun;
use crate::stage::toy::{ToyAlignJob, ToyConfig, ToyPreset, ToyPriorJob};
use crate::toy::{ALL_TARGETS, Target};

#[derive(clap::Args, Debug)]
pub struct ToyArgs {
    /// Target distribution, or `all`.
    #[arg(long, default_value = "mixture")]
    pub target: String,
    /// Size preset: smoke (seconds; `tiny` is accepted too), small (minutes), paper (the paper's
    /// sizes): the same presets as sweeps.
    #[arg(long, value_enum, default_value = "small")]
    pub preset: ToyPreset,
    /// TOML file with any ToyConfig fields, applied over the preset (flags win).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Prior training steps.
    #[arg(long)]
    pub steps: Option<usize>,
    /// Alignment steps of the free points.
    #[arg(long)]
    pub align_steps: Option<usize>,
    /// Seed of both stages (the prior's weights and samples, the free points and their noise).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Where figures go (one folder per target; a reused run keeps the figures it drew).
    #[arg(long, default_value = "reports/toy")]
    pub figures: PathBuf,
    /// Run again the runs that failed before (finished runs are always reused).
    #[arg(long)]
    pub retry_failed: bool,
    #[command(flatten)]
    pub backend: BackendArgs,
}

fn targets(spec: &str) -> anyhow::Result<Vec<Target>> {
    if spec == "all" {
        return Ok(ALL_TARGETS.to_vec());
    }
    spec.split(',')
        .map(|s| {
            <Target as clap::ValueEnum>::from_str(s.trim(), true).map_err(|_| {
                anyhow::anyhow!(
                    "--target {s:?}: expected `all` or one of mixture, grid, moons, rings, spiral, swissroll, checkerboard"
                )
            })
        })
        .collect()
}

/// Overlays a TOML file's keys (settings of either toy stage) on a preset configuration.
fn overlay(base: &ToyConfig, path: &std::path::Path) -> anyhow::Result<ToyConfig> {
    let patch: serde_json::Map<String, serde_json::Value> = crate::config::load_toml(path)?;
    base.overlay(&patch).map_err(|e| {
        // Name the line of the offending key when the message names one.
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let line = e
            .strip_prefix('`')
            .and_then(|rest| rest.split_once('`'))
            .and_then(|(key, _)| {
                text.lines().position(|l| {
                    l.trim_start()
                        .strip_prefix(key)
                        .is_some_and(|r| r.trim_start().starts_with('='))
                })
            });
        match line {
            Some(i) => anyhow::anyhow!("{}: line {}: {e}", path.display(), i + 1),
            None => anyhow::anyhow!("{}: {e}", path.display()),
        }
    })
}

pub fn run(cli: &Cli, args: &ToyArgs) -> anyhow::Result<()> {
    let store = cli.open_store()?;
    let mut b = Builder::default();
    b.push_record([
        "target",
        "run",
        "points NLL",
        "true NLL",
        "start NLL",
        "coverage",
        "modes",
        "curve rho",
        "landscape rho",
    ]);
    for target in targets(&args.target)? {
        let mut cfg = ToyConfig::preset(args.preset, target);
        if let Some(p) = &args.config {
            cfg = overlay(&cfg, p)?;
            cfg.prior.target = target;
        }
        if let Some(v) = args.steps {
            cfg.prior.prior_steps = v;
        }
        if let Some(v) = args.align_steps {
            cfg.align.align_steps = v;
        }
        if let Some(v) = args.seed {
            cfg.set_seed(v);
        }
        cfg.validate()
            .map_err(|e| anyhow::anyhow!("toy configuration for {}: {e}", target.name()))?;
        let (backend, device) = args.backend.resolve(cfg.prior.backend)?;
        cfg.set_backend(backend);
        let claim = cli.claim(args.retry_failed)?;
        let prior_job = ToyPriorJob {
            config: cfg.prior.clone(),
            store: &store,
            claim,
        };
        let prior_run = match run_job(backend, device, prior_job)?
            .with_context(|| format!("toy prior for {}", target.name()))?
        {
            JobRun::Ran(id) => id,
            JobRun::Reused { run, .. } => {
                anyhow::ensure!(
                    run.status == crate::store::RunStatus::Finished,
                    "the toy prior for {} (run {}) is {} in another process; run again when it has finished",
                    target.name(),
                    run.id,
                    run.status.as_str()
                );
                run.id
            }
        };
        let job = ToyAlignJob {
            config: cfg.align,
            prior: cfg.prior,
            prior_run,
            store: &store,
            figures_dir: Some(args.figures.clone()),
            claim,
        };
        let out = run_job(backend, device, job)?
            .with_context(|| format!("toy target {}", target.name()))?;
        let get = |k: &str| {
            out.summary
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| format!("{v:.3}"))
                .unwrap_or_else(|| "-".into())
        };
        b.push_record([
            format!(
                "{}{}",
                target.name(),
                if out.reused { " (reused)" } else { "" }
            ),
            out.run_id.to_string(),
            get("final/points_nll"),
            get("final/true_nll"),
            get("final/start_nll"),
            get("final/coverage"),
            get("final/modes_covered"),
            get("final/curve_rank_corr"),
            get("final/landscape_rank_corr"),
        ]);
        for f in &out.figures {
            println!("figure: {}", f.display());
        }
        if out.reused {
            println!(
                "{}: run {} reused; its figures were drawn when it ran (see `flowprior runs show {}`), \
                 not into {}",
                target.name(),
                out.run_id,
                out.run_id,
                args.figures.display()
            );
            for id in [prior_run, out.run_id] {
                if let Some(note) = super::reuse_note(&store, id) {
                    println!("{note}");
                }
            }
        }
    }
    println!("{}", b.build().with(Style::sharp()));
    Ok(())
}
