//! Jobs: units of work that run on a backend and record themselves in the run store.

pub mod bench_prior;
pub mod classifier;
pub mod toy;

use crate::error::Result;
use crate::store::{ActiveRun, RunInfo, RunSpec, Store, SummaryRow};

/// How a job's run went: trained now, or an earlier finished run with the same configuration reused.
pub enum JobRun<T> {
    Ran(T),
    Reused {
        run: Box<RunInfo>,
        summary: Vec<SummaryRow>,
    },
}

/// Claims the run of `spec` and runs `body` on it, marking the run finished on success and failed (with
/// the error, keeping what it logged) on error; when a finished run with the same configuration exists
/// (or a live process holds it), returns that run and its final metrics instead of running anything.
pub fn run_or_reuse<T>(
    store: &Store,
    spec: &RunSpec,
    backend: &str,
    retry_failed: bool,
    body: impl FnOnce(&mut ActiveRun<'_>) -> Result<T>,
) -> Result<JobRun<T>> {
    let Some(mut run) = ActiveRun::begin(store, spec, backend, retry_failed)? else {
        let run = store.get_or_create_run(spec)?;
        let summary = store.summary(run.id)?;
        return Ok(JobRun::Reused {
            run: Box::new(run),
            summary,
        });
    };
    match body(&mut run) {
        Ok(v) => {
            run.finish()?;
            Ok(JobRun::Ran(v))
        }
        Err(e) => {
            run.fail(&e.to_string())?;
            Err(e)
        }
    }
}

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
