//! Prior-selection diagnostics of a target feature set: intrinsic dimension (TwoNN, Facco et al. 2017),
//! the spread of k-NN distances, and a cluster-separation ratio.

use rand::{Rng, SeedableRng};

use super::knn::knn_sq_dists;

/// TwoNN maximum-likelihood intrinsic dimension: with `mu_i = r2 / r1` the ratio of each point's second
/// to first nearest-neighbour distance, `d = N / sum(ln mu_i)`. Points with duplicate neighbours
/// (r1 = 0) are left out.
pub fn two_nn(rows: &[f32], d: usize) -> f64 {
    let nn = knn_sq_dists(rows, rows, d, 2, true);
    let logs: Vec<f64> = nn
        .chunks_exact(2)
        .filter(|r| r[0] > 0.0 && r[1].is_finite())
        .map(|r| 0.5 * (f64::from(r[1]) / f64::from(r[0])).ln())
        .collect();
    logs.len() as f64 / logs.iter().sum::<f64>().max(f64::MIN_POSITIVE)
}

/// Spread of the distance to the k-th nearest neighbour: (median, coefficient of variation).
/// A large coefficient means very uneven density, which a flow prior models less easily.
pub fn knn_distance_spread(rows: &[f32], d: usize, k: usize) -> (f64, f64) {
    let nn = knn_sq_dists(rows, rows, d, k, true);
    let mut r: Vec<f64> = nn
        .chunks_exact(k)
        .map(|x| f64::from(x[k - 1]).sqrt())
        .collect();
    r.sort_by(f64::total_cmp);
    let n = r.len().max(1) as f64;
    let mean = r.iter().sum::<f64>() / n;
    let sd = (r.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
    (
        r.get(r.len() / 2).copied().unwrap_or(f64::NAN),
        sd / mean.max(f64::MIN_POSITIVE),
    )
}

/// Cluster separation: mean distance between random pairs divided by the mean nearest-neighbour
/// distance. Near 1 for a featureless cloud in high dimension, large for tight, separated clusters.
pub fn separation_ratio(rows: &[f32], d: usize) -> f64 {
    let n = rows.len() / d;
    if n < 3 {
        return f64::NAN;
    }
    let nn = knn_sq_dists(rows, rows, d, 1, true);
    let nn_mean = nn.iter().map(|x| f64::from(*x).sqrt()).sum::<f64>() / n as f64;
    // A fixed pseudo-random partner per point (independent of any order the rows were stored in).
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let pair_mean = (0..n)
        .map(|i| {
            let j = (i + 1 + rng.random_range(0..n - 1)) % n;
            let (a, b) = (&rows[i * d..(i + 1) * d], &rows[j * d..(j + 1) * d]);
            f64::from(a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f32>()).sqrt()
        })
        .sum::<f64>()
        / n as f64;
    pair_mean / nn_mean.max(f64::MIN_POSITIVE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_distr::{Distribution, Normal};

    #[test]
    fn two_nn_finds_the_dimension_of_a_plane_embedded_in_ten_dimensions() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let normal = Normal::new(0.0f32, 1.0).expect("normal");
        let (n, d) = (4000, 10);
        let mut rows = vec![0f32; n * d];
        for r in rows.chunks_exact_mut(d) {
            let (u, v) = (normal.sample(&mut rng), normal.sample(&mut rng));
            // A 2-D plane spanned by two fixed directions.
            for (j, x) in r.iter_mut().enumerate() {
                *x = u * (j as f32 * 0.3).cos() + v * (j as f32 * 0.7).sin();
            }
        }
        let id = two_nn(&rows, d);
        assert!((id - 2.0).abs() < 0.2, "TwoNN on a plane: {id}");
        let full: Vec<f32> = (0..n * 5).map(|_| normal.sample(&mut rng)).collect();
        let id5 = two_nn(&full, 5);
        assert!((id5 - 5.0).abs() < 0.5, "TwoNN on a 5-D Gaussian: {id5}");
    }

    #[test]
    fn separated_clusters_have_a_large_separation_ratio() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(6);
        let normal = Normal::new(0.0f32, 0.05).expect("normal");
        let d = 3;
        let mut rows = Vec::new();
        for i in 0..600 {
            let c = if i % 2 == 0 { 10.0 } else { -10.0 };
            rows.extend((0..d).map(|_| c + normal.sample(&mut rng)));
        }
        let clustered = separation_ratio(&rows, d);
        let cloud: Vec<f32> = (0..600 * d).map(|_| normal.sample(&mut rng)).collect();
        assert!(
            clustered > 20.0 * separation_ratio(&cloud, d),
            "{clustered}"
        );
        let (median, cv) = knn_distance_spread(&cloud, d, 5);
        assert!(median > 0.0 && cv > 0.0 && cv < 1.0);
    }
}
