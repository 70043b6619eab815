//! Projection operators from target features (dimension d1) to the latent dimension d2 the prior lives
//! in: a fixed, seeded random matrix W ~ N(0, 1/d2) (Johnson-Lindenstrauss), PCA fitted on the target
//! set, adaptive average pooling over channels, or the identity when d2 = d1. A projection is saved with
//! the prior (`.npy` matrix and offset) so the same map is applied downstream.

use std::path::Path;

use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

use crate::linalg::{mean_cov, sym_eigen, top_eigenvectors};

/// Kinds of projection, as sweep values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ProjectionKind {
    Identity,
    Random,
    Pca,
    AvgPool,
}

impl ProjectionKind {
    pub fn name(self) -> &'static str {
        match self {
            ProjectionKind::Identity => "identity",
            ProjectionKind::Random => "random",
            ProjectionKind::Pca => "pca",
            ProjectionKind::AvgPool => "avgpool",
        }
    }
}

/// A linear map `y = (x - offset) W` with W of d_in x d_out (row-major).
#[derive(Debug, Clone, PartialEq)]
pub struct Projection {
    pub kind: ProjectionKind,
    pub d_in: usize,
    pub d_out: usize,
    pub offset: Vec<f32>,
    pub matrix: Vec<f32>,
}

impl Projection {
    /// Fits the projection of `kind` on `rows` (n x d_in). Random projections depend only on `seed`;
    /// PCA keeps the d_out directions of largest variance (components ordered by variance).
    pub fn fit(
        kind: ProjectionKind,
        rows: &[f32],
        d_in: usize,
        d_out: usize,
        seed: u64,
    ) -> Result<Projection, String> {
        // A random map may also go up (an injective embedding of low-dimensional features, e.g. 8-d
        // codes into a 32-d latent space); the others select or average existing dimensions.
        if d_out == 0 || (d_out > d_in && kind != ProjectionKind::Random) {
            return Err(format!(
                "the projected dimension must be between 1 and the feature dimension {d_in} for `{}`, got {d_out}",
                kind.name()
            ));
        }
        let mut matrix = vec![0f32; d_in * d_out];
        let mut offset = vec![0f32; d_in];
        match kind {
            ProjectionKind::Identity => {
                if d_out != d_in {
                    return Err(format!(
                        "the identity needs the projected dimension to equal the feature dimension {d_in}, got {d_out}"
                    ));
                }
                for i in 0..d_in {
                    matrix[i * d_out + i] = 1.0;
                }
            }
            ProjectionKind::Random => {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
                let normal =
                    Normal::new(0.0f64, (1.0 / d_out as f64).sqrt()).map_err(|e| e.to_string())?;
                for w in &mut matrix {
                    *w = normal.sample(&mut rng) as f32;
                }
            }
            ProjectionKind::Pca => {
                if rows.len() < 2 * d_in {
                    return Err("PCA needs at least two feature rows".into());
                }
                let (mean, cov) = mean_cov(rows, d_in);
                if d_in <= 128 {
                    let (_, vecs) = sym_eigen(&cov, d_in);
                    // Eigenvalues ascend: the last d_out columns, largest first.
                    for k in 0..d_out {
                        let col = d_in - 1 - k;
                        for i in 0..d_in {
                            matrix[i * d_out + k] = vecs[i * d_in + col] as f32;
                        }
                    }
                } else {
                    // Wide features: only the leading directions, by subspace iteration.
                    let top = top_eigenvectors(&cov, d_in, d_out, 200, seed);
                    for (m, t) in matrix.iter_mut().zip(&top) {
                        *m = *t as f32;
                    }
                }
                offset = mean.iter().map(|&m| m as f32).collect();
            }
            ProjectionKind::AvgPool => {
                // PyTorch's AdaptiveAvgPool1d bins: [floor(k d_in / d_out), ceil((k + 1) d_in / d_out)).
                for k in 0..d_out {
                    let start = k * d_in / d_out;
                    let end = ((k + 1) * d_in).div_ceil(d_out);
                    let w = 1.0 / (end - start) as f32;
                    for i in start..end {
                        matrix[i * d_out + k] = w;
                    }
                }
            }
        }
        Ok(Projection {
            kind,
            d_in,
            d_out,
            offset,
            matrix,
        })
    }

    /// Projects `rows` (n x d_in) to n x d_out.
    pub fn apply(&self, rows: &[f32]) -> Vec<f32> {
        let n = rows.len() / self.d_in;
        let mut out = vec![0f32; n * self.d_out];
        let mut centred = vec![0f32; self.d_in];
        for (r, o) in rows
            .chunks_exact(self.d_in)
            .zip(out.chunks_exact_mut(self.d_out))
        {
            for ((c, x), m) in centred.iter_mut().zip(r).zip(&self.offset) {
                *c = x - m;
            }
            for (i, &c) in centred.iter().enumerate() {
                if c != 0.0 {
                    for (oj, w) in o
                        .iter_mut()
                        .zip(&self.matrix[i * self.d_out..(i + 1) * self.d_out])
                    {
                        *oj += c * w;
                    }
                }
            }
        }
        out
    }

    /// Saves the matrix and the offset as `stem.matrix.npy` and `stem.offset.npy`.
    pub fn save(&self, stem: &Path) -> std::io::Result<(std::path::PathBuf, std::path::PathBuf)> {
        let m = stem.with_extension("matrix.npy");
        let o = stem.with_extension("offset.npy");
        crate::features::write_npy(&m, &self.matrix, &[self.d_in, self.d_out])?;
        crate::features::write_npy(&o, &self.offset, &[1, self.d_in])?;
        Ok((m, o))
    }
}

/// How well a projection keeps distances: over `pairs` random pairs of rows, the ratio of the distance
/// after to the distance before, divided by its mean (so a uniform scaling is no distortion).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Distortion {
    /// Mean ratio after/before (the scale the projection applies).
    pub mean_ratio: f64,
    /// Coefficient of variation of the ratio (0: distances kept up to a common scale).
    pub cv: f64,
    /// 5% and 95% quantiles of ratio / mean ratio.
    pub q05: f64,
    pub q95: f64,
}

pub fn distortion(
    before: &[f32],
    after: &[f32],
    d_in: usize,
    d_out: usize,
    pairs: usize,
    seed: u64,
) -> Distortion {
    use rand::Rng;
    let n = before.len() / d_in;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dist = |m: &[f32], d: usize, i: usize, j: usize| -> f64 {
        m[i * d..(i + 1) * d]
            .iter()
            .zip(&m[j * d..(j + 1) * d])
            .map(|(a, b)| f64::from(a - b).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    let mut ratios = Vec::with_capacity(pairs);
    // Pairs at distance 0 are skipped; bounded attempts, so identical rows cannot loop forever.
    for _ in 0..pairs * 10 {
        if ratios.len() == pairs || n < 2 {
            break;
        }
        let (i, j) = (rng.random_range(0..n), rng.random_range(0..n));
        let b = dist(before, d_in, i, j);
        if i != j && b > 0.0 {
            ratios.push(dist(after, d_out, i, j) / b);
        }
    }
    let m = ratios.iter().sum::<f64>() / ratios.len().max(1) as f64;
    let sd =
        (ratios.iter().map(|r| (r - m).powi(2)).sum::<f64>() / ratios.len().max(1) as f64).sqrt();
    let mut norm: Vec<f64> = ratios.iter().map(|r| r / m).collect();
    norm.sort_by(f64::total_cmp);
    let q = |p: f64| {
        norm.get(((norm.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    Distortion {
        mean_ratio: m,
        cv: sd / m,
        q05: q(0.05),
        q95: q(0.95),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gaussian(n: usize, d: usize, scales: &[f32], seed: u64) -> Vec<f32> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let normal = Normal::new(0.0f32, 1.0).expect("normal");
        (0..n * d)
            .map(|k| normal.sample(&mut rng) * scales[k % d])
            .collect()
    }

    #[test]
    fn random_projection_keeps_distances_and_is_seeded() {
        let (d_in, d_out) = (256, 128);
        let x = gaussian(300, d_in, &[1.0; 256], 1);
        let p = Projection::fit(ProjectionKind::Random, &x, d_in, d_out, 7).expect("fit");
        assert_eq!(
            p,
            Projection::fit(ProjectionKind::Random, &[], d_in, d_out, 7).expect("fit")
        );
        assert_ne!(
            p,
            Projection::fit(ProjectionKind::Random, &[], d_in, d_out, 8).expect("fit")
        );
        let dist = distortion(&x, &p.apply(&x), d_in, d_out, 2000, 3);
        // JL with W ~ N(0, 1/d2): E|xW|^2 = |x|^2, relative spread about 1/sqrt(2 d2) = 0.06.
        assert!((dist.mean_ratio - 1.0).abs() < 0.03, "{dist:?}");
        assert!(
            dist.cv < 0.1 && dist.q05 > 0.85 && dist.q95 < 1.15,
            "{dist:?}"
        );
    }

    #[test]
    fn pca_keeps_the_directions_of_largest_variance_first() {
        let d = 4;
        // Standard deviations 0.5, 3, 1, 2 on the axes: PCA must order axes 1, 3, 2, 0.
        let x = gaussian(5000, d, &[0.5, 3.0, 1.0, 2.0], 2);
        let p = Projection::fit(ProjectionKind::Pca, &x, d, 2, 0).expect("fit");
        let col = |k: usize| {
            (0..d)
                .map(|i| p.matrix[i * 2 + k].abs())
                .collect::<Vec<_>>()
        };
        assert!(col(0)[1] > 0.99 && col(1)[3] > 0.99, "{:?}", p.matrix);
        let y = p.apply(&x);
        let var = |k: usize| y.iter().skip(k).step_by(2).map(|v| v * v).sum::<f32>() / 5000.0;
        assert!((var(0) - 9.0).abs() < 0.5 && (var(1) - 4.0).abs() < 0.3);
    }

    #[test]
    fn adaptive_average_pooling_matches_pytorch_bins() {
        // 5 -> 3: bins [0, 2), [1, 4), [3, 5).
        let p = Projection::fit(ProjectionKind::AvgPool, &[], 5, 3, 0).expect("fit");
        let y = p.apply(&[1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(y, vec![1.5, 3.0, 4.5]);
        let e = Projection::fit(ProjectionKind::Identity, &[], 5, 3, 0).expect_err("dims");
        assert!(e.contains("equal the feature dimension 5"), "{e}");
        assert!(Projection::fit(ProjectionKind::Pca, &[0.0; 20], 5, 6, 0).is_err());
        assert!(Projection::fit(ProjectionKind::AvgPool, &[], 5, 6, 0).is_err());
        // Random maps may go up: 2-D points into 6-D keep their distances up to the JL spread.
        let up = Projection::fit(ProjectionKind::Random, &[], 2, 6, 1).expect("up");
        assert_eq!(up.apply(&[1.0, 0.0]).len(), 6);
    }
}
