//! `flowprior classifier`: trains the MLP classifier on a dataset and records the run.
//!
//! It is the smallest job that exercises every layer of the harness (backend, data, training,
//! run store, artifacts); its checkpoint is the project's own feature network for FID-like metrics.

/// Its [`Stage`](crate::stage::Stage) implementation (the registry's entry).
pub mod stage;

use std::path::{Path, PathBuf};

use burn::module::AutodiffModule;
use burn::nn::loss::CrossEntropyLoss;

use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::backend::{BackendJob, BackendKind};
use crate::data::{DatasetId, ImageDataset, Split};
use crate::error::{Error, Result};
use crate::jobs::JobRun;
use crate::models::classifier::MlpClassifier;
use crate::optim::Adam;
use crate::store::{ActiveRun, RunSpec, Store};
use crate::train::{LrSchedule, Trained, Trainer, finite};

/// The stage name of classifier runs.
pub const CLASSIFIER: &str = "classifier";

/// Configuration of a classifier run. Every field is part of the run's identity (its hash).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClassifierConfig {
    pub dataset: DatasetId,
    pub backend: BackendKind,
    /// Training images used (the first N of the train split); 0 = all.
    pub train_size: usize,
    /// Test images evaluated (the first N of the test split); 0 = all.
    pub test_size: usize,
    pub hidden: usize,
    pub steps: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub seed: u64,
    /// Log the training loss every N steps.
    pub log_every: usize,
}

impl Default for ClassifierConfig {
    fn default() -> Self {
        ClassifierConfig {
            dataset: DatasetId::FashionMnist,
            backend: BackendKind::Flex,
            train_size: 10_000,
            test_size: 2_000,
            hidden: 256,
            steps: 300,
            batch_size: 128,
            lr: 1e-3,
            seed: 0,
            log_every: 10,
        }
    }
}

impl ClassifierConfig {
    /// Checks the counts that must be positive and the learning rate.
    pub fn validate(&self) -> std::result::Result<(), String> {
        crate::config::positive_counts(&[
            ("steps", self.steps),
            ("batch_size", self.batch_size),
            ("hidden", self.hidden),
            ("log_every", self.log_every),
        ])?;
        crate::config::positive_rates(&[("lr", self.lr)])
    }

    pub fn run_spec(&self) -> RunSpec {
        RunSpec {
            stage: CLASSIFIER.into(),
            name: format!("classifier/{}", self.dataset.name()),
            config: crate::util::config_json(self),
            seed: Some(self.seed as i64),
        }
    }
}

/// What a classifier job reports.
#[derive(Debug, Clone, Serialize)]
pub struct ClassifierOutcome {
    pub run_id: i64,
    /// True when a finished run with the same configuration already existed and nothing was trained.
    pub reused: bool,
    pub test_accuracy: Option<f64>,
    pub test_loss: Option<f64>,
    pub steps_per_s: Option<f64>,
    pub checkpoint: Option<PathBuf>,
}

/// The job: configuration plus where to read data and write artifacts.
pub struct TrainClassifier<'a> {
    pub config: ClassifierConfig,
    pub data_dir: PathBuf,
    pub artifacts_dir: PathBuf,
    pub store: &'a Store,
    pub claim: crate::jobs::Claim,
}

impl BackendJob for TrainClassifier<'_> {
    type Output = Result<ClassifierOutcome>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Result<ClassifierOutcome> {
        let spec = self.config.run_spec();
        let backend = self.config.backend.name();
        let outcome = crate::jobs::run_or_reuse(self.store, &spec, backend, self.claim, |run| {
            train::<B>(
                &self.config,
                &self.data_dir,
                &self.artifacts_dir,
                run,
                &device,
            )
        })?;
        Ok(match outcome {
            JobRun::Ran(o) => o,
            JobRun::Reused { run, summary } => {
                let get = |k: &str| summary.iter().find(|s| s.key == k).and_then(|s| s.value);
                ClassifierOutcome {
                    run_id: run.id,
                    reused: true,
                    test_accuracy: get("test/accuracy"),
                    test_loss: get("test/loss"),
                    steps_per_s: get("train/steps_per_s"),
                    checkpoint: None,
                }
            }
        })
    }
}

fn load_split(
    cfg: &ClassifierConfig,
    data_dir: &Path,
    split: Split,
    n: usize,
) -> Result<ImageDataset> {
    let d = cfg.dataset.load(data_dir, split)?;
    Ok(if n == 0 { d } else { d.take(n) })
}

fn train<B: AutodiffBackend>(
    cfg: &ClassifierConfig,
    data_dir: &Path,
    artifacts_dir: &Path,
    run: &mut ActiveRun<'_>,
    device: &B::Device,
) -> Result<ClassifierOutcome> {
    let train = load_split(cfg, data_dir, Split::Train, cfg.train_size)?;
    let test = load_split(cfg, data_dir, Split::Test, cfg.test_size)?;
    tracing::info!(
        run = run.id(),
        train = train.len(),
        test = test.len(),
        "training classifier"
    );
    B::seed(device, cfg.seed);
    let d = train.dim();
    let model = MlpClassifier::<B>::new(d, cfg.hidden, train.classes, device);
    let lr = LrSchedule::Constant { lr: cfg.lr };
    let mut trainer =
        Trainer::new(model, Adam::default(), lr).with_progress(cfg.steps, "classifier");
    let loss_fn = CrossEntropyLoss::new(None, device);
    for (step, idx) in train
        .batches(cfg.batch_size, cfg.seed)
        .take(cfg.steps)
        .enumerate()
    {
        let (x, y) = train.gather(&idx);
        let b = idx.len();
        let x = Tensor::<B, 2>::from_data(TensorData::new(x, [b, d]), device);
        let y = Tensor::<B, 1, Int>::from_data(TensorData::new(y, [b]), device);
        let loss = loss_fn.forward(trainer.model().forward(x), y);
        let log_now = cfg.log_every > 0 && (step % cfg.log_every == 0 || step + 1 == cfg.steps);
        if log_now {
            let value = crate::tensors::scalar(loss.clone());
            run.log("train/loss", step as i64, value)?;
            finite(step, "train/loss", value)?;
        }
        trainer.step(step, loss);
    }
    let Trained { model, steps_per_s } = trainer.finish();
    let (accuracy, test_loss) = evaluate(&model.valid(), &test, device);
    let last = cfg.steps as i64;
    run.log("train/steps_per_s", last, steps_per_s)?;
    run.log("test/accuracy", last, accuracy)?;
    run.log("test/loss", last, test_loss)?;
    let dir = artifacts_dir.join(format!("run-{}", run.id()));
    std::fs::create_dir_all(&dir).map_err(Error::write(&dir))?;
    let stem = dir.join("classifier");
    let file = crate::jobs::save_weights(&model, &stem)?;
    run.artifact("checkpoint", &file)?;
    tracing::info!(
        run = run.id(),
        accuracy,
        test_loss,
        steps_per_s,
        "classifier trained"
    );
    Ok(ClassifierOutcome {
        run_id: run.id(),
        reused: false,
        test_accuracy: Some(accuracy),
        test_loss: Some(test_loss),
        steps_per_s: Some(steps_per_s),
        checkpoint: Some(file),
    })
}

/// Accuracy and mean cross-entropy on `data`, computed on the host from the logits.
fn evaluate<B: Backend>(
    model: &MlpClassifier<B>,
    data: &ImageDataset,
    device: &B::Device,
) -> (f64, f64) {
    let d = data.dim();
    let k = data.classes;
    let mut correct = 0usize;
    let mut nll = 0.0f64;
    let all: Vec<usize> = (0..data.len()).collect();
    for chunk in all.chunks(1000) {
        let (x, y) = data.gather(chunk);
        let x = Tensor::<B, 2>::from_data(TensorData::new(x, [chunk.len(), d]), device);
        let logits: Vec<f64> = model.forward(x).into_data().iter::<f64>().collect();
        let (c, l) = score_logits(&logits, &y, k);
        correct += c;
        nll += l;
    }
    let n = data.len().max(1) as f64;
    (correct as f64 / n, nll / n)
}

/// Number of correct argmax predictions and summed cross-entropy of row-major logits.
pub fn score_logits(logits: &[f64], labels: &[i64], k: usize) -> (usize, f64) {
    let mut correct = 0;
    let mut nll = 0.0;
    for (row, &y) in logits.chunks(k).zip(labels) {
        let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = max + row.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
        nll += lse - row[y as usize];
        let arg = row
            .iter()
            .enumerate()
            .fold((0, f64::NEG_INFINITY), |(bi, bv), (i, &v)| {
                if v > bv { (i, v) } else { (bi, bv) }
            })
            .0;
        correct += usize::from(arg == y as usize);
    }
    (correct, nll)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scoring_matches_hand_values() {
        // Two rows over 2 classes: uniform logits (nll ln 2, argmax 0) and a confident wrong row.
        let (c, nll) = score_logits(&[0.0, 0.0, 5.0, 0.0], &[0, 1], 2);
        assert_eq!(c, 1);
        let expected = 2f64.ln() + (5.0 + (1.0 + (-5f64).exp()).ln());
        assert!((nll - expected).abs() < 1e-12, "{nll} vs {expected}");
    }
}
