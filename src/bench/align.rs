//! The cost of alignment (what `flowprior bench align` measures): tokenizer training steps per second
//! with lambda = 0 and lambda > 0 under a frozen prior, the same step as the `tokenizer` stage (every
//! loss term on: pixel, perceptual, adversarial with its discriminator step), timed after a warm-up.

use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Distribution, Tensor};

use crate::backend::BackendJob;
use crate::flow::FlowNetConfig;
use crate::models::classifier::MlpClassifier;
use crate::models::tokenizer::{Discriminator, Tokenizer, hinge_d_loss};
use crate::stage::tokenizer::{StepContext, TokenizerConfig, step_losses};

/// One measured configuration.
#[derive(Debug, Clone)]
pub struct AlignBench {
    /// The tokenizer (its `lambda` is what is measured; `disc_start` should be 0).
    pub tokenizer: TokenizerConfig,
    /// The prior's width and depth (its dim is the tokenizer's `channels`).
    pub prior_width: usize,
    pub prior_depth: usize,
    pub steps: usize,
    pub warmup: usize,
}

impl BackendJob for AlignBench {
    type Output = f64;

    /// Returns training steps per second.
    fn run<B: AutodiffBackend>(self, device: B::Device) -> f64 {
        B::seed(&device, 0);
        let cfg = &self.tokenizer;
        let prior = FlowNetConfig {
            dim: cfg.channels,
            width: self.prior_width,
            depth: self.prior_depth,
        }
        .init::<B>(&device)
        .no_grad();
        let classifier = MlpClassifier::<B>::new(784, 256, 10, &device).no_grad();
        let mut disc = Discriminator::<B>::new(&device);
        let mut model = Tokenizer::<B>::new(cfg.shape(0), &device);
        let mut optim = AdamConfig::new().init::<B, Tokenizer<B>>();
        let mut optim_d = AdamConfig::new().init::<B, Discriminator<B>>();
        let x = Tensor::<B, 2>::random([cfg.batch, 784], Distribution::Uniform(0.0, 1.0), &device);
        let mut step = |model: Tokenizer<B>, disc: Discriminator<B>, i: usize| {
            let ctx = StepContext {
                classifier: &classifier,
                disc: &disc,
                prior: Some(&prior),
                semantic: None,
            };
            let l = step_losses(cfg, &model, &ctx, x.clone(), i);
            let recon = l.recon.clone().detach();
            let g = GradientsParams::from_grads(l.total.backward(), &model);
            let model = optim.step(1e-4, model, g);
            let d_loss = hinge_d_loss(disc.forward(x.clone()), disc.forward(recon));
            let g = GradientsParams::from_grads(d_loss.backward(), &disc);
            let disc = optim_d.step(1e-4, disc, g);
            (model, disc)
        };
        for i in 0..self.warmup {
            (model, disc) = step(model, disc, i);
        }
        let _ = B::sync(&device);
        let start = Instant::now();
        for i in 0..self.steps {
            (model, disc) = step(model, disc, i);
        }
        let _ = B::sync(&device);
        let secs = start.elapsed().as_secs_f64();
        drop((model, disc));
        self.steps as f64 / secs.max(1e-9)
    }
}
