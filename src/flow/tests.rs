//! The flow module against closed forms and independent computations.

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor, TensorData};

use super::*;

type B = crate::backend::TestBackend;
type AB = crate::backend::TestAutodiff;

fn dev() -> burn::tensor::Device<B> {
    Default::default()
}

fn vec2<Bk: Backend>(t: Tensor<Bk, 2>) -> Vec<f64> {
    t.into_data().iter::<f64>().collect()
}

fn tensor2<Bk: Backend>(v: Vec<f32>, n: usize, d: usize) -> Tensor<Bk, 2> {
    Tensor::from_data(TensorData::new(v, [n, d]), &Default::default())
}

/// Replaces every parameter by N(0, 0.3^2) draws, so zero-initialised layers become non-trivial.
pub(super) struct Randomise;
impl<Bk: Backend> ModuleMapper<Bk> for Randomise {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<Bk, D>>) -> Param<Tensor<Bk, D>> {
        let (id, t, mapper) = param.consume();
        let grad = t.is_require_grad();
        let r = t.random_like(Distribution::Normal(0.0, 0.3));
        let r = if grad { r.require_grad() } else { r };
        Param::from_mapped_value(id, r, mapper)
    }
}

pub(crate) fn random_net<Bk: Backend>(dim: usize) -> SimpleMlpAdaLn<Bk> {
    <Bk as Backend>::seed(&Default::default(), 7);
    FlowNetConfig {
        dim,
        width: 16,
        depth: 2,
    }
    .init::<Bk>(&Default::default())
    .map(&mut Randomise)
}

/// The marginal velocity of the straight path from N(0, I) to N(mu, s^2 I):
/// x_t ~ N(t mu, sigma_t^2 I), sigma_t^2 = (1-t)^2 + t^2 s^2, v = mu + (sigma_t'/sigma_t)(x - t mu).
struct GaussianPath {
    mu: Vec<f32>,
    s: f64,
}

impl GaussianPath {
    fn rate(&self, t: f64) -> f64 {
        let var = (1.0 - t).powi(2) + t * t * self.s * self.s;
        (t * self.s * self.s - (1.0 - t)) / var
    }
}

impl<Bk: Backend> VelocityField<Bk> for GaussianPath {
    fn velocity(&self, x: Tensor<Bk, 2>, t: Tensor<Bk, 1>) -> Tensor<Bk, 2> {
        let [n, d] = x.dims();
        let device = x.device();
        let s2 = self.s * self.s;
        let tt = t.unsqueeze_dim::<2>(1);
        let one_minus = tt.clone().neg() + 1.0;
        let var = one_minus.clone().powi_scalar(2) + tt.clone().powi_scalar(2) * s2;
        let rate = (tt.clone() * s2 - one_minus) / var;
        let mu = Tensor::<Bk, 1>::from_data(TensorData::new(self.mu.clone(), [d]), &device)
            .unsqueeze::<2>()
            .repeat_dim(0, n);
        mu.clone() + rate * (x - mu * tt)
    }
}

#[test]
fn fresh_network_outputs_exactly_zero() {
    let net = FlowNetConfig {
        dim: 3,
        width: 32,
        depth: 3,
    }
    .init::<B>(&dev());
    let x = Tensor::<B, 2>::random([5, 3], Distribution::Normal(0.0, 2.0), &dev());
    let t = Tensor::<B, 1>::random([5], Distribution::Uniform(0.0, 1.0), &dev());
    assert!(vec2(net.forward(x, t)).iter().all(|&v| v == 0.0));
}

#[test]
fn timestep_embedding_matches_hand_values() {
    let t = Tensor::<B, 1>::from_data(TensorData::new(vec![0.5f32], [1]), &dev());
    let e = vec2(net::timestep_embedding(t, 4, 10_000.0));
    // half = 2, frequencies 1 and exp(-ln(1e4)/2) = 0.01.
    let want = [0.5f64.cos(), 0.005f64.cos(), 0.5f64.sin(), 0.005f64.sin()];
    for (a, b) in e.iter().zip(want) {
        assert!((a - b).abs() < 1e-6, "{e:?}");
    }
}

#[test]
fn ema_update_follows_the_formula() {
    let model = random_net::<B>(2);
    let ema = model.clone().map(&mut Randomise);
    let before = [
        vec2(ema.input_proj.weight.val()),
        vec2(model.input_proj.weight.val()),
    ];
    let updated = crate::train::ema::ema_update(ema, &model, 0.9);
    let after = vec2(updated.input_proj.weight.val());
    for ((e, m), a) in before[0].iter().zip(&before[1]).zip(&after) {
        assert!((a - (0.9 * e + 0.1 * m)).abs() < 1e-6);
    }
}

#[test]
fn flow_matching_loss_matches_a_hand_computation() {
    // v(x, t) = -x (a linear field); one point, d = 2.
    struct Neg;
    impl<Bk: Backend> VelocityField<Bk> for Neg {
        fn velocity(&self, x: Tensor<Bk, 2>, _t: Tensor<Bk, 1>) -> Tensor<Bk, 2> {
            x.neg()
        }
    }
    let x1 = tensor2::<B>(vec![1.0, 2.0], 1, 2);
    let x0 = tensor2::<B>(vec![0.5, -1.0], 1, 2);
    let t = Tensor::<B, 1>::from_data(TensorData::new(vec![0.25f32], [1]), &dev());
    // x_t = 0.75 x0 + 0.25 x1 = (0.625, -0.25); v = (-0.625, 0.25); target x1 - x0 = (0.5, 3).
    // mean((v - target)^2) = ((-1.125)^2 + (-2.75)^2) / 2.
    let want = (1.125f64.powi(2) + 2.75f64.powi(2)) / 2.0;
    let got = vec2(flow_matching_loss_with(&Neg, x1, x0, t).unsqueeze::<2>())[0];
    assert!((got - want).abs() < 1e-6, "{got} vs {want}");
}

#[test]
fn reversed_time_converts_the_public_convention() {
    // The public code's loss: x_s = (1 - s) data + s noise, target noise - data, for a field u.
    let u = random_net::<B>(2);
    let data = Tensor::<B, 2>::random([8, 2], Distribution::Normal(0.0, 1.0), &dev());
    let noise = Tensor::<B, 2>::random([8, 2], Distribution::Normal(0.0, 1.0), &dev());
    let s = Tensor::<B, 1>::random([8], Distribution::Uniform(0.0, 1.0), &dev());
    let ss = s.clone().unsqueeze_dim::<2>(1);
    let xs = data.clone() * (ss.clone().neg() + 1.0) + noise.clone() * ss;
    let theirs = (u.forward(xs, s.clone()) - (noise.clone() - data.clone()))
        .powi_scalar(2)
        .mean();
    // Ours with t = 1 - s on the wrapped field.
    let ours = flow_matching_loss_with(&ReversedTime(u), data, noise, s.neg() + 1.0);
    let (a, b) = (
        vec2(theirs.unsqueeze::<2>())[0],
        vec2(ours.unsqueeze::<2>())[0],
    );
    assert!((a - b).abs() < 1e-5 * a.abs().max(1.0), "{a} vs {b}");
}

/// L_align of token latents [B, L, C] with `flow_mul` draws per token (the tokenizer's use): the
/// gradient with respect to every latent value matches central differences of the loss on the same
/// draws. (With Burn's `repeat_dim` for the draws each token got other tokens' gradients.)
#[test]
#[cfg_attr(
    feature = "gpu-tests",
    ignore = "TF32 matrix products: see the comment below"
)]
fn token_align_loss_gradient_with_several_draws_matches_finite_differences() {
    let prior = random_net::<AB>(3).no_grad();
    let (b, l, c, k) = (2usize, 3usize, 3usize, 3usize);
    let y0: Vec<f32> = (0..b * l * c)
        .map(|i| ((i * 5 % 13) as f32 - 6.0) / 5.0)
        .collect();
    let x0 = Tensor::<AB, 2>::random([b * l * k, c], Distribution::Normal(0.0, 1.0), &dev());
    let t = Tensor::<AB, 1>::random([b * l * k], Distribution::Uniform(0.0, 1.0), &dev());
    let latents = |v: Vec<f32>| Tensor::<AB, 3>::from_data(TensorData::new(v, [b, l, c]), &dev());
    let loss_at = |v: Vec<f32>| -> f64 {
        let loss = align_loss_with(&prior, latents(v), k, x0.clone(), t.clone());
        vec2(loss.unsqueeze::<2>())[0]
    };
    let y = latents(y0.clone()).require_grad();
    let loss = align_loss_with(&prior, y.clone(), k, x0.clone(), t.clone());
    let g: Vec<f64> = y
        .grad(&loss.backward())
        .expect("y has a gradient")
        .into_data()
        .iter::<f64>()
        .collect();
    let h = 1e-2f32;
    for i in 0..b * l * c {
        let (mut up, mut down) = (y0.clone(), y0.clone());
        up[i] += h;
        down[i] -= h;
        let fd = (loss_at(up) - loss_at(down)) / (2.0 * h as f64);
        assert!(
            (fd - g[i]).abs() < 2e-3 + 2e-2 * fd.abs(),
            "value {i}: autodiff {} vs finite difference {fd}",
            g[i]
        );
    }
}

// On a GPU the f32 matrix products run in TF32 (crate::backend::TEST_MATMUL_REL): a central difference
// of f32 losses at h = 1e-2 then carries noise of about 1e-3 |L| / h, as large as the tolerance, so the
// check runs on flex only; the autodiff graph is the same code on every backend.
#[test]
#[cfg_attr(
    feature = "gpu-tests",
    ignore = "TF32 matrix products: see the comment above"
)]
fn align_loss_gradient_matches_finite_differences() {
    let prior = random_net::<AB>(3).no_grad();
    let n = 4;
    let y0: Vec<f32> = (0..n * 3)
        .map(|i| ((i * 7 % 11) as f32 - 5.0) / 4.0)
        .collect();
    let x0 = Tensor::<AB, 2>::random([n, 3], Distribution::Normal(0.0, 1.0), &dev());
    let t = Tensor::<AB, 1>::random([n], Distribution::Uniform(0.0, 1.0), &dev());
    let loss_at = |y: Vec<f32>| -> f64 {
        let y = tensor2::<AB>(y, n, 3);
        vec2(flow_matching_loss_with(&prior, y, x0.clone(), t.clone()).unsqueeze::<2>())[0]
    };
    let y = tensor2::<AB>(y0.clone(), n, 3).require_grad();
    let loss = flow_matching_loss_with(&prior, y.clone(), x0.clone(), t.clone());
    let grads = loss.backward();
    let g: Vec<f64> = y
        .grad(&grads)
        .expect("y has a gradient")
        .into_data()
        .iter::<f64>()
        .collect();
    let h = 1e-2f32;
    for i in 0..n * 3 {
        let mut up = y0.clone();
        up[i] += h;
        let mut down = y0.clone();
        down[i] -= h;
        let fd = (loss_at(up) - loss_at(down)) / (2.0 * h as f64);
        assert!(
            (fd - g[i]).abs() < 2e-3 + 2e-2 * fd.abs(),
            "coordinate {i}: autodiff {} vs finite difference {fd}",
            g[i]
        );
    }
    // The prior is frozen: its parameters received no gradient.
    assert!(prior.input_proj.weight.val().grad(&grads).is_none());
}

#[test]
fn exact_log_likelihood_of_the_gaussian_path_is_the_gaussian_density() {
    let field = GaussianPath {
        mu: vec![1.0, -2.0],
        s: 0.5,
    };
    let pts: Vec<f32> = vec![1.0, -2.0, 1.3, -1.6, 0.2, -2.5, 2.0, -1.0];
    let x = tensor2::<B>(pts.clone(), 4, 2);
    let ll = log_likelihood::<AB, _>(&field, x, 40, Divergence::Exact);
    for (i, got) in ll.iter().enumerate() {
        let (a, b) = (pts[2 * i] as f64 - 1.0, pts[2 * i + 1] as f64 + 2.0);
        let want = -(a * a + b * b) / (2.0 * 0.25) - (2.0 * std::f64::consts::PI * 0.25).ln();
        assert!((got - want).abs() < 2e-3, "point {i}: {got} vs {want}");
    }
    // The divergence itself: d * rate(t).
    let (_, div) = divergence::<AB, _>(&field, tensor2::<B>(pts, 4, 2), 0.3, Divergence::Exact);
    for d in div {
        assert!((d - 2.0 * field.rate(0.3)).abs() < 1e-5);
    }
}

#[test]
fn hutchinson_agrees_with_the_exact_divergence_within_its_error() {
    let net = random_net::<AB>(4);
    let x = Tensor::<B, 2>::random([6, 4], Distribution::Normal(0.0, 1.0), &dev());
    let (_, exact) = divergence::<AB, _>(&net, x.clone(), 0.4, Divergence::Exact);
    let probes = 400;
    let mut draws = vec![Vec::new(); 6];
    for _ in 0..probes {
        let (_, est) =
            divergence::<AB, _>(&net, x.clone(), 0.4, Divergence::Hutchinson { probes: 1 });
        for (i, e) in est.into_iter().enumerate() {
            draws[i].push(e);
        }
    }
    for (i, d) in draws.iter().enumerate() {
        let mean = d.iter().sum::<f64>() / probes as f64;
        let var = d.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (probes - 1) as f64;
        let se = (var / probes as f64).sqrt();
        assert!(
            (mean - exact[i]).abs() < 5.0 * se + 1e-4,
            "point {i}: {mean} +- {se} vs exact {}",
            exact[i]
        );
    }
}

#[test]
fn samplers_follow_the_exact_flow_map() {
    // For the Gaussian path the flow map is affine: x_1 = mu + s x_0.
    let field = GaussianPath {
        mu: vec![1.0, -2.0],
        s: 0.5,
    };
    let x0v = vec![0.3f32, -1.2, 2.0, 0.5];
    let want: Vec<f64> = x0v
        .iter()
        .enumerate()
        .map(|(i, v)| [1.0, -2.0][i % 2] + 0.5 * *v as f64)
        .collect();
    for (solver, steps, tol) in [(Solver::Heun, 50, 1e-3), (Solver::Euler, 200, 2e-2)] {
        let got = vec2(sample(
            &field,
            tensor2::<B>(x0v.clone(), 2, 2),
            steps,
            solver,
        ));
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < tol, "{solver:?}: {got:?} vs {want:?}");
        }
    }
}

#[test]
fn elbo_term_c_matches_its_closed_form() {
    // Gaussian path: div v = d * sigma'/sigma, so C(y) = -d (ln sigma_1 - ln sigma_0) = -d ln s for any y.
    let field = GaussianPath {
        mu: vec![1.0, -2.0],
        s: 0.5,
    };
    let y = tensor2::<B>(vec![1.0, -2.0, 2.0, -1.0], 2, 2);
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(1);
    let c = elbo_c::<AB, _>(&field, y.clone(), 4000, Divergence::Exact, &mut rng);
    let want = -2.0 * 0.5f64.ln();
    for v in &c {
        assert!((v - want).abs() < 0.03, "C(y) = {v}, expected {want}");
    }
    // Note: with lambda = 1 the bound log p_1(y) >= C(y) - L_align(y) of Proposition 1 does not hold
    // for this exact field: at y = mu, log p_1 = -ln(pi/2) = -0.45 while C - L_align (squared norm
    // summed over dimensions) is about 1.39 - 0.82 = 0.57. See docs/findings.md.
}

#[test]
fn global_norm_clipping_scales_to_the_threshold() {
    use burn::optim::GradientsParams;
    let net = random_net::<AB>(3);
    let x = Tensor::<AB, 2>::random([16, 3], Distribution::Normal(0.0, 1.0), &dev());
    let grads_of = || {
        GradientsParams::from_grads(
            flow_matching_loss_with(
                &net,
                x.clone(),
                x.clone().neg(),
                Tensor::full([16], 0.3, &dev()),
            )
            .backward(),
            &net,
        )
    };
    let mut g = grads_of();
    let norm = crate::train::clip_global_norm::<AB, _>(&net, &mut g, None);
    assert!(norm > 0.0);
    let mut g = grads_of();
    crate::train::clip_global_norm::<AB, _>(&net, &mut g, Some(norm / 4.0));
    let after = crate::train::clip_global_norm::<AB, _>(&net, &mut g, None);
    assert!(
        (after - norm / 4.0).abs() < 1e-3 * norm,
        "{after} vs {}",
        norm / 4.0
    );
    let mut g = grads_of();
    crate::train::clip_global_norm::<AB, _>(&net, &mut g, Some(norm * 2.0));
    assert!(
        (crate::train::clip_global_norm::<AB, _>(&net, &mut g, None) - norm).abs() < 1e-4 * norm
    );
}

#[test]
fn adamw_training_lowers_the_loss_and_checkpoints_round_trip() {
    let mut cfg = train::PriorTrainConfig::paper(150);
    cfg.schedule = crate::train::LrSchedule::Cosine {
        lr: 3e-3,
        warmup: 10,
        total: 150,
        min_lr: 0.0,
    };
    cfg.batch = 128;
    cfg.ema_decay = 0.9;
    <AB as Backend>::seed(&dev(), 3);
    let mut losses = Vec::new();
    let mut batch =
        |_step: usize| Tensor::<AB, 2>::random([128, 2], Distribution::Normal(2.0, 0.3), &dev());
    let prior = train::train_prior::<AB, ()>(
        FlowNetConfig {
            dim: 2,
            width: 32,
            depth: 2,
        },
        &cfg,
        &dev(),
        &mut batch,
        &mut |log| {
            assert!(log.lr > 0.0 && log.grad_norm.is_finite());
            losses.push(log.loss);
            Ok(true)
        },
    )
    .unwrap();
    let early = losses[..10].iter().sum::<f64>() / 10.0;
    let late = losses[losses.len() - 10..].iter().sum::<f64>() / 10.0;
    assert!(late < 0.7 * early, "loss {early} -> {late}");
    let dir = tempfile::tempdir().unwrap();
    let stem = dir.path().join("p");
    prior
        .clone()
        .save_file(
            stem.clone(),
            &burn::record::NamedMpkFileRecorder::<burn::record::FullPrecisionSettings>::new(),
        )
        .unwrap();
    let path = stem.with_extension("mpk");
    let loaded = train::load_prior::<AB>(
        FlowNetConfig {
            dim: 2,
            width: 32,
            depth: 2,
        },
        &path,
        &dev(),
    )
    .unwrap();
    let x = Tensor::<AB, 2>::random([4, 2], Distribution::Normal(0.0, 1.0), &dev());
    let t = Tensor::<AB, 1>::full([4], 0.5, &dev());
    assert_eq!(
        vec2(prior.forward(x.clone(), t.clone())),
        vec2(loaded.forward(x, t))
    );
    let e = train::load_prior::<AB>(
        FlowNetConfig {
            dim: 2,
            width: 16,
            depth: 2,
        },
        &path,
        &dev(),
    )
    .unwrap_err();
    assert!(e.contains("cannot load prior"), "{e}");
}
