//! `flowprior bench prior`: the flow-prior trainer's step on every compiled backend beside the same
//! model in PyTorch eager (scripts/bench_prior.py), at the paper's size and a small one.

use super::bench::{profile_name, run_reference, venv_python};
use super::bench_all::record;
use crate::bench::prior::PriorBench;

/// The small size's step costs about a sixteenth of the paper size's: it runs this many times the
/// timed steps, so both are timed over comparable spans (10 steps of it took about 0.3 s, and single
/// runs moved by a third).
const SMALL_STEPS: usize = 10;

fn torch_reference(
    python: &std::path::Path,
    b: &PriorBench,
    threads: usize,
    device: &str,
) -> Result<f64, String> {
    let mut args: Vec<String> = [b.dim, b.width, b.depth, b.batch, b.steps, b.warmup, threads]
        .map(|v| v.to_string())
        .into();
    args.push(device.into());
    run_reference(python, "scripts/bench_prior.py", &args, threads)
}

pub(super) fn prior_bench(
    size: &str,
    steps: usize,
    warmup: usize,
    threads: usize,
    torch_python: Option<&std::path::Path>,
    backends: &[crate::backend::BackendKind],
) -> anyhow::Result<()> {
    use crate::backend::{BackendKind, DeviceSpec, run_job};
    let sizes: Vec<(&str, PriorBench)> = {
        let paper = PriorBench {
            dim: 32,
            width: 1024,
            depth: 6,
            batch: 256,
            steps,
            warmup,
        };
        let small = PriorBench {
            dim: 32,
            width: 256,
            depth: 4,
            batch: 256,
            steps: steps * SMALL_STEPS,
            warmup,
        };
        match size {
            "paper" => vec![("paper", paper)],
            "small" => vec![("small", small)],
            "both" => vec![("small", small), ("paper", paper)],
            other => anyhow::bail!("--size {other:?}: expected paper, small or both"),
        }
    };
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build_global();
    // libtorch keeps its own intra-op pool (all cores by default), which rayon's setting does not reach.
    #[cfg(feature = "tch")]
    tch::set_num_threads(i32::try_from(threads.max(1)).unwrap_or(i32::MAX));
    let backends: Vec<BackendKind> = if backends.is_empty() {
        BackendKind::compiled()
    } else {
        backends.to_vec()
    };
    let python = venv_python(torch_python, ".venv-torch");
    let profile = profile_name();
    let mut b = tabled::builder::Builder::default();
    b.push_record([
        "size",
        "backend",
        "steps/s",
        "PyTorch device",
        "PyTorch steps/s",
        "ratio",
    ]);
    for (name, bench) in &sizes {
        // One PyTorch measurement per device kind, on the device the backend runs on.
        let mut references: std::collections::BTreeMap<&str, Result<f64, String>> =
            Default::default();
        for backend in &backends {
            let device = DeviceSpec::parse(*backend, None)?;
            let torch_device = device.torch_name();
            let reference = references.entry(torch_device).or_insert_with(|| {
                let r = torch_reference(&python, bench, threads, torch_device);
                if let Err(e) = &r {
                    eprintln!("{e}");
                }
                r
            });
            let ref_text = match &reference {
                Ok(v) => format!("{v:.2}"),
                Err(_) => "unavailable".into(),
            };
            let label = format!(
                "{name} (d {}, w {}, {} blocks, batch {})",
                bench.dim, bench.width, bench.depth, bench.batch
            );
            match run_job(*backend, device, *bench) {
                Ok(v) => {
                    record(
                        "prior",
                        &format!("{label} on {}", backend.name()),
                        reference.as_ref().ok().map(|r| v / r),
                    );
                    let ratio = reference
                        .as_ref()
                        .map(|r| format!("{:.2}x", v / r))
                        .unwrap_or_else(|_| "-".into());
                    b.push_record([
                        label,
                        backend.name().into(),
                        format!("{v:.2}"),
                        torch_device.into(),
                        ref_text,
                        ratio,
                    ]);
                }
                Err(e) => b.push_record([
                    label,
                    backend.name().into(),
                    format!("error: {e}"),
                    torch_device.into(),
                    ref_text,
                    "-".into(),
                ]),
            }
        }
    }
    println!(
        "flow-prior training step (flow-matching loss + Adam), {threads} thread(s), {steps} timed steps at the paper size and {} at the small one after {warmup} warm-up, flowprior {profile}",
        steps * SMALL_STEPS
    );
    println!("{}", b.build().with(tabled::settings::Style::sharp()));
    Ok(())
}
