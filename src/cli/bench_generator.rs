//! `flowprior bench generator`: the generators' training step (the `generator` stage's loop) beside
//! the same step in PyTorch eager (scripts/bench_generator.py), at the sizes the sweeps train.

use super::bench::{profile_name, run_reference};
use crate::backend::{BackendKind, DeviceSpec, run_job};
use crate::bench::generator::GeneratorBench;
use crate::stage::generator::{GeneratorConfig, GeneratorKind};
use crate::sweep::{Scale, StageKind};

/// The sweeps' latent tokens: 16 tokens x 16 channels (table1 and the ablations).
const TOKENS: usize = 16;
const CHANNELS: usize = 16;

/// PyTorch's steps/s of the same step, or why there is none.
fn reference(
    python: &std::path::Path,
    g: &GeneratorConfig,
    (steps, warmup, threads): (usize, usize, usize),
) -> Result<f64, String> {
    if g.generator != GeneratorKind::Dit {
        return Err(format!(
            "scripts/bench_generator.py replicates `dit` only, not `{}`",
            g.generator.name()
        ));
    }
    let args: Vec<String> = [TOKENS, CHANNELS, g.width, g.depth, g.heads, g.batch]
        .iter()
        .map(ToString::to_string)
        .chain([g.ema_decay.to_string()])
        .chain([steps, warmup, threads].iter().map(ToString::to_string))
        .collect();
    run_reference(python, "scripts/bench_generator.py", &args, threads)
}

pub fn generator_bench(
    steps: usize,
    warmup: usize,
    threads: usize,
    backend: BackendKind,
    python: &std::path::Path,
) -> anyhow::Result<()> {
    super::set_threads(threads.max(1));
    let preset: GeneratorConfig = serde_json::from_value(
        StageKind::named(crate::stage::generator::GENERATOR).defaults(Scale::Small),
    )?;
    let device = DeviceSpec::parse(backend, None)?;
    let mut table = tabled::builder::Builder::default();
    table.push_record(["generator", "flowprior steps/s", "PyTorch steps/s", "ratio"]);
    let mut failures = Vec::new();
    for kind in [GeneratorKind::Dit, GeneratorKind::Mar] {
        let config = GeneratorConfig {
            generator: kind,
            ..preset.clone()
        };
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
        let theirs = reference(python, &config, (steps, warmup, threads));
        let (t, r) = match &theirs {
            Ok(t) => (format!("{t:.2}"), format!("{:.2}x", ours / t)),
            Err(e) => {
                failures.push(e.clone());
                ("-".into(), "-".into())
            }
        };
        table.push_record([
            format!(
                "{}: {TOKENS} x {CHANNELS} tokens, width {}, depth {}, batch {}",
                kind.name(),
                config.width,
                config.depth,
                config.batch
            ),
            format!("{ours:.2}"),
            t,
            r,
        ]);
    }
    println!(
        "generator training step (batch draw, label drop, loss, backward, Adam, EMA update), {} backend, \
         {threads} thread(s), {steps} timed steps after {warmup} warm-up, flowprior {}; PyTorch eager on \
         the CPU beside it",
        backend.name(),
        profile_name()
    );
    println!("{}", table.build().with(tabled::settings::Style::sharp()));
    failures.dedup();
    for f in failures {
        println!("PyTorch reference not run ({f})");
    }
    Ok(())
}
