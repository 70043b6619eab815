//! Jobs: units of work that run on a backend and record themselves in the run store.

pub mod bench_prior;
pub mod classifier;
pub mod toy;

/// A progress bar for `n` steps that draws only on a terminal (and never in tests or CI logs).
pub fn progress_bar(n: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(n);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg:>16} [{bar:30}] {pos}/{len} {per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}
