//! Small convolutional autoencoders for 28x28 grey images with a 7x7 grid of latent tokens: a KL-VAE
//! (the low-level `vae` target prior, standing in for SD-VAE) and a VQ-VAE with a learnable codebook of
//! low dimension (the `vq` target prior, like LlamaGen's 8-d codes).
//!
//! Encoder: conv 4x4/2 (1 -> 32) -> SiLU -> conv 4x4/2 (32 -> 64) -> SiLU -> conv 1x1 to the latent
//! channels (2C for the VAE: mean and log-variance). Decoder: conv 1x1 (C -> 64) -> SiLU -> transposed
//! conv 4x4/2 (64 -> 32) -> SiLU -> transposed conv 4x4/2 (32 -> 32) -> SiLU -> conv 3x3 (32 -> 1) ->
//! sigmoid. Losses use mean reductions.

use burn::module::{Module, Param};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::tensor::activation::sigmoid;
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Int, Tensor};

use crate::activation::silu::silu;
use crate::conv::{conv_transpose2d, conv2d};

/// The side of the latent grid: two stride-2 convolutions take 28x28 images to 7x7.
pub const GRID: usize = 7;
/// Latent tokens per image, one per grid cell.
pub const TOKENS: usize = GRID * GRID;

/// Which autoencoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AeKind {
    Vae,
    Vq,
}

#[derive(Module, Debug)]
pub struct LatentAe<B: Backend> {
    enc1: Conv2d<B>,
    enc2: Conv2d<B>,
    enc_out: Conv2d<B>,
    dec_in: Conv2d<B>,
    dec1: ConvTranspose2d<B>,
    dec2: ConvTranspose2d<B>,
    dec_out: Conv2d<B>,
    /// The VQ codebook [K, C] (a single unused row for the VAE).
    pub codebook: Param<Tensor<B, 2>>,
    channels: usize,
    vq: bool,
}

/// Losses of one batch.
pub struct AeLosses<B: Backend> {
    pub total: Tensor<B, 1>,
    pub recon: Tensor<B, 1>,
    /// KL per latent element (VAE) or codebook + commitment loss (VQ).
    pub reg: Tensor<B, 1>,
    /// Codes used by the batch (VQ), for usage statistics.
    pub codes: Option<Tensor<B, 1, Int>>,
}

impl<B: Backend> LatentAe<B> {
    pub fn new(kind: AeKind, channels: usize, codebook_size: usize, device: &B::Device) -> Self {
        let down = |i, o| {
            Conv2dConfig::new([i, o], [4, 4])
                .with_stride([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device)
        };
        let up = |i, o| {
            ConvTranspose2dConfig::new([i, o], [4, 4])
                .with_stride([2, 2])
                .with_padding([1, 1])
                .init(device)
        };
        let vq = kind == AeKind::Vq;
        let out = if vq { channels } else { 2 * channels };
        let k = if vq { codebook_size.max(1) } else { 1 };
        LatentAe {
            enc1: down(1, 32),
            enc2: down(32, 64),
            enc_out: Conv2dConfig::new([64, out], [1, 1]).init(device),
            dec_in: Conv2dConfig::new([channels, 64], [1, 1]).init(device),
            dec1: up(64, 32),
            dec2: up(32, 32),
            dec_out: Conv2dConfig::new([32, 1], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device),
            codebook: Param::from_tensor(Tensor::random(
                [k, channels],
                Distribution::Uniform(-1.0 / k as f64, 1.0 / k as f64),
                device,
            )),
            channels,
            vq,
        }
    }

    /// Encoder output [B, C or 2C, 7, 7] for images [B, 784] in [0, 1].
    fn encode_raw(&self, x: Tensor<B, 2>) -> Tensor<B, 4> {
        let [b, _] = x.dims();
        let x = x.reshape([b, 1, 28, 28]);
        let h = silu(conv2d(&self.enc1, x));
        let h = silu(conv2d(&self.enc2, h));
        conv2d(&self.enc_out, h)
    }

    /// Data-dependent codebook initialisation (VQ): the codes become encoder outputs of `x` [B, 784]
    /// (tokens taken in a seeded random order, repeated when there are fewer tokens than codes), so
    /// that every code starts where the encoder puts tokens instead of in an unused corner.
    pub fn init_codebook_from(mut self, x: Tensor<B, 2>, seed: u64) -> Self {
        use rand::SeedableRng;
        use rand::seq::SliceRandom;
        if !self.vq {
            return self;
        }
        let h = self.encode_raw(x);
        let [b, c, hh, ww] = h.dims();
        let tokens = h.swap_dims(1, 3).reshape([b * hh * ww, c]);
        let k = self.codebook.val().dims()[0];
        let mut order: Vec<usize> = (0..b * hh * ww).collect();
        order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
        let pick: Vec<i64> = (0..k).map(|i| order[i % order.len()] as i64).collect();
        let device = tokens.device();
        let idx = Tensor::<B, 1, Int>::from_data(burn::tensor::TensorData::new(pick, [k]), &device);
        let codes = tokens.select(0, idx).detach();
        self.codebook = Param::from_tensor(codes);
        self
    }

    /// Whether this is the VQ-VAE.
    pub fn is_vq(&self) -> bool {
        self.vq
    }

    /// Decoder: latents [B, C, 7, 7] to images [B, 784].
    pub fn decode(&self, z: Tensor<B, 4>) -> Tensor<B, 2> {
        let [b, _, _, _] = z.dims();
        let h = silu(conv2d(&self.dec_in, z));
        let h = silu(conv_transpose2d(&self.dec1, h));
        let h = silu(conv_transpose2d(&self.dec2, h));
        sigmoid(conv2d(&self.dec_out, h)).reshape([b, 784])
    }

    /// The deterministic latent grid [B, C, 7, 7]: the VAE's posterior means, or the VQ-VAE's
    /// quantised codes.
    fn latent_grid(&self, x: Tensor<B, 2>) -> Tensor<B, 4> {
        let h = self.encode_raw(x);
        if self.vq {
            self.quantise(h).0
        } else {
            h.narrow(1, 0, self.channels)
        }
    }

    /// Latent tokens [B, 49, C] (see `latent_grid`).
    pub fn latents(&self, x: Tensor<B, 2>) -> Tensor<B, 3> {
        let z = self.latent_grid(x);
        let [b, c, _, _] = z.dims();
        z.reshape([b, c, TOKENS]).swap_dims(1, 2)
    }

    /// Deterministic reconstruction [B, 784] through `latent_grid`.
    pub fn reconstruct(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.decode(self.latent_grid(x))
    }

    /// Nearest codes of `z_e` [B, C, 7, 7]: (quantised [B, C, 7, 7], code indices [B * 49]).
    fn quantise(&self, z_e: Tensor<B, 4>) -> (Tensor<B, 4>, Tensor<B, 1, Int>) {
        let [b, c, h, w] = z_e.dims();
        let flat = z_e.swap_dims(1, 3).reshape([b * h * w, c]);
        let cb = self.codebook.val();
        let d = flat.clone().powi_scalar(2).sum_dim(1)
            + cb.clone().powi_scalar(2).sum_dim(1).transpose()
            - flat.matmul(cb.clone().transpose()) * 2.0;
        let idx = d.argmin(1).reshape([b * h * w]);
        let q = cb
            .select(0, idx.clone())
            .reshape([b, w, h, c])
            .swap_dims(1, 3);
        (q, idx)
    }

    /// Reconstruction and regulariser losses of a batch of images [B, 784].
    pub fn losses(&self, x: Tensor<B, 2>, kl_weight: f64, commitment: f64) -> AeLosses<B> {
        self.losses_with(x, None, kl_weight, commitment)
    }

    /// [`LatentAe::losses`] with the VAE posterior's draw `eps` [B, C, 7, 7] given (None: drawn here;
    /// the VQ-VAE draws nothing).
    pub fn losses_with(
        &self,
        x: Tensor<B, 2>,
        eps: Option<Tensor<B, 4>>,
        kl_weight: f64,
        commitment: f64,
    ) -> AeLosses<B> {
        let h = self.encode_raw(x.clone());
        if self.vq {
            let (q, idx) = self.quantise(h.clone());
            // Codebook loss pulls codes to the encoder; commitment pulls the encoder to its codes;
            // the straight-through estimator passes the decoder's gradient to the encoder.
            let codebook = (q.clone() - h.clone().detach()).powi_scalar(2).mean();
            let commit = (h.clone() - q.clone().detach()).powi_scalar(2).mean();
            let z = h.clone() + (q - h).detach();
            let recon = (self.decode(z) - x).powi_scalar(2).mean();
            let reg = codebook + commit * commitment;
            AeLosses {
                total: recon.clone() + reg.clone(),
                recon,
                reg,
                codes: Some(idx),
            }
        } else {
            let mean = h.clone().narrow(1, 0, self.channels);
            let logvar = h.narrow(1, self.channels, self.channels);
            let (z, kl) = match eps {
                Some(eps) => super::posterior::sample_with_kl_given(mean, logvar, eps),
                None => super::posterior::sample_with_kl(mean, logvar),
            };
            let recon = (self.decode(z) - x).powi_scalar(2).mean();
            AeLosses {
                total: recon.clone() + kl.clone() * kl_weight,
                recon,
                reg: kl,
                codes: None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type B = crate::backend::TestBackend;

    #[test]
    fn shapes_and_quantisation_pick_the_nearest_code() {
        let device = Default::default();
        let ae = LatentAe::<B>::new(AeKind::Vq, 4, 16, &device);
        let x = Tensor::<B, 2>::random([3, 784], Distribution::Uniform(0.0, 1.0), &device);
        assert_eq!(ae.latents(x.clone()).dims(), [3, 49, 4]);
        assert_eq!(ae.decode(ae.encode_raw(x.clone())).dims(), [3, 784]);
        // Every quantised token is a codebook row, and the nearest one.
        let h = ae.encode_raw(x);
        let (q, idx) = ae.quantise(h.clone());
        let flat_h: Vec<f32> = h
            .swap_dims(1, 3)
            .reshape([3 * 49, 4])
            .into_data()
            .to_vec()
            .expect("f32");
        let flat_q: Vec<f32> = q
            .swap_dims(1, 3)
            .reshape([3 * 49, 4])
            .into_data()
            .to_vec()
            .expect("f32");
        let cb: Vec<f32> = ae.codebook.val().into_data().to_vec().expect("f32");
        let idx: Vec<i64> = idx.into_data().iter::<i64>().collect();
        for t in 0..3 * 49 {
            let z = &flat_h[t * 4..t * 4 + 4];
            let dist = |k: usize| {
                z.iter()
                    .zip(&cb[k * 4..k * 4 + 4])
                    .map(|(a, b)| (a - b).powi(2))
                    .sum::<f32>()
            };
            let best = (0..16)
                .min_by(|&a, &b| dist(a).total_cmp(&dist(b)))
                .expect("codes");
            assert!((dist(best) - dist(idx[t] as usize)).abs() < 1e-5);
            assert_eq!(
                &flat_q[t * 4..t * 4 + 4],
                &cb[idx[t] as usize * 4..idx[t] as usize * 4 + 4]
            );
        }
        // After a data-dependent initialisation every code is one of the encoder's tokens.
        let x = Tensor::<B, 2>::random([2, 784], Distribution::Uniform(0.0, 1.0), &device);
        let h: Vec<f32> = ae
            .encode_raw(x.clone())
            .swap_dims(1, 3)
            .reshape([98, 4])
            .into_data()
            .to_vec()
            .expect("f32");
        let ae = ae.init_codebook_from(x, 3);
        let cb: Vec<f32> = ae.codebook.val().into_data().to_vec().expect("f32");
        for code in cb.chunks_exact(4) {
            assert!(h.chunks_exact(4).any(|t| t == code));
        }
        let vae = LatentAe::<B>::new(AeKind::Vae, 4, 16, &device);
        let x = Tensor::<B, 2>::random([2, 784], Distribution::Uniform(0.0, 1.0), &device);
        assert_eq!(vae.latents(x).dims(), [2, 49, 4]);
    }
}
