//! Moving values between host vectors (f64) and Burn tensors, for metrics, logging and figures.

use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData};

/// `Ok(value)` when `T` is `U`, the value back otherwise: how the CPU kernels (activations,
/// convolutions) find out that a generic backend is flex.
pub(crate) fn downcast<T: 'static, U: 'static>(value: T) -> Result<U, T> {
    let boxed: Box<dyn std::any::Any> = Box::new(value);
    match boxed.downcast::<U>() {
        Ok(u) => Ok(*u),
        Err(boxed) => Err(*boxed
            .downcast::<T>()
            .unwrap_or_else(|_| unreachable!("a box holds the type it was made with"))),
    }
}

/// The first value of a tensor (a loss), as f64; NaN for an empty tensor.
pub fn scalar<B: Backend, const D: usize>(t: Tensor<B, D>) -> f64 {
    t.into_data().iter::<f64>().next().unwrap_or(f64::NAN)
}

/// All values of a tensor, row-major, as f64.
pub fn to_host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f64> {
    let data = t.into_data();
    if data.dtype == DType::F32 {
        return f32_values(data).into_iter().map(f64::from).collect();
    }
    data.iter::<f64>().collect()
}

/// All values of a tensor, row-major, as f32 (features kept as f32, no round trip through f64).
pub fn to_host_f32<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    let data = t.into_data();
    if data.dtype == DType::F32 {
        return f32_values(data);
    }
    data.iter::<f32>().collect()
}

/// The values of f32 data: its own buffer where it can be taken, else one copy (`TensorData::iter`
/// yields through a boxed iterator, one dynamic call per value).
fn f32_values(data: TensorData) -> Vec<f32> {
    data.into_vec::<f32>()
        .unwrap_or_else(|e| unreachable!("f32 data holds f32 values: {e:?}"))
}

/// A [len / d, d] f32 tensor from row-major host values.
pub fn from_host<B: Backend>(v: &[f64], d: usize, device: &B::Device) -> Tensor<B, 2> {
    let data: Vec<f32> = v.iter().map(|&x| x as f32).collect();
    Tensor::from_data(TensorData::new(data, [v.len() / d.max(1), d]), device)
}

/// A [n, d] tensor from row-major f32 values.
pub fn from_host_f32<B: Backend>(v: Vec<f32>, d: usize, device: &B::Device) -> Tensor<B, 2> {
    let n = v.len() / d.max(1);
    Tensor::from_data(TensorData::new(v, [n, d]), device)
}

/// Grey 28x28 images ([B, 784], values in [0, 1]) as a vision network's input: values mapped linearly
/// to [`lo`, `hi`], resized to `side` x `side` (bilinear), repeated over 3 channels.
pub fn grey28_to_rgb<B: Backend>(x: Tensor<B, 2>, side: usize, lo: f64, hi: f64) -> Tensor<B, 4> {
    use burn::tensor::module::interpolate;
    use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
    let [b, _] = x.dims();
    let t = x.reshape([b, 1, 28, 28]) * (hi - lo) + lo;
    interpolate(
        t,
        [side, side],
        InterpolateOptions::new(InterpolateMode::Bilinear),
    )
    .repeat_dim(1, 3)
}

/// `k` copies of `x` stacked along dimension 0: row `r n + i` is row `i` (what `repeat_dim(0, k)`
/// computes), with a correct gradient (the sum over the k copies of each row).
///
/// Not `repeat_dim`: Burn 0.21's autodiff backward for `repeat_dim` reshapes the gradient to
/// `[n, k, ...]` and sums over the copies as if they were interleaved (row `i k + r`), while the
/// forward tiles them (row `r n + i`), so for more than one row each row receives other rows'
/// gradients. Concatenation's backward slices the copies back out, which is right.
pub fn tile_rows<B: Backend, const D: usize>(x: Tensor<B, D>, k: usize) -> Tensor<B, D> {
    if k <= 1 {
        x
    } else {
        Tensor::cat(vec![x; k], 0)
    }
}

/// `x`, whose dimension `dim` has size 1, repeated `k` times along `dim` into one contiguous tensor;
/// its gradient is the sum over the `k` copies.
///
/// Burn's `repeat_dim` is right for a dimension of size 1 (its backward sums over that dimension;
/// the fault [`tile_rows`] avoids concerns longer ones) and stays one contiguous pass each way.
/// Concatenating `k` copies instead would hand one node `k` strided gradient slices to add up one by
/// one, which on flex walk an index iterator per element (a fifth of dit's training step).
pub fn repeat_unit_dim<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    dim: usize,
    k: usize,
) -> Tensor<B, D> {
    assert_eq!(
        x.dims()[dim],
        1,
        "repeat_unit_dim repeats a dimension of size 1"
    );
    if k <= 1 { x } else { x.repeat_dim(dim, k) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::TestAutodiff as AB;

    /// Row-major values of a contiguous tensor and of a transposed view, as f32 and f64, and of an f64
    /// tensor (the other path).
    #[test]
    fn host_values_are_row_major_in_either_precision() {
        let device = Default::default();
        let t = Tensor::<crate::backend::TestBackend, 2>::from_floats(
            [[1.0, 2.0, 3.0], [4.0, 5.0, 6.5]],
            &device,
        );
        assert_eq!(to_host_f32(t.clone()), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.5]);
        assert_eq!(to_host(t.clone()), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.5]);
        assert_eq!(
            to_host_f32(t.clone().transpose()),
            vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.5]
        );
        assert_eq!(
            to_host(t.clone().transpose()),
            vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.5]
        );
        let wide = t.cast(DType::F64);
        assert_eq!(to_host(wide.clone()), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.5]);
        assert_eq!(to_host_f32(wide), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.5]);
    }

    /// d/dx of sum(w * tile(x)) is, for row i, the sum over r of w's rows r n + i (closed form, on
    /// host values), and the forward equals `repeat_dim(0, k)`.
    #[test]
    fn tiled_rows_forward_and_gradient_match_the_closed_form() {
        let device = Default::default();
        let (n, d, k) = (3usize, 2usize, 4usize);
        let xv: Vec<f64> = (0..n * d).map(|i| i as f64 * 0.5 - 1.0).collect();
        let wv: Vec<f64> = (0..n * d * k).map(|i| ((i * 7) % 5) as f64 - 2.0).collect();
        let x = from_host::<AB>(&xv, d, &device).require_grad();
        let w = from_host::<AB>(&wv, d, &device);
        let tiled = tile_rows(x.clone(), k);
        assert_eq!(
            to_host(tiled.clone()),
            to_host(x.clone().inner().repeat_dim(0, k))
        );
        let grads = (tiled * w).sum().backward();
        let got = to_host(x.grad(&grads).expect("x has a gradient"));
        for i in 0..n {
            for j in 0..d {
                let want: f64 = (0..k).map(|r| wv[(r * n + i) * d + j]).sum();
                assert_eq!(got[i * d + j], want, "row {i} column {j}");
            }
        }
    }

    /// A [b, 1, w] tensor spread over l tokens: the forward is each row copied, and d/dx of
    /// sum(w * spread(x)) is, per row and column, the sum over the tokens of w (closed form on host
    /// values).
    #[test]
    fn unit_dim_repeat_forward_and_gradient_match_the_closed_form() {
        let device = Default::default();
        let (b, l, w) = (3usize, 4usize, 2usize);
        let xv: Vec<f64> = (0..b * w).map(|i| i as f64 * 0.25 - 0.5).collect();
        let wv: Vec<f64> = (0..b * l * w).map(|i| ((i * 5) % 7) as f64 - 3.0).collect();
        let x = from_host::<AB>(&xv, w, &device)
            .reshape([b, 1, w])
            .require_grad();
        let weights = from_host::<AB>(&wv, w, &device).reshape([b, l, w]);
        let spread = repeat_unit_dim(x.clone(), 1, l);
        let got = to_host(spread.clone());
        for i in 0..b {
            for t in 0..l {
                for j in 0..w {
                    assert_eq!(got[(i * l + t) * w + j], xv[i * w + j]);
                }
            }
        }
        let grads = (spread * weights).sum().backward();
        let got = to_host(x.grad(&grads).expect("x has a gradient"));
        for i in 0..b {
            for j in 0..w {
                let want: f64 = (0..l).map(|t| wv[(i * l + t) * w + j]).sum();
                assert_eq!(got[i * w + j], want, "row {i} column {j}");
            }
        }
    }

    /// Canary: Burn's `repeat_dim` still sends each row the gradient of the interleaved layout. When
    /// this fails, Burn has fixed it and [`tile_rows`] may go back to `repeat_dim`.
    #[test]
    fn burns_repeat_dim_gradient_is_still_the_interleaved_one() {
        let device = Default::default();
        let (n, k) = (3usize, 2usize);
        let x = from_host::<AB>(&[1.0, 2.0, 3.0], 1, &device).require_grad();
        let w = from_host::<AB>(&[1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0], 1, &device);
        let grads = (x.clone().repeat_dim(0, k) * w).sum().backward();
        let got = to_host(x.grad(&grads).expect("x has a gradient"));
        // Tiled (correct): row i gets w[i] + w[n + i] = 1001, 10010, 100100.
        // Interleaved (Burn 0.21): row i gets w[2 i] + w[2 i + 1] = 11, 1100, 110000.
        assert_eq!(
            got,
            vec![11.0, 1100.0, 110000.0],
            "Burn's repeat_dim gradient changed"
        );
        let _ = n;
    }
}
