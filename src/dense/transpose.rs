//! A row-major matrix transposed into a new contiguous buffer, in 8 x 8 tiles: each tile is eight
//! 8-value loads, an in-register transpose and eight stores on a CPU with AVX, a scalar loop elsewhere
//! and at the ragged edges. Bands of destination rows go to rayon's threads when the matrix is large.

use rayon::prelude::*;

use crate::simd::Isa;

/// Side of a tile.
const TILE: usize = 8;
/// Destination rows per band: one band's tiles write whole cache lines before moving on.
const BAND: usize = 64;
/// Below this many values the transpose stays on the calling thread.
const PARALLEL_MIN: usize = 1 << 18;

/// `src`, row-major [rows, cols], as row-major [cols, rows].
pub(crate) fn transpose(src: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    assert_eq!(
        src.len(),
        rows * cols,
        "transpose: {} values for a {rows} x {cols} matrix",
        src.len()
    );
    let mut dst = vec![0.0f32; rows * cols];
    if rows == 0 || cols == 0 {
        return dst;
    }
    let isa = Isa::current();
    let per_band = BAND * rows;
    if rayon::current_num_threads() > 1 && dst.len() >= PARALLEL_MIN {
        dst.par_chunks_mut(per_band)
            .enumerate()
            .for_each(|(i, out)| band(src, rows, cols, i * BAND, out, isa));
    } else {
        dst.chunks_mut(per_band)
            .enumerate()
            .for_each(|(i, out)| band(src, rows, cols, i * BAND, out, isa));
    }
    dst
}

/// Destination rows `first..` (source columns), as many as `out` holds (`out.len() / rows`).
fn band(src: &[f32], rows: usize, cols: usize, first: usize, out: &mut [f32], isa: Isa) {
    let width = out.len() / rows;
    for i0 in (0..rows).step_by(TILE) {
        for j0 in (0..width).step_by(TILE) {
            let (h, w) = (TILE.min(rows - i0), TILE.min(width - j0));
            let from = i0 * cols + first + j0;
            let to = j0 * rows + i0;
            if h == TILE && w == TILE && tile(isa, &src[from..], cols, &mut out[to..], rows) {
                continue;
            }
            for i in 0..h {
                for j in 0..w {
                    out[to + j * rows + i] = src[from + i * cols + j];
                }
            }
        }
    }
}

/// One full tile with vector instructions: `src[i * ss + j]` to `dst[j * ds + i]` for i, j < 8.
/// False (nothing written) on a CPU without AVX.
fn tile(isa: Isa, src: &[f32], ss: usize, dst: &mut [f32], ds: usize) -> bool {
    assert!(src.len() > 7 * ss + 7 && dst.len() > 7 * ds + 7);
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx512 => {
            // SAFETY: the CPU has AVX (both sets imply it); the assert keeps the eight rows read and
            // the eight rows written inside the slices.
            unsafe { x86::tile(src.as_ptr(), ss, dst.as_mut_ptr(), ds) };
            true
        }
        _ => false,
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// The classic 8 x 8 transpose in AVX registers: interleave pairs of rows, then pairs of pairs,
    /// then exchange 128-bit halves.
    #[target_feature(enable = "avx")]
    pub(super) unsafe fn tile(src: *const f32, ss: usize, dst: *mut f32, ds: usize) {
        // SAFETY (for every load and store): the caller guarantees rows 0..8 of 8 values at stride
        // `ss` (source) and `ds` (destination) are in bounds.
        unsafe {
            let r: [__m256; 8] = std::array::from_fn(|i| _mm256_loadu_ps(src.add(i * ss)));
            let t = [
                _mm256_unpacklo_ps(r[0], r[1]),
                _mm256_unpackhi_ps(r[0], r[1]),
                _mm256_unpacklo_ps(r[2], r[3]),
                _mm256_unpackhi_ps(r[2], r[3]),
                _mm256_unpacklo_ps(r[4], r[5]),
                _mm256_unpackhi_ps(r[4], r[5]),
                _mm256_unpacklo_ps(r[6], r[7]),
                _mm256_unpackhi_ps(r[6], r[7]),
            ];
            let s = [
                _mm256_shuffle_ps::<0x44>(t[0], t[2]),
                _mm256_shuffle_ps::<0xEE>(t[0], t[2]),
                _mm256_shuffle_ps::<0x44>(t[1], t[3]),
                _mm256_shuffle_ps::<0xEE>(t[1], t[3]),
                _mm256_shuffle_ps::<0x44>(t[4], t[6]),
                _mm256_shuffle_ps::<0xEE>(t[4], t[6]),
                _mm256_shuffle_ps::<0x44>(t[5], t[7]),
                _mm256_shuffle_ps::<0xEE>(t[5], t[7]),
            ];
            for i in 0..4 {
                _mm256_storeu_ps(
                    dst.add(i * ds),
                    _mm256_permute2f128_ps::<0x20>(s[i], s[i + 4]),
                );
                _mm256_storeu_ps(
                    dst.add((i + 4) * ds),
                    _mm256_permute2f128_ps::<0x31>(s[i], s[i + 4]),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the definition `y[j][i] = x[i][j]`, on every instruction set this CPU has, for
    /// shapes with and without ragged tiles, below and above the parallel threshold.
    #[test]
    fn every_value_lands_at_its_transposed_index() {
        for (rows, cols) in [
            (1, 1),
            (8, 8),
            (3, 17),
            (17, 3),
            (64, 72),
            (130, 9),
            (520, 530),
        ] {
            let x: Vec<f32> = (0..rows * cols).map(|v| v as f32).collect();
            for isa in Isa::available() {
                let mut y = vec![f32::NAN; rows * cols];
                for (b, out) in y.chunks_mut(BAND * rows).enumerate() {
                    band(&x, rows, cols, b * BAND, out, isa);
                }
                for i in 0..rows {
                    for j in 0..cols {
                        assert_eq!(
                            y[j * rows + i],
                            x[i * cols + j],
                            "{rows}x{cols} {isa:?} [{i},{j}]"
                        );
                    }
                }
            }
            let y = transpose(&x, rows, cols);
            assert_eq!(transpose(&y, cols, rows), x, "{rows}x{cols} twice");
        }
    }
}
