//! The tokenizer's training step and job, checked on tiny data the tests make.

use super::*;
use crate::flow::FlowNetConfig;
use crate::models::classifier::MlpClassifier;
use crate::models::tokenizer::Regulariser;
use crate::train::blocks::testing::{assert_grads_close, flat_grads};
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::{Distribution, Tensor};

type B = crate::backend::TestAutodiff;

fn flat_params<B: Backend, M: Module<B>>(m: &M) -> Vec<f32> {
    struct Collect(Vec<f32>);
    impl<B: Backend> burn::module::ModuleVisitor<B> for Collect {
        fn visit_float<const D: usize>(&mut self, p: &burn::module::Param<Tensor<B, D>>) {
            self.0.extend(p.val().into_data().iter::<f32>());
        }
    }
    let mut c = Collect(Vec::new());
    m.visit(&mut c);
    c.0
}

#[test]
fn aligned_runs_with_several_draws_carry_the_tiled_gradient_key() {
    let weights = std::collections::BTreeMap::new();
    let key = crate::jobs::TILED_GRADIENT_KEY;
    let has = |c: &TokenizerConfig| {
        c.run_spec("c", Some("p"), None, &weights)
            .config
            .get(key)
            .is_some()
    };
    assert!(has(&tiny(0.01)));
    assert!(!has(&tiny(0.0)));
    assert!(!has(&TokenizerConfig {
        flow_mul: 1,
        ..tiny(0.01)
    }));
}

fn tiny(lambda: f64) -> TokenizerConfig {
    TokenizerConfig {
        tokens: 3,
        channels: 2,
        width: 8,
        depth: 1,
        heads: 2,
        lambda,
        disc_start: 0,
        ..TokenizerConfig::default()
    }
}

#[test]
fn training_steps_move_the_tokenizer_and_leave_the_prior_frozen() {
    let device = Default::default();
    let cfg = tiny(1.0);
    let prior = FlowNetConfig {
        dim: 2,
        width: 16,
        depth: 1,
    }
    .init::<B>(&device);
    // A prior that is not the zero field (its zero-initialised layers would hide changes).
    let prior = {
        let mut p = prior;
        let mut optim = crate::optim::Adam::default().init::<B, SimpleMlpAdaLn<B>>();
        for _ in 0..3 {
            let y = Tensor::<B, 2>::random([32, 2], Distribution::Normal(1.0, 0.2), &device);
            let loss = crate::flow::flow_matching_loss(&p, y);
            let g = GradientsParams::from_grads(loss.backward(), &p);
            p = optim.step(1e-2, p, g);
        }
        p.no_grad()
    };
    let classifier = MlpClassifier::<B>::new(784, 8, 10, &device).no_grad();
    let disc = Discriminator::<B>::new(&device);
    let mut model = Tokenizer::<B>::new(cfg.shape(0), &device);
    let prior_before = flat_params(&prior);
    let model_before = flat_params(&model);
    let mut optim = crate::optim::Adam::default().init::<B, Tokenizer<B>>();
    for step in 0..3 {
        let x = Tensor::<B, 2>::random([4, 784], Distribution::Uniform(0.0, 1.0), &device);
        let ctx = StepContext {
            classifier: &classifier,
            disc: &disc,
            prior: Some(&prior),
            semantic: None,
            draws: FromBatch::fresh(),
            shares: Shares::WHOLE,
        };
        let l = step_losses(&cfg, &model, &ctx, x, step);
        assert!(l.align.is_some() && l.adv.is_some() && l.reg.is_none());
        let grads = l.total.backward();
        // No gradient reaches the prior's parameters; the loss still reaches the latents.
        let mut prior_grads = 0;
        struct Count<'g>(&'g <B as AutodiffBackend>::Gradients, &'g mut usize);
        impl burn::module::ModuleVisitor<B> for Count<'_> {
            fn visit_float<const D: usize>(&mut self, p: &burn::module::Param<Tensor<B, D>>) {
                if p.val().grad(self.0).is_some() {
                    *self.1 += 1;
                }
            }
        }
        prior.visit(&mut Count(&grads, &mut prior_grads));
        assert_eq!(prior_grads, 0, "the prior received gradients");
        let g = GradientsParams::from_grads(grads, &model);
        model = optim.step(1e-3, model, g);
    }
    assert_eq!(
        flat_params(&prior),
        prior_before,
        "the prior's parameters changed"
    );
    assert_ne!(
        flat_params(&model),
        model_before,
        "the tokenizer did not move"
    );
}

#[test]
fn the_total_loss_adds_the_weighted_terms() {
    let device = Default::default();
    let mut cfg = tiny(0.5);
    cfg.regulariser = Regulariser::Kl;
    cfg.kl_weight = 0.25;
    cfg.l1_weight = 2.0;
    cfg.perceptual_weight = 0.3;
    cfg.adv_weight = 0.7;
    let prior = FlowNetConfig {
        dim: 2,
        width: 8,
        depth: 1,
    }
    .init::<B>(&device)
    .no_grad();
    let classifier = MlpClassifier::<B>::new(784, 8, 10, &device).no_grad();
    let disc = Discriminator::<B>::new(&device);
    let model = Tokenizer::<B>::new(cfg.shape(0), &device);
    let ctx = StepContext {
        classifier: &classifier,
        disc: &disc,
        prior: Some(&prior),
        semantic: None,
        draws: FromBatch::fresh(),
        shares: Shares::WHOLE,
    };
    let x = Tensor::<B, 2>::random([3, 784], Distribution::Uniform(0.0, 1.0), &device);
    let l = step_losses(&cfg, &model, &ctx, x, 5);
    let v = |t: &Tensor<B, 1>| scalar(t.clone());
    let (Some(reg), Some(adv), Some(align)) = (&l.reg, &l.adv, &l.align) else {
        panic!("every term is on");
    };
    let want = v(&l.l2)
        + 2.0 * v(&l.l1)
        + 0.3 * v(&l.perceptual)
        + 0.7 * v(adv)
        + 0.25 * v(reg)
        + 0.5 * v(align);
    assert!((v(&l.total) - want).abs() < 1e-5 * want.abs().max(1.0));
    // Before `disc_start` there is no adversarial term; lambda = 0 has no alignment term.
    cfg.disc_start = 10;
    cfg.lambda = 0.0;
    let l = step_losses(
        &cfg,
        &model,
        &ctx,
        Tensor::random([3, 784], Distribution::Uniform(0.0, 1.0), &device),
        5,
    );
    assert!(l.adv.is_none() && l.align.is_none());
}

/// Row blocks give one graph's gradients and losses (same draws), up to the order of float sums: KL
/// (its posterior draw cut with the rows) and SoftVQ (its usage term linearised at the batch's mean
/// assignment), L_align (its repeated draws), the adversarial and the semantic loss (a mean over the
/// rows that have a feature, none of them in the last block).
#[test]
fn row_blocks_give_the_whole_batch_gradients_and_losses() {
    for regulariser in [Regulariser::Kl, Regulariser::Softvq] {
        row_blocks_match_one_graph(regulariser);
    }
}

fn row_blocks_match_one_graph(regulariser: Regulariser) {
    use super::step::TokenizerGrads;
    let device = Default::default();
    let cfg = TokenizerConfig {
        regulariser,
        codebook_size: 5,
        entropy_weight: 0.3,
        kl_weight: 0.3,
        perceptual_weight: 0.2,
        adv_weight: 0.4,
        semantic_weight: 0.6,
        flow_mul: 3,
        ..tiny(0.5)
    };
    let prior = crate::flow::tests::random_net::<B>(2).no_grad();
    let classifier = MlpClassifier::<B>::new(784, 8, 10, &device).no_grad();
    let disc = Discriminator::<B>::new(&device);
    let model = Tokenizer::<B>::new(cfg.shape(4), &device);
    let n = 7;
    let batch = StepBatch {
        x: Tensor::random([n, 784], Distribution::Uniform(0.0, 1.0), &device),
        semantic: Some(SemanticBatch {
            positions: vec![0, 2, 4],
            features: (0..12).map(|i| (i as f32 * 0.7).sin()).collect(),
            dim: 4,
        }),
    };
    let frozen = Frozen {
        classifier: &classifier,
        prior: Some(&prior),
    };
    let draws = StepDraws::<B>::draw(&cfg, n, true, &device);
    let step = TokenizerGrads {
        cfg: &cfg,
        frozen: &frozen,
        disc: &disc,
        batch: &batch,
        draws: &draws,
        step: 3,
    };
    let (g1, v1, r1) = step.gradients(&model, 1, true);
    let reference = flat_grads(&model, &g1);
    assert!(v1.reg.is_some() && v1.adv.is_some() && v1.align.is_some());
    assert!(v1.semantic.is_some());
    // The one-graph total is the weighted sum of its terms.
    let (Some(reg), Some(adv), Some(align), Some(sem)) = (v1.reg, v1.adv, v1.align, v1.semantic)
    else {
        unreachable!()
    };
    let want = v1.l2 + 0.2 * v1.perceptual + 0.3 * reg + 0.4 * adv + 0.6 * sem + 0.5 * align;
    assert!((v1.total - want).abs() < 1e-5 * want.abs().max(1.0));
    for blocks in [2, 3] {
        let (g, v, r) = step.gradients(&model, blocks, true);
        // Absolute slack for SoftVQ's term, a difference of two entropies of about ln K each.
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-5 * b.abs() + 1e-6;
        for (name, a, b) in [
            ("total", v.total, v1.total),
            ("l2", v.l2, v1.l2),
            ("perceptual", v.perceptual, v1.perceptual),
            ("reg", v.reg.unwrap_or(0.0), reg),
            ("adv", v.adv.unwrap_or(0.0), adv),
            ("align", v.align.unwrap_or(0.0), align),
            ("semantic", v.semantic.unwrap_or(0.0), sem),
        ] {
            assert!(
                close(a, b),
                "{regulariser:?}, {blocks} blocks, {name}: {a} vs {b}"
            );
        }
        assert_eq!(
            crate::tensors::to_host(r.clone()),
            crate::tensors::to_host(r1.clone()),
            "{blocks} blocks: reconstructions"
        );
        let what = format!("{regulariser:?}, {blocks} blocks");
        assert_grads_close(&flat_grads(&model, &g), &reference, &what);
    }
}
