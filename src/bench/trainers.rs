//! The image trainers' steps (what `flowprior bench trainers` measures): the `vae` and `vq` stages'
//! step (`LatentAe::losses`, backward, the project's Adam) and the `classifier` stage's (MLP logits,
//! cross-entropy, backward, Adam), on random images in [0, 1] drawn as the stages draw batches, timed
//! over `steps` steps after `warmup` untimed ones.

use std::time::Instant;

use burn::nn::loss::CrossEntropyLoss;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Int, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::backend::BackendJob;
use crate::models::classifier::MlpClassifier;
use crate::models::latent_ae::{AeKind, LatentAe};
use crate::optim::Adam;
use crate::stage::classifier::ClassifierConfig;
use crate::stage::latent_ae::LatentAeConfig;
use crate::train::LrSchedule;

/// The stages' constant learning rate.
fn constant(lr: f64) -> LrSchedule {
    LrSchedule::Constant { lr }
}

/// Images the batches are drawn from.
const POOL: usize = 1024;
/// Pixels of a 28x28 grey image.
const PIXELS: usize = 784;
/// Classes of the classifier's labels (Fashion-MNIST's).
const CLASSES: usize = 10;

/// Which trainer, with its stage's configuration (sizes and optimiser settings).
#[derive(Debug, Clone)]
pub enum Trainer {
    /// The `vae` / `vq` stage's autoencoder.
    LatentAe(AeKind, LatentAeConfig),
    /// The `classifier` stage's MLP.
    Classifier(ClassifierConfig),
}

impl Trainer {
    pub fn name(&self) -> &'static str {
        match self {
            Trainer::LatentAe(AeKind::Vae, _) => "vae",
            Trainer::LatentAe(AeKind::Vq, _) => "vq",
            Trainer::Classifier(_) => "classifier",
        }
    }

    /// The sizes that set the step's cost, for a table.
    pub fn sizes(&self) -> String {
        match self {
            Trainer::LatentAe(AeKind::Vae, c) => {
                format!("batch {}, {} channels", c.batch, c.channels)
            }
            Trainer::LatentAe(AeKind::Vq, c) => format!(
                "batch {}, {} channels, {} codes",
                c.batch, c.channels, c.codebook_size
            ),
            Trainer::Classifier(c) => format!("batch {}, hidden {}", c.batch_size, c.hidden),
        }
    }

    /// NAME BATCH WIDTH CODES KL_WEIGHT COMMITMENT: the first arguments of the PyTorch replica
    /// (scripts/bench_trainers.py).
    pub fn reference_args(&self) -> Vec<String> {
        let (batch, width, codes, kl, commitment) = match self {
            Trainer::LatentAe(_, c) => (
                c.batch,
                c.channels,
                c.codebook_size,
                c.kl_weight,
                c.commitment,
            ),
            Trainer::Classifier(c) => (c.batch_size, c.hidden, 1, 0.0, 0.0),
        };
        vec![
            self.name().to_string(),
            batch.to_string(),
            width.to_string(),
            codes.to_string(),
            kl.to_string(),
            commitment.to_string(),
        ]
    }
}

/// One measured trainer.
#[derive(Debug, Clone)]
pub struct TrainerBench {
    pub trainer: Trainer,
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
        let b = match &self.trainer {
            Trainer::LatentAe(_, c) => c.batch,
            Trainer::Classifier(c) => c.batch_size,
        }
        .clamp(1, POOL);
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
        match &self.trainer {
            Trainer::LatentAe(kind, c) => {
                let mut model = LatentAe::<B>::new(*kind, c.channels, c.codebook_size, &device);
                if *kind == AeKind::Vq {
                    model = model.init_codebook_from(batch(0).0, 0);
                }
                let mut t = crate::train::Trainer::new(model, Adam::default(), constant(c.lr));
                let blocks = crate::stage::latent_ae::step::step_blocks::<B>(b);
                for step in 0..total {
                    clock.tick(step);
                    let out = crate::stage::latent_ae::step::train_step(
                        &mut t,
                        c,
                        batch(step).0.inner(),
                        step,
                        blocks,
                        step + 1 == total,
                        false,
                    );
                    if out.values.is_some() {
                        clock.stop();
                    }
                }
            }
            Trainer::Classifier(c) => {
                let model = MlpClassifier::<B>::new(PIXELS, c.hidden, CLASSES, &device);
                let mut t = crate::train::Trainer::new(model, Adam::default(), constant(c.lr));
                let loss_fn = CrossEntropyLoss::new(None, &device);
                for step in 0..total {
                    clock.tick(step);
                    let (x, y) = batch(step);
                    let loss = loss_fn.forward(t.model().forward(x), y);
                    let value = loss.clone().detach();
                    t.step(step, loss);
                    clock.last(step, total, value);
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
            self.stop();
        }
    }

    /// Ends the timing (after the last step's loss was read back).
    fn stop(&mut self) {
        self.secs = self.start.map_or(0.0, |s| s.elapsed().as_secs_f64());
    }
}
