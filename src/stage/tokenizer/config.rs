//! The tokenizer stage's configuration: model sizes, losses and their weights, training and
//! evaluation settings; its checks, inputs and run identity.

use crate::backend::BackendKind;
use crate::config::{positive_counts, positive_rates};
use crate::data::DatasetId;
use crate::models::tokenizer::{Regulariser, TokenizerShape};
use crate::stage::classifier::ClassifierConfig;
use crate::stage::dino::DinoConfig;
use crate::stage::feature_nets::{FeatureNet, weights_entry};
use crate::stage::prior::PriorConfig;
use crate::store::RunSpec;
use serde::{Deserialize, Serialize};

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
            inputs.push((crate::stage::prior::PRIOR, h));
        }
        if let Some(h) = semantic_hash {
            inputs.push((crate::stage::dino::DINO, h));
        }
        let extra = weights_entry(weights)
            .into_iter()
            .chain(crate::jobs::tiled_gradient_entry(
                self.lambda > 0.0 && self.flow_mul > 1,
            ));
        let config = crate::jobs::identity(self, &inputs, extra);
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
        let mut v = vec![crate::stage::classifier::CLASSIFIER];
        if self.prior {
            v.push(crate::stage::prior::PRIOR);
        }
        if self.semantic_weight > 0.0 {
            v.push(crate::stage::dino::DINO);
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
