//! The geometry of a 2-d convolution over one image, and the two maps between the image and its
//! columns (im2col and its adjoint col2im), on plain slices.
//!
//! An image of `channels x height x width` values (row-major, one sample) seen through a
//! `kernel[0] x kernel[1]` window at `stride`, with `padding` zeros on each side, has
//! `out = (in + 2 padding - kernel) / stride + 1` window positions per axis. Its columns are a
//! `rows() x positions()` matrix, `rows = channels kernel[0] kernel[1]` in the order
//! (channel, kernel row, kernel column), each column the window's values at one position (zeros where
//! it reaches the padding). A convolution is then `weight [c_out, rows] . columns`, and a transposed
//! convolution the adjoint, `col2im(weight^T . x)`.

/// One sample's convolution geometry (dilation 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub channels: usize,
    pub input: [usize; 2],
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
}

impl Geometry {
    /// Whether the columns are the image itself (a 1x1 window at stride 1 without padding).
    pub fn is_identity(&self) -> bool {
        self.kernel == [1, 1] && self.stride == [1, 1] && self.padding == [0, 0]
    }

    /// Window positions per axis; None when the window does not fit even once.
    pub fn output(&self) -> Option<[usize; 2]> {
        let axis = |i: usize| {
            let span = self.input[i] + 2 * self.padding[i];
            (self.stride[i] > 0 && span >= self.kernel[i])
                .then(|| (span - self.kernel[i]) / self.stride[i] + 1)
        };
        Some([axis(0)?, axis(1)?])
    }

    /// Rows of the column matrix: channels x kernel height x kernel width.
    pub fn rows(&self) -> usize {
        self.channels * self.kernel[0] * self.kernel[1]
    }

    /// Values of one image.
    pub fn image_len(&self) -> usize {
        self.channels * self.input[0] * self.input[1]
    }

    /// Window positions (columns of the column matrix).
    pub fn positions(&self) -> usize {
        self.output().map_or(0, |[h, w]| h * w)
    }

    /// For kernel offset `k` on axis `axis`: the output positions `o` whose input coordinate
    /// `o stride + k - padding` lies inside the image, as a range.
    fn valid(&self, axis: usize, k: usize, out: usize) -> std::ops::Range<usize> {
        let (s, p, n) = (self.stride[axis], self.padding[axis], self.input[axis]);
        // o s + k >= p  <=>  o >= ceil((p - k) / s)
        let lo = if k >= p { 0 } else { (p - k).div_ceil(s) };
        // o s + k - p < n  <=>  o s < n + p - k
        let hi = if n + p <= k {
            0
        } else {
            (n + p - k).div_ceil(s)
        };
        lo.min(out)..hi.min(out)
    }

    /// Calls `f(span)` for every row of the column matrix and every window row `y` whose input row
    /// lies inside the image: the walk that [`Geometry::im2col`] and its adjoint share.
    fn spans(&self, mut f: impl FnMut(Span)) {
        let Some([oh, ow]) = self.output() else {
            return;
        };
        let mut row = 0;
        for channel in 0..self.channels {
            for ki in 0..self.kernel[0] {
                let ys = self.valid(0, ki, oh);
                for kj in 0..self.kernel[1] {
                    let xs = self.valid(1, kj, ow);
                    for y in ys.clone() {
                        f(Span {
                            row,
                            channel,
                            y,
                            iy: y * self.stride[0] + ki - self.padding[0],
                            xs: xs.clone(),
                            kj,
                        });
                    }
                    row += 1;
                }
            }
        }
    }

    /// The input column of output column `x` at kernel column `kj`.
    #[inline(always)]
    fn ix(&self, x: usize, kj: usize) -> usize {
        x * self.stride[1] + kj - self.padding[1]
    }

    /// Writes the columns of `image` (`image_len()` values) into `cols` (`rows() x positions()`).
    pub fn im2col(&self, image: &[f32], cols: &mut [f32]) {
        let ([h, w], p) = (self.input, self.positions());
        let ow = self.output().map_or(0, |o| o[1]);
        assert!(image.len() >= self.image_len() && cols.len() >= self.rows() * p);
        cols[..self.rows() * p].fill(0.0);
        self.spans(|s| {
            let src = &image[(s.channel * h + s.iy) * w..(s.channel * h + s.iy + 1) * w];
            let dst = &mut cols[s.row * p + s.y * ow..s.row * p + (s.y + 1) * ow];
            if self.stride[1] == 1 {
                let x0 = self.ix(s.xs.start, s.kj);
                dst[s.xs.clone()].copy_from_slice(&src[x0..x0 + s.xs.len()]);
            } else {
                for x in s.xs {
                    dst[x] = src[self.ix(x, s.kj)];
                }
            }
        });
    }

    /// Adds the adjoint of [`Geometry::im2col`] of `cols` to `image`: each column value goes back to
    /// the pixel it was read from (values read from the padding are dropped).
    pub fn col2im_add(&self, cols: &[f32], image: &mut [f32]) {
        let ([h, w], p) = (self.input, self.positions());
        let ow = self.output().map_or(0, |o| o[1]);
        assert!(image.len() >= self.image_len() && cols.len() >= self.rows() * p);
        self.spans(|s| {
            let dst = &mut image[(s.channel * h + s.iy) * w..(s.channel * h + s.iy + 1) * w];
            let src = &cols[s.row * p + s.y * ow..s.row * p + (s.y + 1) * ow];
            if self.stride[1] == 1 {
                let x0 = self.ix(s.xs.start, s.kj);
                for (d, v) in dst[x0..x0 + s.xs.len()].iter_mut().zip(&src[s.xs.clone()]) {
                    *d += v;
                }
            } else {
                for x in s.xs {
                    dst[self.ix(x, s.kj)] += src[x];
                }
            }
        });
    }
}

/// One window row of one column-matrix row: column-matrix row `row` (of `channel`, kernel column
/// `kj`), window row `y` reading input row `iy`, at the window columns `xs` that lie inside the image.
struct Span {
    row: usize,
    channel: usize,
    y: usize,
    iy: usize,
    xs: std::ops::Range<usize>,
    kj: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geometries() -> Vec<Geometry> {
        let g = |channels, input, kernel, stride, padding| Geometry {
            channels,
            input,
            kernel,
            stride,
            padding,
        };
        vec![
            g(1, [28, 28], [4, 4], [2, 2], [1, 1]),
            g(3, [7, 5], [3, 3], [1, 1], [1, 1]),
            g(2, [6, 9], [1, 1], [1, 1], [0, 0]),
            g(2, [5, 6], [3, 2], [2, 3], [2, 1]),
            g(1, [4, 4], [5, 5], [1, 1], [3, 3]),
        ]
    }

    /// The window value at (row, position) read straight from the definition.
    fn window(g: &Geometry, image: &[f32], row: usize, pos: usize) -> f32 {
        let [_, ow] = g.output().expect("fits");
        let (c, k) = (
            row / (g.kernel[0] * g.kernel[1]),
            row % (g.kernel[0] * g.kernel[1]),
        );
        let (ki, kj) = (k / g.kernel[1], k % g.kernel[1]);
        let (y, x) = (pos / ow, pos % ow);
        let iy = (y * g.stride[0] + ki) as isize - g.padding[0] as isize;
        let ix = (x * g.stride[1] + kj) as isize - g.padding[1] as isize;
        let [h, w] = g.input;
        if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
            0.0
        } else {
            image[c * h * w + iy as usize * w + ix as usize]
        }
    }

    #[test]
    fn output_size_follows_the_convolution_formula() {
        let g = geometries();
        assert_eq!(g[0].output(), Some([14, 14]));
        assert_eq!(g[1].output(), Some([7, 5]));
        assert_eq!(g[3].output(), Some([4, 3])); // (5 + 4 - 3) / 2 + 1, (6 + 2 - 2) / 3 + 1
        let too_small = Geometry {
            channels: 1,
            input: [2, 2],
            kernel: [5, 5],
            stride: [1, 1],
            padding: [0, 0],
        };
        assert_eq!((too_small.output(), too_small.positions()), (None, 0));
    }

    #[test]
    fn columns_hold_each_windows_values_with_zeros_in_the_padding() {
        for g in geometries() {
            let image: Vec<f32> = (0..g.image_len()).map(|i| 1.0 + i as f32).collect();
            let p = g.positions();
            let mut cols = vec![f32::NAN; g.rows() * p];
            g.im2col(&image, &mut cols);
            for r in 0..g.rows() {
                for q in 0..p {
                    assert_eq!(cols[r * p + q], window(&g, &image, r, q), "{g:?} {r} {q}");
                }
            }
        }
    }

    #[test]
    fn col2im_is_the_adjoint_of_im2col() {
        // <im2col(a), b> = <a, col2im(b)> for arbitrary a, b.
        for g in geometries() {
            let a: Vec<f32> = (0..g.image_len())
                .map(|i| ((i * 7) % 11) as f32 - 5.0)
                .collect();
            let n = g.rows() * g.positions();
            let b: Vec<f32> = (0..n).map(|i| ((i * 5) % 13) as f32 - 6.0).collect();
            let mut cols = vec![0.0; n];
            g.im2col(&a, &mut cols);
            let left: f64 = cols.iter().zip(&b).map(|(x, y)| f64::from(x * y)).sum();
            let mut back = vec![0.0; g.image_len()];
            g.col2im_add(&b, &mut back);
            let right: f64 = a.iter().zip(&back).map(|(x, y)| f64::from(x * y)).sum();
            assert_eq!(left, right, "{g:?}");
        }
    }
}
