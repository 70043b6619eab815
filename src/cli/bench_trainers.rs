//! `flowprior bench trainers`: the image trainers' steps (the `vae`, `vq` and `classifier` stages;
//! `bench::trainers`) beside the same steps in PyTorch eager (scripts/bench_trainers.py), in steps per
//! second.

use std::path::PathBuf;

use super::bench::{compare, profile_name, run_reference_rate, venv_python};
use crate::backend::{BackendKind, DeviceSpec, run_job};
use crate::bench::trainers::{Trainer, TrainerBench};
use crate::models::latent_ae::AeKind;
use crate::stage::classifier::ClassifierConfig;
use crate::stage::latent_ae::LatentAeConfig;
use crate::sweep::{Scale, StageKind};

#[derive(clap::Args, Debug)]
pub struct TrainersArgs {
    /// Timed training steps per side.
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// Untimed steps first.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Threads for both sides (rayon for the CPU backend, torch.set_num_threads for PyTorch).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Backend (default: flex).
    #[arg(long, value_enum, default_value = "flex")]
    backend: BackendKind,
    /// Python with torch for the reference (default: .venv-torch/bin/python, else python3).
    #[arg(long)]
    torch_python: Option<PathBuf>,
}

/// The stage's settings at the `cpu` preset.
fn preset<T: serde::de::DeserializeOwned>(stage: &str) -> anyhow::Result<T> {
    Ok(serde_json::from_value(
        StageKind::named(stage).defaults(Scale::Cpu),
    )?)
}

pub fn trainers_bench(args: &TrainersArgs) -> anyhow::Result<()> {
    let threads = args.threads.max(1);
    super::set_threads(threads);
    let device = DeviceSpec::parse(args.backend, None)?;
    let torch_device = device.torch_name();
    let python = venv_python(args.torch_python.as_deref(), ".venv-torch");
    let ae: LatentAeConfig = preset("vae")?;
    let vq: LatentAeConfig = preset("vq")?;
    let classifier: ClassifierConfig = preset("classifier")?;
    let mut table = tabled::builder::Builder::default();
    table.push_record([
        "trainer",
        "sizes",
        "flowprior steps/s",
        "PyTorch steps/s",
        "ratio",
    ]);
    let mut notes = Vec::new();
    let benches = [
        (Trainer::LatentAe(AeKind::Vae), &ae),
        (Trainer::LatentAe(AeKind::Vq), &vq),
    ]
    .map(|(trainer, c)| TrainerBench {
        trainer,
        batch: c.batch,
        width: c.channels,
        codebook_size: c.codebook_size,
        kl_weight: c.kl_weight,
        commitment: c.commitment,
        lr: c.lr,
        steps: args.steps,
        warmup: args.warmup,
    })
    .into_iter()
    .chain([TrainerBench {
        trainer: Trainer::Classifier,
        batch: classifier.batch_size,
        width: classifier.hidden,
        codebook_size: 1,
        kl_weight: 0.0,
        commitment: 0.0,
        lr: classifier.lr,
        steps: args.steps,
        warmup: args.warmup,
    }]);
    for bench in benches {
        let name = bench.trainer.name();
        let sizes = match bench.trainer {
            Trainer::LatentAe(AeKind::Vq) => format!(
                "batch {}, {} channels, {} codes",
                bench.batch, bench.width, bench.codebook_size
            ),
            Trainer::LatentAe(AeKind::Vae) => {
                format!("batch {}, {} channels", bench.batch, bench.width)
            }
            Trainer::Classifier => format!("batch {}, hidden {}", bench.batch, bench.width),
        };
        let ref_args = [
            name.to_string(),
            bench.batch.to_string(),
            bench.width.to_string(),
            bench.codebook_size.to_string(),
            bench.kl_weight.to_string(),
            bench.commitment.to_string(),
            args.steps.to_string(),
            args.warmup.to_string(),
            threads.to_string(),
            torch_device.to_string(),
        ];
        let ours = run_job(args.backend, device, bench)?;
        let theirs = run_reference_rate(
            &python,
            "scripts/bench_trainers.py",
            &ref_args,
            threads,
            "steps_per_s",
        )
        .map_err(|e| format!("{name}: PyTorch reference not run ({e})"));
        let [a, t, r] = compare(ours, theirs, &mut notes);
        table.push_record([name.to_string(), sizes, a, t, r]);
    }
    println!(
        "image trainers' training step (the stages' own step: loss, backward, Adam) at the cpu \
         preset's sizes on random images, {} timed steps after {} untimed, {} backend, {threads} \
         thread(s), flowprior {}; PyTorch eager on the {torch_device} beside it",
        args.steps,
        args.warmup,
        args.backend.name(),
        profile_name()
    );
    println!("{}", table.build().with(tabled::settings::Style::sharp()));
    for n in notes {
        println!("{n}");
    }
    Ok(())
}
