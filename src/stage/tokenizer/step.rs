//! One training step of the tokenizer and its discriminator, over data-parallel row blocks
//! (`train::blocks`: one block per thread on flex, one graph elsewhere): the step's random draws are
//! made for the whole batch first, each block builds and backpropagates its rows' losses (each term
//! scaled by the block's share) in its own graph, and the blocks' gradients are summed: the gradient of
//! the batch's loss up to the order of float sums. The discriminator's step is cut the same way.
//!
//! SoftVQ's usage term, the entropy of the batch's mean assignment, is no sum over rows: with more
//! than one block a pass without a graph first gives the batch's mean assignment, and each block takes
//! the term linearised there (`models::tokenizer::Usage`), whose gradients add up to the term's.

use std::ops::Range;

use burn::module::AutodiffModule;
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};

use super::config::TokenizerConfig;
use super::losses::{FromBatch, Shares, StepContext, StepDraws, StepLosses, step_losses};
use crate::flow::net::SimpleMlpAdaLn;
use crate::models::classifier::MlpClassifier;
use crate::models::tokenizer::{Discriminator, Regulariser, Tokenizer, Usage, hinge_d_loss};
use crate::tensors::scalar;
use crate::train::Trainer;
use crate::train::blocks::{block_grads, block_parts, blocks_of, on_shard_threads, row_blocks};

/// The two trainers of the tokenizer stage's loop.
pub struct Trainers<B: AutodiffBackend> {
    pub ae: Trainer<B, Tokenizer<B>>,
    pub disc: Trainer<B, Discriminator<B>>,
}

/// The networks a step reads and does not optimise.
pub struct Frozen<'a, B: AutodiffBackend> {
    pub classifier: &'a MlpClassifier<B>,
    pub prior: Option<&'a SimpleMlpAdaLn<B>>,
}

/// A batch: images [B, 784] and, for the sample-level alignment, the positions in the batch of the
/// rows that have a semantic feature and those features (row-major, `dim` each).
pub struct StepBatch<B: Backend> {
    pub x: Tensor<B, 2>,
    pub semantic: Option<SemanticBatch>,
}

/// The semantic targets of a batch, on the host.
pub struct SemanticBatch {
    pub positions: Vec<usize>,
    pub features: Vec<f32>,
    pub dim: usize,
}

impl SemanticBatch {
    /// The targets among the batch's rows `rows` (positions relative to `rows.start`) and their
    /// count; None when no row of the block has one.
    fn block<B: Backend>(
        &self,
        rows: &Range<usize>,
        device: &B::Device,
    ) -> Option<(Tensor<B, 1, Int>, Tensor<B, 2>, usize)> {
        let (pos, feats): (Vec<i64>, Vec<&[f32]>) = self
            .positions
            .iter()
            .zip(self.features.chunks(self.dim.max(1)))
            .filter(|(p, _)| rows.contains(p))
            .map(|(p, f)| ((p - rows.start) as i64, f))
            .unzip();
        let m = pos.len();
        (m > 0).then(|| {
            (
                Tensor::from_data(TensorData::new(pos, [m]), device),
                Tensor::from_data(TensorData::new(feats.concat(), [m, self.dim]), device),
                m,
            )
        })
    }
}

/// The losses of a step, each the batch's (mean over its rows; for the semantic loss, over its rows
/// with a feature), unweighted; `total` is what the tokenizer's optimiser minimised.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StepValues {
    pub total: f64,
    pub l2: f64,
    pub l1: f64,
    pub perceptual: f64,
    pub reg: Option<f64>,
    pub adv: Option<f64>,
    pub align: Option<f64>,
    pub semantic: Option<f64>,
    /// The discriminator's hinge loss (when it stepped).
    pub disc: Option<f64>,
}

impl StepValues {
    /// A block's losses, each scaled by its share of the batch (the total is already scaled).
    fn of_block(l: &StepLosses<impl Backend>, shares: Shares) -> Self {
        let v = |t: &Tensor<_, 1>, share: f64| share * scalar(t.clone());
        StepValues {
            total: v(&l.total, 1.0),
            l2: v(&l.l2, shares.rows),
            l1: v(&l.l1, shares.rows),
            perceptual: v(&l.perceptual, shares.rows),
            reg: l.reg.as_ref().map(|t| v(t, shares.rows)),
            adv: l.adv.as_ref().map(|t| v(t, shares.rows)),
            align: l.align.as_ref().map(|t| v(t, shares.rows)),
            semantic: l.semantic.as_ref().map(|t| v(t, shares.semantic)),
            disc: None,
        }
    }

    /// The sum of two blocks' values.
    fn plus(self, o: Self) -> Self {
        let add = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (None, None) => None,
            _ => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
        };
        StepValues {
            total: self.total + o.total,
            l2: self.l2 + o.l2,
            l1: self.l1 + o.l1,
            perceptual: self.perceptual + o.perceptual,
            reg: add(self.reg, o.reg),
            adv: add(self.adv, o.adv),
            align: add(self.align, o.align),
            semantic: add(self.semantic, o.semantic),
            disc: add(self.disc, o.disc),
        }
    }
}

/// Fewest images a row block of the tokenizer's step gets.
pub const MIN_BLOCK_IMAGES: usize = 8;

/// Row blocks for a step over `rows` images ([`blocks_of`]: one per thread on flex, 1 elsewhere).
pub fn step_blocks<B: AutodiffBackend>(rows: usize) -> usize {
    blocks_of::<B::InnerBackend>(rows, MIN_BLOCK_IMAGES)
}

/// One training step at 0-based `step` over `blocks` row blocks: the tokenizer's update, then (from
/// `disc_start` on, with an adversarial weight) the discriminator's on the step's reconstructions.
/// Returns the losses when `values` is set (reading them costs a device synchronisation each).
pub fn train_step<B: AutodiffBackend>(
    cfg: &TokenizerConfig,
    trainers: &mut Trainers<B>,
    frozen: &Frozen<'_, B>,
    batch: &StepBatch<B::InnerBackend>,
    step: usize,
    blocks: usize,
    values: bool,
) -> Option<StepValues> {
    let [n, _] = batch.x.dims();
    let aligned = frozen.prior.is_some() && cfg.lambda > 0.0;
    let draws = StepDraws::<B>::draw(cfg, n, aligned, &batch.x.device());
    let ae = TokenizerGrads {
        cfg,
        frozen,
        disc: trainers.disc.model(),
        batch,
        draws: &draws,
        step,
    };
    let (grads, mut sum, recon) = ae.gradients(trainers.ae.model(), blocks, values);
    trainers.ae.apply(step, grads);
    if step >= cfg.disc_start && cfg.adv_weight > 0.0 {
        let (value, grads) = block_grads(trainers.disc.model(), n, blocks, |d, rows| {
            let at = |t: &Tensor<B::InnerBackend, 2>| {
                Tensor::<B, 2>::from_inner(t.clone().slice(rows.clone()))
            };
            hinge_d_loss(d.forward(at(&batch.x)), d.forward(at(&recon)))
        });
        sum.disc = Some(value);
        trainers.disc.apply(step, grads);
    }
    values.then_some(sum)
}

/// What the tokenizer's gradients of one step read.
pub(super) struct TokenizerGrads<'a, B: AutodiffBackend> {
    pub cfg: &'a TokenizerConfig,
    pub frozen: &'a Frozen<'a, B>,
    pub disc: &'a Discriminator<B>,
    pub batch: &'a StepBatch<B::InnerBackend>,
    pub draws: &'a StepDraws<B>,
    pub step: usize,
}

impl<B: AutodiffBackend> TokenizerGrads<'_, B> {
    /// The gradients of the step's total loss for `model` over `blocks` row blocks, the losses (when
    /// `values`; else zeros) and the reconstructions [B, 784].
    pub fn gradients(
        &self,
        model: &Tokenizer<B>,
        blocks: usize,
        values: bool,
    ) -> (GradientsParams, StepValues, Tensor<B::InnerBackend, 2>) {
        let (cfg, batch) = (self.cfg, self.batch);
        let [n, _] = batch.x.dims();
        let device = batch.x.device();
        let semantic_rows = batch.semantic.as_ref().map_or(0, |s| s.positions.len());
        // Constant copies of the networks the step does not optimise: each block's graph is its own,
        // and no gradient is taken of their weights.
        let classifier = self.frozen.classifier.valid();
        let disc = self.disc.valid();
        let prior = self.frozen.prior.map(AutodiffModule::valid);
        let usage = (cfg.regulariser == Regulariser::Softvq && blocks > 1)
            .then(|| self.usage(model, blocks));
        let (grads, parts) = block_parts(model, n, blocks, |model, rows| {
            let classifier = MlpClassifier::<B>::from_inner(classifier.clone());
            let disc = Discriminator::<B>::from_inner(disc.clone());
            let prior = prior.clone().map(SimpleMlpAdaLn::<B>::from_inner);
            let semantic = batch
                .semantic
                .as_ref()
                .and_then(|s| s.block::<B>(&rows, &device));
            let shares = Shares {
                rows: rows.len() as f64 / n as f64,
                semantic: semantic
                    .as_ref()
                    .map_or(0.0, |(_, _, m)| *m as f64 / semantic_rows as f64),
            };
            let ctx = StepContext {
                classifier: &classifier,
                disc: &disc,
                prior: prior.as_ref(),
                semantic: semantic.map(|(p, f, _)| (p, f)),
                draws: FromBatch {
                    usage: usage.clone(),
                    ..self.draws.block(rows.clone())
                },
                shares,
            };
            let x = Tensor::<B, 2>::from_inner(batch.x.clone().slice(rows));
            let l = step_losses(cfg, model, &ctx, x, self.step);
            let v = values.then(|| StepValues::of_block(&l, shares));
            let recon = l.recon.clone().inner();
            (l.total, (v, recon))
        });
        let mut sum = StepValues::default();
        let mut recon = Vec::with_capacity(parts.len());
        for (v, r) in parts {
            sum = sum.plus(v.unwrap_or_default());
            recon.push(r);
        }
        let recon = match recon.len() {
            1 => recon.swap_remove(0),
            _ => Tensor::cat(recon, 0),
        };
        (grads, sum, recon)
    }

    /// SoftVQ's usage term linearised at the batch's mean assignment, from a pass over its rows
    /// without a graph (in `blocks` blocks side by side).
    fn usage(&self, model: &Tokenizer<B>, blocks: usize) -> Usage<B> {
        let x = &self.batch.x;
        let [n, _] = x.dims();
        let inner = model.valid();
        let sums = on_shard_threads(row_blocks(n, blocks), |rows| {
            inner.assignment_sum(x.clone().slice(rows))
        });
        let total = sums
            .into_iter()
            .reduce(|a, b| a + b)
            .unwrap_or_else(|| unreachable!("a batch has a block"));
        Usage::at(total / (n * self.cfg.tokens) as f64)
    }
}
