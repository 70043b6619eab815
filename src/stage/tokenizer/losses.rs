//! One training step's losses of the tokenizer: pixel L2 and L1, perceptual, adversarial, the
//! regulariser, the semantic loss and lambda * L_align, each kept for logging.

use super::config::TokenizerConfig;
use crate::flow::net::SimpleMlpAdaLn;
use crate::flow::shard::align_loss_sharded;
use crate::models::classifier::MlpClassifier;
use crate::models::tokenizer::{Discriminator, Regulariser, Tokenizer, hinge_g_loss};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor};

/// What a training step reads besides the tokenizer and the batch: the networks it does not optimise
/// (classifier, discriminator, prior) and the batch's semantic targets.
pub struct StepContext<'a, B: AutodiffBackend> {
    pub classifier: &'a MlpClassifier<B>,
    pub disc: &'a Discriminator<B>,
    pub prior: Option<&'a SimpleMlpAdaLn<B>>,
    /// The sample-level alignment's targets: rows of the batch that have a semantic feature, and
    /// those features [rows, D].
    pub semantic: Option<(Tensor<B, 1, Int>, Tensor<B, 2>)>,
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
/// semantic_weight * S + lambda * L_align` of a batch `x` [B, 784] at `step`.
pub fn step_losses<B: AutodiffBackend>(
    cfg: &TokenizerConfig,
    model: &Tokenizer<B>,
    ctx: &StepContext<'_, B>,
    x: Tensor<B, 2>,
    step: usize,
) -> StepLosses<B> {
    let out = model.forward_train(x.clone());
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
    if let Some(s) = &semantic {
        total = total + s.clone() * cfg.semantic_weight;
    }
    // On flex the frozen prior's part runs data-parallel over the threads (`flow::shard`).
    let align = ctx
        .prior
        .filter(|_| cfg.lambda > 0.0)
        .map(|p| align_loss_sharded(p, out.latents, cfg.flow_mul));
    if let Some(a) = &align {
        total = total + a.clone() * cfg.lambda;
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
