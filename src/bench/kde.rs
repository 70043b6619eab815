//! The toy metrics' KDE: the k-d tree with its kernel cut-off against the sum over every sample, on the
//! same samples and points, at the paper's toy sizes (100k samples, bandwidth 0.1, 1000 points and the
//! 60 x 60 landscape grid over [-3, 3]^2).

use std::time::Instant;

use rand::SeedableRng;

use crate::toy::Target;
use crate::toy::kde::Kde;

/// One target's row.
#[derive(Debug, Clone)]
pub struct KdeRow {
    pub target: Target,
    pub points: usize,
    /// Seconds for all points: the tree, then every sample.
    pub tree_s: f64,
    pub brute_s: f64,
    /// Largest `brute - tree` over the points (nats; the cut-off's error, bounded by the tolerance).
    pub max_error: f64,
}

/// Times both on every target that has no closed-form density (the ones the toy runs a KDE for).
pub fn kde_bench(samples: usize, bandwidth: f64, points: usize, grid: usize) -> Vec<KdeRow> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    crate::toy::ALL_TARGETS
        .iter()
        .copied()
        .filter(|t| t.log_density([0.0, 0.0]).is_none())
        .map(|target| {
            let kde = Kde::new(&target.sample(samples, &mut rng), bandwidth);
            let mut pts = target.sample(points, &mut rng);
            let g = grid.max(2);
            pts.extend((0..g * g).flat_map(|i| {
                let at = |k: usize| -3.0 + 6.0 * k as f64 / (g - 1) as f64;
                [at(i % g), at(i / g)]
            }));
            let start = Instant::now();
            let tree = kde.log_density(&pts);
            let tree_s = start.elapsed().as_secs_f64();
            let start = Instant::now();
            let brute = kde.log_density_brute(&pts);
            let brute_s = start.elapsed().as_secs_f64();
            let max_error = tree
                .iter()
                .zip(&brute)
                .map(|(t, b)| b - t)
                .fold(0.0f64, f64::max);
            KdeRow {
                target,
                points: pts.len() / 2,
                tree_s,
                brute_s,
                max_error,
            }
        })
        .collect()
}
