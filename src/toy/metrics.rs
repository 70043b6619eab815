//! Toy-experiment metrics: rank correlation, coverage, energy distance and mode statistics (the KDE
//! log-density is in [`super::kde`]).

/// Ranks (1-based, ties averaged).
fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for k in i..=j {
            r[idx[k]] = avg;
        }
        i = j + 1;
    }
    r
}

/// Pearson correlation.
pub fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len()) as f64;
    if n < 2.0 {
        return f64::NAN;
    }
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma).powi(2);
        sbb += (y - mb).powi(2);
    }
    sab / (saa * sbb).sqrt()
}

/// Spearman rank correlation.
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    pearson(&ranks(a), &ranks(b))
}

/// The q-quantile (linear interpolation) of `v`.
pub fn quantile(v: &[f64], q: f64) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    if s.is_empty() {
        return f64::NAN;
    }
    s.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (s.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    s[lo] + (s[hi] - s[lo]) * (pos - lo as f64)
}

/// Energy distance between two 2-D point sets (row-major [n, 2]), V-statistic form:
/// `2 E|X - Y| - E|X - X'| - E|Y - Y'|` over all pairs (i = j included). Zero when the sets are equal,
/// positive otherwise, and unlike a coverage share it grows when the points collapse onto a part of
/// the target (a point mass at distance r from another has 2 r). At most `max_n` rows of each set are
/// used (the first ones), so that the cost stays O(max_n^2).
pub fn energy_distance(a: &[f64], b: &[f64], max_n: usize) -> f64 {
    let a = &a[..(a.len() / 2).min(max_n) * 2];
    let b = &b[..(b.len() / 2).min(max_n) * 2];
    let mean_dist = |x: &[f64], y: &[f64]| -> f64 {
        let (nx, ny) = (x.len() / 2, y.len() / 2);
        if nx == 0 || ny == 0 {
            return f64::NAN;
        }
        let total: f64 = x
            .chunks_exact(2)
            .map(|p| {
                y.chunks_exact(2)
                    .map(|q| ((p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2)).sqrt())
                    .sum::<f64>()
            })
            .sum();
        total / (nx * ny) as f64
    };
    2.0 * mean_dist(a, b) - mean_dist(a, a) - mean_dist(b, b)
}

/// Share of points whose NLL is below `threshold`.
pub fn coverage(nll: &[f64], threshold: f64) -> f64 {
    nll.iter().filter(|&&v| v <= threshold).count() as f64 / nll.len().max(1) as f64
}

/// For a Gaussian mixture (means in normalised units): the share of points nearest to each mean.
pub fn mode_shares(points: &[f64], means: &[[f64; 2]]) -> Vec<f64> {
    let mut counts = vec![0usize; means.len()];
    for p in points.chunks_exact(2) {
        let k = means
            .iter()
            .enumerate()
            .map(|(k, m)| (k, (p[0] - m[0]).powi(2) + (p[1] - m[1]).powi(2)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(k, _)| k)
            .unwrap_or(0);
        counts[k] += 1;
    }
    let n = (points.len() / 2).max(1) as f64;
    counts.into_iter().map(|c| c as f64 / n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_correlation_and_quantiles() {
        assert!((spearman(&[1.0, 2.0, 3.0, 4.0], &[10.0, 20.0, 25.0, 100.0]) - 1.0).abs() < 1e-12);
        assert!((spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        // Ties get averaged ranks: ranks of [1, 1, 2] are [1.5, 1.5, 3].
        assert_eq!(ranks(&[1.0, 1.0, 2.0]), vec![1.5, 1.5, 3.0]);
        assert_eq!(quantile(&[4.0, 1.0, 3.0, 2.0], 0.5), 2.5);
        assert_eq!(coverage(&[1.0, 2.0, 3.0, 4.0], 2.5), 0.5);
        let shares = mode_shares(
            &[0.1, 0.0, 0.9, 1.0, 1.1, 0.9, 5.0, 5.0],
            &[[0.0, 0.0], [1.0, 1.0]],
        );
        assert_eq!(shares, vec![0.25, 0.75]);
    }

    #[test]
    fn energy_distance_of_point_masses_and_of_equal_sets() {
        // Point masses at (0, 0) and (3, 4): 2 * 5 - 0 - 0.
        let a = [0.0, 0.0, 0.0, 0.0];
        let b = [3.0, 4.0, 3.0, 4.0, 3.0, 4.0];
        assert!((energy_distance(&a, &b, 100) - 10.0).abs() < 1e-12);
        let c = [0.0, 1.0, 2.0, -1.0, 0.5, 0.5];
        assert!(energy_distance(&c, &c, 100).abs() < 1e-12);
        // Two points {x, y} against one of them: 2 * (|x-y| / 2) - |x-y| / 2 - 0 = |x-y| / 2.
        let d = [0.0, 0.0, 2.0, 0.0];
        assert!((energy_distance(&d, &[0.0, 0.0], 100) - 1.0).abs() < 1e-12);
        // Points collapsed at the centre of a circle of radius R = 2 against points spread evenly on
        // it: E|X - Y| = R, E|Y - Y'| = the mean chord 4R / pi, so D = 2R - 4R / pi.
        let spread: Vec<f64> = (0..400)
            .flat_map(|i| {
                let t = std::f64::consts::TAU * i as f64 / 400.0;
                [t.cos() * 2.0, t.sin() * 2.0]
            })
            .collect();
        let collapsed = vec![0.0; 400];
        let closed = 2.0 * 2.0 - 4.0 * 2.0 / std::f64::consts::PI;
        assert!((energy_distance(&collapsed, &spread, 1000) - closed).abs() < 1e-4);
    }
}
