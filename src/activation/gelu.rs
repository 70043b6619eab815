//! GELU, `x Phi(x) = 0.5 x (1 + erf(x / sqrt 2))`, with a vectorised kernel on the CPU backend.
//!
//! Burn's flex backend evaluates GELU and its gradient one element at a time through a scalar
//! `erf`, which does not vectorise: in the transformers' training step (dit, MAR) that was about
//! an eighth of the time. Here the forward and the backward pass are one branch-free loop each,
//! compiled for AVX-512 / AVX2+FMA / the baseline and picked at run time, with the same erf that
//! PyTorch's CPU GELU kernel uses (Abramowitz & Stegun 7.1.26, absolute error below 1.5e-7; the
//! exponential is a Cephes-style polynomial, relative error about 1e-7). The backward pass shares
//! that exponential: erf(x / sqrt 2) and the normal density both need `exp(-x^2 / 2)`.
//!
//! [`gelu`] is what the models call: on `Autodiff<Flex>` a custom autodiff operation with these
//! kernels, on `Flex` the forward kernel, on every other backend Burn's own GELU.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use super::{Pointwise, exp_nonpositive};

/// GELU (exact, erf form) of `x`, vectorised on the CPU backend (module docs).
pub fn gelu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    match super::apply::<Gelu, B, D>(x) {
        Ok(y) => y,
        Err(x) => burn::tensor::activation::gelu(x),
    }
}

const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// 1 / sqrt(2 pi).
const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

/// `(erf(u), exp(-u^2))` by Abramowitz & Stegun 7.1.26, as PyTorch's vectorised CPU `erf`.
#[inline(always)]
fn erf_and_gauss(u: f32) -> (f32, f32) {
    const P: f32 = 0.327_591_1;
    const A1: f32 = 0.254_829_6;
    const A2: f32 = -0.284_496_74;
    const A3: f32 = 1.421_413_8;
    const A4: f32 = -1.453_152;
    const A5: f32 = 1.061_405_4;
    let sign = u.to_bits() & 0x8000_0000;
    let a = u.abs();
    let t = 1.0 / (P * a + 1.0);
    let r = (((A5 * t + A4) * t + A3) * t + A2) * t + A1;
    let g = exp_nonpositive(-(a * a));
    let e = 1.0 - r * t * g;
    (f32::from_bits(e.to_bits() ^ sign), g)
}

/// GELU for [`activation`](super)'s kernels, parallel map and autodiff operation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Gelu;

impl Pointwise for Gelu {
    #[inline(always)]
    fn value(v: f32) -> f32 {
        let (e, _) = erf_and_gauss(v * FRAC_1_SQRT_2);
        0.5 * v * (1.0 + e)
    }

    #[inline(always)]
    fn gradient(v: f32, g: f32) -> f32 {
        // erf(x / sqrt 2) needs exp(-x^2 / 2): the normal density's exponential.
        let (e, gauss) = erf_and_gauss(v * FRAC_1_SQRT_2);
        g * (0.5 * (1.0 + e) + v * FRAC_1_SQRT_2PI * gauss)
    }
}

#[cfg(test)]
mod tests;
