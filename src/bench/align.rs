//! The cost of alignment (what `flowprior bench align` measures): tokenizer training steps per second
//! with lambda = 0 and lambda > 0 under a frozen prior, the same step as the `tokenizer` stage (every
//! loss term on: pixel, perceptual, adversarial with its discriminator step), timed after a warm-up.

use std::time::Instant;

use burn::module::Module;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Distribution, Tensor};

use crate::backend::BackendJob;
use crate::flow::FlowNetConfig;
use crate::models::classifier::MlpClassifier;
use crate::models::tokenizer::{Discriminator, Tokenizer};
use crate::optim::Adam;
use crate::stage::tokenizer::{
    Frozen, StepBatch, TokenizerConfig, Trainers, step_blocks, train_step,
};
use crate::train::{LrSchedule, Trainer};

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
        let rate = |lr| LrSchedule::Constant { lr };
        let mut trainers = Trainers {
            ae: Trainer::new(
                Tokenizer::<B>::new(cfg.shape(0), &device),
                Adam::default(),
                rate(1e-4),
            ),
            disc: Trainer::new(
                Discriminator::<B>::new(&device),
                Adam::default(),
                rate(1e-4),
            ),
        };
        let frozen = Frozen {
            classifier: &classifier,
            prior: Some(&prior),
        };
        let batch = StepBatch {
            x: Tensor::<B::InnerBackend, 2>::random(
                [cfg.batch, 784],
                Distribution::Uniform(0.0, 1.0),
                &device,
            ),
            semantic: None,
        };
        let blocks = step_blocks::<B>(cfg.batch);
        let mut step = |i: usize| {
            train_step(cfg, &mut trainers, &frozen, &batch, i, blocks, false);
        };
        for i in 0..self.warmup {
            step(i);
        }
        let _ = B::sync(&device);
        let start = Instant::now();
        for i in 0..self.steps {
            step(i);
        }
        let _ = B::sync(&device);
        let secs = start.elapsed().as_secs_f64();
        self.steps as f64 / secs.max(1e-9)
    }
}

/// Floating-point operations of the flow prior (`SimpleMlpAdaLn`: time embedding over 256 sinusoidal
/// features, input projection, `depth` blocks of adaLN (three w -> w Linears), fc1 and fc2, the final
/// adaLN (two) and output Linear), per point, counting the matrix products (2 per multiply-add; the
/// element-wise work is left out).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PriorFlops {
    /// One forward pass.
    pub forward: f64,
    /// The gradient with respect to the input only (what L_align needs of a frozen prior): back through
    /// the products on the input's path (input projection, fc1 and fc2 of each block, output Linear);
    /// the time path and the modulations' own Linears need no gradient.
    pub input_grad: f64,
    /// A training step of the prior itself: forward, then the gradients of every weight and of every
    /// product's input except the sinusoidal features'.
    pub train: f64,
}

impl PriorFlops {
    pub fn new(dim: usize, width: usize, depth: usize) -> PriorFlops {
        let (d, w, k) = (dim as f64, width as f64, depth as f64);
        let time = 2.0 * 256.0 * w + 2.0 * w * w;
        let path = 2.0 * d * w + k * 4.0 * w * w + 2.0 * w * d;
        let modulations = k * 6.0 * w * w + 4.0 * w * w;
        let forward = time + path + modulations;
        PriorFlops {
            forward,
            input_grad: path,
            train: 3.0 * forward - 2.0 * 256.0 * w,
        }
    }

    /// What L_align adds per latent point: the prior's forward and its input gradient.
    pub fn align(&self) -> f64 {
        self.forward + self.input_grad
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::FlowNetConfig;
    use burn::module::{Module, ModuleVisitor, Param};

    /// A forward pass of a network of Linears applied to each point costs 2 flops per weight-matrix
    /// element: count the prior's matrix elements by visiting its parameters (rank-2 tensors only:
    /// biases and LayerNorm vectors are rank 1).
    #[test]
    fn forward_flops_are_twice_the_weight_matrix_elements() {
        type B = crate::backend::TestBackend;
        struct Count(usize);
        impl ModuleVisitor<B> for Count {
            fn visit_float<const D: usize>(&mut self, p: &Param<burn::tensor::Tensor<B, D>>) {
                if D == 2 {
                    self.0 += p.val().dims().iter().product::<usize>();
                }
            }
        }
        for (d, w, k) in [(16, 256, 3), (32, 1024, 6), (2, 64, 1)] {
            let net = FlowNetConfig {
                dim: d,
                width: w,
                depth: k,
            }
            .init::<B>(&Default::default());
            let mut c = Count(0);
            net.visit(&mut c);
            let f = PriorFlops::new(d, w, k);
            assert_eq!(f.forward, 2.0 * c.0 as f64, "d {d} w {w} depth {k}");
            // The input path is a part of the forward pass; training costs about three forwards.
            assert!(
                f.input_grad < f.forward && f.train > 2.5 * f.forward && f.train < 3.0 * f.forward
            );
        }
    }
}
