//! `flowprior bench features`: the feature networks' forward pass (`bench::features`) beside the
//! same in PyTorch eager (scripts/bench_features.py), in images per second.

use std::path::Path;

use super::bench::{compare, profile_name, run_reference_rate};
use crate::backend::{BackendKind, DeviceSpec, run_job};
use crate::bench::features::FeatureBench;
use crate::stage::feature_nets::FeatureNet;

/// The fewest images of the classifier's timed pass: the test set's size, which rFID runs it over
/// (a pass over a few dozen images is under a millisecond, all noise).
const CLASSIFIER_IMAGES: usize = 10_000;

/// Timed passes of the classifier, the median reported on both sides: one pass takes tens of
/// milliseconds, and on a shared machine single passes moved by a factor of four.
const CLASSIFIER_REPEATS: usize = 7;

pub fn features_bench(
    images: usize,
    threads: usize,
    backend: BackendKind,
    python: &Path,
    data_dir: &Path,
) -> anyhow::Result<()> {
    super::set_threads(threads.max(1));
    let device = DeviceSpec::parse(backend, None)?;
    let torch_device = device.torch_name();
    let mut table = tabled::builder::Builder::default();
    table.push_record(["network", "flowprior images/s", "PyTorch images/s", "ratio"]);
    let mut notes = Vec::new();
    for net in [
        FeatureNet::Classifier,
        FeatureNet::Efficientnet,
        FeatureNet::Inception,
    ] {
        let (images, repeats) = match net {
            FeatureNet::Classifier => (images.max(CLASSIFIER_IMAGES), CLASSIFIER_REPEATS),
            _ => (images, 1),
        };
        let bench = FeatureBench {
            net,
            images,
            repeats,
            data_dir: data_dir.to_path_buf(),
        };
        let label = if bench.has_weights() {
            net.describe().to_string()
        } else {
            // Both sides then run untrained weights (PyTorch: the formula weights of
            // scripts/inception_reference.py).
            format!("{} (untrained weights: no checkpoint here)", net.describe())
        };
        let ours = run_job(backend, device, bench)?;
        let ours = match ours {
            Ok(v) => v,
            Err(e) => {
                notes.push(format!("{}: not measured ({e})", net.name()));
                continue;
            }
        };
        let weights = net
            .weights_file(data_dir)
            .map(|f| f.display().to_string())
            .unwrap_or_else(|| "-".into());
        let args = [
            net.name().to_string(),
            weights,
            images.to_string(),
            threads.to_string(),
            torch_device.to_string(),
            repeats.to_string(),
        ];
        let theirs =
            run_reference_rate(python, "scripts/bench_features.py", &args, threads, "per_s");
        let theirs = theirs.map_err(|e| format!("{}: PyTorch reference not run ({e})", net.name()));
        let [a, t, r] = compare(("features", &label), ours, theirs, &mut notes);
        table.push_record([label, a, t, r]);
    }
    println!(
        "feature networks' forward pass on {images} grey 28x28 images (the classifier: {}; resize to \
         the network's input included; chunks of 16, the classifier's of 500, its rate the median of \
         {CLASSIFIER_REPEATS} passes) after an untimed chunk per thread, {} backend, {threads} thread(s), flowprior {}; PyTorch eager on the \
         {torch_device} beside it",
        images.max(CLASSIFIER_IMAGES),
        backend.name(),
        profile_name()
    );
    println!("{}", table.build().with(tabled::settings::Style::sharp()));
    for n in notes {
        println!("{n}");
    }
    Ok(())
}
