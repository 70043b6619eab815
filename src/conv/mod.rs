//! 2-d convolutions and transposed convolutions for the models' layers, batched through im2col and
//! one matrix product per sample on the CPU backend.
//!
//! Burn's flex backend convolves each sample with its own small products, single-threaded, and its
//! backward passes go through Burn's generic formulas (`swap_dims` of the input and the output
//! gradient, then a convolution over the non-contiguous views, which flex first copies element by
//! element): in the latent autoencoders' step that was most of the time. Here (see [`kernels`]):
//! ```text
//! convolution:            y_i = W . cols(x_i) + b
//!                         dx_i = col2im(W^T . dy_i),  dW = sum_i dy_i . cols(x_i)^T,  db = sum dy
//! transposed convolution: y_i = col2im(W^T . x_i) + b
//!                         dx_i = W . cols(dy_i),      dW = sum_i x_i . cols(dy_i)^T,  db = sum dy
//! ```
//! with the samples split over rayon's threads. [`conv2d`] and [`conv_transpose2d`] are what the
//! models call: on `Flex` and `Autodiff<Flex>` (one custom autodiff operation, which keeps the input and
//! the weight) for f32 layers with a bias, dilation 1, one group, symmetric padding and no output
//! padding; otherwise Burn's own layer (every other backend, or another configuration).
//! [`pool`] holds the inference max and average pools beside them.

pub mod geometry;
pub(crate) mod kernels;
pub mod pool;

#[cfg(feature = "flex")]
mod flex;

use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, ConvTranspose2d};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use geometry::Geometry;

/// Which operation, with the sizes it does not read from its operands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// A convolution; `geometry` is of its input.
    Conv { geometry: Geometry, c_out: usize },
    /// A transposed convolution; `geometry` is of its OUTPUT (whose columns its input is).
    Transpose { geometry: Geometry, c_in: usize },
}

impl Op {
    /// The output's shape for `n` samples.
    pub(crate) fn output_shape(&self, n: usize) -> [usize; 4] {
        match *self {
            Op::Conv { geometry, c_out } => {
                let [h, w] = geometry.output().unwrap_or([0, 0]);
                [n, c_out, h, w]
            }
            Op::Transpose { geometry, .. } => {
                [n, geometry.channels, geometry.input[0], geometry.input[1]]
            }
        }
    }
}

/// The symmetric padding of a convolution layer, if it has one.
fn symmetric(p: &PaddingConfig2d) -> Option<[usize; 2]> {
    match *p {
        PaddingConfig2d::Valid => Some([0, 0]),
        PaddingConfig2d::Explicit(top, left, bottom, right) if top == bottom && left == right => {
            Some([top, left])
        }
        _ => None,
    }
}

/// The operation of `layer` on an input of `dims`, when the kernels here can run it.
fn conv_op<B: Backend>(layer: &Conv2d<B>, dims: [usize; 4]) -> Option<Op> {
    let [c_out, c_in, kh, kw] = layer.weight.val().dims();
    let geometry = Geometry {
        channels: dims[1],
        input: [dims[2], dims[3]],
        kernel: [kh, kw],
        stride: layer.stride,
        padding: symmetric(&layer.padding)?,
    };
    (layer.groups == 1
        && layer.dilation == [1, 1]
        && c_in == dims[1]
        && layer.bias.is_some()
        && geometry.output().is_some())
    .then_some(Op::Conv { geometry, c_out })
}

/// The operation of `layer` on an input of `dims`, when the kernels here can run it.
fn transpose_op<B: Backend>(layer: &ConvTranspose2d<B>, dims: [usize; 4]) -> Option<Op> {
    let [c_in, c_out, kh, kw] = layer.weight.val().dims();
    let side = |i: usize| {
        // (in - 1) stride - 2 padding + kernel
        (dims[2 + i] * layer.stride[i] + [kh, kw][i])
            .checked_sub(layer.stride[i] + 2 * layer.padding[i])
    };
    let geometry = Geometry {
        channels: c_out,
        input: [side(0)?, side(1)?],
        kernel: [kh, kw],
        stride: layer.stride,
        padding: layer.padding,
    };
    (layer.groups == 1
        && layer.dilation == [1, 1]
        && layer.padding_out == [0, 0]
        && c_in == dims[1]
        && layer.bias.is_some()
        && geometry.output() == Some([dims[2], dims[3]]))
    .then_some(Op::Transpose { geometry, c_in })
}

/// `layer.forward(x)`, through the batched kernels on the CPU backend (module docs).
pub fn conv2d<B: Backend>(layer: &Conv2d<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    run(
        conv_op(layer, x.dims()),
        x,
        &layer.weight.val(),
        &layer.bias,
    )
    .unwrap_or_else(|x| layer.forward(x))
}

/// `layer.forward(x)`, through the batched kernels on the CPU backend (module docs).
pub fn conv_transpose2d<B: Backend>(layer: &ConvTranspose2d<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    run(
        transpose_op(layer, x.dims()),
        x,
        &layer.weight.val(),
        &layer.bias,
    )
    .unwrap_or_else(|x| layer.forward(x))
}

fn run<B: Backend>(
    op: Option<Op>,
    x: Tensor<B, 4>,
    weight: &Tensor<B, 4>,
    bias: &Option<burn::module::Param<Tensor<B, 1>>>,
) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
    let (Some(op), Some(bias)) = (op, bias) else {
        return Err(x);
    };
    #[cfg(feature = "flex")]
    return flex::apply(op, x, weight.clone(), bias.val());
    #[cfg(not(feature = "flex"))]
    {
        let _ = (op, weight, bias);
        Err(x)
    }
}

#[cfg(test)]
mod tests;
