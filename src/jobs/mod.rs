//! What every job shares. A job is the work of one stage run (its module lives in `src/stage/`): it
//! claims its run through [`run_or_reuse`] (or finds it finished, or held by another worker), records
//! itself through an `ActiveRun`, and reads its inputs' artifacts from the store.

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::store::{
    ActiveRun, DEFAULT_STALE_AFTER_S, DivergenceGuard, RunInfo, RunSpec, Store, SummaryRow,
};

/// The key under which a stage's configuration records its inputs' configuration hashes
/// (`{"inputs": {"<stage>": "<hash>"}}`), so that a run's identity covers everything upstream.
pub const INPUTS_KEY: &str = "inputs";

/// Identity key (value `true`) of the runs whose results changed when Burn's `repeat_dim` was replaced
/// by [`crate::tensors::tile_rows`] (2026-11-23; Burn 0.21's `repeat_dim` sent each repeated row
/// another row's gradient): aligned tokenizers and toy alignments with `flow_mul` > 1, and `mar`
/// generators with `flow_mul` > 1. Runs of those settings recorded before carry no such key, so they are
/// not taken for finished results of the same settings now; every other identity is unchanged.
pub const TILED_GRADIENT_KEY: &str = "tiled_gradient";

/// Identity key (value `true`) of the generator runs whose EMA copy starts from the generator's own
/// initial weights (2026-12-06, [`crate::train::ema::ema_copy`]): before, the copy was a clone of the
/// fresh generator, whose lazily initialised layers (attention, embeddings) drew other random values.
/// Generator runs recorded before carry no such key, so they are not taken for results of the same
/// settings now.
pub const EMA_START_KEY: &str = "ema_from_model";

/// The [`EMA_START_KEY`] entry of an identity when `affected`.
pub fn ema_start_entry(affected: bool) -> Option<(&'static str, serde_json::Value)> {
    affected.then_some((EMA_START_KEY, serde_json::Value::Bool(true)))
}

/// The [`TILED_GRADIENT_KEY`] entry of an identity when `affected`.
pub fn tiled_gradient_entry(affected: bool) -> Option<(&'static str, serde_json::Value)> {
    affected.then_some((TILED_GRADIENT_KEY, serde_json::Value::Bool(true)))
}

/// A configuration as a run's identity: its settings, `inputs` (the hashes of the upstream runs it
/// reads, by stage) under [`INPUTS_KEY`], and `extra` keys (e.g. the content identity of files it
/// reads).
pub fn identity<C: serde::Serialize>(
    cfg: &C,
    inputs: &[(&str, &str)],
    extra: impl IntoIterator<Item = (&'static str, serde_json::Value)>,
) -> serde_json::Value {
    let mut config = crate::util::config_json(cfg);
    if let Some(obj) = config.as_object_mut() {
        if !inputs.is_empty() {
            let map: serde_json::Map<String, serde_json::Value> = inputs
                .iter()
                .map(|(k, v)| ((*k).to_string(), serde_json::Value::from(*v)))
                .collect();
            obj.insert(INPUTS_KEY.into(), serde_json::Value::Object(map));
        }
        for (k, v) in extra {
            obj.insert(k.into(), v);
        }
    }
    config
}

/// The train and test splits of an image dataset for a model that reads 28x28 images: the first
/// `train_size` training images (0 = all) and the first `test_size` test images. `what` names the model
/// in the error when the dataset's images have another size.
pub fn load_28x28(
    dataset: crate::data::DatasetId,
    data_dir: &std::path::Path,
    (train_size, test_size): (usize, usize),
    what: &str,
) -> Result<(crate::data::ImageDataset, crate::data::ImageDataset)> {
    use crate::data::Split;
    let mut train = dataset.load(data_dir, Split::Train)?;
    if train_size > 0 {
        train = train.take(train_size);
    }
    let test = dataset.load(data_dir, Split::Test)?.take(test_size);
    if train.dim() != 784 {
        return Err(Error::input(
            data_dir,
            format!(
                "{what} reads 28x28 images, {} has {}x{}",
                train.name, train.height, train.width
            ),
        ));
    }
    Ok((train, test))
}

/// A finished upstream run a job reads: its id, configuration hash and configuration.
pub struct Upstream<C> {
    pub run: i64,
    pub hash: String,
    pub config: C,
}

/// Which runs a job may claim: failed ones when retrying (`retry_failed`: always; otherwise while
/// they have had fewer than `max_attempts` attempts, 1 by default: never); running ones whose
/// heartbeat is older than `stale_after_s` (their process died). `guard` is the divergence guard the
/// claimed run logs under.
#[derive(Debug, Clone, Copy)]
pub struct Claim {
    pub retry_failed: bool,
    pub max_attempts: i64,
    pub stale_after_s: f64,
    pub guard: DivergenceGuard,
}

impl Claim {
    pub fn new(retry_failed: bool) -> Claim {
        Claim {
            retry_failed,
            max_attempts: 1,
            stale_after_s: DEFAULT_STALE_AFTER_S,
            guard: DivergenceGuard::default(),
        }
    }

    /// What the claim does with a failed run.
    pub fn retry(&self) -> crate::store::Retry {
        if self.retry_failed {
            crate::store::Retry::Always
        } else {
            crate::store::Retry::UpTo(self.max_attempts)
        }
    }

    /// The same claim with another divergence guard.
    pub fn with_guard(self, guard: DivergenceGuard) -> Claim {
        Claim { guard, ..self }
    }
}

/// The run's own artifact folder (`<db>.artifacts/run-<id>`), created.
pub fn run_dir(store: &Store, run: i64) -> Result<PathBuf> {
    let dir = store.artifacts_dir().join(format!("run-{run}"));
    std::fs::create_dir_all(&dir).map_err(Error::write(&dir))?;
    Ok(dir)
}

/// Saves a module's weights to `stem` + `.mpk` (named MessagePack at full precision, what every
/// loader here reads) and returns that file's path.
pub fn save_weights<B, M>(model: &M, stem: &std::path::Path) -> Result<PathBuf>
where
    B: burn::tensor::backend::Backend,
    M: burn::module::Module<B>,
{
    use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};
    model
        .clone()
        .save_file(
            stem.to_path_buf(),
            &NamedMpkFileRecorder::<FullPrecisionSettings>::new(),
        )
        .map_err(Error::write(stem))?;
    Ok(stem.with_extension("mpk"))
}

/// The file an upstream run recorded as its `kind` artifact, checked against the recorded SHA-256
/// (a file changed or lost since is an error, never silently used).
pub fn input_artifact(store: &Store, run: i64, kind: &str) -> Result<PathBuf> {
    let Some(crate::store::ArtifactRef { path, sha256: sha }) = store.artifact(run, kind)? else {
        return Err(Error::Input {
            path: PathBuf::from(store.location().to_string()),
            message: format!("run {run} recorded no `{kind}` artifact"),
        });
    };
    let path = store.local_artifact(&path, &sha)?;
    let (now, _) = crate::util::sha256_file(&path)
        .map_err(|e| Error::input(&path, format!("`{kind}` artifact of run {run}: {e}")))?;
    if now != sha {
        return Err(Error::Input {
            path,
            message: format!(
                "`{kind}` artifact of run {run} changed since it was recorded (sha256 {now}, recorded {sha})"
            ),
        });
    }
    Ok(path)
}

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
    claim: Claim,
    body: impl FnOnce(&mut ActiveRun<'_>) -> Result<T>,
) -> Result<JobRun<T>> {
    let Some(mut run) =
        ActiveRun::begin_with(store, spec, backend, claim.retry(), claim.stale_after_s)?
    else {
        let run = store.get_or_create_run(spec)?;
        let summary = store.summary(run.id)?;
        return Ok(JobRun::Reused {
            run: Box::new(run),
            summary,
        });
    };
    run.set_guard(claim.guard);
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

pub use crate::progress::{hide_progress, progress, progress_bar};
