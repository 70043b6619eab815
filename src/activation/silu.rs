//! SiLU, `x sigmoid(x) = x / (1 + e^-x)`, with a vectorised kernel on the CPU backend.
//!
//! Burn writes SiLU as `x * sigmoid(x)`: on flex a scalar `expf` per element, and in training two
//! more passes for the sigmoid's and the product's gradients; in the latent autoencoders' step
//! (every convolution is followed by SiLU) that was about a sixth of the time. Here the forward and
//! the backward pass are one branch-free loop each (AVX-512 / AVX2+FMA / the baseline, picked at run
//! time), with the exponential of [`activation`](super) (relative error about 1e-7) on
//! `-|x|`, so that it never overflows:
//! ```text
//! e = exp(-|x|),  s = sigmoid(x) = 1 / (1 + e) for x >= 0, e / (1 + e) otherwise
//! silu(x) = x s,  silu'(x) = s (1 + x (1 - s))
//! ```
//! [`silu`] is what the models call: on `Autodiff<Flex>` a custom autodiff operation with these
//! kernels, on `Flex` the forward kernel, on every other backend Burn's own SiLU.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use super::{Pointwise, exp_nonpositive};

/// SiLU of `x`, vectorised on the CPU backend (module docs).
pub fn silu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    match super::apply::<Silu, B, D>(x) {
        Ok(y) => y,
        Err(x) => burn::tensor::activation::silu(x),
    }
}

/// sigmoid(v), through `exp(-|v|)`.
#[inline(always)]
fn sigmoid(v: f32) -> f32 {
    let e = exp_nonpositive(-v.abs());
    let s = 1.0 / (1.0 + e);
    if v >= 0.0 { s } else { e * s }
}

/// SiLU for [`activation`](super)'s kernels, parallel map and autodiff operation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Silu;

impl Pointwise for Silu {
    #[inline(always)]
    fn value(v: f32) -> f32 {
        v * sigmoid(v)
    }

    #[inline(always)]
    fn gradient(v: f32, g: f32) -> f32 {
        let s = sigmoid(v);
        g * (s * (1.0 + v * (1.0 - s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn silu_ref(x: f64) -> f64 {
        x / (1.0 + (-x).exp())
    }

    fn silu_grad_ref(x: f64) -> f64 {
        let s = 1.0 / (1.0 + (-x).exp());
        s * (1.0 + x * (1.0 - s))
    }

    #[test]
    fn every_instruction_set_gives_the_closed_forms_bit_for_bit_alike() {
        // An odd length (every vector loop has a remainder), out to where e^-x underflows.
        let x: Vec<f32> = (0..4001).map(|i| -100.0 + 0.05 * i as f32).collect();
        crate::activation::check_every_isa::<Silu>(&x, silu_ref, silu_grad_ref);
        // Exact where the closed form is: silu(0) = 0, silu'(0) = 1/2.
        assert_eq!((Silu::value(0.0), Silu::gradient(0.0, 1.0)), (0.0, 0.5));
    }

    #[test]
    fn tensor_silu_and_its_gradient_agree_with_burns() {
        use burn::tensor::activation::silu as burns;
        crate::activation::check_against_burn((silu, silu), (burns, burns), silu_grad_ref, 4.0);
    }
}
