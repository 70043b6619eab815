//! `flowprior bench trainers`: the image trainers' steps (the `vae`, `vq` and `classifier` stages;
//! `bench::trainers`) beside the same steps in PyTorch eager (scripts/bench_trainers.py), in steps per
//! second.

use std::path::PathBuf;

use super::bench::{compare, preset_config, profile_name, run_reference, venv_python};
use crate::backend::{BackendKind, DeviceSpec, run_job};
use crate::bench::trainers::{Trainer, TrainerBench};
use crate::models::latent_ae::AeKind;
use crate::stage::classifier::CLASSIFIER;
use crate::stage::latent_ae::{VAE, VQ};
use crate::sweep::Scale;

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

pub fn trainers_bench(args: &TrainersArgs) -> anyhow::Result<()> {
    let python = venv_python(args.torch_python.as_deref(), ".venv-torch");
    trainers_bench_with(args.steps, args.warmup, args.threads, args.backend, &python)
}

/// [`trainers_bench`] with its settings given.
pub(super) fn trainers_bench_with(
    steps: usize,
    warmup: usize,
    threads: usize,
    backend: BackendKind,
    python: &std::path::Path,
) -> anyhow::Result<()> {
    let threads = threads.max(1);
    super::set_threads(threads);
    let device = DeviceSpec::parse(backend, None)?;
    let torch_device = device.torch_name();
    // Each stage at the cpu preset, the sizes table1 and the ablations train.
    let trainers = [
        Trainer::LatentAe(AeKind::Vae, preset_config(VAE, Scale::Cpu)?),
        Trainer::LatentAe(AeKind::Vq, preset_config(VQ, Scale::Cpu)?),
        Trainer::Classifier(preset_config(CLASSIFIER, Scale::Cpu)?),
    ];
    let mut table = tabled::builder::Builder::default();
    table.push_record([
        "trainer",
        "sizes",
        "flowprior steps/s",
        "PyTorch steps/s",
        "ratio",
    ]);
    let mut notes = Vec::new();
    for trainer in trainers {
        let (name, sizes) = (trainer.name(), trainer.sizes());
        let mut ref_args = trainer.reference_args();
        ref_args.extend(
            [steps, warmup, threads]
                .map(|n| n.to_string())
                .into_iter()
                .chain([torch_device.to_string()]),
        );
        let bench = TrainerBench {
            trainer,
            steps,
            warmup,
        };
        let ours = run_job(backend, device, bench)?;
        let theirs = run_reference(python, "scripts/bench_trainers.py", &ref_args, threads)
            .map_err(|e| format!("{name}: PyTorch reference not run ({e})"));
        let [a, t, r] = compare(
            ("trainers", &format!("{name} ({sizes})")),
            ours,
            theirs,
            &mut notes,
        );
        table.push_record([name.to_string(), sizes, a, t, r]);
    }
    println!(
        "image trainers' training step (the stages' own step: loss, backward, Adam) at the cpu \
         preset's sizes on random images, {} timed steps after {} untimed, {} backend, {threads} \
         thread(s), flowprior {}; PyTorch eager on the {torch_device} beside it",
        steps,
        warmup,
        backend.name(),
        profile_name()
    );
    println!("{}", table.build().with(tabled::settings::Style::sharp()));
    for n in notes {
        println!("{n}");
    }
    Ok(())
}
