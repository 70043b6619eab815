//! The `prior` stage: a flow prior trained on projected target features (paper Sec. 3-4).
//!
//! Reads the target feature set of a source (`qwen`: a token-embedding table scaled by 1/std, as the
//! public code does; `file`: any matrix from .npy / .safetensors / .parquet), holds out rows for
//! evaluation, fits the projection to d2 on the training rows, records the projection's distance
//! distortion and prior-selection diagnostics (TwoNN intrinsic dimension, spread of k-NN distances,
//! cluster separation), trains the flow prior by rectified flow matching (EMA weights are the prior),
//! and evaluates it against the held-out rows: samples (Euler) by a Frechet distance and k-NN
//! precision/recall in the latent space, with the same numbers for the held-out rows against the
//! training rows as the reference a perfect prior would reach. Artifacts: the prior, the projection,
//! and the projected training rows (the target set of downstream k-NN NLL proxies).

/// Its [`Stage`](crate::stage::Stage) implementation (the registry's entry).
pub mod stage;

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Distribution, Tensor};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::backend::{BackendJob, BackendKind};
use crate::config::{fractions, positive_counts, positive_rates};
use crate::error::{Error, Result};
use crate::features::{FeatureSet, read_features, write_npy};
use crate::flow::train::{OptimizerKind, PriorTrainConfig, StepLog, train_prior};
use crate::flow::{FlowNetConfig, Solver, sample};
use crate::jobs::{Claim, JobRun};
use crate::metrics::frechet::{Gaussian, frechet_distance};
use crate::metrics::intrinsic::{knn_distance_spread, separation_ratio, two_nn};
use crate::metrics::knn::{knn_log_radius, precision_recall};
use crate::projection::{Projection, ProjectionKind, distortion};
use crate::store::{ActiveRun, RunSpec, Store};
use crate::tensors::{from_host_f32, to_host};
use crate::train::LrSchedule;
use crate::train::finite;

/// Stage name.
pub const PRIOR: &str = "prior";
/// The key under which a prior run's identity records its source file's content.
pub const SOURCE_KEY: &str = "source_sha256";

/// Where target features come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// A token-embedding table from a safetensors checkpoint (Qwen: `model.embed_tokens.weight`);
    /// default here: all-MiniLM-L6-v2's `embeddings.word_embeddings.weight` from the data folder.
    Qwen,
    /// Any [N, D] or [N, L, D] matrix: `path` (and `key` for .safetensors / parquet list columns).
    File,
    /// The latent tokens of the sweep's `vae` stage (a KL-VAE trained in-project; low-level prior).
    Vae,
    /// The codebook of the sweep's `vq` stage (a VQ-VAE trained in-project; discrete prior).
    Vq,
    /// The image features of the sweep's `dino` stage (EfficientNet-Lite0 here; semantic prior).
    Dino,
}

/// The MiniLM token table fetched by `just data` (the stand-in for Qwen's).
pub const MINILM_FILE: &str = "weights/all-minilm-l6-v2/model.safetensors";
pub const MINILM_KEY: &str = "embeddings.word_embeddings.weight";

/// Configuration of a prior stage run. Every field is part of its identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorConfig {
    pub source: SourceKind,
    /// Feature file (relative paths are read from the data folder); "" = the source's default.
    pub path: String,
    /// Tensor name (.safetensors) or list column (parquet); "" = the source's default.
    pub key: String,
    /// Multiply features by 1/std of all values (always on for `qwen`, as the public code does).
    pub unit_std: bool,
    /// Projection to `dim` (d2) dimensions.
    pub projection: ProjectionKind,
    pub dim: usize,
    /// Target rows used at most (a seeded random subset; 0 = all), and rows held out for evaluation
    /// (at most a fifth of the rows).
    pub max_rows: usize,
    pub holdout: usize,
    /// Prior network and training (paper, Table 3: width 1024, 6 blocks, AdamW 1e-4, batch 256,
    /// cosine with warm-up, clip 1, EMA 0.9999).
    pub width: usize,
    pub depth: usize,
    pub steps: usize,
    pub batch: usize,
    pub lr: f64,
    pub warmup: usize,
    pub optimizer: OptimizerKind,
    pub grad_clip: Option<f64>,
    pub ema_decay: f64,
    /// Evaluation: samples drawn with `sample_steps` Euler steps; k of the k-NN metrics; rows used by
    /// the diagnostics.
    pub eval_samples: usize,
    pub sample_steps: usize,
    pub knn_k: usize,
    pub diag_rows: usize,
    pub seed: u64,
    pub backend: BackendKind,
}

impl Default for PriorConfig {
    /// The paper's prior at the paper's size (d2 = 32).
    fn default() -> Self {
        PriorConfig {
            source: SourceKind::Qwen,
            path: String::new(),
            key: String::new(),
            unit_std: false,
            projection: ProjectionKind::Random,
            dim: 32,
            max_rows: 0,
            holdout: 2000,
            width: 1024,
            depth: 6,
            steps: 100_000,
            batch: 256,
            lr: 1e-4,
            warmup: 2500,
            optimizer: OptimizerKind::AdamW,
            grad_clip: Some(1.0),
            ema_decay: 0.9999,
            eval_samples: 5000,
            sample_steps: 100,
            knn_k: 3,
            diag_rows: 5000,
            seed: 0,
            backend: BackendKind::Flex,
        }
    }
}

impl PriorConfig {
    pub fn validate(&self) -> std::result::Result<(), String> {
        positive_counts(&[
            ("dim", self.dim),
            ("holdout", self.holdout),
            ("width", self.width),
            ("depth", self.depth),
            ("steps", self.steps),
            ("batch", self.batch),
            ("eval_samples", self.eval_samples),
            ("sample_steps", self.sample_steps),
            ("knn_k", self.knn_k),
            ("diag_rows", self.diag_rows),
        ])?;
        positive_rates(&[("lr", self.lr)])?;
        if let Some(c) = self.grad_clip {
            positive_rates(&[("grad_clip", c)])?;
        }
        fractions(&[("ema_decay", self.ema_decay)])?;
        if self.warmup >= self.steps {
            return Err(format!(
                "`warmup` ({}) must be below `steps` ({})",
                self.warmup, self.steps
            ));
        }
        if self.source == SourceKind::File && self.path.is_empty() {
            return Err("`path` must name the feature file when `source` is \"file\"".into());
        }
        Ok(())
    }

    /// The feature file and key this configuration reads.
    pub fn source_file(&self, data_dir: &Path) -> (PathBuf, Option<String>) {
        let (path, key) = match self.source {
            SourceKind::Qwen => (
                if self.path.is_empty() {
                    MINILM_FILE
                } else {
                    &self.path
                },
                if self.key.is_empty() {
                    MINILM_KEY
                } else {
                    &self.key
                },
            ),
            SourceKind::File | SourceKind::Vae | SourceKind::Vq | SourceKind::Dino => {
                (self.path.as_str(), self.key.as_str())
            }
        };
        let p = Path::new(path);
        let full = if p.is_absolute() {
            p.to_path_buf()
        } else {
            data_dir.join(p)
        };
        (full, (!key.is_empty()).then(|| key.to_string()))
    }

    /// What the features are, for reports.
    pub fn source_label(&self) -> String {
        match self.source {
            SourceKind::Qwen if self.path.is_empty() => {
                "qwen: all-MiniLM-L6-v2 token table (stand-in for Qwen's), scaled by 1/std".into()
            }
            SourceKind::Qwen => format!("qwen: token table `{}` of {}", self.key, self.path),
            SourceKind::Vae => {
                "vae: latent tokens of a KL-VAE trained in-project (stand-in for SD-VAE)".into()
            }
            SourceKind::Vq => {
                "vq: codebook of a VQ-VAE trained in-project (stand-in for LlamaGen's)".into()
            }
            SourceKind::Dino => {
                "dino: EfficientNet-Lite0 ImageNet features (stand-in for DINOv2)".into()
            }
            SourceKind::File => format!(
                "file: {}{}",
                self.path,
                if self.key.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", self.key)
                }
            ),
        }
    }

    fn train_config(&self) -> PriorTrainConfig {
        PriorTrainConfig {
            optimizer: self.optimizer,
            schedule: if self.warmup == 0 {
                LrSchedule::Constant { lr: self.lr }
            } else {
                LrSchedule::Cosine {
                    lr: self.lr,
                    warmup: self.warmup,
                    total: self.steps,
                    min_lr: 0.0,
                }
            },
            beta1: 0.9,
            beta2: 0.95,
            weight_decay: 1e-4,
            grad_clip: self.grad_clip,
            ema_decay: self.ema_decay,
            steps: self.steps,
            batch: self.batch,
        }
    }

    pub fn net(&self) -> FlowNetConfig {
        FlowNetConfig {
            dim: self.dim,
            width: self.width,
            depth: self.depth,
        }
    }

    /// The stage whose `features` artifact this configuration reads, if any.
    pub fn source_stage(&self) -> Option<&'static str> {
        match self.source {
            SourceKind::Vae => Some(crate::stage::latent_ae::VAE),
            SourceKind::Vq => Some(crate::stage::latent_ae::VQ),
            SourceKind::Dino => Some(crate::stage::dino::DINO),
            SourceKind::Qwen | SourceKind::File => None,
        }
    }

    /// The run of this configuration on the features of the `stage` run whose hash is `input_hash`.
    pub fn run_spec_on_stage(&self, stage: &str, input_hash: &str) -> RunSpec {
        self.spec_with(crate::jobs::identity(self, &[(stage, input_hash)], []))
    }

    /// The run of this configuration on the source file whose content identity is `source` (see
    /// [`crate::util::file_identity`]): a file changed under the same path is a different run.
    pub fn run_spec(&self, source: &str) -> RunSpec {
        self.spec_with(crate::jobs::identity(
            self,
            &[],
            [(SOURCE_KEY, source.into())],
        ))
    }

    fn spec_with(&self, config: serde_json::Value) -> RunSpec {
        RunSpec {
            stage: PRIOR.into(),
            name: format!(
                "{PRIOR}/{}-{}{}",
                source_name(self.source),
                self.projection.name(),
                self.dim
            ),
            config,
            seed: Some(self.seed as i64),
        }
    }
}

fn source_name(s: SourceKind) -> &'static str {
    match s {
        SourceKind::Qwen => "qwen",
        SourceKind::File => "file",
        SourceKind::Vae => "vae",
        SourceKind::Vq => "vq",
        SourceKind::Dino => "dino",
    }
}

/// The job.
pub struct PriorJob<'a> {
    pub config: PriorConfig,
    /// The `vae` / `vq` / `dino` run whose features are the source (those sources only; its
    /// configuration is not needed, the features artifact is).
    pub input: Option<crate::jobs::Upstream<()>>,
    pub data_dir: PathBuf,
    pub store: &'a Store,
    pub claim: Claim,
}

impl BackendJob for PriorJob<'_> {
    type Output = Result<JobRun<i64>>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Result<JobRun<i64>> {
        let spec = match (self.config.source_stage(), &self.input) {
            (Some(stage), Some(input)) => self.config.run_spec_on_stage(stage, &input.hash),
            (Some(_), None) => {
                return Err(Error::Input {
                    path: self.data_dir.clone(),
                    message: format!(
                        "a prior on `{}` features needs that stage's run",
                        source_name(self.config.source)
                    ),
                });
            }
            (None, _) => {
                let (file, _) = self.config.source_file(&self.data_dir);
                self.config.run_spec(&crate::util::file_identity(&file))
            }
        };
        let backend = self.config.backend.name();
        crate::jobs::run_or_reuse(self.store, &spec, backend, self.claim, |run| {
            run_prior::<B>(&self, run, &device)
        })
    }
}

/// Rows `idx` of an n x d matrix.
fn gather(rows: &[f32], d: usize, idx: &[usize]) -> Vec<f32> {
    idx.iter()
        .flat_map(|&i| rows[i * d..(i + 1) * d].iter().copied())
        .collect()
}

fn run_prior<B: AutodiffBackend>(
    job: &PriorJob<'_>,
    run: &mut ActiveRun<'_>,
    device: &B::Device,
) -> Result<i64> {
    let cfg = &job.config;
    B::seed(device, cfg.seed);
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    let (file, key) = match &job.input {
        Some(input) => (
            crate::jobs::input_artifact(job.store, input.run, crate::stage::latent_ae::FEATURES)?,
            None,
        ),
        None => cfg.source_file(&job.data_dir),
    };
    let mut feats: FeatureSet = read_features(&file, key.as_deref())?;
    run.artifact("source", &file)?;
    if cfg.source == SourceKind::Qwen || cfg.unit_std {
        let std = feats.scale_to_unit_std();
        run.log("source/std", 0, std)?;
    }
    let d1 = feats.dim;
    let total = feats.n_rows();
    run.log("source/rows", 0, total as f64)?;
    run.log("source/dim", 0, d1 as f64)?;

    // Seeded split: a random subset of rows, the first `holdout` of them held out.
    let mut order: Vec<usize> = (0..total).collect();
    order.shuffle(&mut rng);
    if cfg.max_rows > 0 {
        order.truncate(cfg.max_rows);
    }
    // At most a fifth of the rows is held out (a 256-code codebook keeps 205 rows to train on).
    let holdout = cfg.holdout.min(order.len() / 5);
    if holdout <= cfg.knn_k || order.len() - holdout <= cfg.knn_k {
        return Err(Error::Input {
            path: file,
            message: format!(
                "{} rows are too few to hold out rows and still train and evaluate a prior (k = {})",
                order.len(),
                cfg.knn_k
            ),
        });
    }
    run.log("source/holdout", 0, holdout as f64)?;
    let (held_idx, train_idx) = order.split_at(holdout);
    let train_raw = gather(feats.rows(), d1, train_idx);
    let held_raw = gather(feats.rows(), d1, held_idx);
    drop(feats);

    // Projection, fitted on the training rows only.
    let proj = Projection::fit(cfg.projection, &train_raw, d1, cfg.dim, cfg.seed).map_err(|m| {
        Error::input(
            &file,
            format!("projection `{}`: {m}", cfg.projection.name()),
        )
    })?;
    let train = proj.apply(&train_raw);
    let held = proj.apply(&held_raw);
    let d = cfg.dim;
    let n_train = train.len() / d;
    let dist = distortion(&train_raw, &train, d1, d, 2000, cfg.seed);
    drop((train_raw, held_raw));
    for (k, v) in [
        ("projection/mean_ratio", dist.mean_ratio),
        ("projection/distortion_cv", dist.cv),
        ("projection/ratio_q05", dist.q05),
        ("projection/ratio_q95", dist.q95),
    ] {
        run.log(k, 0, v)?;
    }

    // Diagnostics on (a sample of) the projected target set.
    let diag = &train[..cfg.diag_rows.min(n_train) * d];
    let (median, cv) = knn_distance_spread(diag, d, cfg.knn_k);
    for (k, v) in [
        ("diag/two_nn_dim", two_nn(diag, d)),
        ("diag/knn_dist_median", median),
        ("diag/knn_dist_cv", cv),
        ("diag/separation", separation_ratio(diag, d)),
    ] {
        run.log(k, 0, v)?;
    }

    // Flow matching on random batches of projected rows.
    tracing::info!(run = run.id(), rows = n_train, dim = d, "prior: training");
    let bar = crate::jobs::progress_bar(cfg.steps as u64, "prior");
    let log_every = (cfg.steps / 200).max(1);
    let started = Instant::now();
    let mut batch_rng = rand::rngs::StdRng::seed_from_u64(cfg.seed ^ 0x9e37_79b9);
    let mut next_batch = |_step: usize| {
        use rand::Rng;
        let idx: Vec<usize> = (0..cfg.batch)
            .map(|_| batch_rng.random_range(0..n_train))
            .collect();
        from_host_f32::<B>(gather(&train, d, &idx), d, device)
    };
    let mut on_step = |log: StepLog| -> Result<bool> {
        if log.step.is_multiple_of(log_every) || log.step + 1 == cfg.steps {
            run.log("prior/loss", log.step as i64, log.loss)?;
            run.log("prior/grad_norm", log.step as i64, log.grad_norm)?;
            run.log("prior/lr", log.step as i64, log.lr)?;
        }
        finite(log.step, "prior/loss", log.loss)?;
        bar.inc(1);
        Ok(true)
    };
    let prior = train_prior::<B, Error>(
        cfg.net(),
        &cfg.train_config(),
        device,
        &mut next_batch,
        &mut on_step,
    )?;
    bar.finish_and_clear();
    run.log(
        "prior/steps_per_s",
        cfg.steps as i64,
        cfg.steps as f64 / started.elapsed().as_secs_f64().max(1e-9),
    )?;

    // Evaluation against the held-out rows, with the held-out-vs-train reference.
    let prior = prior.valid();
    let noise = Tensor::<B::InnerBackend, 2>::random(
        [cfg.eval_samples, d],
        Distribution::Normal(0.0, 1.0),
        device,
    );
    let samples: Vec<f32> = to_host(sample(&prior, noise, cfg.sample_steps, Solver::Euler))
        .into_iter()
        .map(|x| x as f32)
        .collect();
    if samples.iter().any(|x| !x.is_finite()) {
        return Err(Error::Diverged {
            step: cfg.steps,
            key: "eval/samples".into(),
            value: f64::NAN,
        });
    }
    let reference = &train[..holdout.min(n_train) * d];
    let g_held = Gaussian::fit(&held, d);
    let (p, r) = precision_recall(&held, &samples, d, cfg.knn_k);
    let (p_ref, r_ref) = precision_recall(&held, reference, d, cfg.knn_k);
    for (k, v) in [
        (
            "eval/frechet",
            frechet_distance(&Gaussian::fit(&samples, d), &g_held),
        ),
        (
            "eval/frechet_reference",
            frechet_distance(&Gaussian::fit(reference, d), &g_held),
        ),
        ("eval/precision", p),
        ("eval/recall", r),
        ("eval/precision_reference", p_ref),
        ("eval/recall_reference", r_ref),
        (
            "eval/knn_log_radius_samples",
            knn_log_radius(&samples, &train, d, cfg.knn_k),
        ),
        (
            "eval/knn_log_radius_heldout",
            knn_log_radius(&held, &train, d, cfg.knn_k),
        ),
    ] {
        run.log(k, cfg.steps as i64, v)?;
    }

    // Artifacts: the prior, the projection, the projected training rows.
    let dir = crate::jobs::run_dir(job.store, run.id())?;
    let stem = dir.join("prior");
    let file = crate::jobs::save_weights(&prior, &stem)?;
    run.artifact("prior", &file)?;
    let (m, o) = proj
        .save(&dir.join("projection"))
        .map_err(Error::write(&dir))?;
    run.artifact("projection_matrix", &m)?;
    run.artifact("projection_offset", &o)?;
    let targets = dir.join("targets.npy");
    write_npy(&targets, &train, &[n_train, d]).map_err(Error::write(&targets))?;
    run.artifact("targets", &targets)?;
    Ok(run.id())
}
