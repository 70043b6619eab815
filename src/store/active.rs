//! [`ActiveRun`]: what a job holds while it runs. It buffers metric points and writes them in batches,
//! keeps the run's heartbeat fresh from a background thread, and marks the run failed if it is dropped
//! without being finished (an error or a panic), so nothing already logged is lost.
//!
//! Every point is checked as it is logged: a value that is not finite (NaN, inf) fails the run with its
//! key and step, and so does a training loss that the [`DivergenceGuard`] finds far above its early
//! level. Writes are fenced by the attempt number: a process that was taken for dead and whose run was
//! retaken cannot log into, finish or fail the new attempt.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::metrics::params_from_config;
use super::runs::{Retry, RunEnv};
use super::{MetricPoint, Result, RunInfo, RunSpec, RunStatus, Store, StoreError};
use crate::util::now_unix;

/// How often the background thread refreshes the heartbeat.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
/// A `running` run whose heartbeat is older than this is considered dead by default.
pub const DEFAULT_STALE_AFTER_S: f64 = 60.0;

/// Fails a run whose training loss leaves the scale it started at: a value logged under a key whose
/// last path segment is `loss` (`prior/loss`, `gen/loss`, ...) that exceeds `factor` times the median
/// of that key's first `warmup` finite values (the median of those logged so far, while fewer) fails
/// the run. Keys whose early median is not positive are not guarded. `factor` 0 turns the guard off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DivergenceGuard {
    pub factor: f64,
    pub warmup: usize,
}

/// The guard's default factor: a loss 1000 times its early median.
pub const DEFAULT_DIVERGENCE_FACTOR: f64 = 1000.0;

impl Default for DivergenceGuard {
    fn default() -> Self {
        DivergenceGuard {
            factor: DEFAULT_DIVERGENCE_FACTOR,
            warmup: 10,
        }
    }
}

impl DivergenceGuard {
    /// No guard (non-finite values still fail the run).
    pub fn off() -> Self {
        DivergenceGuard {
            factor: 0.0,
            warmup: 10,
        }
    }

    fn guards(&self, key: &str) -> bool {
        self.factor > 0.0 && key.rsplit('/').next() == Some("loss")
    }
}

/// The early values of one guarded key.
#[derive(Default)]
struct Early {
    values: Vec<f64>,
}

impl Early {
    fn median(&self) -> Option<f64> {
        if self.values.is_empty() {
            return None;
        }
        let mut v = self.values.clone();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        Some(if n % 2 == 1 {
            v[n / 2]
        } else {
            0.5 * (v[n / 2 - 1] + v[n / 2])
        })
    }
}

/// A claimed, running run.
pub struct ActiveRun<'a> {
    store: &'a Store,
    info: RunInfo,
    attempt: i64,
    guard: DivergenceGuard,
    early: std::collections::HashMap<String, Early>,
    buffer: Vec<MetricPoint>,
    flush_points: usize,
    flush_interval: Duration,
    last_flush: Instant,
    heartbeat: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
    done: bool,
}

impl<'a> ActiveRun<'a> {
    /// Gets or creates the run for `spec`, claims it (see [`Store::claim_run`]; a run whose process
    /// on this host has ended is retaken at once) and records its configuration as parameters.
    /// Returns `None` when the run is finished or another live process holds it.
    pub fn begin(
        store: &'a Store,
        spec: &RunSpec,
        backend: &str,
        retry: impl Into<Retry>,
    ) -> Result<Option<ActiveRun<'a>>> {
        Self::begin_with(store, spec, backend, retry, DEFAULT_STALE_AFTER_S)
    }

    /// [`ActiveRun::begin`] with a chosen staleness threshold for running runs.
    pub fn begin_with(
        store: &'a Store,
        spec: &RunSpec,
        backend: &str,
        retry: impl Into<Retry>,
        stale_after_s: f64,
    ) -> Result<Option<ActiveRun<'a>>> {
        let run = store.get_or_create_run(spec)?;
        let env = RunEnv::current(backend);
        // A run whose process on this host has ended is retaken at once, as a sweep does.
        if run.status == RunStatus::Running && run.liveness(stale_after_s, &env.host).1 {
            tracing::warn!(
                run = run.id,
                pid = run.pid,
                "process of a running run is gone; retaking it"
            );
            store.requeue_dead(&run)?;
        }
        let Some(attempt) = store.claim_run(run.id, &env, retry, stale_after_s)? else {
            return Ok(None);
        };
        store.set_params(run.id, &params_from_config(&spec.config))?;
        let info = store.run(run.id)?;
        let heartbeat = spawn_heartbeat(store, info.id, attempt);
        Ok(Some(ActiveRun {
            store,
            info,
            attempt,
            guard: DivergenceGuard::default(),
            early: std::collections::HashMap::new(),
            buffer: Vec::new(),
            flush_points: 512,
            flush_interval: Duration::from_secs(2),
            last_flush: Instant::now(),
            heartbeat: Some(heartbeat),
            done: false,
        }))
    }

    pub fn id(&self) -> i64 {
        self.info.id
    }

    pub fn info(&self) -> &RunInfo {
        &self.info
    }

    pub fn store(&self) -> &Store {
        self.store
    }

    /// This run's attempt number (1 for the first).
    pub fn attempt(&self) -> i64 {
        self.attempt
    }

    /// Sets the divergence guard (the default is [`DivergenceGuard::default`]).
    pub fn set_guard(&mut self, guard: DivergenceGuard) {
        self.guard = guard;
    }

    /// Buffers one metric point; the buffer is written when it is large or old enough. A value that
    /// is not finite, or a guarded loss that diverged, is recorded and then returned as an error
    /// ([`StoreError::NonFinite`], [`StoreError::Diverged`]), which fails the run.
    pub fn log(&mut self, key: &str, step: i64, value: f64) -> Result<()> {
        self.buffer.push(MetricPoint::new(key, step, value));
        let verdict = self.check(key, step, value);
        if verdict.is_err()
            || self.buffer.len() >= self.flush_points
            || self.last_flush.elapsed() >= self.flush_interval
        {
            self.flush()?;
        }
        verdict
    }

    /// Writes a batch of points at once (checked like [`ActiveRun::log`]).
    pub fn log_points(&mut self, points: &[MetricPoint]) -> Result<()> {
        self.buffer.extend_from_slice(points);
        let verdict = points
            .iter()
            .try_for_each(|p| self.check(&p.key, p.step, p.value));
        self.flush()?;
        verdict
    }

    fn check(&mut self, key: &str, step: i64, value: f64) -> Result<()> {
        let run = self.info.id;
        if !value.is_finite() {
            return Err(StoreError::NonFinite {
                run,
                key: key.to_string(),
                step,
                value,
            });
        }
        if !self.guard.guards(key) {
            return Ok(());
        }
        let early = self.early.entry(key.to_string()).or_default();
        if let Some(median) = early.median().filter(|m| *m > 0.0)
            && value > self.guard.factor * median
        {
            return Err(StoreError::Diverged {
                run,
                key: key.to_string(),
                step,
                value,
                median,
                factor: self.guard.factor,
            });
        }
        if early.values.len() < self.guard.warmup {
            early.values.push(value);
        }
        Ok(())
    }

    /// Writes the buffered points now.
    pub fn flush(&mut self) -> Result<()> {
        if !self.buffer.is_empty() {
            self.store
                .log_attempt_metrics(self.info.id, self.attempt, &self.buffer)?;
            self.buffer.clear();
        }
        self.last_flush = Instant::now();
        Ok(())
    }

    /// Records a file the run produced.
    pub fn artifact(&self, kind: &str, path: &std::path::Path) -> Result<String> {
        self.store.add_artifact(self.info.id, kind, path)
    }

    /// Flushes and marks the run finished.
    pub fn finish(mut self) -> Result<()> {
        self.stop_heartbeat();
        self.flush()?;
        self.done = true;
        self.store
            .end_attempt(self.info.id, self.attempt, RunStatus::Finished, None)
    }

    /// Flushes what was logged and marks the run failed with `error`.
    pub fn fail(mut self, error: &str) -> Result<()> {
        self.stop_heartbeat();
        let flushed = self.flush();
        self.done = true;
        self.store
            .end_attempt(self.info.id, self.attempt, RunStatus::Failed, Some(error))?;
        flushed
    }

    fn stop_heartbeat(&mut self) {
        if let Some((tx, handle)) = self.heartbeat.take() {
            drop(tx);
            let _ = handle.join();
        }
    }
}

impl Drop for ActiveRun<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.stop_heartbeat();
        let _ = self.flush();
        let why = if std::thread::panicking() {
            "the job panicked"
        } else {
            "the job ended without finishing the run"
        };
        let _ = self
            .store
            .end_attempt(self.info.id, self.attempt, RunStatus::Failed, Some(why));
    }
}

fn spawn_heartbeat(store: &Store, id: i64, attempt: i64) -> (mpsc::Sender<()>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel::<()>();
    let pool = store.pool().clone();
    let handle = store.rt.handle().clone();
    let thread = std::thread::Builder::new()
        .name(format!("heartbeat-{id}"))
        .spawn(move || {
            // Ends when the sender is dropped (finish, fail or drop of the ActiveRun).
            while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(HEARTBEAT_EVERY) {
                let res = handle.block_on(
                    sqlx::query(
                        "UPDATE runs SET heartbeat_at = $1 WHERE id = $2 AND status = 'running' \
                         AND attempts = $3",
                    )
                    .bind(now_unix())
                    .bind(id)
                    .bind(attempt)
                    .execute(&pool),
                );
                if let Err(e) = res {
                    tracing::warn!(run = id, error = %e, "heartbeat failed");
                }
            }
        })
        .expect("spawning a thread only fails when the OS is out of resources");
    (tx, thread)
}
