//! `flowprior classifier`

use std::path::PathBuf;

use anyhow::Context;

use super::{BackendArgs, Cli};
use crate::backend::run_job;
use crate::data::DatasetId;
use crate::stage::classifier::{ClassifierConfig, TrainClassifier};

#[derive(clap::Args, Debug)]
pub struct ClassifierArgs {
    /// TOML file with any of the fields below (flags win).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Dataset to train and test on.
    #[arg(long, value_enum)]
    pub dataset: Option<DatasetId>,
    /// Training steps (mini-batches).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Training images used (0 = all).
    #[arg(long)]
    pub train_size: Option<usize>,
    /// Test images evaluated (0 = all).
    #[arg(long)]
    pub test_size: Option<usize>,
    /// Width of the MLP's hidden layers.
    #[arg(long)]
    pub hidden: Option<usize>,
    /// Images per training step.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Adam's learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Seed of the weights' initialisation and the batches' order.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Log the training loss every this many steps.
    #[arg(long)]
    pub log_every: Option<usize>,
    /// Run again a run that failed before (finished runs are always reused).
    #[arg(long)]
    pub retry_failed: bool,
    #[command(flatten)]
    pub backend: BackendArgs,
}

pub fn run(cli: &Cli, args: &ClassifierArgs) -> anyhow::Result<()> {
    let mut cfg: ClassifierConfig = match &args.config {
        Some(p) => crate::config::load_toml(p)?,
        None => ClassifierConfig::default(),
    };
    macro_rules! set {
        ($($f:ident),*) => { $( if let Some(v) = args.$f { cfg.$f = v; } )* };
    }
    set!(
        dataset, steps, train_size, test_size, hidden, batch_size, lr, seed, log_every
    );
    cfg.validate()
        .map_err(|e| anyhow::anyhow!("classifier configuration: {e}"))?;
    let (backend, device) = args.backend.resolve(cfg.backend)?;
    cfg.backend = backend;
    let store = cli.open_store()?;
    let artifacts_dir = store.artifacts_dir();
    let job = TrainClassifier {
        config: cfg.clone(),
        data_dir: cli.data_dir(),
        artifacts_dir,
        store: &store,
        claim: cli.claim(args.retry_failed)?,
    };
    let outcome = run_job(backend, device, job)?.with_context(|| {
        format!(
            "classifier on {} ({} backend)",
            cfg.dataset.name(),
            backend.name()
        )
    })?;
    let fmt = |v: Option<f64>| v.map(|x| format!("{x:.4}")).unwrap_or_else(|| "-".into());
    if outcome.reused {
        println!(
            "run {} already finished with this configuration (reused): test accuracy {}",
            outcome.run_id,
            fmt(outcome.test_accuracy)
        );
        if let Some(note) = super::reuse_note(&store, outcome.run_id) {
            println!("{note}");
        }
    } else {
        println!(
            "run {} finished: test accuracy {}, test loss {}, {} steps/s on {}",
            outcome.run_id,
            fmt(outcome.test_accuracy),
            fmt(outcome.test_loss),
            fmt(outcome.steps_per_s),
            backend.name()
        );
        if let Some(p) = &outcome.checkpoint {
            println!("checkpoint: {}", p.display());
        }
    }
    println!("see it with: flowprior runs show {}", outcome.run_id);
    Ok(())
}
