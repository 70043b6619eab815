//! Training-step throughput of a flow prior (what `flowprior bench prior` measures): the velocity
//! network at a given size, the flow-matching loss and an Adam step, timed after a warm-up.

use std::time::Instant;

use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Distribution, Tensor};
use serde::Serialize;

use crate::backend::BackendJob;
use crate::flow::{FlowNetConfig, SimpleMlpAdaLn, flow_matching_loss};

/// The measured size.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct PriorBench {
    pub dim: usize,
    pub width: usize,
    pub depth: usize,
    pub batch: usize,
    pub steps: usize,
    pub warmup: usize,
}

impl BackendJob for PriorBench {
    type Output = f64;

    /// Returns training steps per second.
    fn run<B: AutodiffBackend>(self, device: B::Device) -> f64 {
        B::seed(&device, 0);
        let mut net = FlowNetConfig {
            dim: self.dim,
            width: self.width,
            depth: self.depth,
        }
        .init::<B>(&device);
        let mut optim = AdamConfig::new()
            .with_epsilon(1e-8)
            .init::<B, SimpleMlpAdaLn<B>>();
        let data = Tensor::<B, 2>::random(
            [self.batch, self.dim],
            Distribution::Normal(0.0, 1.0),
            &device,
        );
        let mut step = |net: SimpleMlpAdaLn<B>| {
            let loss = flow_matching_loss(&net, data.clone());
            let grads = GradientsParams::from_grads(loss.backward(), &net);
            optim.step(1e-4, net, grads)
        };
        for _ in 0..self.warmup {
            net = step(net);
        }
        // Make sure queued work (GPU backends) is done before and after timing.
        let _ = B::sync(&device);
        let start = Instant::now();
        for _ in 0..self.steps {
            net = step(net);
        }
        let _ = B::sync(&device);
        let secs = start.elapsed().as_secs_f64();
        drop(net);
        self.steps as f64 / secs.max(1e-9)
    }
}
