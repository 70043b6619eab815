//! One training step of the `vae` / `vq` autoencoders over data-parallel row blocks
//! (`train::blocks`: one block per thread on flex, one graph elsewhere). The VAE posterior's draw is
//! made for the whole batch first; every loss is a mean over the rows' elements, so the blocks'
//! losses weighted by their share of the rows give the batch's loss and gradients (up to float order).

use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Distribution, Int, Tensor};

use super::LatentAeConfig;
use crate::models::latent_ae::{GRID, LatentAe};
use crate::tensors::scalar;
use crate::train::Trainer;
use crate::train::blocks::{block_parts, blocks_of};

/// Fewest images a row block of the step gets.
pub const MIN_BLOCK_IMAGES: usize = 8;

/// What a step gives back.
pub struct AeStep<B: AutodiffBackend> {
    /// The batch's total, reconstruction and regulariser losses (when asked for).
    pub values: Option<AeValues>,
    /// The codes the batch used (VQ, when asked for).
    pub codes: Option<Tensor<B::InnerBackend, 1, Int>>,
}

/// The losses of a batch.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AeValues {
    pub total: f64,
    pub recon: f64,
    /// KL per latent element (VAE) or codebook + commitment loss (VQ).
    pub reg: f64,
}

/// Row blocks for a step over `rows` images: one per thread on flex (at least
/// [`MIN_BLOCK_IMAGES`] each), 1 elsewhere.
pub fn step_blocks<B: AutodiffBackend>(rows: usize) -> usize {
    blocks_of::<B::InnerBackend>(rows, MIN_BLOCK_IMAGES)
}

/// One step at 0-based `step` on images `x` [B, 784] over `blocks` row blocks; the losses when
/// `values`, the codes when `codes` (reading either synchronises the device).
pub fn train_step<B: AutodiffBackend>(
    trainer: &mut Trainer<B, LatentAe<B>>,
    cfg: &LatentAeConfig,
    x: Tensor<B::InnerBackend, 2>,
    step: usize,
    blocks: usize,
    values: bool,
    codes: bool,
) -> AeStep<B> {
    let [n, _] = x.dims();
    let eps = (!trainer.model().is_vq()).then(|| {
        Tensor::random(
            [n, cfg.channels, GRID, GRID],
            Distribution::Normal(0.0, 1.0),
            &x.device(),
        )
    });
    let (grads, out) = gradients(trainer.model(), cfg, &x, eps, blocks, values, codes);
    trainer.apply(step, grads);
    out
}

/// The gradients of the batch's loss over `blocks` row blocks, given the VAE's draw `eps`
/// [B, C, 7, 7], and what [`train_step`] gives back.
pub(super) fn gradients<B: AutodiffBackend>(
    model: &LatentAe<B>,
    cfg: &LatentAeConfig,
    x: &Tensor<B::InnerBackend, 2>,
    eps: Option<Tensor<B::InnerBackend, 4>>,
    blocks: usize,
    values: bool,
    codes: bool,
) -> (GradientsParams, AeStep<B>) {
    let [n, _] = x.dims();
    let (grads, parts) = block_parts(model, n, blocks, |m, rows| {
        let share = rows.len() as f64 / n as f64;
        let eps = eps
            .as_ref()
            .map(|e| Tensor::from_inner(e.clone().slice(rows.clone())));
        let x = Tensor::from_inner(x.clone().slice(rows));
        let l = m.losses_with(x, eps, cfg.kl_weight, cfg.commitment);
        let v = values.then(|| AeValues {
            total: share * scalar(l.total.clone()),
            recon: share * scalar(l.recon.clone()),
            reg: share * scalar(l.reg.clone()),
        });
        let c = l.codes.filter(|_| codes).map(|c| c.inner());
        let total = if share == 1.0 {
            l.total
        } else {
            l.total * share
        };
        (total, (v, c))
    });
    let mut out = AeStep::<B> {
        values: None,
        codes: None,
    };
    let mut used = Vec::new();
    for (v, c) in parts {
        if let Some(v) = v {
            let sum = out.values.get_or_insert_with(AeValues::default);
            sum.total += v.total;
            sum.recon += v.recon;
            sum.reg += v.reg;
        }
        used.extend(c);
    }
    out.codes = match used.len() {
        0 => None,
        1 => used.pop(),
        _ => Some(Tensor::cat(used, 0)),
    };
    (grads, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::latent_ae::AeKind;
    use crate::train::blocks::testing::{assert_grads_close, flat_grads};

    type B = crate::backend::TestAutodiff;
    type Inner = <B as AutodiffBackend>::InnerBackend;

    /// Row blocks give one graph's losses, gradients and codes (the same draw), for both kinds.
    #[test]
    fn row_blocks_give_the_whole_batch_gradients() {
        let device = Default::default();
        let cfg = LatentAeConfig {
            channels: 3,
            codebook_size: 6,
            kl_weight: 0.5,
            commitment: 0.25,
            ..LatentAeConfig::default()
        };
        let n = 7;
        let x = Tensor::<Inner, 2>::random([n, 784], Distribution::Uniform(0.0, 1.0), &device);
        for kind in [AeKind::Vae, AeKind::Vq] {
            let mut model = LatentAe::<B>::new(kind, 3, 6, &device);
            if kind == AeKind::Vq {
                model = model.init_codebook_from(Tensor::from_inner(x.clone()), 0);
            }
            let eps = (kind == AeKind::Vae).then(|| {
                Tensor::<Inner, 4>::random([n, 3, 7, 7], Distribution::Normal(0.0, 1.0), &device)
            });
            let run = |blocks| gradients(&model, &cfg, &x, eps.clone(), blocks, true, true);
            let (g1, o1) = run(1);
            let reference = flat_grads(&model, &g1);
            let v1 = o1.values.expect("values");
            assert!(v1.reg > 0.0);
            let codes = |o: &AeStep<B>| {
                o.codes
                    .clone()
                    .map(|c| c.into_data().iter::<i64>().collect::<Vec<_>>())
            };
            assert_eq!(codes(&o1).is_some(), kind == AeKind::Vq);
            for blocks in [2, 3] {
                let (g, o) = run(blocks);
                let v = o.values.expect("values");
                for (name, a, b) in [
                    ("total", v.total, v1.total),
                    ("recon", v.recon, v1.recon),
                    ("reg", v.reg, v1.reg),
                ] {
                    assert!(
                        (a - b).abs() <= 1e-5 * b.abs() + 1e-7,
                        "{kind:?}, {blocks} blocks, {name}: {a} vs {b}"
                    );
                }
                assert_eq!(codes(&o), codes(&o1), "{kind:?}, {blocks} blocks: codes");
                let what = format!("{kind:?}, {blocks} blocks");
                assert_grads_close(&flat_grads(&model, &g), &reference, &what);
            }
        }
    }
}
