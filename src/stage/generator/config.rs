//! The generator stage's configuration: which generator (MAR or DiT), its sizes, training, sampling,
//! guidance and metrics; optional MAR settings that older runs' identities lack; checks and run identity.

use super::GENERATOR;
use crate::backend::BackendKind;
use crate::config::{fractions, positive_counts, positive_rates};
use crate::models::cond::{ADAM_BETA2_DEFAULT, CondTrainConfig};
use crate::models::dit::DitShape;
use crate::models::mar::{CfgSchedule, EMBED_STD_MAR, MASK_RATIO_MIN, MarShape, MaskRatio};
use crate::stage::classifier::ClassifierConfig;
use crate::stage::feature_nets::{FeatureNet, weights_entry};
use crate::stage::tokenizer::TokenizerConfig;
use crate::store::RunSpec;
use crate::train::LrSchedule;
use serde::{Deserialize, Serialize};

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
    "cfg_schedule",
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
    /// How the guidance scale grows over the sampling steps: `linear` (MAR's, the default) or
    /// `constant` (the full scale at every step, as `dit` applies it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cfg_schedule: Option<CfgSchedule>,
}

/// Samples generated per call of the sampler. A GPU runs the per-step kernels of a small chunk at
/// launch-bound speed (MAR's sampler makes `iters x sample_steps` head calls per chunk: at 250 samples,
/// 10k samples took minutes on an H100), so GPU backends take ten times more per call. Part of the
/// run's identity through `backend`, since the chunking orders the random draws.
pub fn sample_chunk(backend: BackendKind) -> usize {
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
            cfg_schedule: None,
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

    /// The dit network for `tokens` x `channels` latents of `classes` classes.
    pub fn dit_shape(&self, tokens: usize, channels: usize, classes: usize) -> DitShape {
        DitShape {
            tokens,
            channels,
            width: self.width,
            depth: self.depth,
            heads: self.heads,
            classes,
        }
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

    /// MAR's guidance schedule (default MAR's linear one).
    pub fn cfg_schedule(&self) -> CfgSchedule {
        self.cfg_schedule.unwrap_or_default()
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
        let config = crate::jobs::identity(
            self,
            &[
                ("classifier", classifier_hash),
                ("tokenizer", tokenizer_hash),
            ],
            weights_entry(weights)
                .into_iter()
                .chain(crate::jobs::tiled_gradient_entry(
                    self.generator == GeneratorKind::Mar && self.flow_mul() > 1,
                ))
                .chain(crate::jobs::ema_start_entry(self.ema_decay > 0.0)),
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
