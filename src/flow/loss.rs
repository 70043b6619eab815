//! Flow-matching loss (training the prior) and the alignment loss L_align (using it).
//!
//! Both use the rectified-flow path of this crate's convention (t = 0 noise, t = 1 data):
//! `x_t = (1 - t) x0 + t x1`, target velocity `x1 - x0`, and the MEAN of the squared error over every
//! element (batch and dimension), as the public code does. A sum over dimensions would scale the loss
//! (and hence the meaning of lambda) by the latent dimension.

use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};

use super::VelocityField;

/// Mean squared error between v(x_t, t) and the straight-path velocity `x1 - x0`, for given draws of
/// `t` ([N], in [0, 1]) and `x0` ([N, d]). Gradients reach `x1` through both `x_t` and the target.
pub fn flow_matching_loss_with<B: Backend, V: VelocityField<B>>(
    field: &V,
    x1: Tensor<B, 2>,
    x0: Tensor<B, 2>,
    t: Tensor<B, 1>,
) -> Tensor<B, 1> {
    let tt = t.clone().unsqueeze_dim::<2>(1);
    let xt = x0.clone() * (tt.clone().neg() + 1.0) + x1.clone() * tt;
    let v = field.velocity(xt, t);
    (v - (x1 - x0)).powi_scalar(2).mean()
}

/// Fresh draws of the straight path for `n` points of dimension `d`: `t ~ U[0, 1]` ([n]), then
/// `x0 ~ N(0, I)` ([n, d]), in that order (every loss of this module draws so, which keeps a seed's
/// draws the same whichever way the loss is computed).
pub fn path_draws<B: Backend>(
    n: usize,
    d: usize,
    device: &B::Device,
) -> (Tensor<B, 1>, Tensor<B, 2>) {
    let t = Tensor::<B, 1>::random([n], Distribution::Uniform(0.0, 1.0), device);
    let x0 = Tensor::<B, 2>::random([n, d], Distribution::Normal(0.0, 1.0), device);
    (t, x0)
}

/// [`path_draws`] for L_align of latents `y` ([..., C]): `flow_mul` draws per token.
pub fn align_draws<B: Backend, const D: usize>(
    y: &Tensor<B, D>,
    flow_mul: usize,
) -> (Tensor<B, 1>, Tensor<B, 2>) {
    let dims = y.dims();
    let points: usize = dims[..D - 1].iter().product();
    path_draws(points * flow_mul.max(1), dims[D - 1], &y.device())
}

/// Flow-matching loss with fresh draws `t ~ U[0, 1]`, `x0 ~ N(0, I)`.
pub fn flow_matching_loss<B: Backend, V: VelocityField<B>>(
    field: &V,
    x1: Tensor<B, 2>,
) -> Tensor<B, 1> {
    let [n, d] = x1.dims();
    let (t, x0) = path_draws(n, d, &x1.device());
    flow_matching_loss_with(field, x1, x0, t)
}

/// L_align(y) = E_{t, x0} || v((1 - t) x0 + t y, t) - (y - x0) ||^2 (mean over elements).
///
/// `y` is [B, C] or, for token latents, [B, L, C]: every token is a point of the prior
/// (flattened to [B*L, C]). Each point gets `flow_mul` independent (t, x0) draws (the public code uses
/// 4). The prior should be frozen (`Module::no_grad`): gradients then reach only `y`, through both the
/// network input and the target.
pub fn align_loss<B: Backend, V: VelocityField<B>, const D: usize>(
    prior: &V,
    y: Tensor<B, D>,
    flow_mul: usize,
) -> Tensor<B, 1> {
    let (t, x0) = align_draws(&y, flow_mul);
    align_loss_with(prior, y, flow_mul, x0, t)
}

/// [`align_loss`] for given draws `x0` ([P * flow_mul, C]) and `t` ([P * flow_mul]) of the repeated
/// points: row `r P + p` is token `p`'s `r`-th draw ([`crate::tensors::tile_rows`]; not Burn's
/// `repeat_dim`, whose gradient is wrong in Burn 0.21).
pub fn align_loss_with<B: Backend, V: VelocityField<B>, const D: usize>(
    prior: &V,
    y: Tensor<B, D>,
    flow_mul: usize,
    x0: Tensor<B, 2>,
    t: Tensor<B, 1>,
) -> Tensor<B, 1> {
    let dims = y.dims();
    let c = dims[D - 1];
    let points: usize = dims[..D - 1].iter().product();
    let tiled = crate::tensors::tile_rows(y.reshape([points, c]), flow_mul);
    flow_matching_loss_with(prior, tiled, x0, t)
}
