//! Attention's head layout: [B, L, H, dk] <-> [B, H, L, dk] as one contiguous copy.
//!
//! Burn writes the split into heads as `reshape` then `swap_dims(1, 2)`, a strided view. On flex the
//! matrix products copy that view contiguous through a per-element index iterator, and in training
//! the backward pass of the reshape that merges the heads again does the same to every gradient
//! (together about a tenth of dit's training step). [`swap_middle`] is one blocked copy of `dk`-value
//! runs instead: on `Autodiff<Flex>` a custom autodiff operation (the swap is its own inverse, so its
//! backward pass is the same copy of the gradient), on `Flex` the copy, elsewhere Burn's `swap_dims`.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// Below this many values the copy stays on the calling thread.
const PARALLEL_MIN: usize = 1 << 16;

/// `x` [a, m, n, k] as [a, n, m, k] (dimensions 1 and 2 swapped), contiguous on the CPU backend.
pub fn swap_middle<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    #[cfg(feature = "flex")]
    let x = match flex::apply(x) {
        Ok(y) => return y,
        Err(x) => x,
    };
    x.swap_dims(1, 2)
}

/// Row-major [a, m, n, k] values as row-major [a, n, m, k].
#[cfg(test)]
pub(crate) fn swap_copy(x: &[f32], dims: [usize; 4]) -> Vec<f32> {
    let [_, m, n, k] = dims;
    swap_gather(x, 0, [m * n * k, n * k, k, 1], dims)
}

/// The [a, m, n, k] tensor whose element [s, i, j, c] is `x[offset + s st0 + i st1 + j st2 + c st3]`,
/// as row-major [a, n, m, k] values: runs of `k` copied whole where `st3` is 1 (a view of the heads
/// as they were split), gathered value by value otherwise (the gradient of a transposed operand).
pub(crate) fn swap_gather(
    x: &[f32],
    offset: usize,
    strides: [usize; 4],
    [a, m, n, k]: [usize; 4],
) -> Vec<f32> {
    use rayon::prelude::*;
    let [st0, st1, st2, st3] = strides;
    let per = m * n * k;
    let mut y = vec![0.0f32; a * per];
    if per == 0 {
        return y;
    }
    let last = offset
        + [(a, st0), (m, st1), (n, st2), (k, st3)]
            .iter()
            .map(|&(d, st)| (d - 1) * st)
            .sum::<usize>();
    assert!(
        last < x.len(),
        "swap_gather: a view reaching {last} in {} values",
        x.len()
    );
    let one = |s: usize, ys: &mut [f32]| {
        for i in 0..m {
            for j in 0..n {
                let src = offset + s * st0 + i * st1 + j * st2;
                let dst = (j * m + i) * k;
                let out = &mut ys[dst..dst + k];
                if st3 == 1 {
                    out.copy_from_slice(&x[src..src + k]);
                } else {
                    for (c, o) in out.iter_mut().enumerate() {
                        *o = x[src + c * st3];
                    }
                }
            }
        }
    };
    if rayon::current_num_threads() > 1 && a > 1 && y.len() >= PARALLEL_MIN {
        y.par_chunks_mut(per)
            .enumerate()
            .for_each(|(s, ys)| one(s, ys));
    } else {
        y.chunks_mut(per).enumerate().for_each(|(s, ys)| one(s, ys));
    }
    y
}

#[cfg(feature = "flex")]
mod flex {
    //! The copy on flex's tensors, and the autodiff operation around it.
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

    /// See [`super::swap_middle`]: the result on flex, the input back elsewhere.
    pub(super) fn apply<B: Backend>(x: Tensor<B, 4>) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
        crate::activation::flex::unary_on_flex(x, autodiff, swap)
    }

    /// The swap, read through `x`'s strides (a view with a negative stride is made contiguous
    /// first).
    fn swap(x: FlexTensor) -> FlexTensor {
        let x = if x.layout().strides().iter().any(|&s| s < 0) {
            x.to_contiguous()
        } else {
            x
        };
        let dims @ [a, m, n, k] = x.shape().dims::<4>();
        let layout = x.layout();
        let st = layout.strides();
        let strides = [0, 1, 2, 3].map(|d| st[d].unsigned_abs());
        let y = super::swap_gather(x.storage::<f32>(), layout.start_offset(), strides, dims);
        FlexTensor::from_data(TensorData::new(y, [a, n, m, k]))
    }

    #[derive(Debug)]
    struct SwapBackward;

    impl Backward<Flex, 1> for SwapBackward {
        type State = ();

        fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
            unary::<Flex, _>(ops.parents, ops.node, grads, swap);
        }
    }

    fn autodiff(x: FloatTensor<Ad>) -> FloatTensor<Ad> {
        match SwapBackward
            .prepare::<NoCheckpointing>([x.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((), swap(x.primitive)),
            OpsKind::UnTracked(prep) => prep.finish(swap(x.primitive)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{TestAutodiff, TestBackend};
    use crate::tensors::to_host;
    use burn::tensor::Distribution;

    /// The copy against the index formula y[a][j][i][c] = x[a][i][j][c].
    #[test]
    fn the_copy_moves_every_value_to_its_swapped_index() {
        let dims = [3usize, 4, 5, 2];
        let [a, m, n, k] = dims;
        let x: Vec<f32> = (0..a * m * n * k).map(|v| v as f32).collect();
        let y = swap_copy(&x, dims);
        for s in 0..a {
            for i in 0..m {
                for j in 0..n {
                    for c in 0..k {
                        let from = ((s * m + i) * n + j) * k + c;
                        let to = ((s * n + j) * m + i) * k + c;
                        assert_eq!(y[to], x[from], "[{s},{i},{j},{c}]");
                    }
                }
            }
        }
    }

    /// Values equal Burn's `swap_dims(1, 2)` (from strided views too), and d/dx sum(w * swap(x)) is
    /// w swapped back, whether the gradient arrives contiguous or as a view.
    #[test]
    fn values_and_gradient_equal_the_swap() {
        let device = Default::default();
        let x0 =
            Tensor::<TestBackend, 4>::random([2, 5, 3, 4], Distribution::Normal(0.0, 1.0), &device);
        // Strided views: the last dimension transposed (value by value), the heads already
        // swapped (runs of k), a slice with an offset.
        for viewed in [
            x0.clone().swap_dims(2, 3),
            x0.clone().swap_dims(1, 2),
            x0.clone().narrow(1, 1, 3),
        ] {
            assert_eq!(
                to_host(swap_middle(viewed.clone())),
                to_host(viewed.swap_dims(1, 2))
            );
        }
        let w =
            Tensor::<TestBackend, 4>::random([2, 3, 5, 4], Distribution::Normal(0.0, 1.0), &device);
        let x = Tensor::<TestAutodiff, 4>::from_data(x0.to_data(), &device).require_grad();
        let wa = Tensor::<TestAutodiff, 4>::from_data(w.to_data(), &device);
        let g = (swap_middle(x.clone()) * wa).sum().backward();
        let got = x.grad(&g).expect("x has a gradient");
        let want = w.clone().swap_dims(1, 2);
        assert_eq!(got.dims(), [2, 5, 3, 4]);
        assert_eq!(to_host(got), to_host(want));
        // The gradient reaching the swap as a strided view (a transposed operand's).
        let wt = Tensor::<TestAutodiff, 4>::from_data(w.clone().swap_dims(2, 3).to_data(), &device);
        let g = (swap_middle(x.clone()).swap_dims(2, 3) * wt)
            .sum()
            .backward();
        let got = x.grad(&g).expect("x has a gradient");
        assert_eq!(to_host(got), to_host(w.swap_dims(1, 2)));
    }
}
