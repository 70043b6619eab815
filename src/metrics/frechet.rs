//! Frechet distance between two Gaussians fitted to feature sets, in f64:
//! `|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1^1/2 S2 S1^1/2)^1/2)`, the matrix square roots taken by
//! symmetric eigen-decomposition (never of the non-symmetric S1 S2).

use crate::linalg::{matmul, mean_cov, sym_eigen, sym_sqrt};

/// Mean and covariance of a feature set.
#[derive(Debug, Clone)]
pub struct Gaussian {
    pub mean: Vec<f64>,
    pub cov: Vec<f64>,
}

impl Gaussian {
    /// Fitted to `rows` (n x d, row-major); the covariance is unbiased.
    pub fn fit(rows: &[f32], d: usize) -> Gaussian {
        let (mean, cov) = mean_cov(rows, d);
        Gaussian { mean, cov }
    }

    pub fn dim(&self) -> usize {
        self.mean.len()
    }
}

/// The Frechet distance between two Gaussians of the same dimension.
pub fn frechet_distance(a: &Gaussian, b: &Gaussian) -> f64 {
    let d = a.dim();
    assert_eq!(
        d,
        b.dim(),
        "Frechet distance between Gaussians of different dimension"
    );
    let mean_term: f64 = a
        .mean
        .iter()
        .zip(&b.mean)
        .map(|(x, y)| (x - y).powi(2))
        .sum();
    let trace = |m: &[f64]| (0..d).map(|i| m[i * d + i]).sum::<f64>();
    let s1h = sym_sqrt(&a.cov, d);
    let inner = matmul(&matmul(&s1h, &b.cov, d), &s1h, d);
    // Symmetrise against round-off before the eigen-decomposition.
    let mut sym = inner.clone();
    for i in 0..d {
        for j in 0..d {
            sym[i * d + j] = 0.5 * (inner[i * d + j] + inner[j * d + i]);
        }
    }
    let (vals, _) = sym_eigen(&sym, d);
    let tr_sqrt: f64 = vals.iter().map(|v| v.max(0.0).sqrt()).sum();
    (mean_term + trace(&a.cov) + trace(&b.cov) - 2.0 * tr_sqrt).max(0.0)
}

/// The Frechet distance between the Gaussians fitted to two sample sets (n1 x d and n2 x d,
/// row-major; unbiased covariances). When a set has fewer rows than dimensions (rFID on 1280-d or
/// 2048-d features from a few hundred images) the covariances are low-rank and
/// `tr((S1 S2)^1/2)` is the sum of the singular values of `X1 X2^T / sqrt((n1 - 1)(n2 - 1))` (X: the
/// centred rows): an n x n eigen-problem instead of two d x d ones, with the same result.
pub fn frechet_from_samples(a: &[f32], b: &[f32], d: usize) -> f64 {
    let (n1, n2) = (a.len() / d, b.len() / d);
    if n1.min(n2) > d {
        return frechet_distance(&Gaussian::fit(a, d), &Gaussian::fit(b, d));
    }
    let centred = |rows: &[f32], n: usize| -> (Vec<f64>, Vec<f64>) {
        let mut mean = vec![0f64; d];
        for r in rows.chunks_exact(d) {
            for (m, v) in mean.iter_mut().zip(r) {
                *m += f64::from(*v) / n as f64;
            }
        }
        let x = rows
            .chunks_exact(d)
            .flat_map(|r| r.iter().zip(&mean).map(|(v, m)| f64::from(*v) - m))
            .collect();
        (mean, x)
    };
    let (m1, x1) = centred(a, n1);
    let (m2, x2) = centred(b, n2);
    let (s1, s2) = ((n1 - 1).max(1) as f64, (n2 - 1).max(1) as f64);
    let mean_term: f64 = m1.iter().zip(&m2).map(|(x, y)| (x - y).powi(2)).sum();
    let tr1 = x1.iter().map(|v| v * v).sum::<f64>() / s1;
    let tr2 = x2.iter().map(|v| v * v).sum::<f64>() / s2;
    // M = X1 X2^T (n1 x n2); the smaller Gram matrix of M has the squared singular values.
    let mut m = vec![0f64; n1 * n2];
    // SAFETY: the slices hold n1 x d, n2 x d and n1 x n2 values with the strides given.
    unsafe {
        matrixmultiply::dgemm(
            n1,
            d,
            n2,
            1.0,
            x1.as_ptr(),
            d as isize,
            1,
            x2.as_ptr(),
            1,
            d as isize,
            0.0,
            m.as_mut_ptr(),
            n2 as isize,
            1,
        );
    }
    // The smaller Gram matrix: M M^T (n1 <= n2) or M^T M, as A B with A = M or M^T.
    let k = n1.min(n2);
    let (inner, a_rs, a_cs) = if n1 <= n2 {
        (n2, n2 as isize, 1)
    } else {
        (n1, 1, n2 as isize)
    };
    let mut gram = vec![0f64; k * k];
    // SAFETY: M holds n1 x n2 values; A is k x inner and B = A^T inner x k over it; gram is k x k.
    unsafe {
        matrixmultiply::dgemm(
            k,
            inner,
            k,
            1.0,
            m.as_ptr(),
            a_rs,
            a_cs,
            m.as_ptr(),
            a_cs,
            a_rs,
            0.0,
            gram.as_mut_ptr(),
            k as isize,
            1,
        );
    }
    let (vals, _) = sym_eigen(&gram, k);
    let tr_sqrt: f64 = vals.iter().map(|v| v.max(0.0).sqrt()).sum::<f64>() / (s1 * s2).sqrt();
    (mean_term + tr1 + tr2 - 2.0 * tr_sqrt).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_closed_form_for_diagonal_covariances() {
        let a = Gaussian {
            mean: vec![0.0, 1.0, 2.0],
            cov: vec![4.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 9.0],
        };
        let b = Gaussian {
            mean: vec![1.0, 1.0, 0.0],
            cov: vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 4.0],
        };
        // |dmu|^2 = 1 + 0 + 4; per axis (sqrt(s1) - sqrt(s2))^2 = 1 + 0 + 1.
        assert!((frechet_distance(&a, &b) - 7.0).abs() < 1e-12);
    }

    #[test]
    fn matches_the_closed_form_for_non_commuting_2x2_covariances() {
        let s1 = [2.0, 0.7, 0.7, 1.0];
        let s2 = [1.0, -0.4, -0.4, 3.0];
        let a = Gaussian {
            mean: vec![0.5, -1.0],
            cov: s1.to_vec(),
        };
        let b = Gaussian {
            mean: vec![0.0, 0.0],
            cov: s2.to_vec(),
        };
        // For 2x2: tr sqrt(S1 S2) = sqrt(tr(S1 S2) + 2 sqrt(det(S1 S2))).
        let p = [
            s1[0] * s2[0] + s1[1] * s2[2],
            s1[0] * s2[1] + s1[1] * s2[3],
            s1[2] * s2[0] + s1[3] * s2[2],
            s1[2] * s2[1] + s1[3] * s2[3],
        ];
        let det = p[0] * p[3] - p[1] * p[2];
        let tr_sqrt = (p[0] + p[3] + 2.0 * det.sqrt()).sqrt();
        let want = 0.25 + 1.0 + (2.0 + 1.0) + (1.0 + 3.0) - 2.0 * tr_sqrt;
        assert!((frechet_distance(&a, &b) - want).abs() < 1e-10);
    }

    #[test]
    fn the_low_rank_route_equals_the_covariance_route() {
        // 12 and 9 samples in 20 dimensions: low-rank covariances. The covariance route (two 20 x 20
        // eigen-decompositions of the fitted Gaussians) is the independent computation.
        let rows = |n: usize, seed: usize| -> Vec<f32> {
            (0..n * 20)
                .map(|i| {
                    (((i * 7919 + seed * 104_729) % 1009) as f32 / 1009.0 - 0.5)
                        * (1.0 + (i % 20) as f32 / 10.0)
                })
                .collect()
        };
        let (a, b) = (rows(12, 1), rows(9, 2));
        let want = frechet_distance(&Gaussian::fit(&a, 20), &Gaussian::fit(&b, 20));
        let got = frechet_from_samples(&a, &b, 20);
        assert!((got - want).abs() < 1e-8 * want.max(1.0), "{got} vs {want}");
        let got_swapped = frechet_from_samples(&b, &a, 20);
        assert!((got_swapped - want).abs() < 1e-8 * want.max(1.0));
        assert!(frechet_from_samples(&a, &a, 20).abs() < 1e-9);
    }

    #[test]
    fn a_set_is_at_distance_zero_from_itself() {
        let rows: Vec<f32> = (0..400).map(|i| ((i * 37 % 101) as f32).sin()).collect();
        let g = Gaussian::fit(&rows, 4);
        assert!(frechet_distance(&g, &g).abs() < 1e-9);
    }
}
