//! The `vae` and `vq` stages: a small KL-VAE or VQ-VAE trained on an image dataset, whose latents are a
//! target prior's features (paper Table 1's low-level and discrete priors, with in-project stand-ins for
//! SD-VAE and LlamaGen's tokenizer). `vae` saves the posterior means of `feature_images` training images
//! as [N, 49, C] tokens; `vq` saves its codebook [K, C] (the discrete prior lives on the codes). Both
//! save the weights, log their losses, the test reconstruction PSNR, and (VQ) the codebook usage.

/// Its [`Stage`](crate::stage::Stage) implementation (the registry's entry).
pub mod stage;
pub mod step;

use std::path::PathBuf;

use burn::module::AutodiffModule;

use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use crate::backend::{BackendJob, BackendKind};
use crate::config::{positive_counts, positive_rates};
use crate::data::DatasetId;
use crate::error::{Error, Result};
use crate::features::write_npy;
use crate::jobs::{Claim, JobRun};
use crate::models::latent_ae::{AeKind, LatentAe, TOKENS};
use crate::optim::Adam;
use crate::store::{ActiveRun, RunSpec, Store};
use crate::tensors::{from_host_f32, to_host, to_host_f32};
use crate::train::{LrSchedule, Trained, Trainer, finite};

/// Stage names.
pub const VAE: &str = "vae";
pub const VQ: &str = "vq";
/// The artifact a dependent prior reads.
pub const FEATURES: &str = "features";

/// Configuration of a `vae` or `vq` run. Every field is part of its identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatentAeConfig {
    pub dataset: DatasetId,
    /// Training images (the first N of the train split; 0 = all) and test images for PSNR.
    pub train_size: usize,
    pub test_size: usize,
    /// Channels C of the 7x7 latent tokens (LlamaGen's codes: 8).
    pub channels: usize,
    /// Codebook size K (`vq` only).
    pub codebook_size: usize,
    /// KL weight (`vae` only; the loss is per latent element) and commitment weight (`vq` only).
    pub kl_weight: f64,
    pub commitment: f64,
    pub steps: usize,
    pub batch: usize,
    pub lr: f64,
    /// Training images whose latents are the `vae` features (0 = all training images).
    pub feature_images: usize,
    pub seed: u64,
    pub backend: BackendKind,
}

impl Default for LatentAeConfig {
    fn default() -> Self {
        LatentAeConfig {
            dataset: DatasetId::FashionMnist,
            train_size: 0,
            test_size: 2000,
            channels: 8,
            codebook_size: 256,
            kl_weight: 1e-3,
            commitment: 0.25,
            steps: 3000,
            batch: 128,
            lr: 1e-3,
            feature_images: 10_000,
            seed: 0,
            backend: BackendKind::Flex,
        }
    }
}

impl LatentAeConfig {
    pub fn validate(&self) -> std::result::Result<(), String> {
        positive_counts(&[
            ("test_size", self.test_size),
            ("channels", self.channels),
            ("codebook_size", self.codebook_size),
            ("steps", self.steps),
            ("batch", self.batch),
        ])?;
        positive_rates(&[("lr", self.lr)])?;
        if !(self.kl_weight >= 0.0 && self.commitment >= 0.0) {
            return Err("`kl_weight` and `commitment` must be non-negative".into());
        }
        Ok(())
    }

    pub fn run_spec(&self, kind: AeKind) -> RunSpec {
        let stage = stage_name(kind);
        RunSpec {
            stage: stage.into(),
            name: format!("{stage}/{}-c{}", self.dataset.name(), self.channels),
            config: crate::util::config_json(self),
            seed: Some(self.seed as i64),
        }
    }
}

pub fn stage_name(kind: AeKind) -> &'static str {
    match kind {
        AeKind::Vae => VAE,
        AeKind::Vq => VQ,
    }
}

/// The job.
pub struct LatentAeJob<'a> {
    pub kind: AeKind,
    pub config: LatentAeConfig,
    pub data_dir: PathBuf,
    pub store: &'a Store,
    pub claim: Claim,
}

impl BackendJob for LatentAeJob<'_> {
    type Output = Result<JobRun<i64>>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Result<JobRun<i64>> {
        let spec = self.config.run_spec(self.kind);
        let backend = self.config.backend.name();
        crate::jobs::run_or_reuse(self.store, &spec, backend, self.claim, |run| {
            train::<B>(&self, run, &device)
        })
    }
}

fn train<B: AutodiffBackend>(
    job: &LatentAeJob<'_>,
    run: &mut ActiveRun<'_>,
    device: &B::Device,
) -> Result<i64> {
    let cfg = &job.config;
    B::seed(device, cfg.seed);
    let (train, test) = crate::jobs::load_28x28(
        cfg.dataset,
        &job.data_dir,
        (cfg.train_size, cfg.test_size),
        &format!("the {} autoencoder", stage_name(job.kind)),
    )?;
    let mut model = LatentAe::<B>::new(job.kind, cfg.channels, cfg.codebook_size, device);
    if job.kind == AeKind::Vq {
        // Codes start on encoder outputs of a first batch (a remedy for unused codes).
        let idx: Vec<usize> = (0..train.len().min(256)).collect();
        let (x, _) = train.gather(&idx);
        model = model.init_codebook_from(from_host_f32::<B>(x, 784, device), cfg.seed);
    }
    let lr = LrSchedule::Constant { lr: cfg.lr };
    let mut trainer =
        Trainer::new(model, Adam::default(), lr).with_progress(cfg.steps, stage_name(job.kind));
    let log_every = (cfg.steps / 100).max(1);
    let blocks = step::step_blocks::<B>(cfg.batch);
    let mut used = vec![0u64; cfg.codebook_size];
    for (step, idx) in train
        .batches(cfg.batch, cfg.seed)
        .take(cfg.steps)
        .enumerate()
    {
        let (x, _) = train.gather(&idx);
        let log_now = step % log_every == 0 || step + 1 == cfg.steps;
        let count = job.kind == AeKind::Vq && step + 1 >= cfg.steps.saturating_sub(50);
        let out = step::train_step(
            &mut trainer,
            cfg,
            from_host_f32::<B::InnerBackend>(x, 784, device),
            step,
            blocks,
            log_now,
            count,
        );
        if let Some(v) = out.values {
            run.log("ae/loss", step as i64, v.total)?;
            run.log("ae/recon_mse", step as i64, v.recon)?;
            run.log(
                if job.kind == AeKind::Vq {
                    "ae/vq_loss"
                } else {
                    "ae/kl"
                },
                step as i64,
                v.reg,
            )?;
            finite(step, "ae/loss", v.total)?;
        }
        if let Some(codes) = out.codes {
            for c in codes.into_data().iter::<i64>() {
                used[c as usize] += 1;
            }
        }
    }
    let Trained { model, steps_per_s } = trainer.finish();
    run.log("ae/steps_per_s", cfg.steps as i64, steps_per_s)?;

    // Test reconstruction PSNR (images in [0, 1]).
    let model = model.valid();
    let all: Vec<usize> = (0..test.len()).collect();
    let mut se = 0f64;
    for chunk in all.chunks(500) {
        let (x, _) = test.gather(chunk);
        let xt = from_host_f32::<B::InnerBackend>(x.clone(), 784, device);
        let rec = to_host(model.reconstruct(xt));
        se += rec
            .iter()
            .zip(&x)
            .map(|(r, t)| (r - f64::from(*t)).powi(2))
            .sum::<f64>();
    }
    let mse = se / (test.len() * 784).max(1) as f64;
    run.log(
        "test/psnr",
        cfg.steps as i64,
        10.0 * (1.0 / mse.max(1e-12)).log10(),
    )?;
    if job.kind == AeKind::Vq {
        let total: u64 = used.iter().sum();
        let entropy: f64 = used
            .iter()
            .filter(|&&c| c > 0)
            .map(|&c| {
                let p = c as f64 / total as f64;
                -p * p.ln()
            })
            .sum();
        run.log(
            "vq/codes_used",
            cfg.steps as i64,
            used.iter().filter(|&&c| c > 0).count() as f64,
        )?;
        run.log("vq/perplexity", cfg.steps as i64, entropy.exp())?;
    }

    // Artifacts: weights and the feature set.
    let dir = crate::jobs::run_dir(job.store, run.id())?;
    let stem = dir.join(stage_name(job.kind));
    run.artifact("weights", &crate::jobs::save_weights(&model, &stem)?)?;
    let features = dir.join("features.npy");
    let write = |data: Vec<f32>, shape: &[usize]| {
        write_npy(&features, &data, shape).map_err(Error::write(&features))
    };
    match job.kind {
        AeKind::Vq => {
            let cb = to_host_f32(model.codebook.val());
            write(cb, &[cfg.codebook_size, cfg.channels])?;
        }
        AeKind::Vae => {
            let n = if cfg.feature_images == 0 {
                train.len()
            } else {
                cfg.feature_images.min(train.len())
            };
            let mut data = Vec::with_capacity(n * TOKENS * cfg.channels);
            let idx: Vec<usize> = (0..n).collect();
            for chunk in idx.chunks(500) {
                let (x, _) = train.gather(chunk);
                data.extend(to_host_f32(
                    model.latents(from_host_f32::<B::InnerBackend>(x, 784, device)),
                ));
            }
            write(data, &[n, TOKENS, cfg.channels])?;
        }
    }
    run.artifact(FEATURES, &features)?;
    Ok(run.id())
}
