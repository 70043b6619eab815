//! Data-parallel gradients of the flow-matching loss: the batch's rows are cut into `shards`
//! contiguous blocks, each block's loss is built and backpropagated on its own thread (inside a
//! single-thread rayon pool of its own), in its own autodiff graph over a copy of the network that
//! shares the weights' storage, and the blocks' gradients are summed.
//!
//! Each block's loss is weighted by its share of the rows, so the sum is the gradient of the mean over
//! the whole batch: the same step as one graph over the batch, up to the order of floating-point sums.
//! The random draws (t, x0) are made once for the whole batch before it is cut, so a seed gives the same
//! draws whatever the shard count.
//!
//! Why: on the CPU backend (flex) one graph's operations are too small at the flow prior's sizes to keep
//! two threads busy (small size: 1.14x from a second thread, against PyTorch's 1.6x); independent
//! graphs are. [`shards_for`](crate::train::blocks::shards_for) picks the count: rayon's thread count on flex, 1 elsewhere (a GPU runs
//! one graph's kernels in order anyway; libtorch threads inside its own operations).

use std::ops::Range;

use burn::module::AutodiffModule;
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use burn::tensor::backend::AutodiffBackend;

use super::loss::{align_draws, path_draws};
use super::{SimpleMlpAdaLn, flow_matching_loss_with};
use crate::tensors::{scalar, tile_rows};
use crate::train::blocks::{block_grads, on_shard_threads, row_blocks, shards_for};

/// The loss value and parameter gradients of one training step.
pub struct StepGrads {
    /// The mean flow-matching loss over the batch.
    pub loss: f64,
    pub grads: GradientsParams,
}

/// The flow-matching loss of `x1` ([N, d]) with fresh draws `t ~ U[0, 1]`, `x0 ~ N(0, I)` (drawn in
/// that order, as [`super::flow_matching_loss`] does) and its gradients, over [`shards_for`] row blocks.
pub fn flow_matching_grads<B: AutodiffBackend>(
    net: &SimpleMlpAdaLn<B>,
    x1: Tensor<B, 2>,
) -> StepGrads {
    let [n, d] = x1.dims();
    let (t, x0) = path_draws(n, d, &x1.device());
    flow_matching_grads_with(net, x1, x0, t, shards_for::<B::InnerBackend>(n))
}

/// [`flow_matching_grads`] for given draws of `t` ([N]) and `x0` ([N, d]) and a given shard count.
pub fn flow_matching_grads_with<B: AutodiffBackend>(
    net: &SimpleMlpAdaLn<B>,
    x1: Tensor<B, 2>,
    x0: Tensor<B, 2>,
    t: Tensor<B, 1>,
    shards: usize,
) -> StepGrads {
    let n = x1.dims()[0];
    let (x1, x0, t) = (x1.inner(), x0.inner(), t.inner());
    let (loss, grads) = block_grads(net, n, shards, |worker, rows| {
        flow_matching_loss_with(
            worker,
            Tensor::from_inner(x1.clone().slice(rows.clone())),
            Tensor::from_inner(x0.clone().slice(rows.clone())),
            Tensor::from_inner(t.clone().slice(rows)),
        )
    });
    StepGrads { loss, grads }
}

/// L_align(y) under a FROZEN prior (see [`super::align_loss`]: `flow_mul` draws per token, the same
/// draws in the same order), its gradient with respect to `y` computed over [`shards_for`] row blocks
/// of the prior's points, each in its own graph on its own thread. The result's value is L_align(y) and
/// its gradient with respect to `y` is that gradient: it is `s - detach(s) + L` with `s = sum(y * g)`
/// and `g` the blocks' gradients (detached), so the caller's graph holds one product instead of the
/// prior. No gradient reaches the prior's parameters (they are frozen in every use). One shard:
/// exactly [`super::align_loss`] (the same draws and graph).
pub fn align_loss_sharded<B: AutodiffBackend, const D: usize>(
    prior: &SimpleMlpAdaLn<B>,
    y: Tensor<B, D>,
    flow_mul: usize,
) -> Tensor<B, 1> {
    let (t, x0) = align_draws(&y, flow_mul);
    let shards = shards_for::<B::InnerBackend>(t.dims()[0]);
    align_loss_sharded_with(prior, y, flow_mul, x0, t, shards)
}

/// [`align_loss_sharded`] for given draws `x0` ([P * flow_mul, C]) and `t` ([P * flow_mul]) of the
/// repeated points (row `r P + p` is token `p`'s `r`-th draw, as [`tile_rows`] lays them out) and a
/// given shard count.
pub fn align_loss_sharded_with<B: AutodiffBackend, const D: usize>(
    prior: &SimpleMlpAdaLn<B>,
    y: Tensor<B, D>,
    flow_mul: usize,
    x0: Tensor<B, 2>,
    t: Tensor<B, 1>,
    shards: usize,
) -> Tensor<B, 1> {
    let dims = y.dims();
    let c = dims[D - 1];
    let points: usize = dims[..D - 1].iter().product();
    let k = flow_mul.max(1);
    let blocks = row_blocks(points * k, shards);
    if blocks.len() <= 1 {
        return super::align_loss_with(prior, y, flow_mul, x0, t);
    }
    let flat = y.reshape([points, c]);
    let rep = tile_rows(flat.clone().inner(), k);
    let parts = point_grad_blocks(prior, rep, x0.inner(), t.inner(), blocks);
    let mut value = 0.0;
    let mut grads = Vec::with_capacity(parts.len());
    for (loss, points) in parts {
        value += loss;
        grads.push(points);
    }
    // The k draws of each token add up: rows r P + p of the repeated points are token p's.
    let g = Tensor::cat(grads, 0)
        .reshape([k, points, c])
        .sum_dim(0)
        .reshape([points, c]);
    let s = (flat * Tensor::from_inner(g)).sum();
    s.clone() - s.detach() + value
}

/// The flow-matching loss of each row block of (`x1`, `x0`, `t`) under a frozen prior, weighted by the
/// block's share of the rows, built and backpropagated on its own thread ([`on_shard_threads`]) in its
/// own graph with the points `x1` as leaves: each block's weighted loss and its points' gradient.
fn point_grad_blocks<B: AutodiffBackend>(
    net: &SimpleMlpAdaLn<B>,
    x1: Tensor<B::InnerBackend, 2>,
    x0: Tensor<B::InnerBackend, 2>,
    t: Tensor<B::InnerBackend, 1>,
    blocks: Vec<Range<usize>>,
) -> Vec<(f64, Tensor<B::InnerBackend, 2>)> {
    let n = x1.dims()[0];
    // Fresh autodiff copies over the same weights, so each block's graph is its own (as
    // `train::blocks::block_grads` makes them).
    let work: Vec<(Range<usize>, SimpleMlpAdaLn<B>)> = blocks
        .into_iter()
        .map(|rows| (rows, SimpleMlpAdaLn::<B>::from_inner(net.valid())))
        .collect();
    on_shard_threads(work, |(rows, worker)| {
        let weight = rows.len() as f64 / n as f64;
        let points = Tensor::<B, 2>::from_inner(x1.clone().slice(rows.clone())).require_grad();
        let loss = flow_matching_loss_with(
            &worker,
            points.clone(),
            Tensor::from_inner(x0.clone().slice(rows.clone())),
            Tensor::from_inner(t.clone().slice(rows)),
        ) * weight;
        let value = scalar(loss.clone());
        let mut grads = loss.backward();
        // The block's points are leaves of its loss, so the gradient is there.
        let g = points
            .grad_remove(&mut grads)
            .unwrap_or_else(|| unreachable!("a block's points have a gradient"));
        (value, g)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{TEST_MATMUL_REL, TestAutodiff};
    use crate::train::blocks::MIN_SHARD_ROWS;
    use crate::train::clip_global_norm;
    use burn::module::{Module, ModuleVisitor, Param};
    use burn::tensor::Distribution;

    type B = TestAutodiff;

    #[test]
    fn row_blocks_cover_the_rows_in_order() {
        assert_eq!(row_blocks(10, 3), vec![0..4, 4..7, 7..10]);
        assert_eq!(row_blocks(4, 4), vec![0..1, 1..2, 2..3, 3..4]);
        assert_eq!(row_blocks(3, 8), vec![0..1, 1..2, 2..3]);
        assert_eq!(row_blocks(7, 0), vec![0..7]);
        assert_eq!(row_blocks(0, 2), vec![0..0]);
    }

    #[test]
    fn shard_threads_return_results_in_order_and_nest_without_waiting_forever() {
        let out = on_shard_threads((0..3).collect(), |i: usize| {
            let inner = on_shard_threads(vec![10 * i, 10 * i + 1], |j| j * 2);
            let name = std::thread::current().name().map(str::to_string);
            (i, inner, name)
        });
        for (k, (i, inner, name)) in out.into_iter().enumerate() {
            assert_eq!(i, k);
            assert_eq!(inner, vec![20 * k, 20 * k + 2]);
            assert_eq!(
                name.as_deref(),
                Some(format!("flowprior-shard-{k}").as_str())
            );
        }
    }

    /// The sharded L_align has the value and the gradient with respect to y of one graph over all the
    /// points (same draws), for [B, L, C] latents and uneven blocks.
    #[test]
    fn sharded_alignment_loss_equals_the_whole_graph() {
        use burn::module::Module;
        let device = Default::default();
        let prior = crate::flow::tests::random_net::<B>(3).no_grad();
        let normal = Distribution::Normal(0.0, 1.0);
        let (b, l, c, k) = (3, 5, 3, 4);
        let y0 = Tensor::<B, 3>::random([b, l, c], normal, &device);
        let x0 = Tensor::<B, 2>::random([b * l * k, c], normal, &device);
        let t = Tensor::<B, 1>::random([b * l * k], Distribution::Uniform(0.0, 1.0), &device);

        let y = y0.clone().require_grad();
        let whole = crate::flow::flow_matching_loss_with(
            &prior,
            crate::tensors::tile_rows(y.clone().reshape([b * l, c]), k),
            x0.clone(),
            t.clone(),
        );
        let whole_value = scalar(whole.clone());
        let whole_grad =
            crate::tensors::to_host(y.grad(&whole.backward()).expect("y has a gradient"));
        let scale = whole_grad.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(scale > 0.0);

        for shards in [1, 2, 7] {
            let y = y0.clone().require_grad();
            let got = align_loss_sharded_with(&prior, y.clone(), k, x0.clone(), t.clone(), shards);
            let value = scalar(got.clone());
            assert!(
                (value - whole_value).abs() <= 1e-5 * whole_value.abs(),
                "{shards} shards: {value} vs {whole_value}"
            );
            let grad = crate::tensors::to_host(y.grad(&got.backward()).expect("y has a gradient"));
            for (a, w) in grad.iter().zip(&whole_grad) {
                assert!(
                    (a - w).abs() <= (1e-4 + 50.0 * TEST_MATMUL_REL) * scale,
                    "{shards} shards: {a} vs {w}"
                );
            }
        }
    }

    #[test]
    fn shard_count_is_one_per_min_rows_at_most() {
        type Inner = <B as AutodiffBackend>::InnerBackend;
        assert_eq!(shards_for::<Inner>(MIN_SHARD_ROWS - 1), 1);
        let big = shards_for::<Inner>(1 << 20);
        if crate::backend::is_flex::<Inner>() {
            assert_eq!(big, rayon::current_num_threads());
        } else {
            assert_eq!(big, 1);
        }
    }

    /// Every parameter gradient, flattened, in visiting order.
    struct Flat<'a> {
        grads: &'a GradientsParams,
        out: Vec<Vec<f64>>,
    }
    impl ModuleVisitor<B> for Flat<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
            let g = self
                .grads
                .get::<<B as AutodiffBackend>::InnerBackend, D>(p.id)
                .map(crate::tensors::to_host)
                .unwrap_or_default();
            self.out.push(g);
        }
    }

    fn flat(net: &SimpleMlpAdaLn<B>, grads: &GradientsParams) -> Vec<Vec<f64>> {
        let mut v = Flat {
            grads,
            out: Vec::new(),
        };
        net.visit(&mut v);
        v.out
    }

    /// The sharded gradients equal one graph's over the whole batch (same draws), for uneven blocks,
    /// on a network whose zero-initialised layers were given weights so that every gradient is non-zero.
    #[test]
    fn sharded_gradients_equal_the_whole_batch_gradients() {
        let device = Default::default();
        // Every weight random (the zero-initialised ones too), so no gradient is trivially 0.
        let net = crate::flow::tests::random_net::<B>(3);
        let n = 23;
        let x1 = Tensor::<B, 2>::random([n, 3], Distribution::Normal(0.0, 1.0), &device);
        let x0 = Tensor::<B, 2>::random([n, 3], Distribution::Normal(0.0, 1.0), &device);
        let t = Tensor::<B, 1>::random([n], Distribution::Uniform(0.0, 1.0), &device);

        let whole = flow_matching_loss_with(&net, x1.clone(), x0.clone(), t.clone());
        let whole_loss = scalar(whole.clone());
        let whole_grads = GradientsParams::from_grads(whole.backward(), &net);
        let reference = flat(&net, &whole_grads);
        let mut whole_grads = whole_grads;
        let whole_norm = clip_global_norm::<B, _>(&net, &mut whole_grads, None);
        assert!(whole_norm > 0.0);

        for shards in [2, 3, 5] {
            let mut got = flow_matching_grads_with(&net, x1.clone(), x0.clone(), t.clone(), shards);
            assert!(
                (got.loss - whole_loss).abs() <= 1e-5 * whole_loss.abs(),
                "{shards} shards: loss {} vs {whole_loss}",
                got.loss
            );
            let g = flat(&net, &got.grads);
            assert_eq!(g.len(), reference.len());
            for (i, (a, b)) in g.iter().zip(&reference).enumerate() {
                assert_eq!(a.len(), b.len(), "parameter {i}: missing gradient");
                let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                assert!(scale > 0.0, "parameter {i}: zero gradient in the reference");
                for (x, y) in a.iter().zip(b) {
                    assert!(
                        (x - y).abs() <= (1e-4 + 50.0 * TEST_MATMUL_REL) * scale,
                        "{shards} shards, parameter {i}: {x} vs {y}"
                    );
                }
            }
            let norm = clip_global_norm::<B, _>(&net, &mut got.grads, None);
            assert!((norm - whole_norm).abs() <= 1e-4 * whole_norm);
        }
    }
}
