//! Gaussian kernel density estimate in 2-D, `log p(y) = log( (1/N) sum_i N(y; x_i, h^2 I) )`, summed
//! over a k-d tree with a kernel cut-off instead of over every sample.
//!
//! The cut-off, and the error it may make: for a point y whose nearest sample lies at distance d0, the
//! samples farther than `r` with `r^2 = d0^2 + 2 h^2 C` are left out. Each one left out has a kernel value
//! below `e^-C` times the nearest sample's, and the nearest sample is in the sum, so the sum left out
//! is below `N e^-C` times the sum kept: the log-density is under-estimated by at most
//! `ln(1 + N e^-C) <= N e^-C`. [`Kde::new`] picks `C = ln(N / tol)` for the tolerance [`KDE_TOLERANCE`]
//! (in nats), whatever the point, the samples and the bandwidth. Far from every sample (d0 large) the
//! ball grows with d0, so the estimate stays right in the tails too.

use kiddo::{ImmutableKdTree, SquaredEuclidean};
use rayon::prelude::*;

/// The most the cut-off may lower a log-density, in nats.
pub const KDE_TOLERANCE: f64 = 1e-6;

/// A Gaussian KDE with isotropic bandwidth `h` over 2-D samples.
pub struct Kde {
    samples: Vec<[f64; 2]>,
    tree: Option<ImmutableKdTree<f64, 2>>,
    h: f64,
    /// `2 h^2 C`: what the cut-off ball's squared radius exceeds the nearest sample's squared distance by.
    margin: f64,
}

impl Kde {
    /// `samples` row-major [N, 2]; the cut-off is chosen for [`KDE_TOLERANCE`].
    pub fn new(samples: &[f64], h: f64) -> Kde {
        Kde::with_tolerance(samples, h, KDE_TOLERANCE)
    }

    /// As [`Kde::new`] with a given tolerance (nats, > 0).
    pub fn with_tolerance(samples: &[f64], h: f64, tol: f64) -> Kde {
        let samples: Vec<[f64; 2]> = samples.chunks_exact(2).map(|c| [c[0], c[1]]).collect();
        let n = samples.len().max(1) as f64;
        let c = (n / tol).ln().max(1.0);
        let tree = (!samples.is_empty()).then(|| ImmutableKdTree::new_from_slice(&samples));
        Kde {
            samples,
            tree,
            h,
            margin: 2.0 * h * h * c,
        }
    }

    fn norm(&self) -> f64 {
        -(2.0 * std::f64::consts::PI * self.h * self.h).ln() - (self.samples.len() as f64).ln()
    }

    /// Log-density of each point (row-major [M, 2]), in parallel over points: the samples within the
    /// cut-off ball of each point, from the tree (see the module's documentation for the error bound).
    pub fn log_density(&self, points: &[f64]) -> Vec<f64> {
        let Some(tree) = &self.tree else {
            return vec![f64::NAN; points.len() / 2];
        };
        let inv = 1.0 / (2.0 * self.h * self.h);
        let norm = self.norm();
        points
            .par_chunks_exact(2)
            .map(|p| {
                let q = [p[0], p[1]];
                let d0 = tree.nearest_one::<SquaredEuclidean>(&q).distance;
                let within = tree.within_unsorted::<SquaredEuclidean>(&q, d0 + self.margin);
                // Every term relative to the nearest sample's, whose exponent is the largest: no overflow.
                let s: f64 = within
                    .iter()
                    .map(|nb| (-(nb.distance - d0) * inv).exp())
                    .sum();
                -d0 * inv + s.max(1.0).ln() + norm
            })
            .collect()
    }

    /// The same log-densities summed over every sample (streaming log-sum-exp, one pass): the
    /// reference the tree is checked and benchmarked against.
    pub fn log_density_brute(&self, points: &[f64]) -> Vec<f64> {
        let inv = 1.0 / (2.0 * self.h * self.h);
        let norm = self.norm();
        points
            .par_chunks_exact(2)
            .map(|p| {
                let (mut m, mut s) = (f64::NEG_INFINITY, 0.0f64);
                for x in &self.samples {
                    let e = -((p[0] - x[0]).powi(2) + (p[1] - x[1]).powi(2)) * inv;
                    if e > m {
                        s = s * (m - e).exp() + 1.0;
                        m = e;
                    } else {
                        s += (e - m).exp();
                    }
                }
                m + s.ln() + norm
            })
            .collect()
    }
}

/// Direct (two-pass) KDE log-density of one point, written from the definition.
pub fn kde_direct(samples: &[f64], h: f64, p: [f64; 2]) -> f64 {
    let terms: Vec<f64> = samples
        .chunks_exact(2)
        .map(|x| {
            -((p[0] - x[0]).powi(2) + (p[1] - x[1]).powi(2)) / (2.0 * h * h)
                - (2.0 * std::f64::consts::PI * h * h).ln()
        })
        .collect();
    super::targets::log_sum_exp(&terms) - ((samples.len() / 2) as f64).ln()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::toy::{ALL_TARGETS, Target};
    use rand::SeedableRng;

    #[test]
    fn kde_matches_a_hand_computation_and_a_direct_sum() {
        let samples = [0.0, 0.0, 1.0, 0.5, -0.3, 2.0];
        let kde = Kde::new(&samples, 0.1);
        let pts = [0.05, 0.02, 0.9, 0.4, 5.0, 5.0];
        let got = kde.log_density(&pts);
        // Hand computation for the first point: all three kernels written out.
        let d2 = 0.05f64.powi(2) + 0.02f64.powi(2);
        let direct0 = ((-d2 / 0.02).exp()
            + (-(0.95f64.powi(2) + 0.48f64.powi(2)) / 0.02).exp()
            + (-(0.35f64.powi(2) + 1.98f64.powi(2)) / 0.02).exp())
        .ln()
            - (2.0 * std::f64::consts::PI * 0.01).ln()
            - 3f64.ln();
        assert!((got[0] - direct0).abs() < 1e-9, "{} vs {direct0}", got[0]);
        for (i, p) in pts.chunks_exact(2).enumerate() {
            let d = kde_direct(&samples, 0.1, [p[0], p[1]]);
            assert!(
                (got[i] - d).abs() < 1e-9 * d.abs().max(1.0),
                "{i}: {} vs {d}",
                got[i]
            );
        }
    }

    /// The tree with its cut-off against the sum over every sample: on each toy target's samples, at
    /// points drawn from the target, on a grid over [-3, 3]^2 and far out, within the stated bound.
    #[test]
    fn the_cut_off_stays_within_its_bound_on_every_target() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let grid: Vec<f64> = (0..25)
            .flat_map(|i| {
                let (a, b) = ((i % 5) as f64 * 1.5 - 3.0, (i / 5) as f64 * 1.5 - 3.0);
                [a, b]
            })
            .chain([40.0, -40.0, 0.0, 1e3])
            .collect();
        for target in ALL_TARGETS {
            let samples = target.sample(3000, &mut rng);
            for h in [0.05, 0.1, 0.3] {
                let kde = Kde::new(&samples, h);
                let mut pts = target.sample(200, &mut rng);
                pts.extend_from_slice(&grid);
                let tree = kde.log_density(&pts);
                let brute = kde.log_density_brute(&pts);
                for (i, (t, b)) in tree.iter().zip(&brute).enumerate() {
                    // The cut-off only leaves terms out (t <= b), by at most the tolerance; the rest
                    // is float summation order.
                    let slack = 1e-9 * b.abs().max(1.0);
                    assert!(
                        *t <= b + slack && b - t <= KDE_TOLERANCE + slack,
                        "{target:?} h {h} point {i}: tree {t} brute {b}"
                    );
                }
            }
        }
    }

    /// A loose tolerance leaves more out, and the bound still holds: the error is real, not zero by
    /// construction, so the test above can fail.
    #[test]
    fn a_loose_tolerance_makes_a_visible_but_bounded_error() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let samples = Target::Checkerboard.sample(2000, &mut rng);
        let kde = Kde::with_tolerance(&samples, 0.3, 0.5);
        let pts = Target::Checkerboard.sample(300, &mut rng);
        let (t, b) = (kde.log_density(&pts), kde.log_density_brute(&pts));
        let worst = t.iter().zip(&b).map(|(t, b)| b - t).fold(0.0f64, f64::max);
        assert!(worst > 1e-4 && worst <= 0.5 + 1e-9, "{worst}");
    }

    #[test]
    fn no_samples_give_nan_not_a_panic() {
        let kde = Kde::new(&[], 0.1);
        assert!(kde.log_density(&[0.0, 0.0])[0].is_nan());
    }
}
