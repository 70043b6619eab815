//! A 1-D image tokenizer for 28x28 grey images in the SoftVQ / TiTok design the paper builds on: a ViT
//! encoder reads the 49 patches (4x4 pixels) together with `tokens` learnable latent tokens and keeps
//! the latent tokens' outputs, projected to `channels` dims; a ViT decoder reads the latent tokens
//! (projected back to the width) together with 49 learnable mask tokens and turns the mask tokens'
//! outputs into patches. The number of tokens L and their size C are free, as the paper's 64 x 32 are.
//!
//! Regularisers (Table 1's baselines): none (AE), a KL term to N(0, I) on a Gaussian posterior per
//! element (KL), and a soft assignment to a learnable codebook (SoftVQ). Also the small patch
//! discriminator of the adversarial loss. Every loss is a mean over elements.

use crate::dense::linear;
use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::transformer::{TransformerEncoder, TransformerEncoderConfig};
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::{leaky_relu, relu, sigmoid};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Distribution, Tensor};
use serde::{Deserialize, Serialize};

use super::layers::{add_positions, encoder};
use super::posterior::{sample_with_kl, sample_with_kl_given};
use crate::conv::conv2d;

/// Patch side (pixels) and patches per image (7 x 7 for 28 x 28).
pub const PATCH: usize = 4;
pub const PATCHES: usize = 49;
const SIDE: usize = 28;
const PIXELS: usize = SIDE * SIDE;

/// The latent regulariser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Regulariser {
    /// A plain autoencoder (with lambda > 0: the paper's aligned autoencoder).
    #[default]
    None,
    /// A Gaussian posterior per latent element and a KL term to N(0, I).
    Kl,
    /// Soft assignment of each token to a learnable codebook (SoftVQ).
    Softvq,
}

impl Regulariser {
    pub fn name(self) -> &'static str {
        match self {
            Regulariser::None => "none",
            Regulariser::Kl => "kl",
            Regulariser::Softvq => "softvq",
        }
    }
}

/// Sizes of a tokenizer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenizerShape {
    pub tokens: usize,
    pub channels: usize,
    pub width: usize,
    pub depth: usize,
    pub heads: usize,
    pub codebook_size: usize,
    pub regulariser: Regulariser,
    /// SoftVQ temperature of the soft assignment.
    pub tau: f64,
    /// Dimension of the semantic features the sample-level alignment predicts (0: no such head).
    pub semantic_dim: usize,
}

/// What a training forward pass gives.
pub struct TokenizerOutput<B: Backend> {
    /// Reconstructions [B, 784] in (0, 1).
    pub recon: Tensor<B, 2>,
    /// The latent tokens the decoder read [B, L, C] (sampled for KL, soft-quantised for SoftVQ).
    pub latents: Tensor<B, 3>,
    /// The regulariser's loss (KL per element, or SoftVQ's entropy loss; 0 for none).
    pub reg: Tensor<B, 1>,
}

#[derive(Module, Debug)]
pub struct Tokenizer<B: Backend> {
    patch_in: Linear<B>,
    latent_tokens: Param<Tensor<B, 2>>,
    enc_pos: Param<Tensor<B, 2>>,
    encoder: TransformerEncoder<B>,
    enc_norm: LayerNorm<B>,
    to_latent: Linear<B>,
    from_latent: Linear<B>,
    mask_tokens: Param<Tensor<B, 2>>,
    dec_pos: Param<Tensor<B, 2>>,
    decoder: TransformerEncoder<B>,
    dec_norm: LayerNorm<B>,
    to_pixels: Linear<B>,
    /// SoftVQ's codebook [K, C] (one unused row for the other regularisers).
    pub codebook: Param<Tensor<B, 2>>,
    /// Sample-level alignment head (SoftVQ's REPA-style loss): mean latent token -> semantic feature.
    semantic_in: Option<Linear<B>>,
    semantic_out: Option<Linear<B>>,
    tokens: usize,
    channels: usize,
    #[module(skip)]
    regulariser: Regulariser,
    tau: f64,
}

/// [B, 784] images to [B, 49, 16] patches (row-major patches, row-major pixels inside a patch).
pub fn patchify<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 3> {
    let [b, _] = x.dims();
    let g = SIDE / PATCH;
    x.reshape([b, g, PATCH, g, PATCH])
        .swap_dims(2, 3)
        .reshape([b, PATCHES, PATCH * PATCH])
}

/// The inverse of [`patchify`].
pub fn unpatchify<B: Backend>(p: Tensor<B, 3>) -> Tensor<B, 2> {
    let [b, _, _] = p.dims();
    let g = SIDE / PATCH;
    p.reshape([b, g, g, PATCH, PATCH])
        .swap_dims(2, 3)
        .reshape([b, PIXELS])
}

/// SoftVQ on tokens `z` [N, C] with codebook [K, C]: both L2-normalised, weights
/// `w = softmax(<z, c_k> / tau)`, quantised tokens `w @ codebook` ([N, C]), and the entropy loss
/// `mean_n H(w_n) - H(mean_n w_n)` (confident assignments, every code used).
pub fn soft_quantise<B: Backend>(
    z: Tensor<B, 2>,
    codebook: Tensor<B, 2>,
    tau: f64,
) -> (Tensor<B, 2>, Tensor<B, 2>, Tensor<B, 1>) {
    let (q, w) = soft_assign(z, codebook, tau);
    let per_token = entropy(w.clone()).mean();
    let usage = entropy(w.clone().mean_dim(0)).mean();
    (q, w, per_token - usage)
}

/// SoftVQ's quantised tokens and weights (see [`soft_quantise`]).
fn soft_assign<B: Backend>(
    z: Tensor<B, 2>,
    codebook: Tensor<B, 2>,
    tau: f64,
) -> (Tensor<B, 2>, Tensor<B, 2>) {
    let zn = l2_normalise(z);
    let cn = l2_normalise(codebook);
    let w = crate::activation::softmax::softmax(zn.matmul(cn.clone().transpose()) / tau);
    let q = w.clone().matmul(cn);
    (q, w)
}

/// The entropy `-sum_k p_k ln p_k` of each row of `p` [N, K] ([N, 1]).
fn entropy<B: Backend>(p: Tensor<B, 2>) -> Tensor<B, 2> {
    (p.clone() * p.clamp_min(1e-12).log()).sum_dim(1).neg()
}

/// SoftVQ's usage term `H(mean_n w_n)` of a whole batch, linearised at the batch's mean assignment
/// `p` for a pass over some of its rows: the term's value `H(p)` and its gradient `g = dH/dp`. The
/// rows' part of the term is then `g . (mean of their w) + (H(p) - g . p)`, whose gradient is exactly
/// their share of the batch's, and whose values, weighted by the rows' shares, add up to `H(p)`.
#[derive(Debug, Clone)]
pub struct Usage<B: Backend> {
    pub grad: Tensor<B, 1>,
    /// `H(p) - g . p`.
    pub offset: f64,
}

impl<B: AutodiffBackend> Usage<B> {
    /// The linearisation at the mean assignment `p` [K] (of the inner backend).
    pub fn at(p: Tensor<B::InnerBackend, 1>) -> Self {
        let [k] = p.dims();
        let leaf = Tensor::<B, 1>::from_inner(p.clone()).require_grad();
        let h = entropy(leaf.clone().reshape([1, k])).reshape([1]);
        let value = crate::tensors::scalar(h.clone());
        let grads = h.backward();
        let grad = leaf
            .grad(&grads)
            .unwrap_or_else(|| unreachable!("the mean assignment is a leaf of its entropy"));
        let dot = crate::tensors::scalar((grad.clone() * p).sum());
        Usage {
            grad: Tensor::from_inner(grad),
            offset: value - dot,
        }
    }
}

fn l2_normalise<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let n = x.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-12);
    x / n
}

fn transformer<B: Backend>(
    width: usize,
    depth: usize,
    heads: usize,
    device: &B::Device,
) -> TransformerEncoder<B> {
    TransformerEncoderConfig::new(width, 4 * width, heads, depth)
        .with_dropout(0.0)
        .with_norm_first(true)
        .init(device)
}

fn learned<B: Backend>(rows: usize, cols: usize, device: &B::Device) -> Param<Tensor<B, 2>> {
    Param::from_tensor(Tensor::random(
        [rows, cols],
        Distribution::Normal(0.0, 0.02),
        device,
    ))
}

impl<B: Backend> Tokenizer<B> {
    pub fn new(shape: TokenizerShape, device: &B::Device) -> Self {
        let TokenizerShape {
            tokens,
            channels,
            width,
            depth,
            heads,
            codebook_size,
            regulariser,
            tau,
            semantic_dim,
        } = shape;
        let out = if regulariser == Regulariser::Kl {
            2 * channels
        } else {
            channels
        };
        let k = if regulariser == Regulariser::Softvq {
            codebook_size.max(1)
        } else {
            1
        };
        Tokenizer {
            patch_in: LinearConfig::new(PATCH * PATCH, width).init(device),
            latent_tokens: learned(tokens, width, device),
            enc_pos: learned(PATCHES + tokens, width, device),
            encoder: transformer(width, depth, heads, device),
            enc_norm: LayerNormConfig::new(width).init(device),
            to_latent: LinearConfig::new(width, out).init(device),
            from_latent: LinearConfig::new(channels, width).init(device),
            mask_tokens: learned(PATCHES, width, device),
            dec_pos: learned(PATCHES + tokens, width, device),
            decoder: transformer(width, depth, heads, device),
            dec_norm: LayerNormConfig::new(width).init(device),
            to_pixels: LinearConfig::new(width, PATCH * PATCH).init(device),
            codebook: Param::from_tensor(Tensor::random(
                [k, channels],
                Distribution::Normal(0.0, 1.0),
                device,
            )),
            semantic_in: (semantic_dim > 0)
                .then(|| LinearConfig::new(channels, width).init(device)),
            semantic_out: (semantic_dim > 0)
                .then(|| LinearConfig::new(width, semantic_dim).init(device)),
            tokens,
            channels,
            regulariser,
            tau,
        }
    }

    /// The sample-level alignment loss: `-mean_b cos(MLP(mean_l z_b), f_b)` for latent tokens `z`
    /// [B, L, C] and semantic features `f` [B, D] (None without the head).
    pub fn semantic_loss(&self, z: Tensor<B, 3>, f: Tensor<B, 2>) -> Option<Tensor<B, 1>> {
        let (Some(a), Some(b)) = (&self.semantic_in, &self.semantic_out) else {
            return None;
        };
        let [n, _, c] = z.dims();
        let pooled = z.mean_dim(1).reshape([n, c]);
        let h = linear(b, burn::tensor::activation::silu(linear(a, pooled)));
        let cos = (l2_normalise(h) * l2_normalise(f)).sum_dim(1);
        Some(cos.mean().neg())
    }

    pub fn regulariser(&self) -> Regulariser {
        self.regulariser
    }

    /// The encoder's raw output per latent token [B, L, C] (2C for KL: mean then log-variance).
    fn encode_raw(&self, x: Tensor<B, 2>) -> Tensor<B, 3> {
        let [b, _] = x.dims();
        let width = self.enc_pos.val().dims()[1];
        let patches = linear(&self.patch_in, patchify(x));
        let latent = self
            .latent_tokens
            .val()
            .unsqueeze_dim::<3>(0)
            .expand([b, self.tokens, width]);
        let h = add_positions(Tensor::cat(vec![patches, latent], 1), self.enc_pos.val());
        let h = encoder(&self.encoder, h);
        let h = self.enc_norm.forward(h.narrow(1, PATCHES, self.tokens));
        linear(&self.to_latent, h)
    }

    /// SoftVQ of tokens [B, L, C]: (quantised tokens, entropy loss), the usage term from these
    /// tokens or, given, linearised at the whole batch's mean assignment ([`Usage`]).
    fn soft_vq(&self, z: Tensor<B, 3>, usage: Option<&Usage<B>>) -> (Tensor<B, 3>, Tensor<B, 1>) {
        let [b, l, c] = z.dims();
        let (q, w) = soft_assign(z.reshape([b * l, c]), self.codebook.val(), self.tau);
        let per_token = entropy(w.clone()).mean();
        let mean = w.mean_dim(0);
        let usage = match usage {
            None => entropy(mean).mean(),
            Some(u) => {
                let [_, k] = mean.dims();
                (mean.reshape([k]) * u.grad.clone()).sum() + u.offset
            }
        };
        (q.reshape([b, l, c]), per_token - usage)
    }

    /// The sum of the SoftVQ weights of every latent token of images `x` [B, 784] ([K]): the
    /// whole-batch pass a row-block step needs before its blocks for [`Usage`].
    pub fn assignment_sum(&self, x: Tensor<B, 2>) -> Tensor<B, 1> {
        let z = self.encode_raw(x);
        let [b, l, c] = z.dims();
        let (_, w) = soft_assign(z.reshape([b * l, c]), self.codebook.val(), self.tau);
        let [_, k] = w.dims();
        w.sum_dim(0).reshape([k])
    }

    /// Deterministic latent tokens [B, L, C]: the AE's output, the KL posterior mean, or SoftVQ's
    /// soft-quantised tokens.
    pub fn latents(&self, x: Tensor<B, 2>) -> Tensor<B, 3> {
        let h = self.encode_raw(x);
        match self.regulariser {
            Regulariser::None => h,
            Regulariser::Kl => h.narrow(2, 0, self.channels),
            Regulariser::Softvq => self.soft_vq(h, None).0,
        }
    }

    /// Images [B, 784] in (0, 1) from latent tokens [B, L, C].
    pub fn decode(&self, z: Tensor<B, 3>) -> Tensor<B, 2> {
        let [b, _, _] = z.dims();
        let width = self.dec_pos.val().dims()[1];
        let mask = self
            .mask_tokens
            .val()
            .unsqueeze_dim::<3>(0)
            .expand([b, PATCHES, width]);
        let h = add_positions(
            Tensor::cat(vec![mask, linear(&self.from_latent, z)], 1),
            self.dec_pos.val(),
        );
        let h = encoder(&self.decoder, h);
        let h = self.dec_norm.forward(h.narrow(1, 0, PATCHES));
        unpatchify(sigmoid(linear(&self.to_pixels, h)))
    }

    /// Deterministic reconstruction through [`Tokenizer::latents`].
    pub fn reconstruct(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.decode(self.latents(x))
    }

    /// The training pass: the KL posterior is sampled (reparameterised).
    pub fn forward_train(&self, x: Tensor<B, 2>) -> TokenizerOutput<B> {
        self.forward_train_with(x, None, None)
    }

    /// [`Tokenizer::forward_train`] over rows of a batch, with what they take from the whole batch:
    /// the KL posterior's draw `eps` [B, L, C] (None: drawn here) and SoftVQ's usage term (None: from
    /// these rows alone); the other regularisers take neither.
    pub fn forward_train_with(
        &self,
        x: Tensor<B, 2>,
        eps: Option<Tensor<B, 3>>,
        usage: Option<&Usage<B>>,
    ) -> TokenizerOutput<B> {
        let h = self.encode_raw(x);
        let device = h.device();
        let (latents, reg) = match self.regulariser {
            Regulariser::None => (h, Tensor::zeros([1], &device)),
            Regulariser::Kl => {
                let mean = h.clone().narrow(2, 0, self.channels);
                let logvar = h.narrow(2, self.channels, self.channels);
                match eps {
                    Some(eps) => sample_with_kl_given(mean, logvar, eps),
                    None => sample_with_kl(mean, logvar),
                }
            }
            Regulariser::Softvq => self.soft_vq(h, usage),
        };
        TokenizerOutput {
            recon: self.decode(latents.clone()),
            latents,
            reg,
        }
    }
}

/// A small patch discriminator on 28x28 images: conv 4x4/2 (1 -> 32), LeakyReLU(0.2), conv 4x4/2
/// (32 -> 64), LeakyReLU(0.2), conv 3x3 (64 -> 1): one logit per 7x7 patch.
#[derive(Module, Debug)]
pub struct Discriminator<B: Backend> {
    c1: Conv2d<B>,
    c2: Conv2d<B>,
    out: Conv2d<B>,
}

impl<B: Backend> Discriminator<B> {
    pub fn new(device: &B::Device) -> Self {
        let down = |i, o| {
            Conv2dConfig::new([i, o], [4, 4])
                .with_stride([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device)
        };
        Discriminator {
            c1: down(1, 32),
            c2: down(32, 64),
            out: Conv2dConfig::new([64, 1], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device),
        }
    }

    /// Patch logits [B, 49] of images [B, 784] in [0, 1] (rescaled to [-1, 1]).
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let [b, _] = x.dims();
        let x = (x * 2.0 - 1.0).reshape([b, 1, SIDE, SIDE]);
        let h = leaky_relu(conv2d(&self.c1, x), 0.2);
        let h = leaky_relu(conv2d(&self.c2, h), 0.2);
        conv2d(&self.out, h).reshape([b, PATCHES])
    }
}

/// Hinge loss of the discriminator: `mean(relu(1 - D(real))) + mean(relu(1 + D(fake)))`.
pub fn hinge_d_loss<B: Backend>(real: Tensor<B, 2>, fake: Tensor<B, 2>) -> Tensor<B, 1> {
    relu(real.neg() + 1.0).mean() + relu(fake + 1.0).mean()
}

/// The generator's adversarial loss: `-mean(D(fake))`.
pub fn hinge_g_loss<B: Backend>(fake: Tensor<B, 2>) -> Tensor<B, 1> {
    fake.mean().neg()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    type B = crate::backend::TestBackend;

    fn host<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
        t.into_data().to_vec().expect("f32")
    }

    fn shape(regulariser: Regulariser) -> TokenizerShape {
        TokenizerShape {
            tokens: 5,
            channels: 3,
            width: 16,
            depth: 1,
            heads: 2,
            codebook_size: 7,
            regulariser,
            tau: 0.5,
            semantic_dim: 0,
        }
    }

    #[test]
    fn patchify_round_trips_and_takes_4x4_blocks() {
        let device = Default::default();
        let v: Vec<f32> = (0..2 * 784).map(|i| i as f32).collect();
        let x = Tensor::<B, 2>::from_data(TensorData::new(v.clone(), [2, 784]), &device);
        let p = patchify(x);
        assert_eq!(p.dims(), [2, 49, 16]);
        let pv = host(p.clone());
        // Patch (row 1, col 2) of image 0: pixels rows 4..8, cols 8..12.
        let patch = &pv[(7 + 2) * 16..(7 + 3) * 16];
        let want: Vec<f32> = (4..8)
            .flat_map(|r| (8..12).map(move |c| (r * 28 + c) as f32))
            .collect();
        assert_eq!(patch, &want[..]);
        assert_eq!(host(unpatchify(p)), v);
    }

    #[test]
    fn shapes_of_every_regulariser() {
        let device = Default::default();
        for reg in [Regulariser::None, Regulariser::Kl, Regulariser::Softvq] {
            let t = Tokenizer::<B>::new(shape(reg), &device);
            let x = Tensor::<B, 2>::random([2, 784], Distribution::Uniform(0.0, 1.0), &device);
            assert_eq!(t.latents(x.clone()).dims(), [2, 5, 3]);
            let out = t.forward_train(x.clone());
            assert_eq!(out.latents.dims(), [2, 5, 3]);
            assert_eq!(out.recon.dims(), [2, 784]);
            let r = host(t.reconstruct(x));
            assert!(r.iter().all(|v| *v > 0.0 && *v < 1.0));
        }
    }

    #[test]
    fn soft_quantise_matches_hand_values() {
        let device = Default::default();
        // Two orthogonal unit codes; token a = (1, 0) (cosines 1, 0), token b = (3, 3) (cosines
        // 1/sqrt2 each). tau = 0.5.
        let codes = Tensor::<B, 2>::from_data(
            TensorData::new(vec![2.0f32, 0.0, 0.0, 1.0], [2, 2]),
            &device,
        );
        let z = Tensor::<B, 2>::from_data(
            TensorData::new(vec![1.0f32, 0.0, 3.0, 3.0], [2, 2]),
            &device,
        );
        let (q, w, ent) = soft_quantise(z, codes, 0.5);
        let wa0 = (2f64).exp() / ((2f64).exp() + 1.0);
        let wa = [wa0, 1.0 - wa0];
        let wb = [0.5, 0.5];
        // The cosines are matrix products: TF32 on a GPU (crate::backend::TEST_MATMUL_REL).
        let tol = crate::backend::TEST_MATMUL_REL;
        let w = host(w);
        for (g, h) in w.iter().zip(wa.iter().chain(&wb)) {
            assert!((*g as f64 - h).abs() < tol, "weight {g} vs {h}");
        }
        // Quantised tokens: weights times the normalised codes (1, 0) and (0, 1).
        let q = host(q);
        for (g, h) in q.iter().zip(wa.iter().chain(&wb)) {
            assert!((*g as f64 - h).abs() < tol, "token {g} vs {h}");
        }
        let h = |p: &[f64]| -p.iter().map(|x| x * x.ln()).sum::<f64>();
        let mean = [(wa[0] + wb[0]) / 2.0, (wa[1] + wb[1]) / 2.0];
        let want = (h(&wa) + h(&wb)) / 2.0 - h(&mean);
        let got = host(ent)[0] as f64;
        assert!((got - want).abs() < tol, "{got} vs {want}");
    }

    #[test]
    fn semantic_loss_is_minus_the_mean_cosine() {
        let device = Default::default();
        let t = Tokenizer::<B>::new(
            TokenizerShape {
                semantic_dim: 4,
                ..shape(Regulariser::Softvq)
            },
            &device,
        );
        let z = Tensor::<B, 3>::random([2, 5, 3], Distribution::Normal(0.0, 1.0), &device);
        let f = Tensor::<B, 2>::random([2, 4], Distribution::Normal(0.0, 1.0), &device);
        let got = host(t.semantic_loss(z.clone(), f.clone()).expect("head"))[0] as f64;
        // Independently: the head's prediction, then cosines by hand.
        let (a, b) = (
            t.semantic_in.as_ref().expect("in"),
            t.semantic_out.as_ref().expect("out"),
        );
        let h = host(b.forward(burn::tensor::activation::silu(
            a.forward(z.mean_dim(1).reshape([2, 3])),
        )));
        let f = host(f);
        let cos = |u: &[f32], v: &[f32]| {
            let dot: f64 = u.iter().zip(v).map(|(x, y)| f64::from(x * y)).sum();
            let n = |w: &[f32]| w.iter().map(|x| f64::from(x * x)).sum::<f64>().sqrt();
            dot / (n(u) * n(v))
        };
        let want = -(cos(&h[..4], &f[..4]) + cos(&h[4..], &f[4..])) / 2.0;
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        assert!((-1.0..=1.0).contains(&got));
        // Without the head there is no loss.
        let plain = Tokenizer::<B>::new(shape(Regulariser::Softvq), &device);
        let z = Tensor::<B, 3>::random([2, 5, 3], Distribution::Normal(0.0, 1.0), &device);
        assert!(
            plain
                .semantic_loss(z, Tensor::zeros([2, 4], &device))
                .is_none()
        );
    }

    #[test]
    fn hinge_losses_match_hand_values() {
        let device = Default::default();
        let real = Tensor::<B, 2>::from_data(TensorData::new(vec![2.0f32, 0.5], [1, 2]), &device);
        let fake = Tensor::<B, 2>::from_data(TensorData::new(vec![-3.0f32, 0.0], [1, 2]), &device);
        // relu(1 - 2) = 0, relu(1 - 0.5) = 0.5 -> 0.25; relu(1 - 3) = 0, relu(1 + 0) = 1 -> 0.5.
        let d = host(hinge_d_loss(real, fake.clone()))[0];
        assert!((d - 0.75).abs() < 1e-6);
        assert!((host(hinge_g_loss(fake))[0] - 1.5).abs() < 1e-6);
        let disc = Discriminator::<B>::new(&device);
        let x = Tensor::<B, 2>::random([3, 784], Distribution::Uniform(0.0, 1.0), &device);
        assert_eq!(disc.forward(x).dims(), [3, 49]);
    }
}
