//! Small dense linear algebra in f64 on the host: means and covariances, and the eigen-decomposition of
//! a symmetric matrix (cyclic Jacobi rotations: slow for large d, but accurate to machine precision,
//! which is what Frechet distances and PCA need). Matrices are row-major `Vec<f64>` of n x n.

use rayon::prelude::*;

/// Mean (length d) and unbiased covariance (d x d, divided by n - 1) of `n` rows of `d` values.
pub fn mean_cov(rows: &[f32], d: usize) -> (Vec<f64>, Vec<f64>) {
    let n = rows.len() / d.max(1);
    let mut mean = vec![0f64; d];
    for r in rows.chunks_exact(d) {
        for (m, &x) in mean.iter_mut().zip(r) {
            *m += f64::from(x);
        }
    }
    for m in &mut mean {
        *m /= n.max(1) as f64;
    }
    // Row-parallel accumulation of the upper triangle of the centred scatter matrix.
    let scatter: Vec<f64> = rows
        .par_chunks(d * 256)
        .map(|block| {
            let mut s = vec![0f64; d * d];
            let mut c = vec![0f64; d];
            for r in block.chunks_exact(d) {
                for (ci, (&x, m)) in c.iter_mut().zip(r.iter().zip(&mean)) {
                    *ci = f64::from(x) - m;
                }
                for i in 0..d {
                    let ci = c[i];
                    let row = &mut s[i * d..(i + 1) * d];
                    for j in i..d {
                        row[j] += ci * c[j];
                    }
                }
            }
            s
        })
        .reduce(
            || vec![0f64; d * d],
            |mut a, b| {
                for (x, y) in a.iter_mut().zip(b) {
                    *x += y;
                }
                a
            },
        );
    let denom = (n.max(2) - 1) as f64;
    let mut cov = vec![0f64; d * d];
    for i in 0..d {
        for j in i..d {
            let v = scatter[i * d + j] / denom;
            cov[i * d + j] = v;
            cov[j * d + i] = v;
        }
    }
    (mean, cov)
}

/// Eigenvalues (ascending) and eigenvectors (column k of the returned row-major matrix belongs to
/// value k) of the symmetric n x n matrix `a`.
pub fn sym_eigen(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut m = a.to_vec();
    let mut v = vec![0f64; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    let off = |m: &[f64]| -> f64 {
        let mut s = 0.0;
        for i in 0..n {
            for j in 0..n {
                if i != j {
                    s += m[i * n + j] * m[i * n + j];
                }
            }
        }
        s
    };
    let scale: f64 = m.iter().map(|x| x * x).sum::<f64>().max(f64::MIN_POSITIVE);
    for _sweep in 0..100 {
        if off(&m) <= 1e-30 * scale {
            break;
        }
        for p in 0..n {
            for q in (p + 1)..n {
                let apq = m[p * n + q];
                if apq.abs() <= f64::MIN_POSITIVE {
                    continue;
                }
                let (app, aqq) = (m[p * n + p], m[q * n + q]);
                let theta = (aqq - app) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                // Rotate rows/columns p and q of m, and columns of v.
                for k in 0..n {
                    let (mkp, mkq) = (m[k * n + p], m[k * n + q]);
                    m[k * n + p] = c * mkp - s * mkq;
                    m[k * n + q] = s * mkp + c * mkq;
                }
                for k in 0..n {
                    let (mpk, mqk) = (m[p * n + k], m[q * n + k]);
                    m[p * n + k] = c * mpk - s * mqk;
                    m[q * n + k] = s * mpk + c * mqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| m[i * n + i].total_cmp(&m[j * n + j]));
    let values = order.iter().map(|&i| m[i * n + i]).collect();
    let mut vectors = vec![0f64; n * n];
    for (k, &i) in order.iter().enumerate() {
        for r in 0..n {
            vectors[r * n + k] = v[r * n + i];
        }
    }
    (values, vectors)
}

/// The symmetric square root of a symmetric positive semi-definite matrix (negative eigenvalues from
/// round-off are clamped to 0).
pub fn sym_sqrt(a: &[f64], n: usize) -> Vec<f64> {
    let (vals, vecs) = sym_eigen(a, n);
    let mut out = vec![0f64; n * n];
    for (k, &l) in vals.iter().enumerate() {
        let s = l.max(0.0).sqrt();
        for i in 0..n {
            let vik = vecs[i * n + k] * s;
            for j in 0..n {
                out[i * n + j] += vik * vecs[j * n + k];
            }
        }
    }
    out
}

/// The `k` leading eigenvectors (largest eigenvalues first) of a symmetric positive semi-definite
/// n x n matrix, by block subspace iteration with `k + 8` vectors and a Rayleigh-Ritz step: O(n^2 k)
/// per iteration instead of Jacobi's O(n^3) per sweep, for PCA of wide features (e.g. 1280-d).
/// Returns an n x k row-major matrix (column j = eigenvector j).
pub fn top_eigenvectors(a: &[f64], n: usize, k: usize, iters: usize, seed: u64) -> Vec<f64> {
    use rand::SeedableRng;
    use rand_distr::{Distribution, StandardNormal};
    let p = (k + 8).min(n);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // Q: n x p, row-major.
    let mut q: Vec<f64> = (0..n * p)
        .map(|_| StandardNormal.sample(&mut rng))
        .collect();
    orthonormalise(&mut q, n, p);
    let times_a = |q: &[f64]| -> Vec<f64> {
        let mut z = vec![0f64; n * p];
        z.par_chunks_mut(p).enumerate().for_each(|(i, zi)| {
            let row = &a[i * n..(i + 1) * n];
            for (l, &ail) in row.iter().enumerate() {
                if ail != 0.0 {
                    for (zij, qlj) in zi.iter_mut().zip(&q[l * p..(l + 1) * p]) {
                        *zij += ail * qlj;
                    }
                }
            }
        });
        z
    };
    for _ in 0..iters {
        q = times_a(&q);
        orthonormalise(&mut q, n, p);
    }
    // Rayleigh-Ritz: B = Q^T A Q (p x p), its eigenvectors rotate Q.
    let aq = times_a(&q);
    let mut b = vec![0f64; p * p];
    for i in 0..p {
        for j in 0..p {
            b[i * p + j] = (0..n).map(|r| q[r * p + i] * aq[r * p + j]).sum();
        }
    }
    for i in 0..p {
        for j in 0..i {
            let m = 0.5 * (b[i * p + j] + b[j * p + i]);
            b[i * p + j] = m;
            b[j * p + i] = m;
        }
    }
    let (_, v) = sym_eigen(&b, p);
    let mut out = vec![0f64; n * k];
    for c in 0..k {
        let col = p - 1 - c; // eigenvalues ascend
        for r in 0..n {
            out[r * k + c] = (0..p).map(|m| q[r * p + m] * v[m * p + col]).sum();
        }
    }
    out
}

/// Modified Gram-Schmidt on the p columns of a row-major n x p matrix.
fn orthonormalise(q: &mut [f64], n: usize, p: usize) {
    for j in 0..p {
        for i in 0..j {
            let dot: f64 = (0..n).map(|r| q[r * p + i] * q[r * p + j]).sum();
            for r in 0..n {
                q[r * p + j] -= dot * q[r * p + i];
            }
        }
        let norm = (0..n).map(|r| q[r * p + j].powi(2)).sum::<f64>().sqrt();
        if norm > 0.0 {
            for r in 0..n {
                q[r * p + j] /= norm;
            }
        }
    }
}

/// Row-major product of n x n matrices.
pub fn matmul(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    let mut out = vec![0f64; n * n];
    out.par_chunks_mut(n).enumerate().for_each(|(i, row)| {
        for k in 0..n {
            let aik = a[i * n + k];
            for (o, bkj) in row.iter_mut().zip(&b[k * n..(k + 1) * n]) {
                *o += aik * bkj;
            }
        }
    });
    out
}

/// Test support: asserts that 2-D samples (row-major) have mean `m` and a diagonal covariance with
/// standard deviations `s`, within `mean_tol`, `var_rel * var + var_abs` and `cov_tol`; `what` names
/// the case in the message.
#[cfg(test)]
pub fn assert_gaussian_2d(
    samples: &[f32],
    (m, s): ([f32; 2], [f32; 2]),
    (mean_tol, var_rel, var_abs, cov_tol): (f64, f64, f64, f64),
    what: &str,
) {
    let (mean, cov) = mean_cov(samples, 2);
    for d in 0..2 {
        assert!(
            (mean[d] - f64::from(m[d])).abs() < mean_tol,
            "{what}: mean {mean:?}"
        );
        let var = f64::from(s[d] * s[d]);
        assert!(
            (cov[d * 2 + d] - var).abs() < var_rel * var + var_abs,
            "{what}: cov {cov:?}"
        );
    }
    assert!(cov[1].abs() < cov_tol, "{what}: cov {cov:?}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eigen_decomposition_reconstructs_the_matrix_with_orthonormal_vectors() {
        let n = 5;
        // A random symmetric matrix from a fixed formula.
        let a: Vec<f64> = (0..n * n)
            .map(|k| {
                let (i, j) = (k / n, k % n);
                ((i * 7 + j * 7 + i * j) % 11) as f64 - 5.0
            })
            .collect();
        let (vals, vecs) = sym_eigen(&a, n);
        assert!(vals.windows(2).all(|w| w[0] <= w[1]));
        for i in 0..n {
            for j in 0..n {
                let recon: f64 = (0..n)
                    .map(|k| vecs[i * n + k] * vals[k] * vecs[j * n + k])
                    .sum();
                assert!((recon - a[i * n + j]).abs() < 1e-10);
                let dot: f64 = (0..n).map(|k| vecs[k * n + i] * vecs[k * n + j]).sum();
                assert!((dot - f64::from(u8::from(i == j))).abs() < 1e-10);
            }
        }
        // Trace and determinant-free check: the sum of eigenvalues is the trace.
        let tr: f64 = (0..n).map(|i| a[i * n + i]).sum();
        assert!((vals.iter().sum::<f64>() - tr).abs() < 1e-10);
    }

    #[test]
    fn subspace_iteration_finds_the_same_leading_eigenvectors_as_jacobi() {
        let n = 60;
        // A PSD matrix with a decaying spectrum: B B^T + diag.
        let b: Vec<f64> = (0..n * n)
            .map(|k| ((k * 7919 % 97) as f64 / 97.0) - 0.5)
            .collect();
        let mut a = vec![0f64; n * n];
        for i in 0..n {
            for j in 0..n {
                a[i * n + j] = (0..n)
                    .map(|l| b[i * n + l] * b[j * n + l] / (1.0 + l as f64))
                    .sum();
            }
        }
        let (_, full) = sym_eigen(&a, n);
        let k = 4;
        let top = top_eigenvectors(&a, n, k, 300, 1);
        for c in 0..k {
            let col = n - 1 - c;
            let dot: f64 = (0..n).map(|r| top[r * k + c] * full[r * n + col]).sum();
            assert!(
                (dot.abs() - 1.0).abs() < 1e-6,
                "eigenvector {c}: |dot| = {}",
                dot.abs()
            );
        }
    }

    #[test]
    fn square_root_squares_back() {
        let a = [4.0, 1.0, 0.5, 1.0, 3.0, 0.2, 0.5, 0.2, 2.0];
        let r = sym_sqrt(&a, 3);
        let back = matmul(&r, &r, 3);
        for (x, y) in back.iter().zip(&a) {
            assert!((x - y).abs() < 1e-12);
        }
    }

    #[test]
    fn covariance_matches_a_hand_computation() {
        // Rows (1, 2), (3, 6), (5, 7): means (3, 5); cov xx 4, xy 5, yy 7 (n - 1 = 2).
        let (m, c) = mean_cov(&[1.0, 2.0, 3.0, 6.0, 5.0, 7.0], 2);
        assert_eq!(m, vec![3.0, 5.0]);
        assert_eq!(c, vec![4.0, 5.0, 5.0, 7.0]);
    }
}
