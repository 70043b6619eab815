//! 2-d max and average pools for inference on the CPU backend, each plane pooled separably.
//!
//! Flex pools each output value by walking its window through a generic index iterator: in the FID
//! Inception-v3 the 3x3 pools (stride 1 before each block's pool branch, stride 2 between blocks)
//! took about a quarter of the forward pass. A square window's maximum, or sum, is the maximum (sum)
//! over its rows of the maximum (sum) along each row, so here every plane is reduced along its rows
//! first and along its columns second, two short loops per output value, planes in parallel. Padding
//! is never part of a window: a maximum skips it and an average divides by the values inside the
//! image (PyTorch's `count_include_pad=False`). [`max_pool2d`] and [`avg_pool2d`] are what the models
//! call: on `Flex` these kernels (f32), on every other backend (`Autodiff<Flex>` included: the
//! kernels have no backward pass) Burn's own pools.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// The reduction of a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pool {
    Max,
    /// The mean of the window's values inside the image.
    Mean,
}

/// A square `k` x `k` window moved by `stride`, with `pad` on every side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
}

impl Window {
    /// Output length along an axis of `len` values (PyTorch's floor rule); 0 when the window does
    /// not fit.
    pub(crate) fn out_len(&self, len: usize) -> usize {
        let span = len + 2 * self.pad;
        if span < self.k || self.stride == 0 {
            0
        } else {
            (span - self.k) / self.stride + 1
        }
    }

    /// The input indices of output index `o` along an axis of `len` values, padding left out.
    fn range(&self, o: usize, len: usize) -> std::ops::Range<usize> {
        let start = (o * self.stride).saturating_sub(self.pad);
        let end = (o * self.stride + self.k).saturating_sub(self.pad).min(len);
        start..end.max(start)
    }
}

/// `max_pool2d(x, [k, k], [stride, stride], [pad, pad], [1, 1], false)`, fast on flex (module docs).
pub fn max_pool2d<B: Backend>(
    x: Tensor<B, 4>,
    k: usize,
    stride: usize,
    pad: usize,
) -> Tensor<B, 4> {
    pool2d(x, Pool::Max, Window { k, stride, pad })
}

/// `avg_pool2d(x, [k, k], [stride, stride], [pad, pad], false, false)` (padding not counted), fast
/// on flex (module docs).
pub fn avg_pool2d<B: Backend>(
    x: Tensor<B, 4>,
    k: usize,
    stride: usize,
    pad: usize,
) -> Tensor<B, 4> {
    pool2d(x, Pool::Mean, Window { k, stride, pad })
}

/// `pool` over windows `win`: the kernels on flex, Burn's pool elsewhere.
fn pool2d<B: Backend>(x: Tensor<B, 4>, pool: Pool, win: Window) -> Tensor<B, 4> {
    #[cfg(feature = "flex")]
    let x = match flex::apply(x, pool, win) {
        Ok(y) => return y,
        Err(x) => x,
    };
    let Window { k, stride, pad } = win;
    let (k, s, p) = ([k, k], [stride, stride], [pad, pad]);
    match pool {
        Pool::Max => burn::tensor::module::max_pool2d(x, k, s, p, [1, 1], false),
        Pool::Mean => burn::tensor::module::avg_pool2d(x, k, s, p, false, false),
    }
}

/// Pools every `[h, w]` plane of `x` (row-major planes, one after another): the output planes,
/// `[oh, ow]` each, and their size.
pub(crate) fn pool_planes(
    x: &[f32],
    [h, w]: [usize; 2],
    pool: Pool,
    win: Window,
) -> (Vec<f32>, [usize; 2]) {
    use rayon::prelude::*;
    let (oh, ow) = (win.out_len(h), win.out_len(w));
    let plane = h * w;
    let planes = x.len().checked_div(plane).unwrap_or(0);
    let mut y = vec![0.0f32; planes * oh * ow];
    if oh == 0 || ow == 0 {
        return (y, [oh, ow]);
    }
    let cols: Vec<std::ops::Range<usize>> = (0..ow).map(|o| win.range(o, w)).collect();
    let rows: Vec<std::ops::Range<usize>> = (0..oh).map(|o| win.range(o, h)).collect();
    let one = |xs: &[f32], ys: &mut [f32], along: &mut Vec<f32>| {
        // Along each row: [h, ow].
        along.clear();
        for r in xs.chunks_exact(w) {
            along.extend(cols.iter().map(|c| reduce(pool, &r[c.clone()])));
        }
        // Along each column of that, then the mean's divisor.
        for (oy, rr) in rows.iter().enumerate() {
            let out = &mut ys[oy * ow..(oy + 1) * ow];
            match pool {
                Pool::Max => out.fill(f32::NEG_INFINITY),
                Pool::Mean => out.fill(0.0),
            }
            for y in rr.clone() {
                let a = &along[y * ow..(y + 1) * ow];
                for (o, &v) in out.iter_mut().zip(a) {
                    *o = match pool {
                        Pool::Max => o.max(v),
                        Pool::Mean => *o + v,
                    };
                }
            }
            if pool == Pool::Mean {
                for (o, c) in out.iter_mut().zip(&cols) {
                    *o /= (rr.len() * c.len()).max(1) as f32;
                }
            }
        }
    };
    let work = planes * plane;
    if rayon::current_num_threads() > 1 && planes > 1 && work >= 1 << 15 {
        y.par_chunks_mut(oh * ow)
            .zip(x.par_chunks(plane))
            .for_each_init(Vec::new, |along, (ys, xs)| one(xs, ys, along));
    } else {
        let mut along = Vec::new();
        for (ys, xs) in y.chunks_mut(oh * ow).zip(x.chunks(plane)) {
            one(xs, ys, &mut along);
        }
    }
    (y, [oh, ow])
}

/// The maximum or the sum of `v` (-inf / 0 for none).
#[inline(always)]
fn reduce(pool: Pool, v: &[f32]) -> f32 {
    match pool {
        Pool::Max => v.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)),
        Pool::Mean => v.iter().sum(),
    }
}

#[cfg(feature = "flex")]
mod flex {
    //! The kernels on flex's tensors.
    use burn::backend::Flex;
    use burn::tensor::backend::Backend;
    use burn::tensor::{DType, Tensor, TensorData, TensorMetadata, TensorPrimitive};

    use super::{Pool, Window};
    use crate::tensors::downcast as cast;

    /// The pool on `Flex` for f32; the input back elsewhere.
    pub(super) fn apply<B: Backend>(
        x: Tensor<B, 4>,
        pool: Pool,
        win: Window,
    ) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
        if x.dtype() != DType::F32 {
            return Err(x);
        }
        let x = cast::<Tensor<B, 4>, Tensor<Flex, 4>>(x)?
            .into_primitive()
            .tensor();
        let x = x.to_contiguous();
        let [n, c, h, w] = x.shape().dims::<4>();
        let (y, [oh, ow]) =
            super::pool_planes(&x.storage::<f32>()[..n * c * h * w], [h, w], pool, win);
        let y = burn_flex::FlexTensor::from_data(TensorData::new(y, [n, c, oh, ow]));
        cast(Tensor::<Flex, 4>::from_primitive(TensorPrimitive::Float(y)))
            .map_err(|_| unreachable!("B is Flex"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::TestBackend as B;
    use crate::tensors::to_host;
    use burn::tensor::Distribution;

    /// Each output against its window summed or maximised from the definition (padding left out),
    /// for the Inception's windows and a few others, odd sizes included.
    #[test]
    fn pools_equal_their_definition() {
        let (h, w) = (9usize, 7usize);
        let x: Vec<f32> = (0..2 * h * w)
            .map(|i| ((i * 37) % 23) as f32 - 11.0)
            .collect();
        for (k, stride, pad) in [
            (3, 1, 1),
            (3, 2, 0),
            (2, 2, 0),
            (3, 2, 1),
            (5, 3, 2),
            (1, 1, 0),
        ] {
            let win = Window { k, stride, pad };
            for pool in [Pool::Max, Pool::Mean] {
                let (y, [oh, ow]) = pool_planes(&x, [h, w], pool, win);
                assert_eq!(
                    [oh, ow],
                    [
                        (h + 2 * pad - k) / stride + 1,
                        (w + 2 * pad - k) / stride + 1
                    ]
                );
                for p in 0..2 {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let mut vals = Vec::new();
                            for dy in 0..k {
                                for dx in 0..k {
                                    let (iy, ix) = (
                                        (oy * stride + dy) as i64 - pad as i64,
                                        (ox * stride + dx) as i64 - pad as i64,
                                    );
                                    if (0..h as i64).contains(&iy) && (0..w as i64).contains(&ix) {
                                        vals.push(f64::from(
                                            x[p * h * w + iy as usize * w + ix as usize],
                                        ));
                                    }
                                }
                            }
                            let want = match pool {
                                Pool::Max => vals.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
                                Pool::Mean => vals.iter().sum::<f64>() / vals.len() as f64,
                            };
                            let got = f64::from(y[(p * oh + oy) * ow + ox]);
                            assert!(
                                (got - want).abs() < 1e-5,
                                "{pool:?} k{k} s{stride} p{pad} [{p},{oy},{ox}]: {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// The tensor functions equal Burn's pools (padding not counted by the average).
    #[test]
    fn tensor_pools_equal_burns() {
        let device = Default::default();
        let x = Tensor::<B, 4>::random([2, 3, 11, 10], Distribution::Normal(0.0, 1.0), &device);
        for (k, stride, pad) in [(3, 1, 1), (3, 2, 0)] {
            let ours = to_host(max_pool2d(x.clone(), k, stride, pad));
            let burns = to_host(burn::tensor::module::max_pool2d(
                x.clone(),
                [k, k],
                [stride, stride],
                [pad, pad],
                [1, 1],
                false,
            ));
            assert_eq!(ours, burns, "max k{k} s{stride} p{pad}");
            let ours = to_host(avg_pool2d(x.clone(), k, stride, pad));
            let burns = to_host(burn::tensor::module::avg_pool2d(
                x.clone(),
                [k, k],
                [stride, stride],
                [pad, pad],
                false,
                false,
            ));
            assert_eq!(ours.len(), burns.len());
            for (a, b) in ours.iter().zip(&burns) {
                assert!(
                    (a - b).abs() < 1e-6,
                    "avg k{k} s{stride} p{pad}: {a} vs {b}"
                );
            }
        }
    }
}
