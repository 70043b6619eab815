//! Data-parallel gradients for any trainer whose loss is a mean over the batch's rows: the rows are
//! cut into contiguous blocks, each block's loss (weighted by its share of the rows) is built and
//! backpropagated on its own thread, inside a single-thread rayon pool of its own, in its own autodiff
//! graph over a copy of the network that shares the weights' storage, and the blocks' gradients are
//! summed: the gradient of the batch mean, up to the order of floating-point sums.
//!
//! On the CPU backend (flex) one graph's operations are too small at this project's sizes to keep two
//! threads busy; independent graphs are. [`shards_for`] picks the count: rayon's thread count on flex
//! (at most one block per [`MIN_SHARD_ROWS`] rows), 1 on every other backend (a GPU runs one graph's
//! kernels in order anyway; libtorch threads inside its own operations). Random draws must be made for
//! the whole batch before it is cut, so that a seed draws the same whatever the block count.
//! Users: the flow prior (`flow::shard`, which also takes gradients with respect to the points) and
//! the dit generator (`models::cond`).

use std::cell::Cell;
use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};

use burn::module::AutodiffModule;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::Tensor;
use burn::tensor::backend::{AutodiffBackend, Backend};
use rayon::{ThreadPool, ThreadPoolBuilder};

use crate::tensors::scalar;

/// Fewest rows a shard gets: below this a second graph costs more than it saves.
pub const MIN_SHARD_ROWS: usize = 32;

/// Shards for a batch of `rows` on backend `B` (the inner backend, without autodiff): rayon's thread
/// count on flex (at most one per [`MIN_SHARD_ROWS`] rows), 1 on every other backend.
pub fn shards_for<B: Backend>(rows: usize) -> usize {
    blocks_of::<B>(rows, MIN_SHARD_ROWS)
}

/// [`shards_for`] for rows that each carry more work (an image of a tokenizer: its L + 49 tokens
/// through two transformers): at most one block per `min_rows` rows.
pub fn blocks_of<B: Backend>(rows: usize, min_rows: usize) -> usize {
    if crate::backend::is_flex::<B>() {
        rayon::current_num_threads()
            .min(rows / min_rows.max(1))
            .max(1)
    } else {
        1
    }
}

/// `n` rows cut into `k` contiguous blocks whose sizes differ by at most one (no empty block).
pub fn row_blocks(n: usize, k: usize) -> Vec<Range<usize>> {
    let k = k.clamp(1, n.max(1));
    let (base, extra) = (n / k, n % k);
    let mut start = 0;
    (0..k)
        .map(|i| {
            let len = base + usize::from(i < extra);
            let r = start..start + len;
            start += len;
            r
        })
        .collect()
}

thread_local! {
    /// Set on the shard pools' threads.
    static IN_SHARD: Cell<bool> = const { Cell::new(false) };
}

/// Single-thread rayon pools, one per shard, made on first use and kept for the process.
static SHARD_POOLS: Mutex<Vec<Arc<ThreadPool>>> = Mutex::new(Vec::new());

fn shard_pools(k: usize) -> Vec<Option<Arc<ThreadPool>>> {
    let mut pools = SHARD_POOLS.lock().unwrap_or_else(PoisonError::into_inner);
    while pools.len() < k {
        let index = pools.len();
        match ThreadPoolBuilder::new()
            .num_threads(1)
            .thread_name(move |_| format!("flowprior-shard-{index}"))
            .start_handler(|_| IN_SHARD.with(|c| c.set(true)))
            .build()
        {
            Ok(p) => pools.push(Arc::new(p)),
            Err(_) => break,
        }
    }
    (0..k).map(|i| pools.get(i).cloned()).collect()
}

/// Runs `f` on every item at once, each on its own thread inside a single-thread rayon pool, and
/// returns the results in order. Inside, the backend's rayon-parallel operations (flex's matrix
/// products and element-wise kernels) see one thread and run in place: the parallelism is the shards'
/// alone, instead of every shard's products also splitting over one shared pool (which packed matrix
/// panels twice: see docs/benchmarks.md). A panic in `f` is re-raised here. Called from a shard's
/// own thread (nested), it runs the items there one after another: the pools are busy with the outer
/// call, and waiting on them would never end.
pub fn on_shard_threads<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    if IN_SHARD.with(Cell::get) {
        return items.into_iter().map(f).collect();
    }
    let pools = shard_pools(items.len());
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .into_iter()
            .zip(pools)
            .map(|(item, pool)| {
                scope.spawn(move || match pool {
                    Some(pool) => pool.install(|| f(item)),
                    None => f(item),
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

/// The mean loss over a batch of `n` rows and its parameter gradients, over `blocks` row blocks:
/// `loss(net, rows)` is the mean loss of those rows (a scalar of the graph of the `net` it is given).
/// Each block runs on its own thread ([`on_shard_threads`]) over a fresh autodiff copy of `net` (the
/// same weights and parameter ids), its loss weighted by `rows / n`; the gradients are summed. One
/// block: `loss(net, 0..n)` on `net` itself, exactly one graph.
pub fn block_grads<B, M>(
    net: &M,
    n: usize,
    blocks: usize,
    loss: impl Fn(&M, Range<usize>) -> Tensor<B, 1> + Sync,
) -> (f64, GradientsParams)
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
{
    let (grads, values) = block_parts(net, n, blocks, |worker, rows| {
        let weight = rows.len() as f64 / n as f64;
        let l = loss(worker, rows);
        let l = if weight == 1.0 { l } else { l * weight };
        let value = scalar(l.clone());
        (l, value)
    });
    (values.into_iter().sum(), grads)
}

/// The general form of [`block_grads`], for losses that are not one plain mean over the rows (terms
/// averaged over other counts) or whose blocks have more to give back: `part(net, rows)` returns the
/// block's contribution to the batch's loss (already weighted: the contributions add up to the loss)
/// and anything else the caller wants from that block's pass (values to log, detached outputs). The
/// gradients are summed over the blocks; the extras come back in block order. One block:
/// `part(net, 0..n)` on `net` itself.
pub fn block_parts<B, M, R>(
    net: &M,
    n: usize,
    blocks: usize,
    part: impl Fn(&M, Range<usize>) -> (Tensor<B, 1>, R) + Sync,
) -> (GradientsParams, Vec<R>)
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    R: Send,
{
    let ranges = row_blocks(n, blocks);
    if ranges.len() <= 1 {
        let (l, extra) = part(net, 0..n);
        return (GradientsParams::from_grads(l.backward(), net), vec![extra]);
    }
    // Fresh autodiff leaves over the same weights: each block's graph is its own, and the gradients
    // map back onto `net`'s parameters. (From `net.valid()`: a clone of an inner module would drop the
    // parameters' `require_grad`.)
    let work: Vec<(Range<usize>, M)> = ranges
        .into_iter()
        .map(|rows| (rows, M::from_inner(net.valid())))
        .collect();
    let parts = on_shard_threads(work, |(rows, worker)| {
        let (l, extra) = part(&worker, rows);
        (GradientsParams::from_grads(l.backward(), &worker), extra)
    });
    let mut sum = GradientsAccumulator::<M>::new();
    let mut extras = Vec::with_capacity(parts.len());
    for (grads, extra) in parts {
        sum.accumulate(net, grads);
        extras.push(extra);
    }
    (sum.grads(), extras)
}

/// Checks shared by the tests of every row-block step.
#[cfg(test)]
pub(crate) mod testing {
    use burn::module::{AutodiffModule, ModuleVisitor, Param};
    use burn::optim::GradientsParams;
    use burn::tensor::Tensor;
    use burn::tensor::backend::AutodiffBackend;

    /// Every parameter gradient of `m`, flattened, in visiting order (empty where there is none).
    pub fn flat_grads<B: AutodiffBackend, M: AutodiffModule<B>>(
        m: &M,
        grads: &GradientsParams,
    ) -> Vec<Vec<f64>> {
        struct Flat<'a>(&'a GradientsParams, Vec<Vec<f64>>);
        impl<B: AutodiffBackend> ModuleVisitor<B> for Flat<'_> {
            fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
                let g = self
                    .0
                    .get::<B::InnerBackend, D>(p.id)
                    .map(crate::tensors::to_host)
                    .unwrap_or_default();
                self.1.push(g);
            }
        }
        let mut v = Flat(grads, Vec::new());
        m.visit(&mut v);
        v.1
    }

    /// `got` equals `reference` (from [`flat_grads`]) parameter by parameter, up to the order of float
    /// sums: each within `1e-4 + 50 * TEST_MATMUL_REL` of its parameter's largest gradient, that scale
    /// at least a thousandth of the largest of all (some gradients are zero but for rounding: the
    /// attention keys' bias, which softmax ignores). `what` names the case in a failure.
    pub fn assert_grads_close(got: &[Vec<f64>], reference: &[Vec<f64>], what: &str) {
        let largest = reference
            .iter()
            .flatten()
            .fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(largest > 0.0, "{what}: every reference gradient is zero");
        assert_eq!(got.len(), reference.len(), "{what}: parameter count");
        let tol = 1e-4 + 50.0 * crate::backend::TEST_MATMUL_REL;
        for (i, (a, b)) in got.iter().zip(reference).enumerate() {
            assert_eq!(a.len(), b.len(), "{what}, parameter {i}: missing gradient");
            let scale = b.iter().fold(1e-3 * largest, |m, v| m.max(v.abs()));
            for (x, y) in a.iter().zip(b) {
                assert!(
                    (x - y).abs() <= tol * scale,
                    "{what}, parameter {i}: {x} vs {y}"
                );
            }
        }
    }
}
