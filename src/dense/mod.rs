//! Burn's Linear layer applied to rows, with a faster backward pass on the CPU backend.
//!
//! [`linear`] is `layer.forward(x)` for an input of any rank, computed on `x` seen as rows
//! [N, d_in]. On `Autodiff<Flex>` it is a custom autodiff operation: the forward pass is Burn's, and
//! the input's gradient `dy W^T` multiplies by a contiguous copy of `W^T` ([`transpose`]) instead of
//! the transposed view Burn hands the matrix product. gemm packs a view with that layout one value at
//! a time, which ran this product at 50-70 GFLOP/s against 100-105 for the same shapes from a
//! row-major operand on one AVX-512 core (docs/benchmarks.md); the copy costs about a tenth of the
//! product. The weight's gradient `x^T dy` and the bias's `sum(dy)` are Burn's. Elsewhere (a layer
//! without bias, another backend or dtype) it is `layer.forward`.

#[cfg(feature = "flex")]
mod flex;
#[cfg(feature = "flex")]
mod transpose;

use burn::nn::Linear;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// `layer` applied to the last dimension of `x` [..., d_in]: [..., d_out], equal to
/// `layer.forward(x)` in value and gradients (up to the order of floating-point sums).
pub fn linear<B: Backend, const D: usize>(layer: &Linear<B>, x: Tensor<B, D>) -> Tensor<B, D> {
    let dims = x.dims();
    let d_in = dims[D - 1];
    let rows: usize = dims[..D - 1].iter().product();
    let y = rows_linear(layer, x.reshape([rows, d_in]));
    let mut out = dims;
    out[D - 1] = y.dims()[1];
    y.reshape(out)
}

/// [`linear`] on rows [N, d_in].
fn rows_linear<B: Backend>(layer: &Linear<B>, x: Tensor<B, 2>) -> Tensor<B, 2> {
    #[cfg(feature = "flex")]
    let x = match &layer.bias {
        Some(bias) => match flex::apply(x, layer.weight.val(), bias.val()) {
            Ok(y) => return y,
            Err(x) => x,
        },
        None => x,
    };
    layer.forward(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{TEST_MATMUL_REL, TestAutodiff, TestBackend};
    use crate::tensors::to_host;
    use burn::module::Module;
    use burn::nn::LinearConfig;
    use burn::tensor::Distribution;

    fn close(got: Vec<f64>, want: Vec<f64>, what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: lengths");
        let scale = want.iter().fold(1e-6f64, |m, v| m.max(v.abs()));
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= TEST_MATMUL_REL * scale,
                "{what}[{i}]: {g} vs {w}"
            );
        }
    }

    /// Values and the gradients of x, W and b against Burn's `Linear::forward` on the same graph,
    /// for 2-D and 3-D inputs, a strided (transposed) input, sizes off the 8 x 8 tiles, and a weight
    /// left out of the graph (a frozen network's input gradient only).
    #[test]
    fn values_and_gradients_equal_burns_linear() {
        let device = Default::default();
        for (d_in, d_out) in [(5usize, 3usize), (24, 40), (67, 130)] {
            let layer = LinearConfig::new(d_in, d_out).init::<TestAutodiff>(&device);
            // Parameters initialise lazily: touched once here, every clone below shares them.
            let _ = (layer.weight.val(), layer.bias.as_ref().map(|b| b.val()));
            let x0 = Tensor::<TestBackend, 3>::random(
                [4, 3, d_in],
                Distribution::Normal(0.0, 1.0),
                &device,
            );
            let w_out = Tensor::<TestBackend, 3>::random(
                [4, 3, d_out],
                Distribution::Normal(0.0, 1.0),
                &device,
            );
            let run = |ours: bool, frozen: bool| {
                let layer = if frozen {
                    layer.clone().no_grad()
                } else {
                    layer.clone()
                };
                let x = Tensor::<TestAutodiff, 3>::from_data(x0.to_data(), &device).require_grad();
                let y = if ours {
                    linear(&layer, x.clone())
                } else {
                    layer.forward(x.clone())
                };
                let wa = Tensor::<TestAutodiff, 3>::from_data(w_out.to_data(), &device);
                let g = (y.clone() * wa).sum().backward();
                let mut out = vec![to_host(y.inner()), to_host(x.grad(&g).expect("x grad"))];
                if !frozen {
                    out.push(to_host(layer.weight.grad(&g).expect("W grad")));
                    let b = layer.bias.as_ref().expect("bias");
                    out.push(to_host(b.grad(&g).expect("b grad")));
                }
                out
            };
            for frozen in [false, true] {
                let (got, want) = (run(true, frozen), run(false, frozen));
                for (k, (g, w)) in got.into_iter().zip(want).enumerate() {
                    close(g, w, &format!("{d_in}->{d_out} frozen={frozen} part {k}"));
                }
            }
            // A transposed view as the input, 2-D.
            let xt = Tensor::<TestAutodiff, 2>::from_data(
                Tensor::<TestBackend, 2>::random(
                    [d_in, 6],
                    Distribution::Normal(0.0, 1.0),
                    &device,
                )
                .to_data(),
                &device,
            )
            .require_grad();
            let ours = linear(&layer, xt.clone().transpose());
            let burns = layer.forward(xt.clone().transpose());
            close(
                to_host(ours.inner()),
                to_host(burns.inner()),
                "transposed input",
            );
        }
    }

    /// A 1-D input is one row.
    #[test]
    fn a_vector_input_is_one_row() {
        let device = Default::default();
        let layer = LinearConfig::new(4, 2).init::<TestBackend>(&device);
        let x = Tensor::<TestBackend, 1>::from_floats([1.0, -2.0, 0.5, 3.0], &device);
        let y = linear(&layer, x.clone());
        assert_eq!(y.dims(), [2]);
        close(to_host(y), to_host(layer.forward(x)), "vector");
    }
}
