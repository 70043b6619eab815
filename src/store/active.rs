//! [`ActiveRun`]: what a job holds while it runs. It buffers metric points and writes them in batches,
//! keeps the run's heartbeat fresh from a background thread, and marks the run failed if it is dropped
//! without being finished (an error or a panic), so nothing already logged is lost.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::metrics::params_from_config;
use super::runs::RunEnv;
use super::{MetricPoint, Result, RunInfo, RunSpec, Store};
use crate::util::now_unix;

/// How often the background thread refreshes the heartbeat.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
/// A `running` run whose heartbeat is older than this is considered dead by default.
pub const DEFAULT_STALE_AFTER_S: f64 = 60.0;

/// A claimed, running run.
pub struct ActiveRun<'a> {
    store: &'a Store,
    info: RunInfo,
    buffer: Vec<MetricPoint>,
    flush_points: usize,
    flush_interval: Duration,
    last_flush: Instant,
    heartbeat: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
    done: bool,
}

impl<'a> ActiveRun<'a> {
    /// Gets or creates the run for `spec`, claims it (see [`Store::start_run`]) and records its
    /// configuration as parameters. Returns `None` when the run is finished or another live process
    /// holds it.
    pub fn begin(
        store: &'a Store,
        spec: &RunSpec,
        backend: &str,
        retry_failed: bool,
    ) -> Result<Option<ActiveRun<'a>>> {
        Self::begin_with(store, spec, backend, retry_failed, DEFAULT_STALE_AFTER_S)
    }

    /// [`ActiveRun::begin`] with a chosen staleness threshold for running runs.
    pub fn begin_with(
        store: &'a Store,
        spec: &RunSpec,
        backend: &str,
        retry_failed: bool,
        stale_after_s: f64,
    ) -> Result<Option<ActiveRun<'a>>> {
        let run = store.get_or_create_run(spec)?;
        let env = RunEnv::current(backend);
        if !store.start_run(run.id, &env, retry_failed, stale_after_s)? {
            return Ok(None);
        }
        store.set_params(run.id, &params_from_config(&spec.config))?;
        let info = store.run(run.id)?;
        let heartbeat = spawn_heartbeat(store, info.id);
        Ok(Some(ActiveRun {
            store,
            info,
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

    /// Buffers one metric point; the buffer is written when it is large or old enough.
    pub fn log(&mut self, key: &str, step: i64, value: f64) -> Result<()> {
        self.buffer.push(MetricPoint::new(key, step, value));
        if self.buffer.len() >= self.flush_points
            || self.last_flush.elapsed() >= self.flush_interval
        {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the buffered points now.
    pub fn flush(&mut self) -> Result<()> {
        if !self.buffer.is_empty() {
            self.store.log_metrics(self.info.id, &self.buffer)?;
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
        self.store.finish_run(self.info.id)
    }

    /// Flushes what was logged and marks the run failed with `error`.
    pub fn fail(mut self, error: &str) -> Result<()> {
        self.stop_heartbeat();
        let flushed = self.flush();
        self.done = true;
        self.store.fail_run(self.info.id, error)?;
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
        let _ = self.store.fail_run(self.info.id, why);
    }
}

fn spawn_heartbeat(store: &Store, id: i64) -> (mpsc::Sender<()>, JoinHandle<()>) {
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
                        "UPDATE runs SET heartbeat_at = ? WHERE id = ? AND status = 'running'",
                    )
                    .bind(now_unix())
                    .bind(id)
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
