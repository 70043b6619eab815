//! The Inception Score of class probabilities: the samples are cut into `splits` consecutive parts,
//! each scores `exp(mean_x KL(p(y|x) || p(y)))` with `p(y)` the part's mean, and the score is the
//! mean (and population standard deviation) over parts, as the reference implementations compute it.

/// (mean, std) over splits of the Inception Score of `probs` (n x k, rows summing to 1).
pub fn inception_score(probs: &[f64], k: usize, splits: usize) -> (f64, f64) {
    let n = probs.len() / k.max(1);
    let splits = splits.clamp(1, n.max(1));
    let scores: Vec<f64> = (0..splits)
        .map(|s| {
            let (a, b) = (s * n / splits, (s + 1) * n / splits);
            let rows = &probs[a * k..b * k];
            let m = (b - a).max(1) as f64;
            let mut marginal = vec![0f64; k];
            for r in rows.chunks_exact(k) {
                for (p, v) in marginal.iter_mut().zip(r) {
                    *p += v / m;
                }
            }
            let kl: f64 = rows
                .chunks_exact(k)
                .map(|r| {
                    r.iter()
                        .zip(&marginal)
                        .filter(|(p, _)| **p > 0.0)
                        .map(|(p, q)| p * (p.ln() - q.ln()))
                        .sum::<f64>()
                })
                .sum::<f64>()
                / m;
            kl.exp()
        })
        .collect();
    let mean = scores.iter().sum::<f64>() / scores.len() as f64;
    let var = scores.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / scores.len() as f64;
    (mean, var.sqrt())
}

/// Row-wise softmax of logits (n x k), in f64.
pub fn softmax_rows(logits: &[f64], k: usize) -> Vec<f64> {
    logits
        .chunks_exact(k)
        .flat_map(|r| {
            let m = r.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = r.iter().map(|v| (v - m).exp()).collect();
            let s: f64 = e.iter().sum();
            e.into_iter().map(move |v| v / s)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_forms() {
        // A uniform classifier: p(y|x) = p(y), KL 0, score 1.
        let uniform = vec![0.1; 200 * 10];
        let (m, s) = inception_score(&uniform, 10, 10);
        assert!((m - 1.0).abs() < 1e-12 && s.abs() < 1e-12);
        // Perfectly confident and balanced within each split: KL = ln K, score K.
        let confident: Vec<f64> = (0..200)
            .flat_map(|i| (0..10).map(move |c| if c == i % 10 { 1.0 } else { 0.0 }))
            .collect();
        let (m, s) = inception_score(&confident, 10, 10);
        assert!((m - 10.0).abs() < 1e-9 && s.abs() < 1e-9);
        // Collapsed onto one class: confident but p(y) is a point mass, score 1.
        let collapsed: Vec<f64> = (0..100).flat_map(|_| [1.0, 0.0, 0.0]).collect();
        assert!((inception_score(&collapsed, 3, 5).0 - 1.0).abs() < 1e-12);
        // By hand: rows (0.9, 0.1) and (0.1, 0.9), p(y) = (0.5, 0.5).
        let two = [0.9, 0.1, 0.1, 0.9];
        let kl: f64 = 0.9 * (0.9f64 / 0.5).ln() + 0.1 * (0.1f64 / 0.5).ln();
        assert!((inception_score(&two, 2, 1).0 - kl.exp()).abs() < 1e-12);
        // Softmax rows sum to one and keep the order.
        let p = softmax_rows(&[1.0, 2.0, 3.0, 0.0, 0.0, 0.0], 3);
        assert!((p[..3].iter().sum::<f64>() - 1.0).abs() < 1e-12 && p[2] > p[1]);
        assert!((p[3] - 1.0 / 3.0).abs() < 1e-12);
    }
}
