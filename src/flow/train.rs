//! Rectified flow-matching training of a prior: Adam or AdamW (PyTorch semantics: epsilon 1e-8,
//! decoupled weight decay for AdamW), a learning-rate schedule, gradient clipping by the GLOBAL norm
//! over all parameters (as `torch.nn.utils.clip_grad_norm_`; Burn's own clipping is per tensor), and an
//! EMA of the weights, through the shared [`Trainer`] on the data-parallel gradients of
//! [`super::shard`]. The prior used downstream is the EMA copy when EMA is on.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;
use burn::tensor::backend::{AutodiffBackend, Backend};
use serde::{Deserialize, Serialize};

use super::shard::{StepGrads, flow_matching_grads};
use super::{FlowNetConfig, SimpleMlpAdaLn};
use crate::optim::Adam;
use crate::train::{LrSchedule, Trainer};

/// Which optimiser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    Adam,
    AdamW,
}

/// How a prior is trained. Defaults are the paper's Table 3 except the step count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorTrainConfig {
    pub optimizer: OptimizerKind,
    pub schedule: LrSchedule,
    pub beta1: f64,
    pub beta2: f64,
    /// Decoupled weight decay (AdamW only).
    pub weight_decay: f64,
    /// Clip the global gradient norm to this value (None: no clipping).
    pub grad_clip: Option<f64>,
    /// EMA decay (0: no EMA, the raw weights are the prior).
    pub ema_decay: f64,
    pub steps: usize,
    pub batch: usize,
}

impl PriorTrainConfig {
    /// Paper Table 3: AdamW lr 1e-4, betas (0.9, 0.95), wd 1e-4, cosine with 2.5k warm-up, clip 1.0,
    /// EMA 0.9999, batch 256.
    pub fn paper(steps: usize) -> PriorTrainConfig {
        PriorTrainConfig {
            optimizer: OptimizerKind::AdamW,
            schedule: LrSchedule::Cosine {
                lr: 1e-4,
                warmup: 2500.min(steps / 10),
                total: steps,
                min_lr: 0.0,
            },
            beta1: 0.9,
            beta2: 0.95,
            weight_decay: 1e-4,
            grad_clip: Some(1.0),
            ema_decay: 0.9999,
            steps,
            batch: 256,
        }
    }
}

/// One logged training step.
#[derive(Debug, Clone, Copy)]
pub struct StepLog {
    pub step: usize,
    pub loss: f64,
    pub grad_norm: f64,
    pub lr: f64,
}

fn train_with<B: AutodiffBackend, E>(
    mut trainer: Trainer<B, SimpleMlpAdaLn<B>>,
    cfg: &PriorTrainConfig,
    next_batch: &mut dyn FnMut(usize) -> Tensor<B, 2>,
    on_step: &mut dyn FnMut(StepLog) -> Result<bool, E>,
) -> Result<SimpleMlpAdaLn<B>, E> {
    for step in 0..cfg.steps {
        let x1 = next_batch(step);
        let StepGrads {
            loss: loss_value,
            mut grads,
        } = flow_matching_grads(trainer.model(), x1);
        // The norm is logged at every step, clipped or not; the trainer then clips nothing more.
        let grad_norm =
            crate::train::clip_global_norm::<B, _>(trainer.model(), &mut grads, cfg.grad_clip);
        if !on_step(StepLog {
            step,
            loss: loss_value,
            grad_norm,
            lr: trainer.lr(step),
        })? {
            break;
        }
        trainer.apply(step, grads);
    }
    Ok(trainer.finish().model)
}

/// Trains a fresh prior of shape `net_cfg`. `next_batch(step)` yields a [batch, dim] batch of target
/// points; `on_step` sees every step's loss, gradient norm and learning rate, and stops training by
/// returning `Ok(false)` or aborts it with an error. Returns the prior (the EMA weights when EMA is on).
pub fn train_prior<B: AutodiffBackend, E>(
    net_cfg: FlowNetConfig,
    cfg: &PriorTrainConfig,
    device: &B::Device,
    next_batch: &mut dyn FnMut(usize) -> Tensor<B, 2>,
    on_step: &mut dyn FnMut(StepLog) -> Result<bool, E>,
) -> Result<SimpleMlpAdaLn<B>, E> {
    let net = net_cfg.init::<B>(device);
    // Adam / AdamW, in one fused pass per parameter on the CPU (`optim`).
    let adam = Adam::default()
        .with_beta_1(cfg.beta1 as f32)
        .with_beta_2(cfg.beta2 as f32)
        .with_epsilon(1e-8)
        .with_weight_decay(match cfg.optimizer {
            OptimizerKind::Adam => None,
            OptimizerKind::AdamW => Some(cfg.weight_decay as f32),
        });
    let trainer = Trainer::new(net, adam, cfg.schedule).with_ema(cfg.ema_decay);
    train_with(trainer, cfg, next_batch, on_step)
}

struct Shapes(Vec<Vec<usize>>);

impl<B: Backend> ModuleVisitor<B> for Shapes {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.0.push(param.val().dims().to_vec());
    }
}

fn shapes<B: Backend>(net: &SimpleMlpAdaLn<B>) -> Vec<Vec<usize>> {
    let mut s = Shapes(Vec::new());
    net.visit(&mut s);
    s.0
}

/// Loads a prior of shape `net_cfg` from a file written by `jobs::save_weights` (Burn's named
/// MessagePack format, full precision). Burn's loader does not check
/// tensor shapes, so every parameter's shape is compared with the configured network's.
pub fn load_prior<B: Backend>(
    net_cfg: FlowNetConfig,
    path: &std::path::Path,
    device: &B::Device,
) -> Result<SimpleMlpAdaLn<B>, String> {
    use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};
    let fresh = net_cfg.init::<B>(device);
    let want = shapes(&fresh);
    let loaded = fresh
        .load_file(
            path.to_path_buf(),
            &NamedMpkFileRecorder::<FullPrecisionSettings>::new(),
            device,
        )
        .map_err(|e| format!("cannot load prior {}: {e}", path.display()))?;
    let got = shapes(&loaded);
    if got != want {
        let first = want
            .iter()
            .zip(&got)
            .position(|(a, b)| a != b)
            .unwrap_or(want.len().min(got.len()));
        return Err(format!(
            "cannot load prior {}: it does not match dim {}, width {}, depth {} (parameter {first}: file has {:?}, expected {:?})",
            path.display(),
            net_cfg.dim,
            net_cfg.width,
            net_cfg.depth,
            got.get(first),
            want.get(first)
        ));
    }
    Ok(loaded)
}
