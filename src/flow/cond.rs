//! Class-conditional flow matching on latent tokens (the generator of latent flow matching, seed 003):
//! the rectified-flow loss of this crate's convention (t = 0 noise, t = 1 data, target `x1 - x0`,
//! mean over elements) with the label replaced by the null label with probability `label_drop`, so one
//! network learns both the conditional and the unconditional velocity that classifier-free guidance
//! combines.

use burn::module::AutodiffModule;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Distribution, Int, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::ema::ema_update;
use super::schedule::LrSchedule;
use crate::models::dit::{Dit, DitShape};
use crate::models::mar::{Mar, MarShape};

/// Flow-matching loss of `net` on latents `x1` [B, L, C] with labels `y` [B] (already dropped where
/// wanted), fresh draws of t and x0.
pub fn cond_flow_loss<B: burn::tensor::backend::Backend>(
    net: &Dit<B>,
    x1: Tensor<B, 3>,
    y: Tensor<B, 1, Int>,
) -> Tensor<B, 1> {
    let [b, _, _] = x1.dims();
    let device = x1.device();
    let t = Tensor::<B, 1>::random([b], Distribution::Uniform(0.0, 1.0), &device);
    let x0 = x1.random_like(Distribution::Normal(0.0, 1.0));
    let tt = t.clone().unsqueeze_dim::<2>(1).unsqueeze_dim::<3>(2);
    let xt = x0.clone() * (tt.clone().neg() + 1.0) + x1.clone() * tt;
    (net.forward(xt, t, y) - (x1 - x0)).powi_scalar(2).mean()
}

/// Training settings.
#[derive(Debug, Clone)]
pub struct CondTrainConfig {
    pub steps: usize,
    pub batch: usize,
    pub schedule: LrSchedule,
    /// Probability of replacing a label by the null label.
    pub label_drop: f64,
    /// EMA decay of the returned weights (0: the raw weights).
    pub ema_decay: f64,
    /// Adam's epsilon (PyTorch's default 1e-8; MAR trains better at test size with 1e-4, see README).
    pub adam_eps: f64,
    pub seed: u64,
}

/// Trains `net` on `latents` (n x `tokens` x `channels`, row-major) with `labels` (n) by minimising
/// `loss(net, x1, y, rng)` on random batches whose labels are dropped to the null label `null` with
/// `label_drop`. `on_step(step, loss)` sees every step (an error aborts). Returns the EMA weights (or
/// the raw ones without EMA).
#[allow(clippy::too_many_arguments)]
pub fn train_generator<B, M, E>(
    mut net: M,
    null: usize,
    [tokens, channels]: [usize; 2],
    cfg: &CondTrainConfig,
    latents: &[f32],
    labels: &[i64],
    device: &B::Device,
    loss: impl Fn(&M, Tensor<B, 3>, Tensor<B, 1, Int>, &mut StdRng) -> Tensor<B, 1>,
    on_step: &mut dyn FnMut(usize, f64) -> Result<(), E>,
) -> Result<M, E>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
{
    let per = tokens * channels;
    let n = labels.len();
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let mut ema = (cfg.ema_decay > 0.0).then(|| net.clone());
    let mut optim = AdamConfig::new()
        .with_epsilon(cfg.adam_eps as f32)
        .init::<B, M>();
    let null = null as i64;
    for step in 0..cfg.steps {
        let idx: Vec<usize> = (0..cfg.batch).map(|_| rng.random_range(0..n)).collect();
        let x: Vec<f32> = idx
            .iter()
            .flat_map(|&i| latents[i * per..(i + 1) * per].iter().copied())
            .collect();
        let y: Vec<i64> = idx
            .iter()
            .map(|&i| {
                if rng.random::<f64>() < cfg.label_drop {
                    null
                } else {
                    labels[i]
                }
            })
            .collect();
        let b = idx.len();
        let x = Tensor::<B, 3>::from_data(TensorData::new(x, [b, tokens, channels]), device);
        let y = Tensor::<B, 1, Int>::from_data(TensorData::new(y, [b]), device);
        let l = loss(&net, x, y, &mut rng);
        on_step(step, crate::tensors::scalar(l.clone()))?;
        let grads = GradientsParams::from_grads(l.backward(), &net);
        net = optim.step(cfg.schedule.at(step), net, grads);
        if let Some(e) = ema.take() {
            ema = Some(ema_update(e, &net, cfg.ema_decay));
        }
    }
    Ok(ema.unwrap_or(net))
}

/// Trains a fresh DiT (see [`train_generator`]).
pub fn train_dit<B: AutodiffBackend, E>(
    shape: DitShape,
    cfg: &CondTrainConfig,
    latents: &[f32],
    labels: &[i64],
    device: &B::Device,
    on_step: &mut dyn FnMut(usize, f64) -> Result<(), E>,
) -> Result<Dit<B>, E> {
    let net = Dit::<B>::new(shape, device);
    let null = net.null_label();
    train_generator(
        net,
        null,
        [shape.tokens, shape.channels],
        cfg,
        latents,
        labels,
        device,
        |net, x, y, _| cond_flow_loss(net, x, y),
        on_step,
    )
}

/// MAR's training settings beyond the common ones.
#[derive(Debug, Clone, Copy)]
pub struct MarTraining {
    /// (t, x0) draws per token and step (MAR's `diffusion_batch_mul`, 4).
    pub flow_mul: usize,
    /// Lower bound of the mask ratio (MAR: 0.7).
    pub mask_min: f64,
}

/// Trains a fresh MAR generator (see [`train_generator`]).
pub fn train_mar<B: AutodiffBackend, E>(
    shape: MarShape,
    mar: MarTraining,
    cfg: &CondTrainConfig,
    latents: &[f32],
    labels: &[i64],
    device: &B::Device,
    on_step: &mut dyn FnMut(usize, f64) -> Result<(), E>,
) -> Result<Mar<B>, E> {
    let net = Mar::<B>::new(shape, device);
    let null = net.null_label();
    train_generator(
        net,
        null,
        [shape.tokens, shape.channels],
        cfg,
        latents,
        labels,
        device,
        |net, x, y, rng| net.loss(x, y, mar.flow_mul, mar.mask_min, rng),
        on_step,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    type B = burn::backend::Autodiff<burn::backend::Flex>;

    #[test]
    fn a_generator_reproduces_the_means_and_covariances_of_a_known_mixture() {
        // Two classes of 2-D latents (one token): N((2, 0), diag(0.3^2, 0.6^2)) and
        // N((-1.5, 1), 0.25^2 I).
        let device = Default::default();
        <B as burn::tensor::backend::Backend>::seed(&device, 3);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let normal = rand_distr::StandardNormal;
        let specs = [([2.0f32, 0.0], [0.3f32, 0.6]), ([-1.5, 1.0], [0.25, 0.25])];
        let n = 4000;
        let mut latents = Vec::with_capacity(2 * n);
        let mut labels = Vec::with_capacity(n);
        for i in 0..n {
            let c = i % 2;
            let (m, s) = specs[c];
            for d in 0..2 {
                latents.push(m[d] + s[d] * rng.sample::<f32, _>(normal));
            }
            labels.push(c as i64);
        }
        let shape = DitShape {
            tokens: 1,
            channels: 2,
            width: 32,
            depth: 1,
            heads: 2,
            classes: 2,
        };
        let cfg = CondTrainConfig {
            steps: 400,
            batch: 128,
            schedule: LrSchedule::Cosine {
                lr: 3e-3,
                warmup: 50,
                total: 400,
                min_lr: 1e-4,
            },
            label_drop: 0.1,
            ema_decay: 0.99,
            adam_eps: 1e-8,
            seed: 0,
        };
        let net = train_dit::<B, ()>(shape, &cfg, &latents, &labels, &device, &mut |_, _| Ok(()))
            .expect("trains")
            .valid();
        for (c, (m, s)) in specs.iter().enumerate() {
            let k = 1000;
            let x0 = Tensor::<burn::backend::Flex, 3>::random(
                [k, 1, 2],
                Distribution::Normal(0.0, 1.0),
                &device,
            );
            let y = Tensor::<burn::backend::Flex, 1, Int>::from_data(
                TensorData::new(vec![c as i64; k], [k]),
                &device,
            );
            let out: Vec<f32> = net
                .sample(x0, y, 25, 1.0)
                .into_data()
                .to_vec()
                .expect("f32");
            let (mean, cov) = crate::linalg::mean_cov(&out, 2);
            for d in 0..2 {
                assert!(
                    (mean[d] - f64::from(m[d])).abs() < 0.15,
                    "class {c} mean {mean:?}"
                );
                let var = f64::from(s[d] * s[d]);
                assert!(
                    (cov[d * 2 + d] - var).abs() < 0.35 * var + 0.02,
                    "class {c} cov {cov:?}"
                );
            }
            assert!(cov[1].abs() < 0.05, "class {c} cov {cov:?}");
        }
    }
}

#[cfg(test)]
mod mar_tests {
    use super::*;
    use burn::module::AutodiffModule;
    use rand_distr::StandardNormal;

    type B = burn::backend::Autodiff<burn::backend::Flex>;

    /// Run alone (`just test` does, after the parallel suite): the initial weights come from the
    /// backend's generator, which tests running in parallel share (see the note below).
    #[test]
    #[ignore = "run alone so that its start is the seeded one (`just test` runs it)"]
    fn mar_samples_each_class_of_a_known_mixture() {
        // Two classes, two tokens of two values, each token Gaussian given the class:
        // (mean, std per axis) per [class][token].
        let specs = [
            [([2.0f32, 0.0], [0.3f32, 0.6]), ([0.0, -1.5], [0.4, 0.4])],
            [([-1.5, 1.0], [0.25, 0.25]), ([1.0, 1.0], [0.5, 0.3])],
        ];
        let device = Default::default();
        let mut rng = StdRng::seed_from_u64(1);
        let (mut latents, mut labels) = (Vec::new(), Vec::new());
        for i in 0..4000 {
            let c = i % 2;
            for (m, s) in specs[c] {
                for d in 0..2 {
                    latents.push(m[d] + s[d] * rng.sample::<f32, _>(StandardNormal));
                }
            }
            labels.push(c as i64);
        }
        let shape = MarShape {
            tokens: 2,
            channels: 2,
            width: 64,
            depth: 1,
            heads: 2,
            classes: 2,
            buffer: 2,
            head_width: 64,
            head_depth: 2,
        };
        // Training and sampling draw from their own seeded generators; the initial weights from the
        // backend's, which tests running in parallel share, so the start is the seeded one only when
        // the test runs alone. The criteria held from each of five starts (backend seeds 0-4); with
        // Adam's epsilon at 1e-8 some starts ignore the class (class-0 samples centred at (0.2, 0.5)
        // instead of (2, 0)). At this size the narrow components come out up to ~4.5x too wide.
        <B as burn::tensor::backend::Backend>::seed(&device, 0);
        let net = Mar::<B>::new(shape, &device);
        let null = net.null_label();
        let cfg = CondTrainConfig {
            steps: 1000,
            batch: 64,
            schedule: LrSchedule::Cosine {
                lr: 1e-3,
                warmup: 250,
                total: 1000,
                min_lr: 1e-4,
            },
            label_drop: 0.1,
            ema_decay: 0.99,
            adam_eps: 1e-4,
            seed: 0,
        };
        let mask_min = crate::models::mar::MASK_RATIO_MIN;
        let net = train_generator(
            net,
            null,
            [2, 2],
            &cfg,
            &latents,
            &labels,
            &device,
            |net, x, y, rng| net.loss(x, y, 4, mask_min, rng),
            &mut |_, _| Ok::<(), ()>(()),
        )
        .expect("trains")
        .valid();
        let k = 1000;
        let dist2 = |p: &[f32], m: &[f32; 2]| (p[0] - m[0]).powi(2) + (p[1] - m[1]).powi(2);
        for (c, tokens) in specs.iter().enumerate() {
            let mut r = StdRng::seed_from_u64(9);
            let out = net.sample(&vec![c as i64; k], 2, 2, 50, 1.0, &mut r, &device);
            for (j, (m, s)) in tokens.iter().enumerate() {
                let tok: Vec<f32> = out
                    .chunks_exact(4)
                    .flat_map(|r| r[2 * j..2 * j + 2].to_vec())
                    .collect();
                // Drawn from its own class: nearer its class's mean than the other class's.
                let other = &specs[1 - c][j].0;
                let own = tok
                    .chunks_exact(2)
                    .filter(|p| dist2(p, m) < dist2(p, other))
                    .count();
                assert!(
                    own >= 950,
                    "class {c} token {j}: {own} of {k} nearer its own mean"
                );
                let (mean, cov) = crate::linalg::mean_cov(&tok, 2);
                for d in 0..2 {
                    assert!(
                        (mean[d] - f64::from(m[d])).abs() < 0.2,
                        "class {c} token {j} mean {mean:?}"
                    );
                    let var = f64::from(s[d] * s[d]);
                    assert!(
                        (0.5 * var..5.0 * var).contains(&cov[d * 2 + d]),
                        "class {c} token {j} cov {cov:?}"
                    );
                }
            }
        }
    }
}
