//! The `tokenizer` stage: an image tokenizer (paper Sec. 4, Table 1 left half) trained on pixel
//! reconstruction (L2 and/or L1), a perceptual loss on the frozen project classifier's features and
//! an adversarial hinge loss started after a warm-up, plus `lambda * L_align` on every latent token
//! under a frozen flow prior (the sweep's `prior` stage), or a baseline regulariser (KL, SoftVQ).
//!
//! Logged: the losses; alignment curves every `eval_every` steps on a fixed sample of test latents
//! (L_align, the k-NN NLL against the prior's projected target set, the exact flow NLL of a few
//! tokens, PSNR of the sample); at the end PSNR and SSIM on the test split and rFID for each feature
//! network (named in the metric: `rfid/classifier`, `rfid/efficientnet`). Artifacts: the weights, the
//! latents and labels of training images (the generator's data), a reconstruction grid.

/// Its [`Stage`](crate::stage::Stage) implementation (the registry's entry).
pub mod stage;

use std::path::{Path, PathBuf};

use burn::module::{AutodiffModule, Module};

use burn::tensor::backend::{AutodiffBackend, Backend};

use crate::backend::BackendJob;
use crate::data::ImageDataset;
use crate::error::{Error, Result};
use crate::features::{read_features, write_npy};
use crate::flow::align_loss;
use crate::flow::likelihood::{Divergence, log_likelihood};
use crate::flow::net::SimpleMlpAdaLn;
use crate::flow::train::load_prior;
use crate::jobs::{Claim, JobRun, Upstream};
use crate::metrics::frechet::frechet_from_samples;
use crate::metrics::image::{psnr, ssim};
use crate::metrics::knn::knn_nll;
use crate::models::tokenizer::{Discriminator, Tokenizer};
use crate::optim::Adam;
use crate::stage::classifier::ClassifierConfig;
use crate::stage::dino::DinoConfig;
pub use crate::stage::feature_nets::FeatureNet;
use crate::stage::feature_nets::{LoadedNet, load_classifier, weights_identity};
use crate::stage::prior::PriorConfig;
use crate::store::{ActiveRun, RunSpec, Store};
use crate::tensors::{from_host_f32, scalar, to_host_f32};
use crate::train::{LrSchedule, Trained, Trainer, finite};

mod config;
mod losses;
mod step;
pub use config::{LABELS, LATENTS, SEMANTIC_DIM_KEY, TOKENIZER, TokenizerConfig};
pub use losses::{FromBatch, Shares, StepContext, StepDraws, StepLosses, step_losses};
pub use step::{Frozen, SemanticBatch, StepBatch, StepValues, Trainers, step_blocks, train_step};

/// The job.
pub struct TokenizerJob<'a> {
    pub config: TokenizerConfig,
    pub classifier: Upstream<ClassifierConfig>,
    pub prior: Option<Upstream<PriorConfig>>,
    /// The `dino` run whose features the sample-level alignment reads (semantic_weight > 0).
    pub semantic: Option<Upstream<DinoConfig>>,
    pub data_dir: PathBuf,
    pub store: &'a Store,
    pub claim: Claim,
}

impl TokenizerJob<'_> {
    pub fn spec(&self) -> RunSpec {
        let weights = weights_identity(
            &self.config.rfid,
            &self.data_dir,
            crate::util::file_identity,
        );
        self.config.run_spec(
            &self.classifier.hash,
            self.prior.as_ref().map(|p| p.hash.as_str()),
            self.semantic.as_ref().map(|p| p.hash.as_str()),
            &weights,
        )
    }
}

impl BackendJob for TokenizerJob<'_> {
    type Output = Result<JobRun<i64>>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Result<JobRun<i64>> {
        let spec = self.spec();
        let backend = self.config.backend.name();
        crate::jobs::run_or_reuse(self.store, &spec, backend, self.claim, |run| {
            train::<B>(&self, run, &device).map(|()| run.id())
        })
    }
}

/// The frozen prior (on the autodiff backend for L_align in training and the exact divergence; its
/// inner-backend copy for the curves' L_align) and its projected target set.
struct FrozenPrior<B: AutodiffBackend> {
    net: SimpleMlpAdaLn<B>,
    inner: SimpleMlpAdaLn<B::InnerBackend>,
    targets: Vec<f32>,
}

fn load_frozen_prior<B: AutodiffBackend>(
    job: &TokenizerJob<'_>,
    up: &Upstream<PriorConfig>,
    device: &B::Device,
) -> Result<FrozenPrior<B>> {
    let file = crate::jobs::input_artifact(job.store, up.run, "prior")?;
    let net = load_prior::<B>(up.config.net(), &file, device)
        .map_err(|m| Error::input(&file, m))?
        .no_grad();
    let tfile = crate::jobs::input_artifact(job.store, up.run, "targets")?;
    let targets = read_features(&tfile, None)?;
    if targets.dim != job.config.channels {
        return Err(Error::input(
            &tfile,
            format!(
                "the prior's target set has {} dims, the latent tokens {}",
                targets.dim, job.config.channels
            ),
        ));
    }
    Ok(FrozenPrior {
        inner: net.valid(),
        net,
        targets: targets.rows().to_vec(),
    })
}

/// Per-image semantic features (rows of the first training images), for the sample-level alignment.
struct Semantic {
    rows: Vec<f32>,
    n: usize,
    dim: usize,
}

impl Semantic {
    /// The batch's rows that have a feature (positions in the batch) and their features.
    fn batch(&self, idx: &[usize]) -> Option<SemanticBatch> {
        let positions: Vec<usize> = (0..idx.len()).filter(|&p| idx[p] < self.n).collect();
        if positions.is_empty() {
            return None;
        }
        let features = positions
            .iter()
            .flat_map(|&p| {
                let i = idx[p];
                self.rows[i * self.dim..(i + 1) * self.dim].iter().copied()
            })
            .collect();
        Some(SemanticBatch {
            positions,
            features,
            dim: self.dim,
        })
    }
}

/// The `dino` run's features, averaged over each image's tokens.
fn load_semantic(job: &TokenizerJob<'_>, up: &Upstream<DinoConfig>) -> Result<Semantic> {
    let file = crate::jobs::input_artifact(job.store, up.run, crate::stage::latent_ae::FEATURES)?;
    let set = read_features(&file, None)?;
    let (n, t, d) = (set.n, set.tokens, set.dim);
    let mut rows = vec![0f32; n * d];
    for i in 0..n {
        for j in 0..t {
            let src = &set.data[(i * t + j) * d..(i * t + j + 1) * d];
            for (r, v) in rows[i * d..(i + 1) * d].iter_mut().zip(src) {
                *r += v / t as f32;
            }
        }
    }
    Ok(Semantic { rows, n, dim: d })
}

/// What the alignment curves need: the fixed evaluation images and, with a prior, the prior.
struct Curves<'p, B: AutodiffBackend> {
    x: Vec<f32>,
    prior: Option<&'p FrozenPrior<B>>,
}

/// Logs the alignment curves and the sample's PSNR at `step`; returns (L_align, k-NN NLL) when a
/// prior is there.
fn log_curves<B: AutodiffBackend>(
    cfg: &TokenizerConfig,
    model: &Tokenizer<B::InnerBackend>,
    curves: &Curves<'_, B>,
    run: &mut ActiveRun<'_>,
    step: usize,
    device: &B::Device,
) -> Result<()> {
    let x = from_host_f32::<B::InnerBackend>(curves.x.clone(), 784, device);
    let z = model.latents(x.clone());
    let rec = to_host_f32(model.decode(z.clone()));
    run.log("eval/psnr", step as i64, psnr(&curves.x, &rec, 784))?;
    let Some(prior) = curves.prior else {
        return Ok(());
    };
    let [b, l, c] = z.dims();
    let flat = z.reshape([b * l, c]);
    let la = scalar(align_loss(&prior.inner, flat.clone(), 4));
    let tokens = to_host_f32(flat.clone());
    let nll = knn_nll(&tokens, &prior.targets, c, cfg.knn_k);
    run.log("align/l_align", step as i64, la)?;
    run.log("align/knn_nll", step as i64, nll)?;
    if cfg.exact_tokens > 0 {
        let n = cfg.exact_tokens.min(b * l);
        let ll = log_likelihood::<B, _>(
            &prior.net,
            flat.slice([0..n, 0..c]),
            cfg.exact_steps,
            Divergence::Exact,
        );
        let flow_nll = -ll.iter().sum::<f64>() / n as f64;
        run.log("align/flow_nll", step as i64, flow_nll)?;
    }
    finite(step, "align/l_align", la)?;
    Ok(())
}

fn train<B: AutodiffBackend>(
    job: &TokenizerJob<'_>,
    run: &mut ActiveRun<'_>,
    device: &B::Device,
) -> Result<()> {
    let cfg = &job.config;
    cfg.check_inputs(
        &job.classifier.config,
        job.prior.as_ref().map(|p| &p.config),
        job.semantic.as_ref().map(|p| &p.config),
    )
    .map_err(|m| Error::input(Path::new(TOKENIZER), m))?;
    B::seed(device, cfg.seed);
    let (train, test) = crate::jobs::load_28x28(
        cfg.dataset,
        &job.data_dir,
        (cfg.train_size, cfg.test_size),
        "the tokenizer",
    )?;
    let prior = match &job.prior {
        Some(up) => Some(load_frozen_prior::<B>(job, up, device)?),
        None if cfg.lambda > 0.0 => {
            return Err(Error::input(
                Path::new(TOKENIZER),
                "lambda > 0 needs the prior stage's run".into(),
            ));
        }
        None => None,
    };
    let classifier =
        load_classifier::<B>(job.store, &job.classifier, train.classes, device)?.no_grad();

    let semantic = match &job.semantic {
        Some(up) if cfg.semantic_weight > 0.0 => Some(load_semantic(job, up)?),
        None if cfg.semantic_weight > 0.0 => {
            return Err(Error::input(
                Path::new(TOKENIZER),
                "semantic_weight > 0 needs the dino stage's run".into(),
            ));
        }
        _ => None,
    };
    let semantic_dim = semantic.as_ref().map_or(0, |s| s.dim);
    // The semantic head's size is part of the weights' shape: whoever loads them reads it here.
    run.log(SEMANTIC_DIM_KEY, 0, semantic_dim as f64)?;
    let schedule = LrSchedule::Cosine {
        lr: cfg.lr,
        warmup: cfg.warmup,
        total: cfg.steps,
        min_lr: cfg.lr / 10.0,
    };
    let ae = Trainer::new(
        Tokenizer::<B>::new(cfg.shape(semantic_dim), device),
        Adam::default(),
        schedule,
    );
    let disc = Trainer::new(
        Discriminator::<B>::new(device),
        Adam::default().with_beta_1(0.5),
        LrSchedule::Constant { lr: cfg.disc_lr },
    );
    let eval_idx: Vec<usize> = (0..cfg.eval_images.min(test.len())).collect();
    let curves = Curves::<B> {
        x: test.gather(&eval_idx).0,
        prior: prior.as_ref(),
    };
    let frozen = Frozen {
        classifier: &classifier,
        prior: prior.as_ref().map(|p| &p.net),
    };
    let blocks = step_blocks::<B>(cfg.batch);

    tracing::info!(
        run = run.id(),
        regulariser = cfg.regulariser.name(),
        lambda = cfg.lambda,
        blocks,
        "tokenizer: training"
    );
    let mut trainers = Trainers {
        ae: ae.with_progress(cfg.steps, TOKENIZER),
        disc,
    };
    let log_every = (cfg.steps / 100).max(1);
    for (step, idx) in train
        .batches(cfg.batch, cfg.seed)
        .take(cfg.steps)
        .enumerate()
    {
        if step.is_multiple_of(cfg.eval_every) {
            let model = trainers.ae.model().valid();
            log_curves::<B>(cfg, &model, &curves, run, step, device)?;
        }
        let (xv, _) = train.gather(&idx);
        let batch = StepBatch {
            x: from_host_f32::<B::InnerBackend>(xv, 784, device),
            semantic: semantic.as_ref().and_then(|s| s.batch(&idx)),
        };
        let log_now = step.is_multiple_of(log_every) || step + 1 == cfg.steps;
        let values = train_step(cfg, &mut trainers, &frozen, &batch, step, blocks, log_now);
        if let Some(v) = values {
            let s = step as i64;
            for (key, value) in [
                ("ae/l2", Some(v.l2)),
                ("ae/l1", Some(v.l1)),
                ("ae/perceptual", Some(v.perceptual)),
                ("ae/reg", v.reg),
                ("ae/adv", v.adv),
                ("ae/l_align", v.align),
                ("ae/semantic", v.semantic),
                ("disc/loss", v.disc),
            ] {
                if let Some(value) = value {
                    run.log(key, s, value)?;
                }
            }
            run.log("ae/loss", s, v.total)?;
            finite(step, "ae/loss", v.total)?;
        }
    }
    let Trained { model, steps_per_s } = trainers.ae.finish();
    run.log("train/steps_per_s", cfg.steps as i64, steps_per_s)?;
    let last = cfg.steps as i64;
    let model_v = model.valid();
    log_curves::<B>(cfg, &model_v, &curves, run, cfg.steps, device)?;

    // Test metrics: PSNR, SSIM, rFID per feature network.
    let all: Vec<usize> = (0..test.len()).collect();
    let (orig, _) = test.gather(&all);
    let mut rec = Vec::with_capacity(orig.len());
    for part in orig.chunks(500 * 784) {
        let r = model_v.reconstruct(from_host_f32::<B::InnerBackend>(part.to_vec(), 784, device));
        rec.extend(to_host_f32(r));
    }
    run.log("test/psnr", last, psnr(&orig, &rec, 784))?;
    run.log("test/ssim", last, ssim(&orig, &rec, 28, 28))?;
    let cls_inner = classifier.valid();
    for &net in &cfg.rfid {
        let loaded = LoadedNet::load(net, &job.data_dir, &cls_inner, device)?;
        let (fa, d) = loaded.features(&orig, device);
        let (fb, _) = loaded.features(&rec, device);
        run.log(
            &format!("rfid/{}", net.name()),
            last,
            frechet_from_samples(&fa, &fb, d),
        )?;
    }

    // Artifacts: weights, latents and labels of training images, a reconstruction grid.
    let dir = crate::jobs::run_dir(job.store, run.id())?;
    let stem = dir.join(TOKENIZER);
    run.artifact("weights", &crate::jobs::save_weights(&model_v, &stem)?)?;
    save_latents::<B::InnerBackend>(job, &model_v, &train, &dir, run, device)?;
    let show = 16.min(test.len());
    let grid: Vec<f32> = [&orig[..show * 784], &rec[..show * 784]].concat();
    let png = dir.join("reconstructions.png");
    crate::plot::image_grid(&png, &grid, 28, show.max(1), 2)
        .map_err(|e| Error::write(&png)(std::io::Error::other(e.to_string())))?;
    run.artifact("figure", &png)?;
    Ok(())
}

fn save_latents<B: Backend>(
    job: &TokenizerJob<'_>,
    model: &Tokenizer<B>,
    train: &ImageDataset,
    dir: &Path,
    run: &mut ActiveRun<'_>,
    device: &B::Device,
) -> Result<()> {
    let cfg = &job.config;
    let n = if cfg.latent_images == 0 {
        train.len()
    } else {
        cfg.latent_images.min(train.len())
    };
    let idx: Vec<usize> = (0..n).collect();
    let mut data = Vec::with_capacity(n * cfg.tokens * cfg.channels);
    let mut labels = Vec::with_capacity(n);
    for chunk in idx.chunks(500) {
        let (x, y) = train.gather(chunk);
        data.extend(to_host_f32(
            model.latents(from_host_f32::<B>(x, 784, device)),
        ));
        labels.extend(y.into_iter().map(|v| v as f32));
    }
    let latents = dir.join("latents.npy");
    write_npy(&latents, &data, &[n, cfg.tokens, cfg.channels]).map_err(Error::write(&latents))?;
    run.artifact(LATENTS, &latents)?;
    let lab = dir.join("labels.npy");
    write_npy(&lab, &labels, &[n, 1]).map_err(Error::write(&lab))?;
    run.artifact(LABELS, &lab)?;
    Ok(())
}

#[cfg(test)]
mod tests;
