//! The image trainers' steps (what `flowprior bench trainers` measures): the `vae` and `vq` stages'
//! step (`LatentAe::losses`, backward, the project's Adam) and the `classifier` stage's (MLP logits,
//! cross-entropy, backward, Adam), on random images in [0, 1] drawn as the stages draw batches, timed
//! over `steps` steps after `warmup` untimed ones.

use std::time::Instant;

use burn::nn::loss::CrossEntropyLoss;
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Int, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::backend::BackendJob;
use crate::models::classifier::MlpClassifier;
use crate::models::latent_ae::{AeKind, LatentAe};

/// Images the batches are drawn from.
const POOL: usize = 1024;
/// Pixels of a 28x28 grey image.
const PIXELS: usize = 784;
/// Classes of the classifier's labels (Fashion-MNIST's).
const CLASSES: usize = 10;

/// Which trainer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trainer {
    /// The `vae` / `vq` stage's autoencoder.
    LatentAe(AeKind),
    /// The `classifier` stage's MLP.
    Classifier,
}

impl Trainer {
    pub fn name(self) -> &'static str {
        match self {
            Trainer::LatentAe(AeKind::Vae) => "vae",
            Trainer::LatentAe(AeKind::Vq) => "vq",
            Trainer::Classifier => "classifier",
        }
    }
}

/// One measured configuration: the stage's sizes and settings (its `cpu` preset's by default).
#[derive(Debug, Clone)]
pub struct TrainerBench {
    pub trainer: Trainer,
    pub batch: usize,
    /// Latent channels (vae, vq) or hidden width (classifier).
    pub width: usize,
    pub codebook_size: usize,
    pub kl_weight: f64,
    pub commitment: f64,
    pub lr: f64,
    pub steps: usize,
    pub warmup: usize,
}

impl BackendJob for TrainerBench {
    /// Training steps per second.
    type Output = f64;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> f64 {
        B::seed(&device, 0);
        let mut rng = StdRng::seed_from_u64(0);
        let images: Vec<f32> = (0..POOL * PIXELS).map(|_| rng.random::<f32>()).collect();
        let labels: Vec<i64> = (0..POOL).map(|i| (i % CLASSES) as i64).collect();
        let b = self.batch.clamp(1, POOL);
        let batch = |step: usize| {
            let start = (step * b) % (POOL - b + 1);
            let x = images[start * PIXELS..(start + b) * PIXELS].to_vec();
            let x = Tensor::<B, 2>::from_data(TensorData::new(x, [b, PIXELS]), &device);
            let y = labels[start..start + b].to_vec();
            let y = Tensor::<B, 1, Int>::from_data(TensorData::new(y, [b]), &device);
            (x, y)
        };
        let total = self.warmup + self.steps.max(1);
        let mut clock = Clock::new(self.warmup);
        match self.trainer {
            Trainer::LatentAe(kind) => {
                let mut model = LatentAe::<B>::new(kind, self.width, self.codebook_size, &device);
                if kind == AeKind::Vq {
                    model = model.init_codebook_from(batch(0).0, 0);
                }
                let mut optim = crate::optim::Adam::default().init::<B, LatentAe<B>>();
                for step in 0..total {
                    clock.tick(step);
                    let l = model.losses(batch(step).0, self.kl_weight, self.commitment);
                    let loss = l.total.clone();
                    let grads = GradientsParams::from_grads(l.total.backward(), &model);
                    model = optim.step(self.lr, model, grads);
                    clock.last(step, total, loss);
                }
            }
            Trainer::Classifier => {
                let mut model = MlpClassifier::<B>::new(PIXELS, self.width, CLASSES, &device);
                let mut optim = crate::optim::Adam::default().init::<B, MlpClassifier<B>>();
                let loss_fn = CrossEntropyLoss::new(None, &device);
                for step in 0..total {
                    clock.tick(step);
                    let (x, y) = batch(step);
                    let loss = loss_fn.forward(model.forward(x), y);
                    let grads = GradientsParams::from_grads(loss.backward(), &model);
                    model = optim.step(self.lr, model, grads);
                    clock.last(step, total, loss.detach());
                }
            }
        }
        self.steps.max(1) as f64 / clock.secs.max(1e-9)
    }
}

/// Seconds from the start of step `warmup` to the end of the last step, the last loss read back
/// first (an asynchronous backend has then finished every queued step).
struct Clock {
    warmup: usize,
    start: Option<Instant>,
    secs: f64,
}

impl Clock {
    fn new(warmup: usize) -> Self {
        Clock {
            warmup,
            start: None,
            secs: 0.0,
        }
    }

    fn tick(&mut self, step: usize) {
        if step == self.warmup {
            self.start = Some(Instant::now());
        }
    }

    fn last<B: burn::tensor::backend::Backend>(
        &mut self,
        step: usize,
        total: usize,
        loss: Tensor<B, 1>,
    ) {
        if step + 1 == total {
            let _ = crate::tensors::scalar(loss);
            self.secs = self.start.map_or(0.0, |s| s.elapsed().as_secs_f64());
        }
    }
}
