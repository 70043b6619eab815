//! `flowprior bench all`: every benchmark that has a reference, one after the other at their default
//! sizes and one thread count, then ONE table of every ratio they measured (flowprior's rate over the
//! reference's, measured in the same run: above 1.00x flowprior is faster). Each benchmark also prints
//! its own table as it goes. A benchmark whose reference is missing (no PyTorch, no faiss) shows `-`.

use std::sync::Mutex;

use super::Cli;
use crate::backend::BackendKind;

/// (benchmark, step, ratio) rows recorded by the benchmarks of this process.
static ROWS: Mutex<Vec<(String, String, Option<f64>)>> = Mutex::new(Vec::new());

/// Records one row of the summary: `ratio` is flowprior's rate over the reference's (None: the
/// reference did not run).
pub(super) fn record(bench: &str, step: &str, ratio: Option<f64>) {
    if let Ok(mut rows) = ROWS.lock() {
        rows.push((bench.to_string(), step.to_string(), ratio));
    }
}

/// The summary table of every recorded row, with the range of the ratios.
pub(super) fn summary() -> String {
    let rows = ROWS.lock().map(|r| r.clone()).unwrap_or_default();
    let mut b = tabled::builder::Builder::default();
    b.push_record(["benchmark", "step", "ratio to reference"]);
    for (bench, step, ratio) in &rows {
        let r = ratio.map_or_else(|| "-".to_string(), |r| format!("{r:.2}x"));
        b.push_record([bench.clone(), step.clone(), r]);
    }
    let measured: Vec<f64> = rows.iter().filter_map(|r| r.2).collect();
    let range = match (
        measured.iter().copied().reduce(f64::min),
        measured.iter().copied().reduce(f64::max),
    ) {
        (Some(lo), Some(hi)) => {
            let below = measured.iter().filter(|&&r| r < 1.0).count();
            format!(
                "{} ratios from {lo:.2}x to {hi:.2}x; {below} below 1.00x",
                measured.len()
            )
        }
        _ => "no reference ran".to_string(),
    };
    format!(
        "{}\n{range}",
        b.build().with(tabled::settings::Style::sharp())
    )
}

/// One benchmark at its default sizes.
type Bench<'a> = Box<dyn Fn() -> anyhow::Result<()> + 'a>;

/// Runs every benchmark with a reference at `threads` threads on flex, then prints the summary.
pub(super) fn all(
    cli: &Cli,
    threads: usize,
    torch_python: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let python = super::bench::venv_python(torch_python, ".venv-torch");
    let flex = BackendKind::Flex;
    let runs: Vec<(&str, Bench<'_>)> = vec![
        (
            "prior",
            Box::new(|| {
                super::bench_prior::prior_bench("both", 10, 3, threads, torch_python, &[flex])
            }),
        ),
        (
            "knn",
            Box::new(|| super::bench::knn_bench(10_000, 100_000, 32, 5, threads, None)),
        ),
        (
            "kde",
            Box::new(|| super::bench::kde_bench(100_000, 0.1, 1000, 60, threads)),
        ),
        (
            "align",
            Box::new(|| super::bench_align::align_bench(3, 1, threads, &[], flex, &python)),
        ),
        (
            "generator",
            Box::new(|| super::bench_generator::generator_bench(10, 2, 10, threads, flex, &python)),
        ),
        (
            "features",
            Box::new(|| {
                super::bench_features::features_bench(64, threads, flex, &python, &cli.data_dir())
            }),
        ),
        (
            "trainers",
            Box::new(|| super::bench_trainers::trainers_bench_with(20, 3, threads, flex, &python)),
        ),
    ];
    for (name, run) in &runs {
        println!("\n== bench {name}");
        if let Err(e) = run() {
            println!("bench {name} failed: {e:#}");
            record(name, "(failed)", None);
        }
    }
    println!(
        "\n== every ratio to its reference, {threads} thread(s), {}, CPU: {}; {}",
        super::bench::profile_name(),
        crate::provenance::cpu().unwrap_or_else(|| "unknown".into()),
        crate::provenance::kernels()
    );
    println!("{}", summary());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_lists_each_row_and_the_range_of_ratios() {
        record("test-a", "step one", Some(0.5));
        record("test-a", "step two", None);
        record("test-b", "step three", Some(1.25));
        let s = summary();
        for want in ["step one", "0.50x", "step two", "step three", "1.25x"] {
            assert!(s.contains(want), "{want} missing from\n{s}");
        }
        // Other tests of this process may record rows too: the range covers at least these.
        assert!(s.contains("below 1.00x"), "{s}");
    }
}
