//! The `generator` stage (paper Table 1, right half): a class-conditional generator trained by flow
//! matching on the latent tokens of the sweep's `tokenizer` run, sampled with and without
//! classifier-free guidance, its samples decoded by that tokenizer and scored against real test images
//! with FID-like Frechet distances, the Inception Score and k-NN precision/recall, each named by its
//! feature network. Two generators: `dit`, a small DiT with adaLN-Zero (latent flow matching, seed
//! 003), and `mar`, the paper's masked autoregressive transformer with a per-token flow head
//! (`models::mar`).
//!
//! Latents are divided by their global standard deviation before training (the scaling factor MAR
//! estimates from data) and multiplied back before decoding.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::{AutodiffModule, Module};
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::Upstream;
use super::classifier::ClassifierConfig;
use super::feature_nets::{
    FeatureNet, LoadedNet, load_classifier, weights_entry, weights_identity,
};
use super::tokenizer::{LABELS, LATENTS, TokenizerConfig};
use super::{Claim, JobRun};
use crate::backend::{BackendJob, BackendKind};
use crate::config::{fractions, positive_counts, positive_rates};
use crate::data::Split;
use crate::error::{Error, Result};
use crate::features::read_features;
use crate::flow::schedule::LrSchedule;
use crate::metrics::frechet::frechet_from_samples;
use crate::metrics::inception_score::{inception_score, softmax_rows};
use crate::metrics::knn::precision_recall;
use crate::models::cond::{
    ADAM_BETA2_DEFAULT, CondTrainConfig, LabelledLatents, cond_flow_loss, train_generator,
};
use crate::models::dit::{Dit, DitShape};
use crate::models::mar::{EMBED_STD_MAR, MASK_RATIO_MIN, Mar, MarShape, MaskRatio};
use crate::models::tokenizer::Tokenizer;
use crate::store::{ActiveRun, RunSpec, Store};
use crate::tensors::to_host;

/// Stage name.
pub const GENERATOR: &str = "generator";
/// The size of the semantic head of tokenizer runs recorded before they logged it: the `dino` stage's
/// pooled features, their only source then.
const LEGACY_SEMANTIC_DIM: usize = 1280;

/// Which generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GeneratorKind {
    /// Class-conditional flow matching with a DiT over the latent tokens.
    Dit,
    /// MAR: a masked autoregressive transformer with a per-token flow head.
    Mar,
}

impl GeneratorKind {
    pub fn name(self) -> &'static str {
        match self {
            GeneratorKind::Dit => "dit",
            GeneratorKind::Mar => "mar",
        }
    }
}

/// Settings left out of a configuration (and of its identity) unless set: the optimiser's (the first
/// [`SHARED_OPTIONAL`], either generator) and MAR's.
pub const OPTIONAL_SETTINGS: &[&str] = &[
    "adam_eps",
    "adam_beta2",
    "grad_clip",
    "buffer",
    "head_width",
    "head_depth",
    "flow_mul",
    "mask_min",
    "iters",
    "mask",
    "pos_std",
];

/// How many of [`OPTIONAL_SETTINGS`] (the first) both generators take.
const SHARED_OPTIONAL: usize = 3;

/// The optional settings only `mar` takes.
const MAR_SETTINGS: &[&str] = OPTIONAL_SETTINGS.split_at(SHARED_OPTIONAL).1;

/// MAR's distribution of training mask ratios (setting `mask`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MaskSchedule {
    /// MAR's truncated normal on [`mask_min`, 1] (the default).
    Mar,
    /// MaskGIT's cosine ratios, covering every state the sampler visits ([`MaskRatio::Cosine`]).
    Cosine,
}

/// Configuration of a generator run. Every field is part of its identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratorConfig {
    pub generator: GeneratorKind,
    pub width: usize,
    pub depth: usize,
    pub heads: usize,
    /// Adam with linear warm-up and cosine decay to lr / 10; EMA of the weights (the sampler's).
    pub steps: usize,
    pub batch: usize,
    pub lr: f64,
    pub warmup: usize,
    pub ema_decay: f64,
    /// Probability of dropping a label in training (classifier-free guidance).
    pub label_drop: f64,
    /// Euler steps of sampling; the guidance scale of the CFG metrics (1 = no guidance).
    pub sample_steps: usize,
    pub cfg_scale: f64,
    /// Samples scored (balanced over classes) and real test images they are compared with.
    pub samples: usize,
    pub test_size: usize,
    /// k of precision/recall; splits of the Inception Score.
    pub knn_k: usize,
    pub is_splits: usize,
    /// Feature networks of FID, IS and precision/recall.
    pub metrics: Vec<FeatureNet>,
    pub seed: u64,
    pub backend: BackendKind,
    /// Adam's epsilon; unset: 1e-8 for `dit`, 1e-4 for `mar` ([`GeneratorConfig::adam_eps`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adam_eps: Option<f64>,
    /// Adam's second-moment decay (unset: PyTorch's 0.999; MAR trains with 0.95).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adam_beta2: Option<f64>,
    /// Clip the global gradient norm to this value (unset: no clipping; MAR clips at 3.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grad_clip: Option<f64>,
    /// `mar` only, each with its default in [`GeneratorConfig::mar_shape`] and the accessors below.
    /// Copies of the class embedding in front of the tokens (default 4; MAR: 64 for 256 tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffer: Option<usize>,
    /// Width and residual blocks of the flow head (default: the transformer's width, 3 blocks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_width: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_depth: Option<usize>,
    /// (t, x0) draws per token in training (default 4, MAR's `diffusion_batch_mul`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_mul: Option<usize>,
    /// Lower bound of the training mask ratio (default 0.7, MAR's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask_min: Option<f64>,
    /// Sampling steps over the tokens (default: one token per step).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iters: Option<usize>,
    /// Training mask ratios (default `mar`; `cosine` for short sequences, docs/experiments.md, "Generators").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask: Option<MaskSchedule>,
    /// Initial standard deviation of the position embeddings (default MAR's 0.02; at this project's
    /// sizes 1.0 lets the head learn positions, docs/experiments.md, "Generators").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pos_std: Option<f64>,
}

/// Samples generated per call of the sampler. A GPU runs the per-step kernels of a small chunk at
/// launch-bound speed (MAR's sampler makes `iters x sample_steps` head calls per chunk: at 250 samples,
/// 10k samples took minutes on an H100), so GPU backends take ten times more per call. Part of the
/// run's identity through `backend`, since the chunking orders the random draws.
fn sample_chunk(backend: BackendKind) -> usize {
    match backend {
        BackendKind::Flex => 250,
        BackendKind::Cuda | BackendKind::Tch => 2500,
    }
}

impl Default for GeneratorConfig {
    /// The `small` scale.
    fn default() -> Self {
        GeneratorConfig {
            generator: GeneratorKind::Dit,
            width: 128,
            depth: 4,
            heads: 4,
            steps: 5000,
            batch: 128,
            lr: 5e-4,
            warmup: 200,
            ema_decay: 0.999,
            label_drop: 0.1,
            sample_steps: 100,
            cfg_scale: 2.0,
            samples: 10_000,
            test_size: 10_000,
            knn_k: 3,
            is_splits: 10,
            metrics: vec![FeatureNet::Classifier],
            seed: 0,
            backend: BackendKind::Flex,
            adam_eps: None,
            adam_beta2: None,
            grad_clip: None,
            buffer: None,
            head_width: None,
            head_depth: None,
            flow_mul: None,
            mask_min: None,
            iters: None,
            mask: None,
            pos_std: None,
        }
    }
}

impl GeneratorConfig {
    pub fn validate(&self) -> std::result::Result<(), String> {
        positive_counts(&[
            ("width", self.width),
            ("depth", self.depth),
            ("heads", self.heads),
            ("steps", self.steps),
            ("batch", self.batch),
            ("sample_steps", self.sample_steps),
            ("samples", self.samples),
            ("test_size", self.test_size),
            ("knn_k", self.knn_k),
            ("is_splits", self.is_splits),
        ])?;
        positive_rates(&[
            ("lr", self.lr),
            ("cfg_scale", self.cfg_scale),
            ("adam_eps", self.adam_eps()),
        ])?;
        if !self.width.is_multiple_of(self.heads) {
            return Err(format!(
                "`width` ({}) must be a multiple of `heads` ({})",
                self.width, self.heads
            ));
        }
        fractions(&[
            ("label_drop", self.label_drop),
            ("ema_decay", self.ema_decay),
        ])?;
        // A `mar` setting is set exactly when it is serialised.
        let given = crate::util::config_json(self);
        if self.generator != GeneratorKind::Mar
            && let Some(name) = MAR_SETTINGS.iter().find(|k| given.get(**k).is_some())
        {
            return Err(format!(
                "`{name}` is a setting of generator = \"mar\", not \"{}\"",
                self.generator.name()
            ));
        }
        positive_counts(&[
            ("buffer", self.buffer.unwrap_or(1)),
            ("head_width", self.head_width.unwrap_or(1)),
            ("head_depth", self.head_depth.unwrap_or(1)),
            ("flow_mul", self.flow_mul.unwrap_or(1)),
            ("iters", self.iters.unwrap_or(1)),
        ])?;
        if let Some(v) = self.mask_min
            && !(0.0..=1.0).contains(&v)
        {
            return Err(format!("`mask_min` must be in [0, 1], got {v}"));
        }
        let set_rates: Vec<(&str, f64)> =
            [("pos_std", self.pos_std), ("grad_clip", self.grad_clip)]
                .into_iter()
                .filter_map(|(name, value)| value.map(|v| (name, v)))
                .collect();
        positive_rates(&set_rates)?;
        fractions(&[("adam_beta2", self.adam_beta2())])?;
        if self.mask == Some(MaskSchedule::Cosine) && self.mask_min.is_some() {
            return Err(
                "`mask_min` bounds MAR's mask ratios; it does not apply with mask = \"cosine\""
                    .into(),
            );
        }
        if self.samples <= self.knn_k || self.test_size <= self.knn_k {
            return Err(format!(
                "`samples` and `test_size` must exceed `knn_k` ({})",
                self.knn_k
            ));
        }
        Ok(())
    }

    /// Adam's epsilon: as set, else 1e-8 (PyTorch's) for `dit` and 1e-4 for `mar`: at this project's
    /// sizes MAR's transformer otherwise drifts while the zero-initialised head passes back almost no
    /// gradient (Adam scales tiny gradients to full steps) and can lose the class (docs/experiments.md, "Generators").
    pub fn adam_eps(&self) -> f64 {
        self.adam_eps.unwrap_or(match self.generator {
            GeneratorKind::Dit => 1e-8,
            GeneratorKind::Mar => 1e-4,
        })
    }

    /// The trainer's settings: Adam with warm-up and cosine decay to lr / 10, defaults filled in.
    pub fn train_config(&self) -> CondTrainConfig {
        CondTrainConfig {
            steps: self.steps,
            batch: self.batch,
            schedule: LrSchedule::Cosine {
                lr: self.lr,
                warmup: self.warmup,
                total: self.steps,
                min_lr: self.lr / 10.0,
            },
            label_drop: self.label_drop,
            ema_decay: self.ema_decay,
            adam_eps: self.adam_eps(),
            adam_beta2: self.adam_beta2(),
            grad_clip: self.grad_clip,
            seed: self.seed,
        }
    }

    /// Adam's second-moment decay: as set, else PyTorch's 0.999.
    pub fn adam_beta2(&self) -> f64 {
        self.adam_beta2.unwrap_or(ADAM_BETA2_DEFAULT)
    }

    /// MAR's network for `tokens` x `channels` latents of `classes` classes, defaults filled in.
    pub fn mar_shape(&self, tokens: usize, channels: usize, classes: usize) -> MarShape {
        MarShape {
            tokens,
            channels,
            width: self.width,
            depth: self.depth,
            heads: self.heads,
            classes,
            buffer: self.buffer.unwrap_or(4),
            head_width: self.head_width.unwrap_or(self.width),
            head_depth: self.head_depth.unwrap_or(3),
            pos_std: self.pos_std.unwrap_or(EMBED_STD_MAR),
        }
    }

    /// MAR's (t, x0) draws per token (default 4).
    pub fn flow_mul(&self) -> usize {
        self.flow_mul.unwrap_or(4)
    }

    /// MAR's training mask ratios: `mask` (default MAR's) with `mask_min` (default MAR's 0.7).
    pub fn mask_ratio(&self) -> MaskRatio {
        match self.mask.unwrap_or(MaskSchedule::Mar) {
            MaskSchedule::Mar => MaskRatio::Mar {
                min: self.mask_min.unwrap_or(MASK_RATIO_MIN),
            },
            MaskSchedule::Cosine => MaskRatio::Cosine,
        }
    }

    /// MAR's sampling steps over `tokens` tokens (default one per token).
    pub fn iters(&self, tokens: usize) -> usize {
        self.iters.unwrap_or(tokens)
    }

    /// Checks against the inputs: the classifier scores the tokenizer's dataset.
    pub fn check_inputs(
        &self,
        classifier: &ClassifierConfig,
        tokenizer: &TokenizerConfig,
    ) -> std::result::Result<(), String> {
        if classifier.dataset != tokenizer.dataset {
            return Err(format!(
                "the classifier is trained on {}, the tokenizer on {}",
                classifier.dataset.name(),
                tokenizer.dataset.name()
            ));
        }
        Ok(())
    }

    pub fn run_spec(
        &self,
        classifier_hash: &str,
        tokenizer_hash: &str,
        weights: &std::collections::BTreeMap<String, String>,
    ) -> RunSpec {
        let config = super::identity(
            self,
            &[
                ("classifier", classifier_hash),
                ("tokenizer", tokenizer_hash),
            ],
            weights_entry(weights)
                .into_iter()
                .chain(super::tiled_gradient_entry(
                    self.generator == GeneratorKind::Mar && self.flow_mul() > 1,
                )),
        );
        RunSpec {
            stage: GENERATOR.into(),
            name: format!(
                "{GENERATOR}/{}-w{}-d{}",
                self.generator.name(),
                self.width,
                self.depth
            ),
            config,
            seed: Some(self.seed as i64),
        }
    }
}

/// The job.
pub struct GeneratorJob<'a> {
    pub config: GeneratorConfig,
    pub classifier: Upstream<ClassifierConfig>,
    pub tokenizer: Upstream<TokenizerConfig>,
    pub data_dir: PathBuf,
    pub store: &'a Store,
    pub claim: Claim,
}

impl BackendJob for GeneratorJob<'_> {
    type Output = Result<JobRun<i64>>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Result<JobRun<i64>> {
        let weights = weights_identity(
            &self.config.metrics,
            &self.data_dir,
            crate::util::file_identity,
        );
        let spec = self
            .config
            .run_spec(&self.classifier.hash, &self.tokenizer.hash, &weights);
        let backend = self.config.backend.name();
        super::run_or_reuse(self.store, &spec, backend, self.claim, |run| {
            train::<B>(&self, run, &device).map(|()| run.id())
        })
    }
}

/// The tokenizer's semantic head size, as its run recorded it (`semantic/dim`); runs recorded before
/// that key existed had a head exactly when `semantic_weight > 0`, of the dino features' size.
fn semantic_dim(job: &GeneratorJob<'_>, semantic_weight: f64) -> Result<usize> {
    let recorded = job
        .store
        .series(job.tokenizer.run, super::tokenizer::SEMANTIC_DIM_KEY)?;
    Ok(match recorded.last() {
        Some(&(_, v)) => v as usize,
        None if semantic_weight > 0.0 => LEGACY_SEMANTIC_DIM,
        None => 0,
    })
}

/// One feature network's view of the real test images, against which samples are scored.
struct Reference<'a, B: Backend> {
    net: FeatureNet,
    loaded: LoadedNet<'a, B>,
    features: Vec<f32>,
    dim: usize,
}

impl<B: Backend> Reference<'_, B> {
    /// Logs `{prefix}/{fid,is,is_std,precision,recall}_{net}` of the decoded `samples`.
    fn log_scores(
        &self,
        run: &mut ActiveRun<'_>,
        prefix: &str,
        samples: &[f32],
        cfg: &GeneratorConfig,
        device: &B::Device,
    ) -> Result<()> {
        let out = self.loaded.features_and_logits(samples, device);
        let fid = frechet_from_samples(&self.features, &out.features, out.dim);
        let probs = softmax_rows(&out.logits, out.classes);
        let (is, is_std) = inception_score(&probs, out.classes, cfg.is_splits);
        let (p, r) = precision_recall(&self.features, &out.features, self.dim, cfg.knn_k);
        let name = self.net.name();
        for (k, v) in [
            ("fid", fid),
            ("is", is),
            ("is_std", is_std),
            ("precision", p),
            ("recall", r),
        ] {
            run.log(&format!("{prefix}/{k}_{name}"), cfg.steps as i64, v)?;
        }
        Ok(())
    }
}

/// A trained generator (its EMA weights).
enum Generator<B: Backend> {
    Dit(Box<Dit<B>>),
    /// With its number of sampling steps over the tokens.
    Mar(Box<Mar<B>>, usize),
}

impl<B: Backend> Generator<B> {
    /// Latent tokens [B, L, C] for labels `y` with `steps` Euler steps (per token for MAR) and
    /// guidance scale `s`.
    fn sample(
        &self,
        y: &[i64],
        [tokens, channels]: [usize; 2],
        steps: usize,
        s: f64,
        rng: &mut StdRng,
        device: &B::Device,
    ) -> Tensor<B, 3> {
        let b = y.len();
        match self {
            Generator::Dit(net) => {
                let x0: Vec<f32> = (0..b * tokens * channels)
                    .map(|_| rng.sample::<f32, _>(rand_distr::StandardNormal))
                    .collect();
                let x0 = Tensor::from_data(TensorData::new(x0, [b, tokens, channels]), device);
                let y = Tensor::<B, 1, Int>::from_data(TensorData::new(y.to_vec(), [b]), device);
                net.sample(x0, y, steps, s)
            }
            Generator::Mar(net, iters) => {
                let z = net.sample(y, channels, *iters, steps, s, rng, device);
                Tensor::from_data(TensorData::new(z, [b, tokens, channels]), device)
            }
        }
    }

    /// Saves the weights to `stem` + `.mpk`.
    fn save_file(&self, stem: &Path) -> Result<()> {
        let recorder = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
        match self {
            Generator::Dit(net) => net.clone().save_file(stem.to_path_buf(), &recorder),
            Generator::Mar(net, _) => net.clone().save_file(stem.to_path_buf(), &recorder),
        }
        .map_err(Error::write(stem))
    }
}

fn train<B: AutodiffBackend>(
    job: &GeneratorJob<'_>,
    run: &mut ActiveRun<'_>,
    device: &B::Device,
) -> Result<()> {
    let cfg = &job.config;
    let tcfg = &job.tokenizer.config;
    cfg.check_inputs(&job.classifier.config, tcfg)
        .map_err(|m| Error::input(Path::new(GENERATOR), m))?;
    B::seed(device, cfg.seed);
    let lat_file = super::input_artifact(job.store, job.tokenizer.run, LATENTS)?;
    let lab_file = super::input_artifact(job.store, job.tokenizer.run, LABELS)?;
    let mut set = read_features(&lat_file, None)?;
    let labels: Vec<i64> = read_features(&lab_file, None)?
        .data
        .iter()
        .map(|v| *v as i64)
        .collect();
    if labels.len() != set.n || set.n == 0 {
        return Err(Error::input(
            &lab_file,
            format!("{} labels for {} latents", labels.len(), set.n),
        ));
    }
    let test = tcfg
        .dataset
        .load(&job.data_dir, Split::Test)?
        .take(cfg.test_size);
    let classes = test.classes;
    if let Some(bad) = labels.iter().find(|&&y| y < 0 || y as usize >= classes) {
        return Err(Error::input(
            &lab_file,
            format!("label {bad} outside 0..{classes}"),
        ));
    }
    // The scaling factor: 1 / std of every latent value (left at 1 for constant latents).
    let std = set.scale_to_unit_std();
    let scale = if std > 0.0 { 1.0 / std } else { 1.0 };
    run.log("latent/scale", 0, scale)?;
    let latents = set.data;
    let train_cfg = cfg.train_config();
    tracing::info!(
        run = run.id(),
        generator = cfg.generator.name(),
        latents = set.n,
        tokens = set.tokens,
        dim = set.dim,
        "generator: training"
    );
    let bar = super::progress_bar(cfg.steps as u64, GENERATOR);
    let log_every = (cfg.steps / 100).max(1);
    let started = Instant::now();
    let mut on_step = |step: usize, loss: f64| -> Result<()> {
        if step.is_multiple_of(log_every) || step + 1 == cfg.steps {
            run.log("gen/loss", step as i64, loss)?;
        }
        if !loss.is_finite() {
            return Err(Error::Diverged {
                step,
                key: "gen/loss".into(),
                value: loss,
            });
        }
        bar.inc(1);
        Ok(())
    };
    let [tokens, channels] = [set.tokens, set.dim];
    let data = LabelledLatents {
        latents: &latents,
        labels: &labels,
        tokens,
        channels,
    };
    let net = match cfg.generator {
        GeneratorKind::Dit => {
            let shape = DitShape {
                tokens,
                channels,
                width: cfg.width,
                depth: cfg.depth,
                heads: cfg.heads,
                classes,
            };
            let net = train_generator(
                Dit::<B>::new(shape, device),
                &data,
                &train_cfg,
                device,
                |net, x, y, _| cond_flow_loss(net, x, y),
                &mut on_step,
            )?;
            Generator::Dit(Box::new(net.valid()))
        }
        GeneratorKind::Mar => {
            let (flow_mul, ratio) = (cfg.flow_mul(), cfg.mask_ratio());
            let net = train_generator(
                Mar::<B>::new(cfg.mar_shape(tokens, channels, classes), device),
                &data,
                &train_cfg,
                device,
                |net, x, y, rng| net.loss(x, y, flow_mul, ratio, rng),
                &mut on_step,
            )?;
            Generator::Mar(Box::new(net.valid()), cfg.iters(tokens))
        }
    };
    bar.finish_and_clear();
    run.log(
        "gen/steps_per_s",
        cfg.steps as i64,
        cfg.steps as f64 / started.elapsed().as_secs_f64().max(1e-9),
    )?;
    // MAR's class path: how far apart two classes' conditions are (0: the class is not used).
    if let Generator::Mar(net, _) = &net {
        run.log(
            "gen/class_signal",
            cfg.steps as i64,
            net.class_signal(channels, device),
        )?;
    }

    // The tokenizer that decodes, and the feature networks.
    let tok_file = super::input_artifact(job.store, job.tokenizer.run, "weights")?;
    let semantic_dim = semantic_dim(job, tcfg.semantic_weight)?;
    let tokenizer = Tokenizer::<B::InnerBackend>::new(tcfg.shape(semantic_dim), device)
        .load_file(
            tok_file.clone(),
            &NamedMpkFileRecorder::<FullPrecisionSettings>::new(),
            device,
        )
        .map_err(|e| Error::input(&tok_file, format!("cannot load the tokenizer: {e}")))?;
    let classifier =
        load_classifier::<B::InnerBackend>(job.store, &job.classifier, classes, device)?;
    let all: Vec<usize> = (0..test.len()).collect();
    let (real_images, _) = test.gather(&all);

    // Samples without and with guidance, from the same noise, orders and labels, drawn in chunks of
    // `sample_chunk(backend)` samples (the chunking orders the draws, so it is fixed per backend).
    let chunk_size = sample_chunk(cfg.backend);
    let generate = |s: f64| -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(cfg.seed ^ 0x5eed);
        let mut images = Vec::with_capacity(cfg.samples * 784);
        let ids: Vec<usize> = (0..cfg.samples).collect();
        for chunk in ids.chunks(chunk_size) {
            let y: Vec<i64> = chunk.iter().map(|i| (i % classes) as i64).collect();
            let z = net.sample(
                &y,
                [tokens, channels],
                cfg.sample_steps,
                s,
                &mut rng,
                device,
            ) / scale;
            images.extend(to_host(tokenizer.decode(z)).into_iter().map(|v| v as f32));
        }
        images
    };
    let plain = generate(1.0);
    let guided = generate(cfg.cfg_scale);
    run.log("gen_cfg/scale", cfg.steps as i64, cfg.cfg_scale)?;
    for &fnet in &cfg.metrics {
        let loaded = LoadedNet::load(fnet, &job.data_dir, &classifier, device)?;
        let real_out = loaded.features_and_logits(&real_images, device);
        // The reference: the Inception Score of the real test images themselves.
        let (is_real, _) = inception_score(
            &softmax_rows(&real_out.logits, real_out.classes),
            real_out.classes,
            cfg.is_splits,
        );
        run.log(
            &format!("ref/is_{}", fnet.name()),
            cfg.steps as i64,
            is_real,
        )?;
        let reference = Reference {
            net: fnet,
            loaded,
            features: real_out.features,
            dim: real_out.dim,
        };
        for (prefix, images) in [("gen", &plain), ("gen_cfg", &guided)] {
            reference.log_scores(run, prefix, images, cfg, device)?;
        }
    }

    // Artifacts: the generator's weights and a grid of guided samples (one row per class).
    let dir = super::run_dir(job.store, run.id())?;
    let stem = dir.join(GENERATOR);
    net.save_file(&stem)?;
    run.artifact("weights", &stem.with_extension("mpk"))?;
    let per_class = (cfg.samples / classes).min(10);
    let mut grid = Vec::with_capacity(classes * per_class * 784);
    for c in 0..classes {
        for j in 0..per_class {
            let i = j * classes + c;
            grid.extend_from_slice(&guided[i * 784..(i + 1) * 784]);
        }
    }
    let png = dir.join("samples.png");
    crate::plot::image_grid(&png, &grid, 28, per_class.max(1), 2)
        .map_err(|e| Error::write(&png)(std::io::Error::other(e.to_string())))?;
    run.artifact("figure", &png)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mar_settings_are_rejected_for_dit_and_checked_for_mar() {
        let dit = GeneratorConfig {
            buffer: Some(2),
            ..GeneratorConfig::default()
        };
        let err = dit.validate().expect_err("dit takes no buffer");
        assert!(err.contains("`buffer`") && err.contains("\"mar\""), "{err}");
        let mar = GeneratorConfig {
            generator: GeneratorKind::Mar,
            ..dit
        };
        assert_eq!(mar.validate(), Ok(()));
        let bad = GeneratorConfig {
            mask_min: Some(1.5),
            ..mar.clone()
        };
        assert!(
            bad.validate()
                .expect_err("mask_min > 1")
                .contains("mask_min")
        );
        let bad = GeneratorConfig {
            iters: Some(0),
            ..mar.clone()
        };
        assert!(bad.validate().expect_err("iters 0").contains("iters"));
        let bad = GeneratorConfig {
            pos_std: Some(0.0),
            ..mar.clone()
        };
        assert!(bad.validate().expect_err("pos_std 0").contains("pos_std"));
        assert_eq!(mar.mar_shape(16, 16, 10).pos_std, 0.02);
        // Mask ratios: MAR's by default (mask_min 0.7 unless set), the cosine ones without a bound.
        assert_eq!(mar.mask_ratio(), MaskRatio::Mar { min: 0.7 });
        let cosine = GeneratorConfig {
            mask: Some(MaskSchedule::Cosine),
            ..mar.clone()
        };
        assert_eq!(cosine.validate(), Ok(()));
        assert_eq!(cosine.mask_ratio(), MaskRatio::Cosine);
        let bad = GeneratorConfig {
            mask_min: Some(0.2),
            ..cosine.clone()
        };
        assert!(bad.validate().expect_err("bound").contains("mask_min"));
        let bad = GeneratorConfig {
            generator: GeneratorKind::Dit,
            buffer: None,
            ..cosine
        };
        assert!(bad.validate().expect_err("dit").contains("`mask`"));
        // Adam's epsilon: per-generator defaults, a set value wins, and it must be positive.
        assert_eq!(GeneratorConfig::default().adam_eps(), 1e-8);
        assert_eq!(mar.adam_eps(), 1e-4);
        let set = GeneratorConfig {
            adam_eps: Some(1e-6),
            ..mar.clone()
        };
        assert_eq!(set.adam_eps(), 1e-6);
        let bad = GeneratorConfig {
            adam_eps: Some(0.0),
            ..mar.clone()
        };
        assert!(bad.validate().expect_err("eps 0").contains("adam_eps"));
        // MAR's optimiser settings: either generator takes them; beta2 below 1, a positive clip.
        assert_eq!(mar.adam_beta2(), ADAM_BETA2_DEFAULT);
        for generator in [GeneratorKind::Dit, GeneratorKind::Mar] {
            let set = GeneratorConfig {
                generator,
                adam_beta2: Some(0.95),
                grad_clip: Some(3.0),
                ..GeneratorConfig::default()
            };
            assert_eq!(set.validate(), Ok(()));
            let train = set.train_config();
            assert_eq!((train.adam_beta2, train.grad_clip), (0.95, Some(3.0)));
        }
        let unset = GeneratorConfig::default().train_config();
        assert_eq!(
            (unset.adam_beta2, unset.grad_clip),
            (ADAM_BETA2_DEFAULT, None)
        );
        for (beta2, clip, field) in [(1.0, None, "adam_beta2"), (0.9, Some(-1.0), "grad_clip")] {
            let bad = GeneratorConfig {
                adam_beta2: Some(beta2),
                grad_clip: clip,
                ..mar.clone()
            };
            assert!(bad.validate().expect_err(field).contains(field));
        }
    }

    #[test]
    fn unset_mar_settings_leave_the_identity_of_dit_runs_unchanged() {
        // Runs recorded before the settings existed are found again: unset ones are not serialised.
        let json = serde_json::to_value(GeneratorConfig::default()).expect("json");
        let keys: Vec<&str> = json
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        for k in OPTIONAL_SETTINGS {
            assert!(!keys.contains(k), "{k} in {keys:?}");
        }
        // Every optional setting is a field of the configuration.
        for k in OPTIONAL_SETTINGS {
            let value = if *k == "mask" { "\"cosine\"" } else { "1" };
            let text = format!("generator = \"mar\"\n{k} = {value}\n");
            let mut full = serde_json::to_value(GeneratorConfig::default()).expect("json");
            let extra: serde_json::Value = toml::from_str(&text).expect("toml");
            for (key, v) in extra.as_object().expect("table") {
                full[key] = v.clone();
            }
            let cfg: GeneratorConfig = serde_json::from_value(full).expect("known field");
            let back = serde_json::to_value(&cfg).expect("json");
            if *k == "mask" {
                assert_eq!(back[*k].as_str(), Some("cosine"));
            } else {
                assert_eq!(back[*k].as_f64(), Some(1.0), "{k}");
            }
        }
        assert!(keys.contains(&"generator") && keys.contains(&"width"));
    }

    #[test]
    fn mar_runs_carry_the_tiled_gradient_key_and_dit_runs_do_not() {
        let weights = std::collections::BTreeMap::new();
        let key = crate::jobs::TILED_GRADIENT_KEY;
        let dit = GeneratorConfig::default();
        assert_eq!(dit.generator, GeneratorKind::Dit);
        assert!(dit.run_spec("c", "t", &weights).config.get(key).is_none());
        let mar = GeneratorConfig {
            generator: GeneratorKind::Mar,
            ..GeneratorConfig::default()
        };
        assert_eq!(
            mar.run_spec("c", "t", &weights).config[key],
            serde_json::Value::Bool(true)
        );
        let one_draw = GeneratorConfig {
            flow_mul: Some(1),
            ..mar
        };
        assert!(
            one_draw
                .run_spec("c", "t", &weights)
                .config
                .get(key)
                .is_none()
        );
    }
}
