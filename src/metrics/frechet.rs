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
    fn a_set_is_at_distance_zero_from_itself() {
        let rows: Vec<f32> = (0..400).map(|i| ((i * 37 % 101) as f32).sin()).collect();
        let g = Gaussian::fit(&rows, 4);
        assert!(frechet_distance(&g, &g).abs() < 1e-9);
    }
}
