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
//! `s_k = 1 + (s - 1) (L - still_unknown) / L` ([`CfgSchedule::Linear`]; [`CfgSchedule::Constant`]
//! keeps `s_k = s`, as dit applies guidance).
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
use burn::nn::attention::{MultiHeadAttention, MultiHeadAttentionConfig};

use super::layers::{add_positions, self_attention};
use crate::activation::gelu::gelu;
use crate::dense::linear;
use burn::nn::{Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig, Linear};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Int, Tensor, TensorData};
use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::flow::net::{FlowNetConfig, Init, LN_EPS, SimpleMlpAdaLn, init_linear};
use crate::tensors::{repeat_unit_dim, tile_rows};

/// How the guidance scale grows over MAR's sampling steps (the generator setting `cfg_schedule`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CfgSchedule {
    /// MAR's: from about 1 at the first step to `s` at the last, by the share of tokens known.
    #[default]
    Linear,
    /// `s` at every step.
    Constant,
}

impl CfgSchedule {
    /// The setting's value (`linear`, `constant`).
    pub fn name(self) -> &'static str {
        match self {
            CfgSchedule::Linear => "linear",
            CfgSchedule::Constant => "constant",
        }
    }

    /// The scale of a step of a sequence of `l` tokens after which `after` are still unknown.
    pub fn scale(self, s: f64, l: usize, after: usize) -> f64 {
        match self {
            CfgSchedule::Linear => 1.0 + (s - 1.0) * (l - after) as f64 / l as f64,
            CfgSchedule::Constant => s,
        }
    }
}

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
            fc1: init_linear(w, 4 * w, Init::Xavier, device),
            fc2: init_linear(4 * w, w, Init::Xavier, device),
        }
    }

    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let x = x.clone() + self_attention(&self.attn, self.ln1.forward(x));
        let h = gelu(linear(&self.fc1, self.ln2.forward(x.clone())));
        x + linear(&self.fc2, h)
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
        let (t, x0) = head_draws(n * flow_mul.max(1), c, rng);
        self.loss_with(z, x1, weight, &t, &x0)
    }

    /// [`FlowHead::loss`] for given draws `t` [N k] and `x0` [N k, C] of the tokens repeated
    /// k = flow_mul times (row `r N + p`: token p's r-th draw).
    pub fn loss_with(
        &self,
        z: Tensor<B, 2>,
        x1: Tensor<B, 2>,
        weight: Tensor<B, 1>,
        t: &[f32],
        x0: &[f32],
    ) -> Tensor<B, 1> {
        let [n, c] = x1.dims();
        let device = x1.device();
        let k = t.len() / n.max(1);
        // Not `repeat_dim`: its gradient is wrong in Burn 0.21 (see `tile_rows`), and z's gradient is
        // what trains the transformer.
        let z = tile_rows(z, k);
        let x1 = tile_rows(x1, k);
        let m = tile_rows(weight, k);
        let t = Tensor::<B, 1>::from_data(TensorData::new(t.to_vec(), [n * k]), &device);
        let x0 = Tensor::<B, 2>::from_data(TensorData::new(x0.to_vec(), [n * k, c]), &device);
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
        let c = self.net.time_embed.forward(t) + linear(&self.cond, z);
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
            z_proj: init_linear(s.channels, w, Init::Xavier, device),
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
                cond: init_linear(w, s.head_width, Init::Xavier, device),
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
        let known = linear(&self.z_proj, x) * (m.clone().neg() + 1.0);
        let masked = self.mask_token.val().unsqueeze_dim::<3>(0) * m;
        let class = repeat_unit_dim(
            self.class_emb.forward(y.unsqueeze_dim::<2>(1)),
            1,
            self.buffer,
        );
        let seq = add_positions(Tensor::cat(vec![class, known + masked], 1), self.pos.val());
        let mut h = self.z_ln.forward(seq);
        for block in &self.blocks {
            h = block.forward(h);
        }
        let h = self.out_ln.forward(h).narrow(1, self.buffer, l);
        add_positions(h, self.head_pos.val())
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
    /// masks of [`train_mask`] with `ratio` and random orders from `rng`, then the flow head's
    /// [`FlowHead::loss`] on every position's condition, averaged over the masked tokens (all draws from
    /// `rng`, so a seeded run repeats exactly).
    pub fn loss(
        &self,
        x1: Tensor<B, 3>,
        y: Tensor<B, 1, Int>,
        flow_mul: usize,
        ratio: MaskRatio,
        rng: &mut StdRng,
    ) -> Tensor<B, 1> {
        let [b, l, c] = x1.dims();
        let draws = MarDraws::draw([b, l, c], flow_mul, ratio, rng);
        self.loss_with(x1, y, &draws)
    }

    /// [`Mar::loss`] for given draws (of these rows: [`MarDraws::rows`]).
    pub fn loss_with(
        &self,
        x1: Tensor<B, 3>,
        y: Tensor<B, 1, Int>,
        draws: &MarDraws,
    ) -> Tensor<B, 1> {
        let [b, l, c] = x1.dims();
        let device = x1.device();
        let mask = Tensor::<B, 2>::from_data(TensorData::new(draws.mask.clone(), [b, l]), &device);
        let z = self.condition(x1.clone(), mask.clone(), y);
        let w = z.dims()[2];
        self.head.loss_with(
            z.reshape([b * l, w]),
            x1.reshape([b * l, c]),
            mask.reshape([b * l]),
            &draws.t,
            &draws.x0,
        )
    }

    /// Draws `y.len()` samples of L tokens of `channels` values (row-major [B, L, C]) by MAR's
    /// sampler: `iters` steps, `head_steps` Euler steps per token, guidance scale `s` (1: none) on
    /// `schedule`.
    #[allow(clippy::too_many_arguments)]
    pub fn sample(
        &self,
        y: &[i64],
        channels: usize,
        iters: usize,
        head_steps: usize,
        s: f64,
        schedule: CfgSchedule,
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
            schedule,
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
        schedule: CfgSchedule,
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
            let scale = schedule.scale(s, l, after);
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

/// `t ~ U[0, 1]` (`n` values), then `x0 ~ N(0, I)` (`n` rows of `c`), from `rng` in that order.
fn head_draws(n: usize, c: usize, rng: &mut StdRng) -> (Vec<f32>, Vec<f32>) {
    let t = (0..n).map(|_| rng.random::<f32>()).collect();
    let x0 = (0..n * c)
        .map(|_| rng.sample::<f32, _>(rand_distr::StandardNormal))
        .collect();
    (t, x0)
}

/// One training step's random draws for a batch, made before it is cut into row blocks, in the order
/// [`Mar::loss`] makes them: the mask ([`train_mask`], one count of masked tokens for every sample),
/// then the flow head's `t` and `x0` for each of the B L tokens repeated k = flow_mul times (row
/// `r B L + p`: token p's r-th draw). Each sample has as many masked tokens, so the loss (a mean over
/// the masked tokens) is a mean over the samples: row blocks weighted by their share of the rows give
/// it exactly.
#[derive(Debug, Clone, PartialEq)]
pub struct MarDraws {
    /// [B, L], 1 = masked.
    pub mask: Vec<f32>,
    /// [B L k].
    pub t: Vec<f32>,
    /// [B L k, C].
    pub x0: Vec<f32>,
    tokens: usize,
    channels: usize,
}

impl MarDraws {
    /// The draws of a batch of `[b, l, c]` tokens.
    pub fn draw(
        [b, l, c]: [usize; 3],
        flow_mul: usize,
        ratio: MaskRatio,
        rng: &mut StdRng,
    ) -> Self {
        let mask = train_mask(b, l, ratio, rng);
        let (t, x0) = head_draws(b * l * flow_mul.max(1), c, rng);
        MarDraws {
            mask,
            t,
            x0,
            tokens: l,
            channels: c,
        }
    }

    /// The draws of the batch's samples `rows`, laid out as a batch of those samples alone.
    pub fn rows(&self, rows: std::ops::Range<usize>) -> MarDraws {
        let (l, c) = (self.tokens, self.channels);
        let points = self.mask.len();
        let k = self.t.len() / points.max(1);
        let span = |r: usize| r * points + rows.start * l..r * points + rows.end * l;
        MarDraws {
            mask: self.mask[rows.start * l..rows.end * l].to_vec(),
            t: (0..k)
                .flat_map(|r| self.t[span(r)].iter().copied())
                .collect(),
            x0: (0..k)
                .flat_map(|r| {
                    let s = span(r);
                    self.x0[s.start * c..s.end * c].iter().copied()
                })
                .collect(),
            tokens: l,
            channels: c,
        }
    }
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
#[path = "mar_tests.rs"]
mod tests;
