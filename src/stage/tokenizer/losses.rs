//! One training step's losses of the tokenizer: pixel L2 and L1, perceptual, adversarial, the
//! regulariser, the semantic loss and lambda * L_align, each kept for logging. Built over a whole
//! batch or over one row block of it (`super::step`): the step's random draws are then made for the
//! whole batch first ([`StepDraws`]) and each term is scaled by its block's share ([`Shares`]).

use std::ops::Range;

use super::config::TokenizerConfig;
use crate::flow::loss::path_draws;
use crate::flow::net::SimpleMlpAdaLn;
use crate::flow::shard::align_loss_sharded_with;
use crate::models::classifier::MlpClassifier;
use crate::models::tokenizer::{Discriminator, Regulariser, Tokenizer, Usage, hinge_g_loss};
use crate::train::blocks::shards_for;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Distribution, Int, Tensor};

/// What a training step reads besides the tokenizer and the batch: the networks it does not optimise
/// (classifier, discriminator, prior), the batch's semantic targets, its random draws and its shares.
pub struct StepContext<'a, B: AutodiffBackend> {
    pub classifier: &'a MlpClassifier<B>,
    pub disc: &'a Discriminator<B>,
    pub prior: Option<&'a SimpleMlpAdaLn<B>>,
    /// The sample-level alignment's targets: rows of the batch that have a semantic feature, and
    /// those features [rows, D].
    pub semantic: Option<(Tensor<B, 1, Int>, Tensor<B, 2>)>,
    /// What these rows take from their whole batch.
    pub draws: FromBatch<B>,
    /// These rows' share of the batch (1 for a whole batch).
    pub shares: Shares,
}

/// A block's share of the batch: every term but the semantic loss is a mean over the batch's rows
/// (`rows`: the block's rows over the batch's); the semantic loss is a mean over the rows that have a
/// feature (`semantic`: the block's such rows over the batch's).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shares {
    pub rows: f64,
    pub semantic: f64,
}

impl Shares {
    /// A whole batch.
    pub const WHOLE: Shares = Shares {
        rows: 1.0,
        semantic: 1.0,
    };
}

/// What a row block takes from its whole batch (autodiff constants): the random draws of its rows,
/// made once for the batch, and SoftVQ's usage term linearised at the batch's mean assignment. None:
/// drawn or computed from these rows, as for a whole batch.
pub struct FromBatch<B: Backend> {
    /// The KL posterior's eps [rows, L, C].
    pub eps: Option<Tensor<B, 3>>,
    /// L_align's t [P k] and x0 [P k, C] of the rows' P tokens repeated k = flow_mul times (row
    /// `r P + p`: token p's r-th draw).
    pub align: Option<PathDraws<B>>,
    pub usage: Option<Usage<B>>,
}

impl<B: Backend> FromBatch<B> {
    /// Nothing given: a whole batch.
    pub fn fresh() -> Self {
        FromBatch {
            eps: None,
            align: None,
            usage: None,
        }
    }
}

/// Flow-matching draws `t` [N] and `x0` [N, C].
type PathDraws<B> = (Tensor<B, 1>, Tensor<B, 2>);

/// A step's random draws for the whole batch, made before it is cut into row blocks and in the order
/// one graph over the batch makes them (the KL posterior's eps, then L_align's t and x0), so a seed
/// draws the same whatever the block count.
pub struct StepDraws<B: AutodiffBackend> {
    eps: Option<Tensor<B::InnerBackend, 3>>,
    align: Option<PathDraws<B::InnerBackend>>,
    rows: usize,
    tokens: usize,
}

impl<B: AutodiffBackend> StepDraws<B> {
    /// The draws of a batch of `rows` images under `cfg` (`aligned`: L_align is on this step).
    pub fn draw(cfg: &TokenizerConfig, rows: usize, aligned: bool, device: &B::Device) -> Self {
        let (l, c) = (cfg.tokens, cfg.channels);
        let eps = (cfg.regulariser == Regulariser::Kl)
            .then(|| Tensor::random([rows, l, c], Distribution::Normal(0.0, 1.0), device));
        let align = aligned.then(|| path_draws(rows * l * cfg.flow_mul.max(1), c, device));
        StepDraws {
            eps,
            align,
            rows,
            tokens: l,
        }
    }

    /// The draws of the batch's rows `rows`.
    pub fn block(&self, rows: Range<usize>) -> FromBatch<B> {
        if rows == (0..self.rows) {
            // The whole batch (one block): the draws as they are, no copy.
            return FromBatch {
                eps: self.eps.clone().map(Tensor::from_inner),
                align: self
                    .align
                    .clone()
                    .map(|(t, x0)| (Tensor::from_inner(t), Tensor::from_inner(x0))),
                usage: None,
            };
        }
        let eps = self
            .eps
            .as_ref()
            .map(|e| Tensor::from_inner(e.clone().slice(rows.clone())));
        let align = self.align.as_ref().map(|(t, x0)| {
            // Row r P + p of the whole batch's draws is token p's r-th: for each r, the block's
            // tokens are one contiguous run.
            let points = self.rows * self.tokens;
            let k = t.dims()[0] / points.max(1);
            let span = |r: usize| {
                r * points + rows.start * self.tokens..r * points + rows.end * self.tokens
            };
            let t = (0..k).map(|r| t.clone().slice(span(r))).collect();
            let x0 = (0..k).map(|r| x0.clone().slice(span(r))).collect();
            (
                Tensor::from_inner(Tensor::cat(t, 0)),
                Tensor::from_inner(Tensor::cat(x0, 0)),
            )
        });
        FromBatch {
            eps,
            align,
            usage: None,
        }
    }
}

/// The losses of one training step; `total` is what the tokenizer's optimiser minimises.
pub struct StepLosses<B: Backend> {
    pub total: Tensor<B, 1>,
    pub l2: Tensor<B, 1>,
    pub l1: Tensor<B, 1>,
    pub perceptual: Tensor<B, 1>,
    /// The regulariser's loss (KL or SoftVQ entropy), unweighted.
    pub reg: Option<Tensor<B, 1>>,
    /// The generator's hinge loss (from `disc_start` on), unweighted.
    pub adv: Option<Tensor<B, 1>>,
    /// L_align of the batch's latent tokens (lambda > 0), unweighted.
    pub align: Option<Tensor<B, 1>>,
    /// The sample-level alignment loss (semantic_weight > 0 and rows with features), unweighted.
    pub semantic: Option<Tensor<B, 1>>,
    /// The batch's reconstructions.
    pub recon: Tensor<B, 2>,
}

/// `l2_weight * L2 + l1_weight * L1 + perceptual_weight * P + adv_weight * G + reg_weight * R +
/// semantic_weight * S + lambda * L_align` of a batch `x` [B, 784] at `step`, each term (a mean over
/// these rows) scaled by its share of the batch ([`StepContext::shares`]).
pub fn step_losses<B: AutodiffBackend>(
    cfg: &TokenizerConfig,
    model: &Tokenizer<B>,
    ctx: &StepContext<'_, B>,
    x: Tensor<B, 2>,
    step: usize,
) -> StepLosses<B> {
    let out = model.forward_train_with(x.clone(), ctx.draws.eps.clone(), ctx.draws.usage.as_ref());
    let diff = out.recon.clone() - x.clone();
    let l2 = diff.clone().powi_scalar(2).mean();
    let l1 = diff.abs().mean();
    let mut total = l2.clone() * cfg.l2_weight + l1.clone() * cfg.l1_weight;
    let perceptual = (ctx.classifier.features(out.recon.clone())
        - ctx.classifier.features(x).detach())
    .powi_scalar(2)
    .mean();
    if cfg.perceptual_weight > 0.0 {
        total = total + perceptual.clone() * cfg.perceptual_weight;
    }
    let adv = (step >= cfg.disc_start && cfg.adv_weight > 0.0)
        .then(|| hinge_g_loss(ctx.disc.forward(out.recon.clone())));
    if let Some(g) = &adv {
        total = total + g.clone() * cfg.adv_weight;
    }
    let reg_weight = match cfg.regulariser {
        Regulariser::None => 0.0,
        Regulariser::Kl => cfg.kl_weight,
        Regulariser::Softvq => cfg.entropy_weight,
    };
    let reg = (cfg.regulariser != Regulariser::None).then_some(out.reg);
    if let Some(r) = &reg {
        total = total + r.clone() * reg_weight;
    }
    let semantic = match &ctx.semantic {
        Some((rows, f)) if cfg.semantic_weight > 0.0 => {
            model.semantic_loss(out.latents.clone().select(0, rows.clone()), f.clone())
        }
        _ => None,
    };
    // On flex the frozen prior's part runs data-parallel over the threads (`flow::shard`; one shard
    // inside a row block, whose thread is the block's alone).
    let align = ctx.prior.filter(|_| cfg.lambda > 0.0).map(|p| {
        let (t, x0) = match &ctx.draws.align {
            Some((t, x0)) => (t.clone(), x0.clone()),
            None => crate::flow::loss::align_draws(&out.latents, cfg.flow_mul),
        };
        let shards = shards_for::<B::InnerBackend>(t.dims()[0]);
        align_loss_sharded_with(p, out.latents, cfg.flow_mul, x0, t, shards)
    });
    if let Some(a) = &align {
        total = total + a.clone() * cfg.lambda;
    }
    // Every term is a mean over these rows but the semantic one (over those with a feature).
    let scaled = |t: Tensor<B, 1>, share: f64| if share == 1.0 { t } else { t * share };
    let mut total = scaled(total, ctx.shares.rows);
    if let Some(s) = &semantic {
        total = total + scaled(s.clone() * cfg.semantic_weight, ctx.shares.semantic);
    }
    StepLosses {
        total,
        l2,
        l1,
        perceptual,
        reg,
        adv,
        align,
        semantic,
        recon: out.recon,
    }
}
