//! Training-step throughput of a flow prior (what `flowprior bench prior` measures): the velocity
//! network at a given size, the flow-matching loss and an Adam step (the prior trainer's own step),
//! timed after a warm-up.

use std::convert::Infallible;
use std::time::Instant;

use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Distribution, Tensor};
use serde::Serialize;

use crate::backend::BackendJob;
use crate::flow::FlowNetConfig;
use crate::flow::train::{OptimizerKind, PriorTrainConfig, train_prior};
use crate::models::cond::ADAM_BETA2_DEFAULT;
use crate::train::LrSchedule;

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

    /// Returns training steps per second of the prior trainer itself (`flow::train::train_prior`, so
    /// whatever it does on this backend: on flex the data-parallel shards and the host Adam) with
    /// Adam at lr 1e-4, PyTorch's defaults otherwise, no clipping and no EMA, as the PyTorch reference.
    /// The clock runs from the last warm-up step's gradients to the last timed step's gradients: that
    /// is `steps` optimiser steps and `steps` gradient computations.
    fn run<B: AutodiffBackend>(self, device: B::Device) -> f64 {
        B::seed(&device, 0);
        let net = FlowNetConfig {
            dim: self.dim,
            width: self.width,
            depth: self.depth,
        };
        let (warmup, steps) = (self.warmup.max(1), self.steps.max(1));
        let cfg = PriorTrainConfig {
            optimizer: OptimizerKind::Adam,
            schedule: LrSchedule::Constant { lr: 1e-4 },
            beta1: 0.9,
            beta2: ADAM_BETA2_DEFAULT,
            weight_decay: 0.0,
            grad_clip: None,
            ema_decay: 0.0,
            steps: warmup + steps,
            batch: self.batch,
        };
        let data = Tensor::<B, 2>::random(
            [self.batch, self.dim],
            Distribution::Normal(0.0, 1.0),
            &device,
        );
        let mut start = None;
        let mut secs = f64::NAN;
        let last = warmup + steps - 1;
        let trained =
            train_prior::<B, Infallible>(net, &cfg, &device, &mut |_| data.clone(), &mut |log| {
                if log.step != warmup - 1 && log.step != last {
                    return Ok(true);
                }
                // Queued work (GPU backends) is done before the clock is read.
                let _ = B::sync(&device);
                if log.step == warmup - 1 {
                    start = Some(Instant::now());
                    return Ok(true);
                }
                secs = start.map_or(f64::NAN, |s| s.elapsed().as_secs_f64());
                Ok(false)
            });
        drop(trained);
        steps as f64 / secs.max(1e-9)
    }
}
