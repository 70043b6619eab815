//! Batched convolutions on plain slices: per sample, the image's columns ([`Geometry`]) and one
//! matrix product with the weights (gemm's kernels for the CPU's instruction set), samples split into
//! one block per rayon thread, each block with its own column buffer and weight-gradient partial sum.
//!
//! Shapes (row-major, `n` samples, `g` the geometry of the image side, `p = g.positions()`):
//! * convolution: `x [n, g.image_len()]`, `w [c_out, g.rows()]`, `y [n, c_out, p]`;
//! * transposed convolution: `x [n, c_in, p]`, `w [c_in, g.rows()]`, `y [n, g.image_len()]`.

use rayon::prelude::*;

use super::geometry::Geometry;

/// A row-major matrix operand, or the transpose of one.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a> {
    data: &'a [f32],
    transposed: bool,
}

pub(crate) fn plain(data: &[f32]) -> Mat<'_> {
    Mat {
        data,
        transposed: false,
    }
}

pub(crate) fn transposed(data: &[f32]) -> Mat<'_> {
    Mat {
        data,
        transposed: true,
    }
}

/// `c [m, n] = a [m, k] b [k, n]`, or `c += a b` with `accumulate`; an operand marked transposed is
/// stored as its transpose (`[k, m]` for `a`, `[n, k]` for `b`). One thread.
pub(crate) fn matmul(
    c: &mut [f32],
    a: Mat<'_>,
    b: Mat<'_>,
    [m, n, k]: [usize; 3],
    accumulate: bool,
) {
    assert!(c.len() >= m * n && a.data.len() >= m * k && b.data.len() >= k * n);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c[..m * n].fill(0.0);
        }
        return;
    }
    // (row stride, column stride) of each operand.
    let (a_rs, a_cs) = if a.transposed { (1, m) } else { (k, 1) };
    let (b_rs, b_cs) = if b.transposed { (1, k) } else { (n, 1) };
    // SAFETY: the asserts above keep every index the strides reach inside the three slices, and `c`
    // is borrowed mutably, so it overlaps neither operand.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.data.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.data.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// The columns of `image`: the image itself for an identity geometry, else written into `buf`.
fn columns<'a>(g: &Geometry, image: &'a [f32], buf: &'a mut Vec<f32>) -> &'a [f32] {
    if g.is_identity() {
        return image;
    }
    buf.resize(g.rows() * g.positions(), 0.0);
    g.im2col(image, buf);
    buf
}

/// Sample blocks: one per rayon thread (at least one sample each).
fn blocks(n: usize) -> usize {
    rayon::current_num_threads().clamp(1, n.max(1))
}

/// Runs `f(first sample, samples)` over [`blocks`] blocks of `n` samples in parallel, each writing its
/// own part of `out` (`per` values a sample), and returns what each block returned, in order.
fn per_block<R: Send>(
    n: usize,
    out: &mut [f32],
    per: usize,
    f: impl Fn(usize, usize, &mut [f32]) -> R + Sync,
) -> Vec<R> {
    let size = n.div_ceil(blocks(n)).max(1);
    if per == 0 {
        return (0..n.div_ceil(size))
            .map(|b| f(b * size, size.min(n - b * size), &mut []))
            .collect();
    }
    out.par_chunks_mut(size * per)
        .enumerate()
        .map(|(b, o)| f(b * size, o.len() / per, o))
        .collect()
}

/// Adds each row of partial sums into the first.
fn sum_into(parts: Vec<Vec<f32>>) -> Vec<f32> {
    let mut it = parts.into_iter();
    let mut total = it.next().unwrap_or_default();
    for p in it {
        for (t, v) in total.iter_mut().zip(p) {
            *t += v;
        }
    }
    total
}

/// Adds `bias[c]` to every value of channel `c` of each `[channels, len]` sample of `y`.
fn add_bias(y: &mut [f32], bias: &[f32], len: usize) {
    if len == 0 {
        return;
    }
    for (i, plane) in y.chunks_mut(len).enumerate() {
        let b = bias[i % bias.len()];
        plane.iter_mut().for_each(|v| *v += b);
    }
}

/// Sum over samples and positions of each channel of `dy` (`[n, channels, len]`).
fn channel_sums(dy: &[f32], channels: usize, len: usize) -> Vec<f32> {
    let mut db = vec![0.0f32; channels];
    if len == 0 {
        return db;
    }
    for (i, plane) in dy.chunks(len).enumerate() {
        db[i % channels] += plane.iter().sum::<f32>();
    }
    db
}

/// Convolution forward: `y[i] = w . cols(x[i]) + bias`.
pub(crate) fn conv(
    g: &Geometry,
    c_out: usize,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
) -> Vec<f32> {
    let (rows, p, img) = (g.rows(), g.positions(), g.image_len());
    let n = x.len() / img.max(1);
    let mut y = vec![0.0f32; n * c_out * p];
    per_block(n, &mut y, c_out * p, |first, count, out| {
        let mut buf = Vec::new();
        for s in 0..count {
            let i = first + s;
            let cols = columns(g, &x[i * img..(i + 1) * img], &mut buf);
            let ys = &mut out[s * c_out * p..(s + 1) * c_out * p];
            matmul(ys, plain(w), plain(cols), [c_out, p, rows], false);
        }
    });
    if let Some(b) = bias {
        add_bias(&mut y, b, p);
    }
    y
}

/// What a backward pass computes: the input's, the weight's and the bias's gradients, each only where
/// asked for.
pub(crate) struct Grads {
    pub x: Option<Vec<f32>>,
    pub w: Option<Vec<f32>>,
    pub bias: Option<Vec<f32>>,
}

/// Which gradients to compute.
#[derive(Clone, Copy)]
pub(crate) struct Wanted {
    pub x: bool,
    pub w: bool,
    pub bias: bool,
}

/// The walk both backward passes share: the `n` samples in one block per rayon thread, each block
/// with its own column buffer and weight-gradient partial sum (`dw_len` values), the partial sums added
/// at the end. `sample(i, cols, dw, first, dx_i)` does sample `i` (`first`: the block's first, whose
/// weight gradient overwrites rather than adds), `dx_i` its `dx_len` input-gradient values (empty unless
/// `want.x`). Returns the input and weight gradients asked for.
fn backward_samples(
    n: usize,
    dx_len: usize,
    dw_len: usize,
    want: Wanted,
    sample: impl Fn(usize, &mut Vec<f32>, &mut [f32], bool, &mut [f32]) + Sync,
) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    let per = if want.x { dx_len } else { 0 };
    let mut dx = vec![0.0f32; n * per];
    let dws = per_block(n, &mut dx, per, |first, count, out| {
        let mut cols = Vec::new();
        let mut dw = vec![0.0f32; if want.w { dw_len } else { 0 }];
        if want.x || want.w {
            for s in 0..count {
                let dxi = &mut out[s * per..(s + 1) * per];
                sample(first + s, &mut cols, &mut dw, s == 0, dxi);
            }
        }
        dw
    });
    (want.x.then_some(dx), want.w.then(|| sum_into(dws)))
}

/// Convolution backward from `dy [n, c_out, p]`: `dx[i] = col2im(w^T dy[i])`,
/// `dw = sum_i dy[i] cols(x[i])^T`, `dbias = sum over samples and positions of dy`.
pub(crate) fn conv_backward(
    g: &Geometry,
    c_out: usize,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    want: Wanted,
) -> Grads {
    let (rows, p, img) = (g.rows(), g.positions(), g.image_len());
    let n = x.len() / img.max(1);
    let (dx, dw) = backward_samples(n, img, c_out * rows, want, |i, cols, dw, first, dxi| {
        let dyi = &dy[i * c_out * p..(i + 1) * c_out * p];
        if want.w {
            let xc = columns(g, &x[i * img..(i + 1) * img], cols);
            matmul(dw, plain(dyi), transposed(xc), [c_out, rows, p], !first);
        }
        if want.x {
            cols.resize(rows * p, 0.0);
            matmul(cols, transposed(w), plain(dyi), [rows, p, c_out], false);
            g.col2im_add(cols, dxi);
        }
    });
    Grads {
        x: dx,
        w: dw,
        bias: want.bias.then(|| channel_sums(dy, c_out, p)),
    }
}

/// Transposed convolution forward: `y[i] = col2im(w^T x[i]) + bias`.
pub(crate) fn conv_transpose(
    g: &Geometry,
    c_in: usize,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
) -> Vec<f32> {
    let (rows, p, img) = (g.rows(), g.positions(), g.image_len());
    let n = x.len() / (c_in * p).max(1);
    let mut y = vec![0.0f32; n * img];
    per_block(n, &mut y, img, |first, count, out| {
        let mut cols = vec![0.0f32; rows * p];
        for s in 0..count {
            let i = first + s;
            let xi = &x[i * c_in * p..(i + 1) * c_in * p];
            matmul(&mut cols, transposed(w), plain(xi), [rows, p, c_in], false);
            g.col2im_add(&cols, &mut out[s * img..(s + 1) * img]);
        }
    });
    if let Some(b) = bias {
        add_bias(&mut y, b, g.input[0] * g.input[1]);
    }
    y
}

/// Transposed convolution backward from `dy [n, g.image_len()]`: `dx[i] = w cols(dy[i])`,
/// `dw = sum_i x[i] cols(dy[i])^T`, `dbias` the channel sums of `dy`.
pub(crate) fn conv_transpose_backward(
    g: &Geometry,
    c_in: usize,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    want: Wanted,
) -> Grads {
    let (rows, p, img) = (g.rows(), g.positions(), g.image_len());
    let n = x.len() / (c_in * p).max(1);
    let (dx, dw) = backward_samples(n, c_in * p, c_in * rows, want, |i, cols, dw, first, dxi| {
        let dc = columns(g, &dy[i * img..(i + 1) * img], cols);
        if want.x {
            matmul(dxi, plain(w), plain(dc), [c_in, p, rows], false);
        }
        if want.w {
            let xi = &x[i * c_in * p..(i + 1) * c_in * p];
            matmul(dw, plain(xi), transposed(dc), [c_in, rows, p], !first);
        }
    });
    Grads {
        x: dx,
        w: dw,
        bias: want
            .bias
            .then(|| channel_sums(dy, g.channels, g.input[0] * g.input[1])),
    }
}
