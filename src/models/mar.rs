//! MAR (Li et al., "Autoregressive Image Generation without Vector Quantization"), the paper's
//! generator, with its diffusion head replaced by a flow head: a bidirectional transformer reads the
//! class (a buffer of `buffer` copies of its embedding) and the known latent tokens, unknown tokens
//! replaced by a learned mask token, and gives every position a condition `z`; a per-token flow head
//! (the flow module's SimpleMLPAdaLN, conditioned on `time_embedding(t) + Linear(z)`) models the
//! token's distribution given `z`.
//!
//! ```text
//! seq = [class_emb(y) x buffer ; mask ? mask_token : Linear(x)] + pos        [B, buffer + L, w]
//! z   = LN(blocks(LN(seq)))[:, buffer:] + head_pos                           pre-LN blocks: attention, GELU MLP
//! v(x_tok, t | z) = SimpleMLPAdaLN(x_tok, c = time_embedding(t) + Linear(z))
//! ```
//! Training (MAR): one mask ratio per batch from a normal N(1, 0.25^2) truncated to [0.7, 1], that many
//! tokens (rounded up) masked in a random order per sample; the flow-matching loss (this crate's
//! convention: t = 0 noise, t = 1 data, target `x1 - x0`) is averaged over channels, repeated
//! `flow_mul` times per token with fresh (t, x0), and averaged over the masked tokens only. Labels are
//! replaced by the null label `classes` with the trainer's `label_drop` (classifier-free guidance).
//!
//! Sampling (MAR): `iters` steps; at step k the number of tokens still unknown after it is
//! `floor(L cos(pi/2 (k+1)/iters))` (at least 1, at most one fewer than now; all at the last step), the
//! tokens revealed are the next ones of a random order, each drawn by Euler integration of its flow
//! head from N(0, I) with guidance `v_u + s_k (v_c - v_u)` and MAR's linear schedule
//! `s_k = 1 + (s - 1) (L - still_unknown) / L`.
//!
//! Initialisation as MAR: Xavier-uniform Linears (attention included) with zero biases, N(0, 0.02^2)
//! class embeddings, mask token and position embeddings; the flow head as in `flow::net` (adaLN and its
//! last Linear zero, so a fresh generator predicts velocity 0).
//!
//! MAR itself splits the transformer into an MAE-style encoder over the class buffer and the known
//! tokens and a decoder that inserts the mask tokens; here one stack sees all positions with the mask
//! token at the unknown ones (MaskGIT's layout). The function class and the training and sampling
//! procedures are the same.

use burn::module::{Module, Param};
use burn::nn::attention::{MhaInput, MultiHeadAttention, MultiHeadAttentionConfig};
use burn::nn::{Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig, Linear};
use burn::tensor::activation::gelu;
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Int, Tensor, TensorData};
use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::flow::net::{FlowNetConfig, Init, LN_EPS, SimpleMlpAdaLn, linear};
use crate::tensors::tile_rows;

/// Sizes of a MAR generator.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MarShape {
    pub tokens: usize,
    pub channels: usize,
    pub width: usize,
    pub depth: usize,
    pub heads: usize,
    pub classes: usize,
    /// Copies of the class embedding in front of the tokens (MAR: 64).
    pub buffer: usize,
    /// Width and residual blocks of the flow head (MAR-B: 1024, 6).
    pub head_width: usize,
    pub head_depth: usize,
    /// Standard deviation of the position embeddings' initial values (MAR: [`EMBED_STD_MAR`]).
    pub pos_std: f64,
}

/// MAR's initial standard deviation of its learned embeddings: class, mask token and positions (the
/// positions' can be set apart, [`MarShape::pos_std`]).
pub const EMBED_STD_MAR: f64 = 0.02;

/// MAR's lower bound of the training mask ratio.
pub const MASK_RATIO_MIN: f64 = 0.7;
/// Standard deviation of MAR's mask-ratio distribution (mean 1, truncated to [0.7, 1]).
pub const MASK_RATIO_STD: f64 = 0.25;

/// How many tokens a training mask hides (one count per batch).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MaskRatio {
    /// MAR's: ratio r ~ N(1, 0.25^2) truncated to [min, 1] (MAR: min 0.7).
    Mar { min: f64 },
    /// MaskGIT's: r = cos(pi/2 u), u ~ U(0, 1): the ratios MAR's cosine sampling schedule visits,
    /// so every state of the sampler (down to one unknown token) is seen in training.
    Cosine,
}

impl MaskRatio {
    /// A count of masked tokens out of `l` (between 1 and `l`): `ceil(l r)`.
    fn draw(self, l: usize, rng: &mut StdRng) -> usize {
        let ratio = match self {
            MaskRatio::Mar { min } => loop {
                let r: f64 =
                    1.0 + MASK_RATIO_STD * rng.sample::<f64, _>(rand_distr::StandardNormal);
                if (min..=1.0).contains(&r) {
                    break r;
                }
            },
            MaskRatio::Cosine => (std::f64::consts::FRAC_PI_2 * rng.random::<f64>()).cos(),
        };
        ((l as f64 * ratio).ceil() as usize).clamp(1, l)
    }
}

fn norm<B: Backend>(w: usize, device: &B::Device) -> LayerNorm<B> {
    LayerNormConfig::new(w).with_epsilon(LN_EPS).init(device)
}

fn embedding_param<B: Backend>(
    shape: [usize; 2],
    std: f64,
    device: &B::Device,
) -> Param<Tensor<B, 2>> {
    Param::from_tensor(Tensor::random(
        shape,
        Distribution::Normal(0.0, std),
        device,
    ))
}

/// A pre-LN transformer block: `x + attn(LN(x))`, then `x + MLP(LN(x))` (GELU, 4x wide).
#[derive(Module, Debug)]
pub struct MarBlock<B: Backend> {
    ln1: LayerNorm<B>,
    attn: MultiHeadAttention<B>,
    ln2: LayerNorm<B>,
    fc1: Linear<B>,
    fc2: Linear<B>,
}

impl<B: Backend> MarBlock<B> {
    fn new(w: usize, heads: usize, device: &B::Device) -> Self {
        MarBlock {
            ln1: norm(w, device),
            attn: MultiHeadAttentionConfig::new(w, heads)
                .with_dropout(0.0)
                .with_initializer(Initializer::XavierUniform { gain: 1.0 })
                .init(device),
            ln2: norm(w, device),
            fc1: linear(w, 4 * w, Init::Xavier, device),
            fc2: linear(4 * w, w, Init::Xavier, device),
        }
    }

    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let h = self
            .attn
            .forward(MhaInput::self_attn(self.ln1.forward(x.clone())))
            .context;
        let x = x + h;
        let h = self
            .fc2
            .forward(gelu(self.fc1.forward(self.ln2.forward(x.clone()))));
        x + h
    }
}

/// The per-token flow head: v(x, t | z) = SimpleMLPAdaLN(x, c = time_embedding(t) + Linear(z)).
#[derive(Module, Debug)]
pub struct FlowHead<B: Backend> {
    cond: Linear<B>,
    net: SimpleMlpAdaLn<B>,
}

impl<B: Backend> FlowHead<B> {
    /// Euler integration of the flow head from `x0` [N, C] (t = 0) to t = 1 given conditions `z`
    /// ([N, w], or [2N, w] with the unconditional ones after the conditional ones when guided), with
    /// guidance `v_u + s (v_c - v_u)`.
    pub fn sample(&self, x0: Tensor<B, 2>, z: Tensor<B, 2>, steps: usize, s: f64) -> Tensor<B, 2> {
        let [n, _] = x0.dims();
        let guided = z.dims()[0] == 2 * n;
        let device = x0.device();
        let steps = steps.max(1);
        let h = 1.0 / steps as f64;
        let mut x = x0;
        for i in 0..steps {
            let rows = if guided { 2 * n } else { n };
            let t = Tensor::<B, 1>::full([rows], i as f64 * h, &device);
            let xin = if guided {
                Tensor::cat(vec![x.clone(), x.clone()], 0)
            } else {
                x.clone()
            };
            let v = self.forward(xin, t, z.clone());
            let v = if guided {
                let vc = v.clone().narrow(0, 0, n);
                let vu = v.narrow(0, n, n);
                vu.clone() + (vc - vu) * s
            } else {
                v
            };
            x = x + v * h;
        }
        x
    }

    /// The flow-matching loss of tokens `x1` [N, C] given conditions `z` [N, w], averaged over
    /// channels and then over the tokens with `weight` [N] = 1 (the masked ones), with `flow_mul`
    /// draws of (t, x0) per token from `rng`.
    pub fn loss(
        &self,
        z: Tensor<B, 2>,
        x1: Tensor<B, 2>,
        weight: Tensor<B, 1>,
        flow_mul: usize,
        rng: &mut StdRng,
    ) -> Tensor<B, 1> {
        let [n, c] = x1.dims();
        let device = x1.device();
        let k = flow_mul.max(1);
        // Not `repeat_dim`: its gradient is wrong in Burn 0.21 (see `tile_rows`), and z's gradient is
        // what trains the transformer.
        let z = tile_rows(z, k);
        let x1 = tile_rows(x1, k);
        let m = tile_rows(weight, k);
        let t: Vec<f32> = (0..n * k).map(|_| rng.random::<f32>()).collect();
        let t = Tensor::<B, 1>::from_data(TensorData::new(t, [n * k]), &device);
        let x0: Vec<f32> = (0..n * k * c)
            .map(|_| rng.sample::<f32, _>(rand_distr::StandardNormal))
            .collect();
        let x0 = Tensor::<B, 2>::from_data(TensorData::new(x0, [n * k, c]), &device);
        let tt = t.clone().unsqueeze_dim::<2>(1);
        let xt = x0.clone() * (tt.clone().neg() + 1.0) + x1.clone() * tt;
        let per_token = (self.forward(xt, t, z) - (x1 - x0))
            .powi_scalar(2)
            .mean_dim(1)
            .reshape([n * k]);
        (per_token * m.clone()).sum() / m.sum()
    }

    /// Velocity of token values `x` [N, C] at times `t` [N] given conditions `z` [N, w].
    pub fn forward(&self, x: Tensor<B, 2>, t: Tensor<B, 1>, z: Tensor<B, 2>) -> Tensor<B, 2> {
        let c = self.net.time_embed.forward(t) + self.cond.forward(z);
        self.net.forward_cond(x, c)
    }
}

#[derive(Module, Debug)]
pub struct Mar<B: Backend> {
    z_proj: Linear<B>,
    class_emb: Embedding<B>,
    mask_token: Param<Tensor<B, 2>>,
    pos: Param<Tensor<B, 2>>,
    z_ln: LayerNorm<B>,
    blocks: Vec<MarBlock<B>>,
    out_ln: LayerNorm<B>,
    head_pos: Param<Tensor<B, 2>>,
    head: FlowHead<B>,
    tokens: usize,
    buffer: usize,
    classes: usize,
}

impl<B: Backend> Mar<B> {
    pub fn new(s: MarShape, device: &B::Device) -> Self {
        let w = s.width;
        Mar {
            z_proj: linear(s.channels, w, Init::Xavier, device),
            class_emb: EmbeddingConfig::new(s.classes + 1, w)
                .with_initializer(Initializer::Normal {
                    mean: 0.0,
                    std: EMBED_STD_MAR,
                })
                .init(device),
            mask_token: embedding_param([1, w], EMBED_STD_MAR, device),
            pos: embedding_param([s.buffer + s.tokens, w], s.pos_std, device),
            z_ln: norm(w, device),
            blocks: (0..s.depth)
                .map(|_| MarBlock::new(w, s.heads, device))
                .collect(),
            out_ln: norm(w, device),
            head_pos: embedding_param([s.tokens, w], s.pos_std, device),
            head: FlowHead {
                cond: linear(w, s.head_width, Init::Xavier, device),
                net: FlowNetConfig {
                    dim: s.channels,
                    width: s.head_width,
                    depth: s.head_depth,
                }
                .init(device),
            },
            tokens: s.tokens,
            buffer: s.buffer,
            classes: s.classes,
        }
    }

    /// The null label (classifier-free guidance's unconditional branch).
    pub fn null_label(&self) -> usize {
        self.classes
    }

    /// The head's conditions `z` [B, L, w] for tokens `x` [B, L, C] of which those with `mask` [B, L]
    /// = 1 are unknown (their values are ignored), for labels `y` [B] (`classes` = null).
    pub fn condition(
        &self,
        x: Tensor<B, 3>,
        mask: Tensor<B, 2>,
        y: Tensor<B, 1, Int>,
    ) -> Tensor<B, 3> {
        let [_, l, _] = x.dims();
        let m = mask.unsqueeze_dim::<3>(2);
        let known = self.z_proj.forward(x) * (m.clone().neg() + 1.0);
        let masked = self.mask_token.val().unsqueeze_dim::<3>(0) * m;
        let class = self
            .class_emb
            .forward(y.unsqueeze_dim::<2>(1))
            .repeat_dim(1, self.buffer);
        let seq = Tensor::cat(vec![class, known + masked], 1) + self.pos.val().unsqueeze_dim(0);
        let mut h = self.z_ln.forward(seq);
        for block in &self.blocks {
            h = block.forward(h);
        }
        let h = self.out_ln.forward(h).narrow(1, self.buffer, l);
        h + self.head_pos.val().unsqueeze_dim(0)
    }

    /// How much the conditions depend on the class: with every token unknown, the mean distance
    /// between two classes' conditions z relative to the mean |z| (0: the class does not reach the
    /// head; a diagnostic of MAR's class path, see docs/experiments.md).
    pub fn class_signal(&self, channels: usize, device: &B::Device) -> f64 {
        let (k, l) = (self.classes, self.tokens);
        if k < 2 {
            return 0.0;
        }
        let x = Tensor::<B, 3>::zeros([k, l, channels], device);
        let mask = Tensor::<B, 2>::ones([k, l], device);
        let y: Vec<i64> = (0..k as i64).collect();
        let y = Tensor::<B, 1, Int>::from_data(TensorData::new(y, [k]), device);
        let z: Vec<f64> = self
            .condition(x, mask, y)
            .into_data()
            .iter::<f64>()
            .collect();
        let per = z.len() / k;
        let rows: Vec<&[f64]> = z.chunks_exact(per).collect();
        let norm = rows
            .iter()
            .map(|r| r.iter().map(|v| v * v).sum::<f64>().sqrt())
            .sum::<f64>()
            / k as f64;
        let mut dist = 0.0;
        for i in 0..k {
            for j in i + 1..k {
                dist += rows[i]
                    .iter()
                    .zip(rows[j])
                    .map(|(a, b)| (a - b) * (a - b))
                    .sum::<f64>()
                    .sqrt();
            }
        }
        dist / (k * (k - 1) / 2) as f64 / norm.max(1e-12)
    }

    /// The training loss on tokens `x1` [B, L, C] with labels `y` [B] (already dropped where wanted):
    /// masks of [`train_mask`] with `ratio` and random orders from `rng`, then
    /// [`Mar::masked_loss`].
    pub fn loss(
        &self,
        x1: Tensor<B, 3>,
        y: Tensor<B, 1, Int>,
        flow_mul: usize,
        ratio: MaskRatio,
        rng: &mut StdRng,
    ) -> Tensor<B, 1> {
        let [b, l, _] = x1.dims();
        let mask = Tensor::<B, 2>::from_data(
            TensorData::new(train_mask(b, l, ratio, rng), [b, l]),
            &x1.device(),
        );
        self.masked_loss(x1, y, mask, flow_mul, rng)
    }

    /// The loss for a given `mask` [B, L] (1 = unknown): the head's [`FlowHead::loss`] on every
    /// position's condition, averaged over the masked tokens (noise from `rng`, so a seeded run
    /// repeats exactly).
    pub fn masked_loss(
        &self,
        x1: Tensor<B, 3>,
        y: Tensor<B, 1, Int>,
        mask: Tensor<B, 2>,
        flow_mul: usize,
        rng: &mut StdRng,
    ) -> Tensor<B, 1> {
        let [b, l, c] = x1.dims();
        let z = self.condition(x1.clone(), mask.clone(), y);
        let w = z.dims()[2];
        self.head.loss(
            z.reshape([b * l, w]),
            x1.reshape([b * l, c]),
            mask.reshape([b * l]),
            flow_mul,
            rng,
        )
    }

    /// Draws `y.len()` samples of L tokens of `channels` values (row-major [B, L, C]) by MAR's
    /// sampler: `iters` steps, `head_steps` Euler steps per token, guidance scale `s` (1: none).
    #[allow(clippy::too_many_arguments)]
    pub fn sample(
        &self,
        y: &[i64],
        channels: usize,
        iters: usize,
        head_steps: usize,
        s: f64,
        rng: &mut StdRng,
        device: &B::Device,
    ) -> Vec<f32> {
        let n = y.len() * self.tokens;
        let values = vec![0f32; n * channels];
        self.complete(
            values,
            vec![true; n],
            y,
            channels,
            iters,
            head_steps,
            s,
            rng,
            device,
        )
    }

    /// Fills the `unknown` tokens of `values` ([B, L, C] row-major; every sample with the same number
    /// u of unknown tokens) by MAR's sampler run over those u tokens in a random order per sample:
    /// the cosine schedule of [`unknown_after_each_step`] on u, the guidance schedule on L. With every
    /// token unknown this is [`Mar::sample`].
    #[allow(clippy::too_many_arguments)]
    pub fn complete(
        &self,
        mut values: Vec<f32>,
        mut unknown: Vec<bool>,
        y: &[i64],
        channels: usize,
        iters: usize,
        head_steps: usize,
        s: f64,
        rng: &mut StdRng,
        device: &B::Device,
    ) -> Vec<f32> {
        let b = y.len();
        let l = self.tokens;
        let c = channels;
        assert_eq!(values.len(), b * l * c, "values must be [B, L, C]");
        assert_eq!(unknown.len(), b * l, "unknown must be [B, L]");
        let orders: Vec<Vec<usize>> = unknown
            .chunks_exact(l)
            .map(|row| {
                let mut o: Vec<usize> = (0..l).filter(|&p| row[p]).collect();
                o.shuffle(rng);
                o
            })
            .collect();
        let u = orders.first().map_or(0, Vec::len);
        assert!(
            orders.iter().all(|o| o.len() == u),
            "every sample needs the same number of unknown tokens"
        );
        if u == 0 {
            return values;
        }
        let guided = s != 1.0;
        let labels: Vec<i64> = if guided {
            y.iter()
                .copied()
                .chain(std::iter::repeat_n(self.classes as i64, b))
                .collect()
        } else {
            y.to_vec()
        };
        let copies = if guided { 2 } else { 1 };
        let mut revealed = 0usize;
        for after in unknown_after_each_step(u, iters) {
            let scale = 1.0 + (s - 1.0) * (l - after) as f64 / l as f64;
            // The positions revealed now: order[revealed..u - after] of each sample.
            let rows: Vec<usize> = orders
                .iter()
                .enumerate()
                .flat_map(|(i, o)| o[revealed..u - after].iter().map(move |&p| i * l + p))
                .collect();
            let x: Vec<f32> = values.repeat(copies);
            let m: Vec<f32> = unknown
                .iter()
                .map(|&u| if u { 1.0 } else { 0.0 })
                .collect::<Vec<f32>>()
                .repeat(copies);
            let x = Tensor::<B, 3>::from_data(TensorData::new(x, [copies * b, l, c]), device);
            let m = Tensor::<B, 2>::from_data(TensorData::new(m, [copies * b, l]), device);
            let yy = Tensor::<B, 1, Int>::from_data(
                TensorData::new(labels.clone(), [copies * b]),
                device,
            );
            let z = self.condition(x, m, yy);
            let w = z.dims()[2];
            let z = z.reshape([copies * b * l, w]);
            let mut idx: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
            if guided {
                idx.extend(rows.iter().map(|&r| (b * l + r) as i64));
            }
            let nr = rows.len();
            let z = z.select(
                0,
                Tensor::<B, 1, Int>::from_data(TensorData::new(idx, [copies * nr]), device),
            );
            let noise: Vec<f32> = (0..nr * c)
                .map(|_| rng.sample::<f32, _>(rand_distr::StandardNormal))
                .collect();
            let noise = Tensor::<B, 2>::from_data(TensorData::new(noise, [nr, c]), device);
            // Read as f32 whatever the backend's float type (`iter` converts).
            let drawn: Vec<f32> = self
                .head
                .sample(noise, z, head_steps, scale)
                .into_data()
                .iter::<f32>()
                .collect();
            for (j, &r) in rows.iter().enumerate() {
                values[r * c..(r + 1) * c].copy_from_slice(&drawn[j * c..(j + 1) * c]);
                unknown[r] = false;
            }
            revealed = u - after;
        }
        values
    }
}

/// MAR's sampling schedule for `l` tokens in `iters` steps (at most `l`): the number of tokens still
/// unknown after each step, `floor(l cos(pi/2 (k+1)/iters))` kept between 1 and one fewer than before
/// the step, and 0 after the last.
pub fn unknown_after_each_step(l: usize, iters: usize) -> Vec<usize> {
    let iters = iters.clamp(1, l.max(1));
    let mut left = l;
    (0..iters)
        .map(|step| {
            left = if step + 1 == iters {
                0
            } else {
                let ratio = (std::f64::consts::FRAC_PI_2 * (step + 1) as f64 / iters as f64).cos();
                ((l as f64 * ratio).floor() as usize).clamp(1, left - 1)
            };
            left
        })
        .collect()
}

/// MAR's training mask for `b` samples of `l` tokens (1 = masked, row-major [b, l]): one ratio per
/// batch from `ratio` (MAR: N(1, 0.25^2) truncated to [0.7, 1]), `ceil(l * ratio)` tokens masked in a
/// random order per sample.
pub fn train_mask(b: usize, l: usize, ratio: MaskRatio, rng: &mut StdRng) -> Vec<f32> {
    let masked = ratio.draw(l, rng);
    let mut mask = vec![0f32; b * l];
    let mut order: Vec<usize> = (0..l).collect();
    for row in mask.chunks_exact_mut(l) {
        order.shuffle(rng);
        for &p in &order[..masked] {
            row[p] = 1.0;
        }
    }
    mask
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    type B = crate::backend::TestBackend;

    #[test]
    fn the_sampling_schedule_follows_the_cosine_and_reveals_every_token_once() {
        // 16 tokens in 4 steps: floor(16 cos(pi/8)) = 14, floor(16 cos(pi/4)) = 11,
        // floor(16 cos(3 pi/8)) = 6, then 0.
        assert_eq!(unknown_after_each_step(16, 4), vec![14, 11, 6, 0]);
        // One token per step when iters = l (the clamp keeps at least one revealed per step).
        assert_eq!(unknown_after_each_step(3, 3), vec![2, 1, 0]);
        assert_eq!(unknown_after_each_step(4, 10), vec![3, 2, 1, 0]);
        assert_eq!(unknown_after_each_step(1, 1), vec![0]);
    }

    #[test]
    fn cosine_masks_hide_counts_with_maskgits_distribution() {
        // r = cos(pi/2 u): P(ceil(l r) <= k) = P(r <= k/l) = 1 - (2/pi) acos(k/l).
        let (l, draws) = (4usize, 20_000usize);
        let mut rng = StdRng::seed_from_u64(0);
        let mut freq = [0usize; 5];
        for _ in 0..draws {
            let m = train_mask(2, l, MaskRatio::Cosine, &mut rng);
            let per: Vec<usize> = m
                .chunks_exact(l)
                .map(|r| r.iter().filter(|v| **v == 1.0).count())
                .collect();
            assert_eq!(per[0], per[1]);
            freq[per[0]] += 1;
        }
        assert_eq!(freq[0], 0, "at least one token is masked");
        let cdf = |k: usize| 1.0 - std::f64::consts::FRAC_2_PI * (k as f64 / l as f64).acos();
        for (k, &count) in freq.iter().enumerate().skip(1) {
            let want = cdf(k) - cdf(k - 1);
            let got = count as f64 / draws as f64;
            // Binomial standard error at 20k draws is below 0.0036.
            assert!((got - want).abs() < 0.015, "count {k}: {got} vs {want}");
        }
    }

    #[test]
    fn training_masks_hide_the_same_count_per_sample_between_70_and_100_percent() {
        let mut rng = StdRng::seed_from_u64(0);
        let mut counts = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let m = train_mask(
                5,
                10,
                MaskRatio::Mar {
                    min: MASK_RATIO_MIN,
                },
                &mut rng,
            );
            let per: Vec<usize> = m
                .chunks_exact(10)
                .map(|r| r.iter().filter(|v| **v == 1.0).count())
                .collect();
            assert!(per.iter().all(|c| *c == per[0]), "{per:?}");
            assert!((7..=10).contains(&per[0]), "{per:?}");
            assert!(m.iter().all(|v| *v == 0.0 || *v == 1.0));
            counts.insert(per[0]);
        }
        // ceil(10 r) for r in [0.7, 1] is 7 only at r = 0.7 exactly; 8, 9 and 10 all occur.
        assert_eq!(counts.into_iter().collect::<Vec<_>>(), vec![8, 9, 10]);
    }

    #[test]
    fn a_fresh_generator_predicts_zero_velocity_and_samples_its_noise() {
        let device = Default::default();
        let shape = small(3, 16, 2, 2);
        let net = Mar::<B>::new(shape, &device);
        let x = Tensor::<B, 3>::random([4, 3, 2], Distribution::Normal(0.0, 1.0), &device);
        let mask = Tensor::<B, 2>::from_data(TensorData::new(vec![1f32; 12], [4, 3]), &device);
        let y = Tensor::<B, 1, Int>::from_data(TensorData::new(vec![0i64, 1, 2, 0], [4]), &device);
        let z = net.condition(x.clone(), mask, y);
        assert_eq!(z.dims(), [4, 3, 16]);
        let v: Vec<f32> = net
            .head
            .forward(
                x.reshape([12, 2]),
                Tensor::<B, 1>::full([12], 0.3, &device),
                z.reshape([12, 16]),
            )
            .into_data()
            .to_vec()
            .expect("f32");
        assert!(v.iter().all(|v| *v == 0.0));
        // With zero velocity every token is its N(0, 1) starting noise: mean ~0, variance ~1.
        let mut rng = StdRng::seed_from_u64(1);
        let out = net.sample(&vec![0i64; 500], 2, 3, 4, 2.0, &mut rng, &device);
        assert_eq!(out.len(), 500 * 3 * 2);
        let mean = out.iter().map(|v| f64::from(*v)).sum::<f64>() / out.len() as f64;
        let var = out.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / out.len() as f64;
        assert!(mean.abs() < 0.06 && (var - 1.0).abs() < 0.1, "{mean} {var}");
    }

    type A = burn::backend::Autodiff<B>;

    use crate::models::testing::Perturb;

    /// With `flow_mul` k each token's condition z must get the gradients of ITS OWN k copies: the same
    /// loss on inputs tiled on the host (k = 1, the same draws) gives each copy's gradient, summed per
    /// token here. Tokens with weight 0 get none. (Burn's `repeat_dim` sent each token other tokens'
    /// gradients; see `tensors::tile_rows`.)
    #[test]
    fn the_flow_heads_condition_gradient_sums_each_tokens_own_copies() {
        use crate::tensors::{from_host_f32, to_host};
        let device = Default::default();
        let (n, w, c, k) = (5usize, 6usize, 2usize, 3usize);
        let head = FlowHead::<A> {
            cond: linear(w, 8, Init::Xavier, &device),
            net: FlowNetConfig {
                dim: c,
                width: 8,
                depth: 1,
            }
            .init(&device),
        }
        .map(&mut Perturb);
        let mut r = StdRng::seed_from_u64(3);
        let mut draw = |len: usize| -> Vec<f32> {
            (0..len)
                .map(|_| r.sample::<f32, _>(rand_distr::StandardNormal))
                .collect()
        };
        let (zv, xv) = (draw(n * w), draw(n * c));
        let wv = vec![1.0f32, 0.0, 1.0, 1.0, 0.0];
        let weight = |v: Vec<f32>| {
            let len = v.len();
            Tensor::<A, 1>::from_data(TensorData::new(v, [len]), &device)
        };

        let z = from_host_f32::<A>(zv.clone(), w, &device).require_grad();
        let loss = head.loss(
            z.clone(),
            from_host_f32(xv.clone(), c, &device),
            weight(wv.clone()),
            k,
            &mut StdRng::seed_from_u64(9),
        );
        let value = crate::tensors::scalar(loss.clone());
        let got = to_host(z.grad(&loss.backward()).expect("z has a gradient"));

        let zt = from_host_f32::<A>(zv.repeat(k), w, &device).require_grad();
        let tiled = head.loss(
            zt.clone(),
            from_host_f32(xv.repeat(k), c, &device),
            weight(wv.repeat(k)),
            1,
            &mut StdRng::seed_from_u64(9),
        );
        assert!((crate::tensors::scalar(tiled.clone()) - value).abs() < 1e-6 * value.abs());
        let per_copy = to_host(zt.grad(&tiled.backward()).expect("z has a gradient"));
        let scale = per_copy.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(scale > 0.0);
        for i in 0..n {
            for j in 0..w {
                let want: f64 = (0..k).map(|r| per_copy[(r * n + i) * w + j]).sum();
                let g = got[i * w + j];
                assert!(
                    (g - want).abs() <= 1e-5 * scale,
                    "token {i} value {j}: {g} vs {want}"
                );
                if wv[i] == 0.0 {
                    assert_eq!(g, 0.0, "token {i} has weight 0");
                }
            }
        }
    }

    /// A small shape: 2 channels, 1 block of 2 heads, a flow head of width 8 and 1 block.
    fn small(tokens: usize, width: usize, classes: usize, buffer: usize) -> MarShape {
        MarShape {
            tokens,
            channels: 2,
            width,
            depth: 1,
            heads: 2,
            classes,
            buffer,
            head_width: 8,
            head_depth: 1,
            pos_std: EMBED_STD_MAR,
        }
    }

    #[test]
    fn guided_head_steps_combine_the_conditional_and_unconditional_velocities() {
        let device = Default::default();
        let net = Mar::<B>::new(small(2, 8, 2, 1), &device).map(&mut Perturb);
        let n = 6;
        let x0 = Tensor::<B, 2>::random([n, 2], Distribution::Normal(0.0, 1.0), &device);
        let zc = Tensor::<B, 2>::random([n, 8], Distribution::Normal(0.0, 1.0), &device);
        let zu = Tensor::<B, 2>::random([n, 8], Distribution::Normal(0.0, 1.0), &device);
        let t0 = Tensor::<B, 1>::zeros([n], &device);
        let host = |t: Tensor<B, 2>| -> Vec<f32> { t.into_data().iter::<f32>().collect() };
        let vc = host(net.head.forward(x0.clone(), t0.clone(), zc.clone()));
        let vu = host(net.head.forward(x0.clone(), t0, zu.clone()));
        assert!(vc.iter().zip(&vu).any(|(a, b)| (a - b).abs() > 1e-3));
        // One Euler step over [0, 1]: x0 + v_u + s (v_c - v_u); unguided: x0 + v_c.
        let x = host(x0.clone());
        let guided =
            host(
                net.head
                    .sample(x0.clone(), Tensor::cat(vec![zc.clone(), zu], 0), 1, 3.0),
            );
        let plain = host(net.head.sample(x0, zc, 1, 1.0));
        for i in 0..2 * n {
            let want = x[i] + vu[i] + 3.0 * (vc[i] - vu[i]);
            assert!(
                (guided[i] - want).abs() < 1e-4,
                "{i}: {} vs {want}",
                guided[i]
            );
            assert!((plain[i] - (x[i] + vc[i])).abs() < 1e-4, "{i}");
        }
    }

    #[test]
    fn the_flow_head_reproduces_gaussians_given_its_condition() {
        // Two conditions (fixed random vectors z_c) and token values N(m_c, diag(s_c^2)): the head,
        // its masked loss and its Euler sampler must reproduce each Gaussian given its z.
        use burn::module::AutodiffModule;
        use burn::optim::{AdamConfig, GradientsParams, Optimizer};
        let specs = [([2.0f32, 0.0], [0.3f32, 0.6]), ([-1.5, 1.0], [0.25, 0.25])];
        let device = Default::default();
        let mut rng = StdRng::seed_from_u64(4);
        let w = 16;
        let table: Vec<f32> = (0..2 * w)
            .map(|_| rng.sample::<f32, _>(rand_distr::StandardNormal))
            .collect();
        let mut head = FlowHead::<A> {
            cond: linear(w, 32, Init::Xavier, &device),
            net: FlowNetConfig {
                dim: 2,
                width: 32,
                depth: 2,
            }
            .init(&device),
        };
        let mut optim = AdamConfig::new().init::<A, FlowHead<A>>();
        let batch = 128;
        for step in 0..800 {
            let classes: Vec<usize> = (0..batch).map(|_| rng.random_range(0..2)).collect();
            let z: Vec<f32> = classes
                .iter()
                .flat_map(|&c| table[c * w..(c + 1) * w].to_vec())
                .collect();
            let x: Vec<f32> = classes
                .iter()
                .flat_map(|&c| {
                    let (m, s) = specs[c];
                    [0, 1].map(|d| m[d] + s[d] * rng.sample::<f32, _>(rand_distr::StandardNormal))
                })
                .collect();
            // Half the tokens carry weight 0: they must not count.
            let weight: Vec<f32> = (0..batch).map(|i| (i % 2) as f32).collect();
            let x: Vec<f32> = x
                .chunks_exact(2)
                .zip(&weight)
                .flat_map(|(p, wt)| if *wt == 0.0 { [9.0, 9.0] } else { [p[0], p[1]] })
                .collect();
            let loss = head.loss(
                Tensor::from_data(TensorData::new(z, [batch, w]), &device),
                Tensor::from_data(TensorData::new(x, [batch, 2]), &device),
                Tensor::from_data(TensorData::new(weight, [batch]), &device),
                4,
                &mut rng,
            );
            let lr = if step < 600 { 3e-3 } else { 5e-4 };
            let grads = GradientsParams::from_grads(loss.backward(), &head);
            head = optim.step(lr, head, grads);
        }
        let head = head.valid();
        let k = 2000;
        for (c, (m, s)) in specs.iter().enumerate() {
            let z: Vec<f32> = (0..k)
                .flat_map(|_| table[c * w..(c + 1) * w].to_vec())
                .collect();
            let out: Vec<f32> = head
                .sample(
                    Tensor::random([k, 2], Distribution::Normal(0.0, 1.0), &device),
                    Tensor::from_data(TensorData::new(z, [k, w]), &device),
                    50,
                    1.0,
                )
                .into_data()
                .to_vec()
                .expect("f32");
            let (mean, cov) = crate::linalg::mean_cov(&out, 2);
            for d in 0..2 {
                assert!(
                    (mean[d] - f64::from(m[d])).abs() < 0.1,
                    "condition {c}: mean {mean:?}"
                );
                let var = f64::from(s[d] * s[d]);
                assert!(
                    (cov[d * 2 + d] - var).abs() < 0.3 * var + 0.01,
                    "condition {c}: cov {cov:?}"
                );
            }
            assert!(cov[1].abs() < 0.04, "condition {c}: cov {cov:?}");
        }
    }

    #[test]
    fn the_transformer_carries_known_tokens_to_the_masked_positions() {
        // Four tokens sharing a random sign (2s, 0); one revealed at a random position. A linear
        // read-out of the masked positions' conditions, trained with the transformer, must recover
        // the sign: error ~0, where a model blind to the known token can do no better than 2.0.
        use burn::optim::{AdamConfig, GradientsParams, Optimizer};
        #[derive(Module, Debug)]
        struct Probe<B: Backend> {
            mar: Mar<B>,
            out: Linear<B>,
        }
        let device = Default::default();
        let (l, w, b) = (4, 32, 64);
        let shape = small(l, w, 2, 2);
        let mut net = Probe::<A> {
            mar: Mar::new(shape, &device),
            out: linear(w, 2, Init::Xavier, &device),
        };
        let mut optim = AdamConfig::new().init::<A, Probe<A>>();
        let mut rng = StdRng::seed_from_u64(0);
        let mut last = f64::INFINITY;
        for step in 0..300 {
            let mut x = Vec::with_capacity(b * l * 2);
            let mut mask = vec![1f32; b * l];
            for row in mask.chunks_exact_mut(l) {
                let s: f32 = if rng.random::<bool>() { 2.0 } else { -2.0 };
                x.extend((0..l).flat_map(|_| [s, 0.0]));
                row[rng.random_range(0..l)] = 0.0;
            }
            let x = Tensor::<A, 3>::from_data(TensorData::new(x, [b, l, 2]), &device);
            let m = Tensor::<A, 2>::from_data(TensorData::new(mask, [b, l]), &device);
            let y = Tensor::<A, 1, Int>::from_data(TensorData::new(vec![0i64; b], [b]), &device);
            let z = net.mar.condition(x.clone(), m.clone(), y);
            let err = (net.out.forward(z.reshape([b * l, w])) - x.reshape([b * l, 2]))
                .powi_scalar(2)
                .mean_dim(1)
                .reshape([b * l]);
            let m = m.reshape([b * l]);
            let loss = (err * m.clone()).sum() / m.sum();
            if step >= 290 {
                last = last.min(crate::tensors::scalar(loss.clone()));
            }
            let grads = GradientsParams::from_grads(loss.backward(), &net);
            net = optim.step(1e-3, net, grads);
        }
        assert!(last < 0.05, "masked-token error {last}");
    }

    #[test]
    fn the_class_signal_is_zero_exactly_when_classes_share_an_embedding() {
        let device = Default::default();
        let net = Mar::<B>::new(small(3, 8, 3, 2), &device);
        assert!(net.class_signal(2, &device) > 0.05);
        // Every class given the same embedding: identical conditions.
        let same = Tensor::<B, 2>::ones([4, 8], &device) * 0.3;
        let mut net = net;
        net.class_emb.weight = Param::from_tensor(same);
        assert!(net.class_signal(2, &device) < 1e-6);
    }

    #[test]
    fn completion_keeps_the_known_tokens_and_fills_the_others() {
        let device = Default::default();
        let net = Mar::<B>::new(small(3, 8, 2, 1), &device);
        let values: Vec<f32> = (0..2 * 3 * 2).map(|i| 100.0 + i as f32).collect();
        let unknown = vec![false, true, false, true, false, false];
        let mut rng = StdRng::seed_from_u64(2);
        let out = net.complete(
            values.clone(),
            unknown.clone(),
            &[0, 1],
            2,
            3,
            2,
            2.0,
            &mut rng,
            &device,
        );
        for (i, u) in unknown.iter().enumerate() {
            let (a, b) = (&out[2 * i..2 * i + 2], &values[2 * i..2 * i + 2]);
            if *u {
                // A fresh head has zero velocity: the token is its noise, nowhere near 100.
                assert!(a.iter().all(|v| v.abs() < 10.0), "token {i}: {a:?}");
            } else {
                assert_eq!(a, b, "token {i}");
            }
        }
    }
}
