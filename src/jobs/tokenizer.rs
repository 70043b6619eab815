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

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::{AutodiffModule, Module};
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::classifier::ClassifierConfig;
use super::dino::DinoConfig;
pub use super::feature_nets::FeatureNet;
use super::feature_nets::{LoadedNet, load_classifier, weights_entry, weights_identity};
use super::prior::PriorConfig;
use super::{Claim, JobRun, Upstream};
use crate::backend::{BackendJob, BackendKind};
use crate::config::{positive_counts, positive_rates};
use crate::data::{DatasetId, ImageDataset, Split};
use crate::error::{Error, Result};
use crate::features::{read_features, write_npy};
use crate::flow::align_loss;
use crate::flow::likelihood::{Divergence, log_likelihood};
use crate::flow::net::SimpleMlpAdaLn;
use crate::flow::schedule::LrSchedule;
use crate::flow::shard::align_loss_sharded;
use crate::flow::train::load_prior;
use crate::metrics::frechet::frechet_from_samples;
use crate::metrics::image::{psnr, ssim};
use crate::metrics::knn::knn_nll;
use crate::models::classifier::MlpClassifier;
use crate::models::tokenizer::{
    Discriminator, Regulariser, Tokenizer, TokenizerShape, hinge_d_loss, hinge_g_loss,
};
use crate::store::{ActiveRun, RunSpec, Store};
use crate::tensors::{from_host_f32, scalar, to_host};

/// Stage name.
pub const TOKENIZER: &str = "tokenizer";
/// Metric holding the size of the tokenizer's semantic head (0 without one), read by the generator to
/// rebuild the model before loading its weights.
pub const SEMANTIC_DIM_KEY: &str = "semantic/dim";
/// Artifacts a generator reads: latent tokens [N, L, C] and labels [N, 1] (as f32) of training images.
pub const LATENTS: &str = "latents";
pub const LABELS: &str = "labels";

/// Configuration of a tokenizer run. Every field is part of its identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenizerConfig {
    pub dataset: DatasetId,
    /// Training images (the first N of the train split; 0 = all) and test images for the final metrics.
    pub train_size: usize,
    pub test_size: usize,
    /// Latent tokens L and their size C (C must equal the prior's `dim`).
    pub tokens: usize,
    pub channels: usize,
    /// ViT encoder/decoder width, depth (each) and heads.
    pub width: usize,
    pub depth: usize,
    pub heads: usize,
    /// Baseline regulariser and its settings: KL weight (per element); SoftVQ codebook size,
    /// temperature and entropy-loss weight.
    pub regulariser: Regulariser,
    pub kl_weight: f64,
    pub codebook_size: usize,
    pub tau: f64,
    pub entropy_weight: f64,
    /// Weight of the sample-level alignment (SoftVQ's REPA-style loss, any regulariser): an MLP maps
    /// the mean latent token to the image's semantic feature (the sweep's `dino` stage, its tokens
    /// averaged), loss `-mean cos`; only images with a feature (the first `dino.images` training
    /// images) contribute. 0: off, the `dino` stage is not read.
    pub semantic_weight: f64,
    /// Weight of L_align (0: a plain autoencoder) and (t, x0) draws per token.
    pub lambda: f64,
    pub flow_mul: usize,
    /// Read the sweep's `prior` stage: needed when lambda > 0; with lambda = 0 the alignment curves
    /// are still measured under it (the AE row of Fig. 4).
    pub prior: bool,
    /// Loss weights: pixel L2 and L1, perceptual (classifier features), adversarial (hinge) from step
    /// `disc_start` on, with the discriminator's learning rate.
    pub l2_weight: f64,
    pub l1_weight: f64,
    pub perceptual_weight: f64,
    pub adv_weight: f64,
    pub disc_start: usize,
    pub disc_lr: f64,
    /// Optimisation: Adam, linear warm-up then cosine to lr / 10.
    pub steps: usize,
    pub batch: usize,
    pub lr: f64,
    pub warmup: usize,
    /// Alignment curves: every `eval_every` steps on the latents of `eval_images` test images; k of
    /// the k-NN NLL; tokens whose exact flow NLL is computed, with `exact_steps` RK4 steps.
    pub eval_every: usize,
    pub eval_images: usize,
    pub knn_k: usize,
    pub exact_tokens: usize,
    pub exact_steps: usize,
    /// Feature networks of rFID.
    pub rfid: Vec<FeatureNet>,
    /// Training images whose latents are saved for the generator (0 = all training images).
    pub latent_images: usize,
    pub seed: u64,
    pub backend: BackendKind,
}

impl Default for TokenizerConfig {
    /// The `small` scale: 16 tokens x 16 dims, minutes on a laptop.
    fn default() -> Self {
        TokenizerConfig {
            dataset: DatasetId::FashionMnist,
            train_size: 0,
            test_size: 1000,
            tokens: 16,
            channels: 16,
            width: 64,
            depth: 2,
            heads: 4,
            regulariser: Regulariser::None,
            kl_weight: 1e-3,
            codebook_size: 256,
            tau: 0.07,
            entropy_weight: 0.01,
            semantic_weight: 0.0,
            lambda: 0.01,
            flow_mul: 4,
            prior: true,
            l2_weight: 1.0,
            l1_weight: 0.0,
            perceptual_weight: 0.1,
            adv_weight: 0.05,
            disc_start: 1000,
            disc_lr: 2e-4,
            steps: 3000,
            batch: 128,
            lr: 1e-3,
            warmup: 100,
            eval_every: 100,
            eval_images: 256,
            knn_k: 5,
            exact_tokens: 32,
            exact_steps: 8,
            rfid: vec![FeatureNet::Classifier, FeatureNet::Efficientnet],
            latent_images: 10_000,
            seed: 0,
            backend: BackendKind::Flex,
        }
    }
}

impl TokenizerConfig {
    pub fn validate(&self) -> std::result::Result<(), String> {
        positive_counts(&[
            ("test_size", self.test_size),
            ("tokens", self.tokens),
            ("channels", self.channels),
            ("width", self.width),
            ("depth", self.depth),
            ("heads", self.heads),
            ("codebook_size", self.codebook_size),
            ("flow_mul", self.flow_mul),
            ("steps", self.steps),
            ("batch", self.batch),
            ("eval_every", self.eval_every),
            ("eval_images", self.eval_images),
            ("knn_k", self.knn_k),
            ("exact_steps", self.exact_steps),
        ])?;
        positive_rates(&[
            ("lr", self.lr),
            ("disc_lr", self.disc_lr),
            ("tau", self.tau),
        ])?;
        if !self.width.is_multiple_of(self.heads) {
            return Err(format!(
                "`width` ({}) must be a multiple of `heads` ({})",
                self.width, self.heads
            ));
        }
        for (k, v) in [
            ("lambda", self.lambda),
            ("kl_weight", self.kl_weight),
            ("entropy_weight", self.entropy_weight),
            ("semantic_weight", self.semantic_weight),
            ("l2_weight", self.l2_weight),
            ("l1_weight", self.l1_weight),
            ("perceptual_weight", self.perceptual_weight),
            ("adv_weight", self.adv_weight),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(format!(
                    "`{k}` must be a finite non-negative number, got {v}"
                ));
            }
        }
        if self.l2_weight + self.l1_weight <= 0.0 {
            return Err("`l2_weight` + `l1_weight` must be positive (a pixel loss)".into());
        }
        if self.lambda > 0.0 && !self.prior {
            return Err(format!(
                "`lambda` = {} aligns to a prior: set `prior` = true (and list the prior stage)",
                self.lambda
            ));
        }
        Ok(())
    }

    /// Checks against the inputs: the classifier's dataset and the prior's dimension.
    pub fn check_inputs(
        &self,
        classifier: &ClassifierConfig,
        prior: Option<&PriorConfig>,
        semantic: Option<&DinoConfig>,
    ) -> std::result::Result<(), String> {
        if let Some(d) = semantic
            && d.dataset != self.dataset
        {
            return Err(format!(
                "the semantic features are of {}, the tokenizer trains on {}: set `dino.dataset`",
                d.dataset.name(),
                self.dataset.name()
            ));
        }
        if classifier.dataset != self.dataset {
            return Err(format!(
                "the classifier is trained on {}, the tokenizer on {}: set `classifier.dataset`",
                classifier.dataset.name(),
                self.dataset.name()
            ));
        }
        if let Some(p) = prior
            && p.dim != self.channels
        {
            return Err(format!(
                "the prior lives in {} dimensions but the latent tokens have `channels` = {}: set `prior.dim` = `tokenizer.channels`",
                p.dim, self.channels
            ));
        }
        Ok(())
    }

    /// The run: this configuration, the hashes of its classifier and prior runs, and the content of
    /// the feature networks' weights files (`weights`, by network name).
    pub fn run_spec(
        &self,
        classifier_hash: &str,
        prior_hash: Option<&str>,
        semantic_hash: Option<&str>,
        weights: &std::collections::BTreeMap<String, String>,
    ) -> RunSpec {
        let mut inputs = vec![("classifier", classifier_hash)];
        if let Some(h) = prior_hash {
            inputs.push((super::prior::PRIOR, h));
        }
        if let Some(h) = semantic_hash {
            inputs.push((super::dino::DINO, h));
        }
        let extra = weights_entry(weights)
            .into_iter()
            .chain(super::tiled_gradient_entry(
                self.lambda > 0.0 && self.flow_mul > 1,
            ));
        let config = super::identity(self, &inputs, extra);
        RunSpec {
            stage: TOKENIZER.into(),
            name: format!(
                "{TOKENIZER}/{}-{}-l{}",
                self.dataset.name(),
                self.regulariser.name(),
                self.lambda
            ),
            config,
            seed: Some(self.seed as i64),
        }
    }

    /// The stages this configuration reads, in order: the classifier, the prior (`prior`), the dino
    /// stage (`semantic_weight > 0`).
    pub fn inputs(&self) -> Vec<&'static str> {
        let mut v = vec![super::classifier::CLASSIFIER];
        if self.prior {
            v.push(super::prior::PRIOR);
        }
        if self.semantic_weight > 0.0 {
            v.push(super::dino::DINO);
        }
        v
    }

    /// `inputs` (in [`TokenizerConfig::inputs`] order) as (classifier, prior, dino) slots.
    pub fn input_slots<'i, T>(&self, inputs: &'i [T]) -> [Option<&'i T>; 3] {
        let mut it = inputs.iter();
        let classifier = it.next();
        let prior = if self.prior { it.next() } else { None };
        let dino = if self.semantic_weight > 0.0 {
            it.next()
        } else {
            None
        };
        [classifier, prior, dino]
    }

    /// The model's sizes; `semantic_dim` is the semantic features' dimension (0 without them).
    pub fn shape(&self, semantic_dim: usize) -> TokenizerShape {
        TokenizerShape {
            tokens: self.tokens,
            channels: self.channels,
            width: self.width,
            depth: self.depth,
            heads: self.heads,
            codebook_size: self.codebook_size,
            regulariser: self.regulariser,
            tau: self.tau,
            semantic_dim,
        }
    }
}

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
        super::run_or_reuse(self.store, &spec, backend, self.claim, |run| {
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
    let file = super::input_artifact(job.store, up.run, "prior")?;
    let net = load_prior::<B>(up.config.net(), &file, device)
        .map_err(|m| Error::input(&file, m))?
        .no_grad();
    let tfile = super::input_artifact(job.store, up.run, "targets")?;
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
    fn batch<B: Backend>(
        &self,
        idx: &[usize],
        device: &B::Device,
    ) -> Option<(Tensor<B, 1, Int>, Tensor<B, 2>)> {
        let pos: Vec<i64> = (0..idx.len())
            .filter(|&p| idx[p] < self.n)
            .map(|p| p as i64)
            .collect();
        if pos.is_empty() {
            return None;
        }
        let feats: Vec<f32> = pos
            .iter()
            .flat_map(|&p| {
                let i = idx[p as usize];
                self.rows[i * self.dim..(i + 1) * self.dim].iter().copied()
            })
            .collect();
        let m = pos.len();
        Some((
            Tensor::from_data(TensorData::new(pos, [m]), device),
            Tensor::from_data(TensorData::new(feats, [m, self.dim]), device),
        ))
    }
}

/// The `dino` run's features, averaged over each image's tokens.
fn load_semantic(job: &TokenizerJob<'_>, up: &Upstream<DinoConfig>) -> Result<Semantic> {
    let file = super::input_artifact(job.store, up.run, super::latent_ae::FEATURES)?;
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
    let rec: Vec<f32> = to_host(model.decode(z.clone()))
        .into_iter()
        .map(|v| v as f32)
        .collect();
    run.log("eval/psnr", step as i64, psnr(&curves.x, &rec, 784))?;
    let Some(prior) = curves.prior else {
        return Ok(());
    };
    let [b, l, c] = z.dims();
    let flat = z.reshape([b * l, c]);
    let la = scalar(align_loss(&prior.inner, flat.clone(), 4));
    let tokens: Vec<f32> = to_host(flat.clone())
        .into_iter()
        .map(|v| v as f32)
        .collect();
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
    if !la.is_finite() {
        return Err(Error::Diverged {
            step,
            key: "align/l_align".into(),
            value: la,
        });
    }
    Ok(())
}

/// What a training step reads besides the tokenizer and the batch: the networks it does not optimise
/// (classifier, discriminator, prior) and the batch's semantic targets.
pub struct StepContext<'a, B: AutodiffBackend> {
    pub classifier: &'a MlpClassifier<B>,
    pub disc: &'a Discriminator<B>,
    pub prior: Option<&'a SimpleMlpAdaLn<B>>,
    /// The sample-level alignment's targets: rows of the batch that have a semantic feature, and
    /// those features [rows, D].
    pub semantic: Option<(Tensor<B, 1, Int>, Tensor<B, 2>)>,
}

/// The losses of one training step; `total` is what the tokenizer's optimiser minimises.
pub struct StepLosses<B: Backend> {
    pub total: Tensor<B, 1>,
    pub l2: Tensor<B, 1>,
    pub l1: Tensor<B, 1>,
    pub perceptual: Tensor<B, 1>,
    /// The regulariser's loss (KL or SoftVQ entropy), unweighted.
    pub reg: Option<Tensor<B, 1>>,
    /// The generator's hinge loss (from `disc_start` on), unweighted.
    pub adv: Option<Tensor<B, 1>>,
    /// L_align of the batch's latent tokens (lambda > 0), unweighted.
    pub align: Option<Tensor<B, 1>>,
    /// The sample-level alignment loss (semantic_weight > 0 and rows with features), unweighted.
    pub semantic: Option<Tensor<B, 1>>,
    /// The batch's reconstructions.
    pub recon: Tensor<B, 2>,
}

/// `l2_weight * L2 + l1_weight * L1 + perceptual_weight * P + adv_weight * G + reg_weight * R +
/// semantic_weight * S + lambda * L_align` of a batch `x` [B, 784] at `step`.
pub fn step_losses<B: AutodiffBackend>(
    cfg: &TokenizerConfig,
    model: &Tokenizer<B>,
    ctx: &StepContext<'_, B>,
    x: Tensor<B, 2>,
    step: usize,
) -> StepLosses<B> {
    let out = model.forward_train(x.clone());
    let diff = out.recon.clone() - x.clone();
    let l2 = diff.clone().powi_scalar(2).mean();
    let l1 = diff.abs().mean();
    let mut total = l2.clone() * cfg.l2_weight + l1.clone() * cfg.l1_weight;
    let perceptual = (ctx.classifier.features(out.recon.clone())
        - ctx.classifier.features(x).detach())
    .powi_scalar(2)
    .mean();
    if cfg.perceptual_weight > 0.0 {
        total = total + perceptual.clone() * cfg.perceptual_weight;
    }
    let adv = (step >= cfg.disc_start && cfg.adv_weight > 0.0)
        .then(|| hinge_g_loss(ctx.disc.forward(out.recon.clone())));
    if let Some(g) = &adv {
        total = total + g.clone() * cfg.adv_weight;
    }
    let reg_weight = match cfg.regulariser {
        Regulariser::None => 0.0,
        Regulariser::Kl => cfg.kl_weight,
        Regulariser::Softvq => cfg.entropy_weight,
    };
    let reg = (cfg.regulariser != Regulariser::None).then_some(out.reg);
    if let Some(r) = &reg {
        total = total + r.clone() * reg_weight;
    }
    let semantic = match &ctx.semantic {
        Some((rows, f)) if cfg.semantic_weight > 0.0 => {
            model.semantic_loss(out.latents.clone().select(0, rows.clone()), f.clone())
        }
        _ => None,
    };
    if let Some(s) = &semantic {
        total = total + s.clone() * cfg.semantic_weight;
    }
    // On flex the frozen prior's part runs data-parallel over the threads (`flow::shard`).
    let align = ctx
        .prior
        .filter(|_| cfg.lambda > 0.0)
        .map(|p| align_loss_sharded(p, out.latents, cfg.flow_mul));
    if let Some(a) = &align {
        total = total + a.clone() * cfg.lambda;
    }
    StepLosses {
        total,
        l2,
        l1,
        perceptual,
        reg,
        adv,
        align,
        semantic,
        recon: out.recon,
    }
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
    let mut train = cfg.dataset.load(&job.data_dir, Split::Train)?;
    if cfg.train_size > 0 {
        train = train.take(cfg.train_size);
    }
    let test = cfg
        .dataset
        .load(&job.data_dir, Split::Test)?
        .take(cfg.test_size);
    if train.dim() != 784 {
        return Err(Error::input(
            &job.data_dir,
            format!(
                "the tokenizer reads 28x28 images, {} has {}x{}",
                train.name, train.height, train.width
            ),
        ));
    }
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
    let mut model = Tokenizer::<B>::new(cfg.shape(semantic_dim), device);
    let mut disc = Discriminator::<B>::new(device);
    let mut optim = AdamConfig::new().init::<B, Tokenizer<B>>();
    let mut optim_d = AdamConfig::new()
        .with_beta_1(0.5)
        .init::<B, Discriminator<B>>();
    let schedule = LrSchedule::Cosine {
        lr: cfg.lr,
        warmup: cfg.warmup,
        total: cfg.steps,
        min_lr: cfg.lr / 10.0,
    };
    let eval_idx: Vec<usize> = (0..cfg.eval_images.min(test.len())).collect();
    let curves = Curves::<B> {
        x: test.gather(&eval_idx).0,
        prior: prior.as_ref(),
    };

    tracing::info!(
        run = run.id(),
        regulariser = cfg.regulariser.name(),
        lambda = cfg.lambda,
        "tokenizer: training"
    );
    let bar = super::progress_bar(cfg.steps as u64, TOKENIZER);
    let log_every = (cfg.steps / 100).max(1);
    let started = Instant::now();
    for (step, idx) in train
        .batches(cfg.batch, cfg.seed)
        .take(cfg.steps)
        .enumerate()
    {
        if step.is_multiple_of(cfg.eval_every) {
            log_curves::<B>(cfg, &model.valid(), &curves, run, step, device)?;
        }
        let (xv, _) = train.gather(&idx);
        let x = from_host_f32::<B>(xv, 784, device);
        let parts = StepContext {
            classifier: &classifier,
            disc: &disc,
            prior: prior.as_ref().map(|p| &p.net),
            semantic: semantic.as_ref().and_then(|s| s.batch::<B>(&idx, device)),
        };
        let l = step_losses(cfg, &model, &parts, x.clone(), step);
        let log_now = step.is_multiple_of(log_every) || step + 1 == cfg.steps;
        if log_now {
            let s = step as i64;
            let value = scalar(l.total.clone());
            for (key, t) in [
                ("ae/l2", Some(&l.l2)),
                ("ae/l1", Some(&l.l1)),
                ("ae/perceptual", Some(&l.perceptual)),
                ("ae/reg", l.reg.as_ref()),
                ("ae/adv", l.adv.as_ref()),
                ("ae/l_align", l.align.as_ref()),
                ("ae/semantic", l.semantic.as_ref()),
            ] {
                if let Some(t) = t {
                    run.log(key, s, scalar(t.clone()))?;
                }
            }
            run.log("ae/loss", s, value)?;
            if !value.is_finite() {
                return Err(Error::Diverged {
                    step,
                    key: "ae/loss".into(),
                    value,
                });
            }
        }
        let adversarial = l.adv.is_some();
        let recon = l.recon.detach();
        let grads = GradientsParams::from_grads(l.total.backward(), &model);
        model = optim.step(schedule.at(step), model, grads);
        if adversarial {
            let d_loss = hinge_d_loss(disc.forward(x), disc.forward(recon));
            if log_now {
                run.log("disc/loss", step as i64, scalar(d_loss.clone()))?;
            }
            let grads = GradientsParams::from_grads(d_loss.backward(), &disc);
            disc = optim_d.step(cfg.disc_lr, disc, grads);
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    run.log(
        "train/steps_per_s",
        cfg.steps as i64,
        cfg.steps as f64 / secs,
    )?;
    let last = cfg.steps as i64;
    let model_v = model.valid();
    log_curves::<B>(cfg, &model_v, &curves, run, cfg.steps, device)?;

    // Test metrics: PSNR, SSIM, rFID per feature network.
    let all: Vec<usize> = (0..test.len()).collect();
    let (orig, _) = test.gather(&all);
    let mut rec = Vec::with_capacity(orig.len());
    for part in orig.chunks(500 * 784) {
        let r = model_v.reconstruct(from_host_f32::<B::InnerBackend>(part.to_vec(), 784, device));
        rec.extend(to_host(r).into_iter().map(|v| v as f32));
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
    let dir = super::run_dir(job.store, run.id())?;
    let stem = dir.join(TOKENIZER);
    model_v
        .clone()
        .save_file(
            stem.clone(),
            &NamedMpkFileRecorder::<FullPrecisionSettings>::new(),
        )
        .map_err(Error::write(&stem))?;
    run.artifact("weights", &stem.with_extension("mpk"))?;
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
        data.extend(
            to_host(model.latents(from_host_f32::<B>(x, 784, device)))
                .into_iter()
                .map(|v| v as f32),
        );
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
mod tests {
    use super::*;
    use crate::flow::FlowNetConfig;
    use burn::tensor::Distribution;

    type B = crate::backend::TestAutodiff;

    fn flat_params<B: Backend, M: Module<B>>(m: &M) -> Vec<f32> {
        struct Collect(Vec<f32>);
        impl<B: Backend> burn::module::ModuleVisitor<B> for Collect {
            fn visit_float<const D: usize>(&mut self, p: &burn::module::Param<Tensor<B, D>>) {
                self.0.extend(p.val().into_data().iter::<f32>());
            }
        }
        let mut c = Collect(Vec::new());
        m.visit(&mut c);
        c.0
    }

    #[test]
    fn aligned_runs_with_several_draws_carry_the_tiled_gradient_key() {
        let weights = std::collections::BTreeMap::new();
        let key = crate::jobs::TILED_GRADIENT_KEY;
        let has = |c: &TokenizerConfig| {
            c.run_spec("c", Some("p"), None, &weights)
                .config
                .get(key)
                .is_some()
        };
        assert!(has(&tiny(0.01)));
        assert!(!has(&tiny(0.0)));
        assert!(!has(&TokenizerConfig {
            flow_mul: 1,
            ..tiny(0.01)
        }));
    }

    fn tiny(lambda: f64) -> TokenizerConfig {
        TokenizerConfig {
            tokens: 3,
            channels: 2,
            width: 8,
            depth: 1,
            heads: 2,
            lambda,
            disc_start: 0,
            ..TokenizerConfig::default()
        }
    }

    #[test]
    fn training_steps_move_the_tokenizer_and_leave_the_prior_frozen() {
        let device = Default::default();
        let cfg = tiny(1.0);
        let prior = FlowNetConfig {
            dim: 2,
            width: 16,
            depth: 1,
        }
        .init::<B>(&device);
        // A prior that is not the zero field (its zero-initialised layers would hide changes).
        let prior = {
            let mut p = prior;
            let mut optim = AdamConfig::new().init::<B, SimpleMlpAdaLn<B>>();
            for _ in 0..3 {
                let y = Tensor::<B, 2>::random([32, 2], Distribution::Normal(1.0, 0.2), &device);
                let loss = crate::flow::flow_matching_loss(&p, y);
                let g = GradientsParams::from_grads(loss.backward(), &p);
                p = optim.step(1e-2, p, g);
            }
            p.no_grad()
        };
        let classifier = MlpClassifier::<B>::new(784, 8, 10, &device).no_grad();
        let disc = Discriminator::<B>::new(&device);
        let mut model = Tokenizer::<B>::new(cfg.shape(0), &device);
        let prior_before = flat_params(&prior);
        let model_before = flat_params(&model);
        let mut optim = AdamConfig::new().init::<B, Tokenizer<B>>();
        for step in 0..3 {
            let x = Tensor::<B, 2>::random([4, 784], Distribution::Uniform(0.0, 1.0), &device);
            let ctx = StepContext {
                classifier: &classifier,
                disc: &disc,
                prior: Some(&prior),
                semantic: None,
            };
            let l = step_losses(&cfg, &model, &ctx, x, step);
            assert!(l.align.is_some() && l.adv.is_some() && l.reg.is_none());
            let grads = l.total.backward();
            // No gradient reaches the prior's parameters; the loss still reaches the latents.
            let mut prior_grads = 0;
            struct Count<'g>(&'g <B as AutodiffBackend>::Gradients, &'g mut usize);
            impl burn::module::ModuleVisitor<B> for Count<'_> {
                fn visit_float<const D: usize>(&mut self, p: &burn::module::Param<Tensor<B, D>>) {
                    if p.val().grad(self.0).is_some() {
                        *self.1 += 1;
                    }
                }
            }
            prior.visit(&mut Count(&grads, &mut prior_grads));
            assert_eq!(prior_grads, 0, "the prior received gradients");
            let g = GradientsParams::from_grads(grads, &model);
            model = optim.step(1e-3, model, g);
        }
        assert_eq!(
            flat_params(&prior),
            prior_before,
            "the prior's parameters changed"
        );
        assert_ne!(
            flat_params(&model),
            model_before,
            "the tokenizer did not move"
        );
    }

    #[test]
    fn the_total_loss_adds_the_weighted_terms() {
        let device = Default::default();
        let mut cfg = tiny(0.5);
        cfg.regulariser = Regulariser::Kl;
        cfg.kl_weight = 0.25;
        cfg.l1_weight = 2.0;
        cfg.perceptual_weight = 0.3;
        cfg.adv_weight = 0.7;
        let prior = FlowNetConfig {
            dim: 2,
            width: 8,
            depth: 1,
        }
        .init::<B>(&device)
        .no_grad();
        let classifier = MlpClassifier::<B>::new(784, 8, 10, &device).no_grad();
        let disc = Discriminator::<B>::new(&device);
        let model = Tokenizer::<B>::new(cfg.shape(0), &device);
        let ctx = StepContext {
            classifier: &classifier,
            disc: &disc,
            prior: Some(&prior),
            semantic: None,
        };
        let x = Tensor::<B, 2>::random([3, 784], Distribution::Uniform(0.0, 1.0), &device);
        let l = step_losses(&cfg, &model, &ctx, x, 5);
        let v = |t: &Tensor<B, 1>| scalar(t.clone());
        let (Some(reg), Some(adv), Some(align)) = (&l.reg, &l.adv, &l.align) else {
            panic!("every term is on");
        };
        let want = v(&l.l2)
            + 2.0 * v(&l.l1)
            + 0.3 * v(&l.perceptual)
            + 0.7 * v(adv)
            + 0.25 * v(reg)
            + 0.5 * v(align);
        assert!((v(&l.total) - want).abs() < 1e-5 * want.abs().max(1.0));
        // Before `disc_start` there is no adversarial term; lambda = 0 has no alignment term.
        cfg.disc_start = 10;
        cfg.lambda = 0.0;
        let l = step_losses(
            &cfg,
            &model,
            &ctx,
            Tensor::random([3, 784], Distribution::Uniform(0.0, 1.0), &device),
            5,
        );
        assert!(l.adv.is_none() && l.align.is_none());
    }
}
