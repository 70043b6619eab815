//! 2-D toy target distributions (paper Sec. 5.1, App. B). Every generator draws points in its own
//! units; [`Target::sample`] divides them by the target's global standard deviation (the std of all
//! coordinates of 1,000,000 draws with a fixed seed, computed once), as the public code does.
//!
//! Formulas (u, u' ~ U[0, 1], e ~ N(0, I_2), k a uniformly drawn component):
//! * `mixture` — 5 Gaussians, means `3 (cos 2pi k/5, sin 2pi k/5)`, std 0.3: `m_k + 0.3 e`.
//! * `grid` — 4x4 Gaussians, means `((i - 1.5), (j - 1.5))` (cell 1.0), std 0.1.
//! * `moons` — radius 2, noise 0.1: upper moon `2 (cos pi u, sin pi u) + (-1, -0.5)`,
//!   lower moon `2 (-cos pi u, -sin pi u) + (1, 0.5)`, each plus `0.1 e`.
//! * `rings` — 3 concentric rings of radii 4/3, 8/3, 4: `r_k (cos 2pi u, sin 2pi u) + 0.1 e`.
//! * `spiral` — one arm, 3 turns, max radius 3, linear growth: `theta = 6 pi u`,
//!   `r = 3 u`, point `r (cos theta, sin theta) + 0.1 e`.
//! * `swissroll` — 3 turns, noise 0.1: `theta = 2 pi (0.25 + 3 u)`, `r = theta / (2 pi 3.25) * 4`,
//!   point `r (cos theta, sin theta) + 0.1 e` (radius proportional to the angle, starting off-centre).
//! * `checkerboard` — uniform on the dark squares of a 4x4 board on [-2, 2]^2.

use std::sync::OnceLock;

use rand::{Rng, SeedableRng};
use rand_distr::{Distribution as _, StandardNormal};
use serde::{Deserialize, Serialize};

/// A 2-D toy target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Mixture,
    Grid,
    Moons,
    Rings,
    Spiral,
    Swissroll,
    Checkerboard,
}

pub const ALL_TARGETS: [Target; 7] = [
    Target::Mixture,
    Target::Grid,
    Target::Moons,
    Target::Rings,
    Target::Spiral,
    Target::Swissroll,
    Target::Checkerboard,
];

fn normal2(rng: &mut impl Rng) -> [f64; 2] {
    [StandardNormal.sample(rng), StandardNormal.sample(rng)]
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Mixture => "mixture",
            Target::Grid => "grid",
            Target::Moons => "moons",
            Target::Rings => "rings",
            Target::Spiral => "spiral",
            Target::Swissroll => "swissroll",
            Target::Checkerboard => "checkerboard",
        }
    }

    /// Gaussian components (means, std) in raw units, for the targets that are mixtures.
    pub fn components(self) -> Option<(Vec<[f64; 2]>, f64)> {
        match self {
            Target::Mixture => Some((
                (0..5)
                    .map(|k| {
                        let a = 2.0 * std::f64::consts::PI * k as f64 / 5.0;
                        [3.0 * a.cos(), 3.0 * a.sin()]
                    })
                    .collect(),
                0.3,
            )),
            Target::Grid => Some((
                (0..16)
                    .map(|k| [(k / 4) as f64 - 1.5, (k % 4) as f64 - 1.5])
                    .collect(),
                0.1,
            )),
            _ => None,
        }
    }

    /// One point in raw units.
    pub fn draw_raw(self, rng: &mut impl Rng) -> [f64; 2] {
        use std::f64::consts::PI;
        let e = normal2(rng);
        match self {
            Target::Mixture | Target::Grid => {
                let (means, std) = self.components().unwrap_or_default();
                let m = means[rng.random_range(0..means.len())];
                [m[0] + std * e[0], m[1] + std * e[1]]
            }
            Target::Moons => {
                let a = PI * rng.random::<f64>();
                let (x, y) = if rng.random::<bool>() {
                    (2.0 * a.cos() - 1.0, 2.0 * a.sin() - 0.5)
                } else {
                    (-2.0 * a.cos() + 1.0, -2.0 * a.sin() + 0.5)
                };
                [x + 0.1 * e[0], y + 0.1 * e[1]]
            }
            Target::Rings => {
                let r = 4.0 * (rng.random_range(0..3) + 1) as f64 / 3.0;
                let a = 2.0 * PI * rng.random::<f64>();
                [r * a.cos() + 0.1 * e[0], r * a.sin() + 0.1 * e[1]]
            }
            Target::Spiral => {
                let u = rng.random::<f64>();
                let (theta, r) = (6.0 * PI * u, 3.0 * u);
                [r * theta.cos() + 0.1 * e[0], r * theta.sin() + 0.1 * e[1]]
            }
            Target::Swissroll => {
                let theta = 2.0 * PI * (0.25 + 3.0 * rng.random::<f64>());
                let r = theta / (2.0 * PI * 3.25) * 4.0;
                [r * theta.cos() + 0.1 * e[0], r * theta.sin() + 0.1 * e[1]]
            }
            Target::Checkerboard => loop {
                let x = rng.random_range(-2.0..2.0f64);
                let y = rng.random_range(-2.0..2.0f64);
                if ((x + 2.0).floor() as i64 + (y + 2.0).floor() as i64) % 2 == 0 {
                    break [x, y];
                }
            },
        }
    }

    /// The global std of all coordinates of 1,000,000 raw draws (seed 0), computed once per target.
    pub fn scale(self) -> f64 {
        static SCALES: OnceLock<Vec<f64>> = OnceLock::new();
        let scales = SCALES.get_or_init(|| {
            ALL_TARGETS
                .iter()
                .map(|t| {
                    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
                    let n = 1_000_000;
                    let (mut s, mut s2) = (0.0f64, 0.0f64);
                    for _ in 0..n {
                        for v in t.draw_raw(&mut rng) {
                            s += v;
                            s2 += v * v;
                        }
                    }
                    let m = 2.0 * n as f64;
                    ((s2 - s * s / m) / (m - 1.0)).sqrt()
                })
                .collect()
        });
        scales[ALL_TARGETS.iter().position(|t| *t == self).unwrap_or(0)]
    }

    /// `n` normalised points, row-major [n, 2].
    pub fn sample(self, n: usize, rng: &mut impl Rng) -> Vec<f64> {
        let s = self.scale();
        (0..n)
            .flat_map(|_| self.draw_raw(rng).map(|v| v / s))
            .collect()
    }

    /// Exact log-density of a normalised point, for the Gaussian mixtures (None otherwise):
    /// `log p(y) = log p_raw(s y) + 2 log s`.
    pub fn log_density(self, y: [f64; 2]) -> Option<f64> {
        let (means, std) = self.components()?;
        let s = self.scale();
        let x = [y[0] * s, y[1] * s];
        let k = means.len() as f64;
        let var = std * std;
        let logs: Vec<f64> = means
            .iter()
            .map(|m| {
                let d2 = (x[0] - m[0]).powi(2) + (x[1] - m[1]).powi(2);
                -d2 / (2.0 * var) - (2.0 * std::f64::consts::PI * var).ln() - k.ln()
            })
            .collect();
        Some(log_sum_exp(&logs) + 2.0 * s.ln())
    }
}

/// `log sum_i exp(v_i)`, stable.
pub fn log_sum_exp(v: &[f64]) -> f64 {
    let m = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    if !m.is_finite() {
        return m;
    }
    m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixture_log_density_matches_a_hand_computation() {
        let t = Target::Mixture;
        let s = t.scale();
        // At a component mean the other components are > 11 std away: their terms are ~e^-69.
        let y = [3.0 / s, 0.0];
        let want = (1.0f64 / 5.0).ln() - (2.0 * std::f64::consts::PI * 0.09).ln() + 2.0 * s.ln();
        let got = t.log_density(y).unwrap();
        assert!((got - want).abs() < 1e-9, "{got} vs {want}");
        // Half-way between two neighbouring means (distance 2*3*sin(pi/5) apart), both contribute.
        let a = [3.0, 0.0];
        let b = [
            3.0 * (2.0 * std::f64::consts::PI / 5.0).cos(),
            3.0 * (2.0 * std::f64::consts::PI / 5.0).sin(),
        ];
        let mid = [(a[0] + b[0]) / 2.0, (a[1] + b[1]) / 2.0];
        let d2 = ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)) / 4.0;
        let want = (2.0 / 5.0 * (-d2 / (2.0 * 0.09)).exp() / (2.0 * std::f64::consts::PI * 0.09))
            .ln()
            + 2.0 * s.ln();
        let got = t.log_density([mid[0] / s, mid[1] / s]).unwrap();
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        assert!(Target::Moons.log_density([0.0, 0.0]).is_none());
    }

    #[test]
    fn normalised_samples_have_unit_std_and_are_reproducible() {
        for t in ALL_TARGETS {
            let mut rng = rand::rngs::StdRng::seed_from_u64(3);
            let v = t.sample(20_000, &mut rng);
            let m = v.iter().sum::<f64>() / v.len() as f64;
            let sd = (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt();
            assert!((sd - 1.0).abs() < 0.05, "{t:?}: std {sd}");
            let mut rng2 = rand::rngs::StdRng::seed_from_u64(3);
            assert_eq!(t.sample(5, &mut rng2), v[..10].to_vec());
        }
    }
}
