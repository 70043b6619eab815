//! The generators' training step and sampler (what `flowprior bench generator` measures): the
//! `generator` stage's own loop (`models::cond::train_generator`: batch draw, label drop, loss,
//! backward, Adam, EMA update) on random latents, timed between the same point of two steps after a
//! warm-up; and one chunk of guided samples drawn as the stage draws them (`Dit::sample`,
//! `Mar::sample`), timed after an untimed chunk.

use std::time::Instant;

use burn::tensor::backend::AutodiffBackend;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::backend::BackendJob;
use crate::models::cond::{BatchLoss, LabelledLatents, train_generator};
use crate::models::dit::Dit;
use crate::models::mar::Mar;
use crate::stage::generator::{GeneratorConfig, GeneratorKind};
use burn::tensor::{Int, Tensor, TensorData};

/// Classes of the benchmark's labels (Fashion-MNIST's).
pub const CLASSES: usize = 10;
/// Latents the batches are drawn from.
const POOL: usize = 2048;

/// One measured configuration.
#[derive(Debug, Clone)]
pub struct GeneratorBench {
    /// The generator (kind, sizes, batch, EMA decay, MAR's settings); `steps` is ignored.
    pub config: GeneratorConfig,
    pub tokens: usize,
    pub channels: usize,
    pub steps: usize,
    pub warmup: usize,
}

impl BackendJob for GeneratorBench {
    type Output = f64;

    /// Returns training steps per second.
    fn run<B: AutodiffBackend>(self, device: B::Device) -> f64 {
        B::seed(&device, 0);
        let (tokens, channels) = (self.tokens, self.channels);
        let mut rng = StdRng::seed_from_u64(0);
        let latents: Vec<f32> = (0..POOL * tokens * channels)
            .map(|_| rng.sample::<f32, _>(rand_distr::StandardNormal))
            .collect();
        let labels: Vec<i64> = (0..POOL).map(|i| (i % CLASSES) as i64).collect();
        let data = LabelledLatents {
            latents: &latents,
            labels: &labels,
            tokens,
            channels,
        };
        let mut train = self.config.train_config();
        // Timed from the start of step `warmup` to the start of step `warmup + steps`.
        let (first, last) = (self.warmup, self.warmup + self.steps.max(1));
        train.steps = last + 1;
        let mut start = None;
        let mut secs = 0.0;
        let mut on_step = |step: usize, _loss: f64| -> Result<(), ()> {
            if step == first {
                start = Some(Instant::now());
            } else if step == last {
                secs = start.map_or(0.0, |s| s.elapsed().as_secs_f64());
            }
            Ok(())
        };
        let cfg = &self.config;
        let done = match cfg.generator {
            GeneratorKind::Dit => train_generator(
                Dit::<B>::new(cfg.dit_shape(tokens, channels, CLASSES), &device),
                &data,
                &train,
                &device,
                BatchLoss::Flow(Dit::forward),
                &mut on_step,
            )
            .map(drop),
            GeneratorKind::Mar => {
                let (flow_mul, ratio) = (cfg.flow_mul(), cfg.mask_ratio());
                train_generator(
                    Mar::<B>::new(cfg.mar_shape(tokens, channels, CLASSES), &device),
                    &data,
                    &train,
                    &device,
                    BatchLoss::Masked {
                        loss: Mar::loss_with,
                        flow_mul,
                        ratio,
                    },
                    &mut on_step,
                )
                .map(drop)
            }
        };
        match done {
            Ok(()) => self.steps.max(1) as f64 / secs.max(1e-9),
            Err(()) => f64::NAN,
        }
    }
}

/// One chunk of guided sampling: `samples` latents (the stage's chunk on the backend), `steps` Euler
/// steps (per token for MAR, over `GeneratorConfig::iters` steps), guidance at the configuration's
/// `cfg_scale`, on untrained weights (the cost does not depend on them).
#[derive(Debug, Clone)]
pub struct SamplerBench {
    pub config: GeneratorConfig,
    pub tokens: usize,
    pub channels: usize,
    pub samples: usize,
    pub steps: usize,
}

impl BackendJob for SamplerBench {
    type Output = f64;

    /// Returns samples per second.
    fn run<B: AutodiffBackend>(self, device: B::Device) -> f64 {
        B::seed(&device, 0);
        let cfg = &self.config;
        let (tokens, channels, n) = (self.tokens, self.channels, self.samples.max(1));
        let (steps, scale) = (self.steps, cfg.cfg_scale);
        let y: Vec<i64> = (0..n).map(|i| (i % CLASSES) as i64).collect();
        let mut rng = StdRng::seed_from_u64(0);
        let secs = match cfg.generator {
            GeneratorKind::Dit => {
                let net =
                    Dit::<B::InnerBackend>::new(cfg.dit_shape(tokens, channels, CLASSES), &device);
                second_call_secs(|| {
                    let x0: Vec<f32> = (0..n * tokens * channels)
                        .map(|_| rng.sample::<f32, _>(rand_distr::StandardNormal))
                        .collect();
                    let x0 = Tensor::<B::InnerBackend, 3>::from_data(
                        TensorData::new(x0, [n, tokens, channels]),
                        &device,
                    );
                    let labels = Tensor::<B::InnerBackend, 1, Int>::from_data(
                        TensorData::new(y.clone(), [n]),
                        &device,
                    );
                    // Reading the result waits for the device.
                    let _ = net.sample(x0, labels, steps, scale).into_data();
                })
            }
            GeneratorKind::Mar => {
                let net =
                    Mar::<B::InnerBackend>::new(cfg.mar_shape(tokens, channels, CLASSES), &device);
                let (iters, schedule) = (cfg.iters(tokens), cfg.cfg_schedule());
                second_call_secs(|| {
                    let _ = net.sample(
                        &y, channels, iters, steps, scale, schedule, &mut rng, &device,
                    );
                })
            }
        };
        n as f64 / secs.max(1e-9)
    }
}

/// Calls `f` twice and returns the seconds the second call took (the first allocates, compiles and
/// tunes kernels).
fn second_call_secs(mut f: impl FnMut()) -> f64 {
    f();
    let start = Instant::now();
    f();
    start.elapsed().as_secs_f64()
}
