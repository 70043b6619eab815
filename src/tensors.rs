//! Moving values between host vectors (f64) and Burn tensors, for metrics, logging and figures.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

/// The first value of a tensor (a loss), as f64; NaN for an empty tensor.
pub fn scalar<B: Backend, const D: usize>(t: Tensor<B, D>) -> f64 {
    t.into_data().iter::<f64>().next().unwrap_or(f64::NAN)
}

/// All values of a tensor, row-major, as f64.
pub fn to_host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f64> {
    t.into_data().iter::<f64>().collect()
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
