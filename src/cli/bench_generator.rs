//! `flowprior bench generator`: the generators' training step (the `generator` stage's loop) and
//! guided sampler beside the same in PyTorch eager (scripts/bench_generator.py), at the sizes the
//! sweeps train.

use super::bench::{compare, preset_config, profile_name, run_reference_rate};
use crate::backend::{BackendKind, DeviceSpec, run_job};
use crate::bench::generator::{CLASSES, GeneratorBench, SamplerBench};
use crate::models::mar::MaskRatio;
use crate::stage::generator::{GeneratorConfig, GeneratorKind, sample_chunk};
use crate::sweep::Scale;

/// The sweeps' latent tokens: 16 tokens x 16 channels (table1 and the ablations).
const TOKENS: usize = 16;
const CHANNELS: usize = 16;

/// What a row measures.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    /// Training steps per second.
    Train,
    /// Guided samples per second, one chunk.
    Sample,
}

/// PyTorch's rate of the same work (scripts/bench_generator.py) on `device` (`cpu` or `cuda`), or
/// why there is none. `batch`: the training batch, or the samples of the chunk; `steps`: timed
/// training steps, or Euler steps.
fn reference(
    python: &std::path::Path,
    g: &GeneratorConfig,
    mode: Mode,
    (batch, steps, warmup, threads): (usize, usize, usize, usize),
    device: &str,
) -> Result<f64, String> {
    let mode_name = match mode {
        Mode::Train => "train",
        Mode::Sample => "sample",
    };
    let mut args: Vec<String> = vec![g.generator.name().to_string(), mode_name.to_string()];
    args.extend(
        [TOKENS, CHANNELS, g.width, g.depth, g.heads, batch]
            .iter()
            .map(ToString::to_string),
    );
    args.push(g.ema_decay.to_string());
    args.extend([steps, warmup, threads].iter().map(ToString::to_string));
    args.push(device.to_string());
    args.push(g.cfg_scale.to_string());
    if g.generator == GeneratorKind::Mar {
        let shape = g.mar_shape(TOKENS, CHANNELS, CLASSES);
        let MaskRatio::Mar { min } = g.mask_ratio() else {
            return Err("the replica draws MAR's mask ratios only, not the cosine schedule".into());
        };
        args.extend(
            [
                shape.buffer,
                shape.head_width,
                shape.head_depth,
                g.flow_mul(),
            ]
            .iter()
            .map(ToString::to_string),
        );
        args.push(min.to_string());
        args.push(g.iters(TOKENS).to_string());
    }
    run_reference_rate(
        python,
        "scripts/bench_generator.py",
        &args,
        threads,
        "per_s",
    )
}

pub fn generator_bench(
    steps: usize,
    warmup: usize,
    sample_steps: usize,
    threads: usize,
    backend: BackendKind,
    python: &std::path::Path,
) -> anyhow::Result<()> {
    super::set_threads(threads.max(1));
    let preset: GeneratorConfig = preset_config(crate::stage::generator::GENERATOR, Scale::Small)?;
    let device = DeviceSpec::parse(backend, None)?;
    let torch_device = device.torch_name();
    let chunk = sample_chunk(backend);
    let mut train = tabled::builder::Builder::default();
    train.push_record(["generator", "flowprior steps/s", "PyTorch steps/s", "ratio"]);
    let mut sample = tabled::builder::Builder::default();
    sample.push_record([
        "generator",
        "flowprior samples/s",
        "PyTorch samples/s",
        "ratio",
    ]);
    let mut failures = Vec::new();
    for kind in [GeneratorKind::Dit, GeneratorKind::Mar] {
        let config = GeneratorConfig {
            generator: kind,
            ..preset.clone()
        };
        let label = format!(
            "{}: {TOKENS} x {CHANNELS} tokens, width {}, depth {}",
            kind.name(),
            config.width,
            config.depth
        );
        let ours = run_job(
            backend,
            device,
            GeneratorBench {
                config: config.clone(),
                tokens: TOKENS,
                channels: CHANNELS,
                steps,
                warmup,
            },
        )?;
        let sizes = (config.batch, steps, warmup, threads);
        let theirs = reference(python, &config, Mode::Train, sizes, torch_device);
        let row = format!("{} training, batch {}", kind.name(), config.batch);
        let [a, b, c] = compare(("generator", &row), ours, theirs, &mut failures);
        train.push_record([format!("{label}, batch {}", config.batch), a, b, c]);

        let ours = run_job(
            backend,
            device,
            SamplerBench {
                config: config.clone(),
                tokens: TOKENS,
                channels: CHANNELS,
                samples: chunk,
                steps: sample_steps,
            },
        )?;
        let sizes = (chunk, sample_steps, 1, threads);
        let theirs = reference(python, &config, Mode::Sample, sizes, torch_device);
        let row = format!("{} guided sampling, {chunk} samples", kind.name());
        let [a, b, c] = compare(("generator", &row), ours, theirs, &mut failures);
        sample.push_record([format!("{label}, {chunk} samples"), a, b, c]);
    }
    println!(
        "generator training step (batch draw, label drop, loss, backward, Adam, EMA update), {} backend, \
         {threads} thread(s), {steps} timed steps after {warmup} warm-up, flowprior {}; PyTorch eager on \
         the {torch_device} beside it",
        backend.name(),
        profile_name(),
    );
    println!("{}", train.build().with(tabled::settings::Style::sharp()));
    println!(
        "guided sampling (guidance scale {}), one chunk of {chunk} samples (the stage's chunk on this \
         backend) after an untimed one, {sample_steps} Euler steps (per token for MAR, one token \
         revealed per step)",
        preset.cfg_scale
    );
    println!("{}", sample.build().with(tabled::settings::Style::sharp()));
    failures.dedup();
    for f in failures {
        println!("PyTorch reference not run ({f})");
    }
    Ok(())
}
