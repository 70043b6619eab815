//! Softmax over the last dimension with vectorised row kernels on the CPU backend (attention's
//! weights).
//!
//! Burn writes softmax as `exp(x - max) / sum`: on flex a scalar `expf` per element and four more
//! passes, and in training the gradients of each of them (in the small tokenizer's step `expf` alone
//! was 7% of the time). Here each row is one pass for its maximum, one for `e = exp(x - max)` (the
//! exponential of [`activation`](super) on non-positive values, relative error about 1e-7), one for
//! their sum (in [`LANES`] partial sums, so that the exponentials vectorise), and one to scale; the backward pass is one pass per row on the saved output,
//! `dx = y (g - sum(g y))`. Rows run in parallel chunks; the kernels are compiled for AVX-512,
//! AVX2+FMA and the baseline and picked at run time. [`softmax`] is what the models call: on
//! `Autodiff<Flex>` a custom autodiff operation (it keeps its output), on `Flex` the forward kernel,
//! elsewhere Burn's softmax.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use super::exp_nonpositive;
use crate::simd::Isa;

/// Softmax of `x` over its last dimension (module docs).
pub fn softmax<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    #[cfg(feature = "flex")]
    let x = match flex::apply(x) {
        Ok(y) => return y,
        Err(x) => x,
    };
    burn::tensor::activation::softmax(x, D - 1)
}

/// Accumulators of the row reductions: each lane sums (or takes the maximum of) every `LANES`-th
/// value, and the lanes are combined in a fixed order at the end. A single running sum is a chain the
/// compiler may not reorder, which left the whole exponential loop scalar; lanes vectorise, and as the
/// order is written out, every instruction set computes the same bits.
const LANES: usize = 16;

/// The largest value of `x` (`-inf` for none).
#[inline(always)]
fn row_max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = a.max(v);
        }
    }
    acc.iter()
        .chain(rest)
        .fold(f32::NEG_INFINITY, |a, &b| a.max(b))
}

/// `sum(a[i] * b[i])`, lane by lane (see [`LANES`]).
#[inline(always)]
fn row_dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let rest: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for ((s, &u), &v) in acc.iter_mut().zip(x).zip(y) {
            *s += u * v;
        }
    }
    acc.iter().sum::<f32>() + rest
}

/// `sum(x)`, lane by lane.
#[inline(always)]
fn row_sum(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let rest: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for (s, &v) in acc.iter_mut().zip(c) {
            *s += v;
        }
    }
    acc.iter().sum::<f32>() + rest
}

/// Softmax of each row of `n` values of `x` into `y`: the maximum, the exponentials, their sum, the
/// scaling, each a loop of its own so that each vectorises.
#[inline(always)]
fn rows_forward(x: &[f32], y: &mut [f32], n: usize) {
    for (xr, yr) in x.chunks_exact(n).zip(y.chunks_exact_mut(n)) {
        let m = row_max(xr);
        for (o, &v) in yr.iter_mut().zip(xr) {
            *o = exp_nonpositive(v - m);
        }
        let inv = 1.0 / row_sum(yr);
        yr.iter_mut().for_each(|o| *o *= inv);
    }
}

/// `dx = y (g - sum(g y))` for each row of `n` values.
#[inline(always)]
fn rows_backward(y: &[f32], g: &[f32], dx: &mut [f32], n: usize) {
    for ((yr, gr), dr) in y
        .chunks_exact(n)
        .zip(g.chunks_exact(n))
        .zip(dx.chunks_exact_mut(n))
    {
        let dot = row_dot(yr, gr);
        for ((d, &a), &b) in dr.iter_mut().zip(yr).zip(gr) {
            *d = a * (b - dot);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn forward_avx2(x: &[f32], y: &mut [f32], n: usize) {
        super::rows_forward(x, y, n)
    }
    #[target_feature(enable = "avx512f")]
    pub(super) fn forward_avx512(x: &[f32], y: &mut [f32], n: usize) {
        super::rows_forward(x, y, n)
    }
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn backward_avx2(y: &[f32], g: &[f32], dx: &mut [f32], n: usize) {
        super::rows_backward(y, g, dx, n)
    }
    #[target_feature(enable = "avx512f")]
    pub(super) fn backward_avx512(y: &[f32], g: &[f32], dx: &mut [f32], n: usize) {
        super::rows_backward(y, g, dx, n)
    }
}

fn forward_with(isa: Isa, x: &[f32], y: &mut [f32], n: usize) {
    match isa {
        Isa::Baseline => rows_forward(x, y, n),
        // SAFETY: `Isa::available` lists these only where the CPU has them.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { x86::forward_avx2(x, y, n) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { x86::forward_avx512(x, y, n) },
    }
}

fn backward_with(isa: Isa, y: &[f32], g: &[f32], dx: &mut [f32], n: usize) {
    match isa {
        Isa::Baseline => rows_backward(y, g, dx, n),
        // SAFETY: as in `forward_with`.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { x86::backward_avx2(y, g, dx, n) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { x86::backward_avx512(y, g, dx, n) },
    }
}

/// Rows of `n` values per parallel task: about [`super::CHUNK`] values.
fn rows_per_task(n: usize) -> usize {
    (super::CHUNK / n.max(1)).max(1)
}

/// The softmax of every row of `n` values of `x`.
pub(crate) fn forward(x: &[f32], n: usize) -> Vec<f32> {
    use rayon::prelude::*;
    let isa = Isa::current();
    let mut y = vec![0.0f32; x.len()];
    if n == 0 {
        return y;
    }
    let per = rows_per_task(n) * n;
    if rayon::current_num_threads() > 1 && x.len() > per {
        y.par_chunks_mut(per)
            .zip(x.par_chunks(per))
            .for_each(|(yc, xc)| forward_with(isa, xc, yc, n));
    } else {
        forward_with(isa, x, &mut y, n);
    }
    y
}

/// The input gradient of every row of `n` values, from the output `y` and its gradient `g`.
pub(crate) fn backward(y: &[f32], g: &[f32], n: usize) -> Vec<f32> {
    use rayon::prelude::*;
    let isa = Isa::current();
    let mut dx = vec![0.0f32; y.len()];
    if n == 0 {
        return dx;
    }
    let per = rows_per_task(n) * n;
    if rayon::current_num_threads() > 1 && y.len() > per {
        dx.par_chunks_mut(per)
            .zip(y.par_chunks(per).zip(g.par_chunks(per)))
            .for_each(|(dc, (yc, gc))| backward_with(isa, yc, gc, dc, n));
    } else {
        backward_with(isa, y, g, &mut dx, n);
    }
    dx
}

#[cfg(feature = "flex")]
mod flex {
    //! The kernels on flex's tensors, and the autodiff operation around them.
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::backend::Backend;
    use burn::tensor::ops::FloatTensor;
    use burn::tensor::{Tensor, TensorData, TensorMetadata};
    use burn_flex::FlexTensor;

    type Ad = Autodiff<Flex>;

    /// See [`super::softmax`]: the result on flex, the input back elsewhere.
    pub(super) fn apply<B: Backend, const D: usize>(
        x: Tensor<B, D>,
    ) -> Result<Tensor<B, D>, Tensor<B, D>> {
        crate::activation::flex::unary_on_flex(x, autodiff, forward)
    }

    /// The last dimension's length.
    fn row_len(t: &FlexTensor) -> usize {
        t.shape().as_slice().last().copied().unwrap_or(1)
    }

    fn forward(x: FlexTensor) -> FlexTensor {
        let x = x.to_contiguous();
        let len = x.shape().num_elements();
        let y = super::forward(&x.storage::<f32>()[..len], row_len(&x));
        FlexTensor::from_data(TensorData::new(y, x.shape()))
    }

    #[derive(Debug)]
    struct SoftmaxBackward;

    impl Backward<Flex, 1> for SoftmaxBackward {
        /// The operation's output.
        type State = FlexTensor;

        fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
            let y = ops.state;
            unary::<Flex, _>(ops.parents, ops.node, grads, |g| {
                let g = g.to_contiguous();
                let len = y.shape().num_elements();
                let dx = super::backward(
                    &y.storage::<f32>()[..len],
                    &g.storage::<f32>()[..len],
                    row_len(&y),
                );
                FlexTensor::from_data(TensorData::new(dx, y.shape()))
            });
        }
    }

    fn autodiff(x: FloatTensor<Ad>) -> FloatTensor<Ad> {
        match SoftmaxBackward
            .prepare::<NoCheckpointing>([x.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let y = forward(x.primitive);
                prep.finish(y.clone(), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(forward(x.primitive)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{TestAutodiff, TestBackend};
    use burn::tensor::Distribution;

    fn values<const D: usize, B2: Backend>(t: Tensor<B2, D>) -> Vec<f32> {
        t.into_data().convert::<f32>().to_vec().expect("f32")
    }

    #[test]
    fn rows_match_the_closed_form_on_every_instruction_set_alike() {
        // Rows with large, tiny and equal values (every row a different remainder for the vectors).
        let rows: Vec<Vec<f32>> = vec![
            vec![0.0; 7],
            (0..19).map(|i| i as f32 * 3.0 - 20.0).collect(),
            (0..33).map(|i| ((i * 7) % 11) as f32 * 0.4 - 2.0).collect(),
            vec![-80.0, 0.0, 80.0],
        ];
        for row in rows {
            let n = row.len();
            let m = row
                .iter()
                .fold(f64::NEG_INFINITY, |a, &b| a.max(f64::from(b)));
            let s: f64 = row.iter().map(|&v| (f64::from(v) - m).exp()).sum();
            let want: Vec<f64> = row.iter().map(|&v| (f64::from(v) - m).exp() / s).collect();
            let g: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let dot: f64 = want.iter().zip(&g).map(|(y, g)| y * f64::from(*g)).sum();
            let mut first: Option<(Vec<f32>, Vec<f32>)> = None;
            for isa in Isa::available() {
                let mut y = vec![0.0; n];
                forward_with(isa, &row, &mut y, n);
                let mut dx = vec![0.0; n];
                backward_with(isa, &y, &g, &mut dx, n);
                for i in 0..n {
                    assert!((f64::from(y[i]) - want[i]).abs() < 1e-6, "{isa:?} y[{i}]");
                    let d = want[i] * (f64::from(g[i]) - dot);
                    assert!((f64::from(dx[i]) - d).abs() < 1e-6, "{isa:?} dx[{i}]");
                }
                match &first {
                    None => first = Some((y, dx)),
                    Some((y0, d0)) => assert_eq!((&y, &dx), (y0, d0), "{isa:?} differs"),
                }
            }
        }
    }

    #[test]
    fn tensor_softmax_and_its_gradient_agree_with_burns() {
        let device = Default::default();
        let x0 =
            Tensor::<TestBackend, 3>::random([3, 5, 9], Distribution::Normal(0.0, 3.0), &device);
        // A non-contiguous view, as attention's scores can be.
        let xt = x0.clone().swap_dims(1, 2);
        let ours = values(softmax(xt.clone()));
        let burns = values(burn::tensor::activation::softmax(xt, 2));
        for (a, b) in ours.iter().zip(&burns) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
        let w =
            Tensor::<TestBackend, 3>::random([3, 9, 5], Distribution::Normal(0.0, 1.0), &device);
        let grad = |f: fn(Tensor<TestAutodiff, 3>) -> Tensor<TestAutodiff, 3>| {
            let x = Tensor::<TestAutodiff, 3>::from_data(x0.to_data(), &device).require_grad();
            let wa = Tensor::<TestAutodiff, 3>::from_data(w.to_data(), &device);
            let g = (f(x.clone().swap_dims(1, 2)) * wa).sum().backward();
            values(x.grad(&g).expect("x has a gradient"))
        };
        let ours = grad(softmax);
        let burns = grad(|x| burn::tensor::activation::softmax(x, 2));
        for (a, b) in ours.iter().zip(&burns) {
            assert!((a - b).abs() < 2e-6 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }
}
