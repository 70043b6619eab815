//! ReLU, `max(x, 0)`, with a vectorised kernel on the CPU backend.
//!
//! Flex's ReLU walks its tensor at about 2 ns an element (50 ms for one 64 x 147 x 147 activation of
//! 16 images), and the FID Inception-v3 applies it after each of its 94 convolutions: about a tenth
//! of its forward pass. Here it is one branch-free loop (`max`, and `g` where `x > 0` in the backward
//! pass), in parallel chunks. [`relu`] is what the models call: on `Autodiff<Flex>` a custom autodiff
//! operation, on `Flex` the forward kernel, on every other backend Burn's own ReLU.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use super::Pointwise;

/// ReLU of `x`, vectorised on the CPU backend (module docs).
pub fn relu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    match super::apply::<Relu, B, D>(x) {
        Ok(y) => y,
        Err(x) => burn::tensor::activation::relu(x),
    }
}

/// ReLU for [`activation`](super)'s kernels, parallel map and autodiff operation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Relu;

impl Pointwise for Relu {
    #[inline(always)]
    fn value(v: f32) -> f32 {
        v.max(0.0)
    }

    /// `g` where `v > 0`, 0 elsewhere (0 at `v = 0`, as Burn's).
    #[inline(always)]
    fn gradient(v: f32, g: f32) -> f32 {
        if v > 0.0 { g } else { 0.0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relu_ref(x: f64) -> f64 {
        x.max(0.0)
    }

    fn relu_grad_ref(x: f64) -> f64 {
        if x > 0.0 { 1.0 } else { 0.0 }
    }

    #[test]
    fn every_instruction_set_gives_the_closed_forms_bit_for_bit_alike() {
        let x: Vec<f32> = (0..4001).map(|i| -100.0 + 0.05 * i as f32).collect();
        crate::activation::check_every_isa::<Relu>(&x, relu_ref, relu_grad_ref);
        assert_eq!((Relu::value(-0.5), Relu::gradient(0.0, 1.0)), (0.0, 0.0));
    }

    #[test]
    fn tensor_relu_and_its_gradient_agree_with_burns() {
        use burn::tensor::activation::relu as burns;
        crate::activation::check_against_burn((relu, relu), (burns, burns), relu_grad_ref, 4.0);
    }
}
