//! Exact nearest-neighbour search by tiled squared-distance matrices: blocks of queries against tiles of
//! targets, `|q|^2 + |t|^2 - 2 q.t` with the dot products from an sgemm kernel (matrixmultiply), query
//! blocks in parallel (rayon). On it: the k-NN NLL proxy of the paper's Fig. 4 (`log r_k`, the log
//! distance to the k-th nearest target) and k-NN precision/recall (Kynkaanniemi et al., 2019).

use rayon::prelude::*;

/// Queries per block (one rayon task) and targets per tile.
const QUERY_BLOCK: usize = 256;
const TARGET_TILE: usize = 1024;

fn sq_norms(rows: &[f32], d: usize) -> Vec<f32> {
    rows.chunks_exact(d)
        .map(|r| r.iter().map(|x| x * x).sum())
        .collect()
}

/// Runs `visit(state, query_index, first_target_index, squared_distances)` for every query against
/// every tile of targets (each call sees one row of a tile), with one state per query.
fn tiled<S: Send>(
    queries: &[f32],
    targets: &[f32],
    d: usize,
    init: impl Fn() -> S + Sync,
    visit: impl Fn(&mut S, usize, usize, &[f32]) + Sync,
) -> Vec<S> {
    assert!(d > 0 && queries.len().is_multiple_of(d) && targets.len().is_multiple_of(d));
    let nq = queries.len() / d;
    let nt = targets.len() / d;
    let qn = sq_norms(queries, d);
    let tn = sq_norms(targets, d);
    let mut states: Vec<S> = (0..nq).map(|_| init()).collect();
    states
        .par_chunks_mut(QUERY_BLOCK)
        .enumerate()
        .for_each(|(b, block)| {
            let q0 = b * QUERY_BLOCK;
            let m = block.len();
            let qs = &queries[q0 * d..(q0 + m) * d];
            let mut tile = vec![0f32; m * TARGET_TILE];
            for t0 in (0..nt).step_by(TARGET_TILE) {
                let n = TARGET_TILE.min(nt - t0);
                let ts = &targets[t0 * d..(t0 + n) * d];
                // SAFETY: qs is m x d row-major (row stride d), ts is n x d row-major, read as its
                // transpose d x n (row stride 1, column stride d); tile holds at least m x n values
                // written with row stride n. All slices outlive the call and do not alias.
                unsafe {
                    matrixmultiply::sgemm(
                        m,
                        d,
                        n,
                        1.0,
                        qs.as_ptr(),
                        d as isize,
                        1,
                        ts.as_ptr(),
                        1,
                        d as isize,
                        0.0,
                        tile.as_mut_ptr(),
                        n as isize,
                        1,
                    );
                }
                for (i, state) in block.iter_mut().enumerate() {
                    let row = &mut tile[i * n..(i + 1) * n];
                    let qi = qn[q0 + i];
                    for (x, tj) in row.iter_mut().zip(&tn[t0..t0 + n]) {
                        *x = (qi + tj - 2.0 * *x).max(0.0);
                    }
                    visit(state, q0 + i, t0, row);
                }
            }
        });
    states
}

/// The k smallest values seen, ascending.
#[derive(Clone)]
struct TopK {
    k: usize,
    vals: Vec<f32>,
}

impl TopK {
    /// Values at or above this cannot enter.
    fn threshold(&self) -> f32 {
        if self.vals.len() == self.k {
            self.vals[self.k - 1]
        } else {
            f32::INFINITY
        }
    }

    fn push(&mut self, v: f32) {
        if self.vals.len() == self.k {
            if v >= self.vals[self.k - 1] {
                return;
            }
            self.vals.pop();
        }
        let at = self.vals.partition_point(|&x| x <= v);
        self.vals.insert(at, v);
    }
}

/// Squared distances from each query to its `k` nearest targets, ascending (`nq x k`, row-major).
/// With `queries_are_targets`, query i is target i and is not its own neighbour.
pub fn knn_sq_dists(
    queries: &[f32],
    targets: &[f32],
    d: usize,
    k: usize,
    queries_are_targets: bool,
) -> Vec<f32> {
    assert!(k >= 1);
    let states = tiled(
        queries,
        targets,
        d,
        || TopK {
            k,
            vals: Vec::with_capacity(k + 1),
        },
        |top, qi, t0, row| {
            // Most values are above the current k-th: one comparison each on the hot path.
            let mut thr = top.threshold();
            for (j, &v) in row.iter().enumerate() {
                if v < thr && !(queries_are_targets && t0 + j == qi) {
                    top.push(v);
                    thr = top.threshold();
                }
            }
        },
    );
    states
        .into_iter()
        .flat_map(|t| {
            let mut v = t.vals;
            v.resize(k, f32::INFINITY);
            v
        })
        .collect()
}

/// The k-NN NLL proxy: the mean over queries of `log r_k`, the log Euclidean distance to the k-th
/// nearest target (a density estimate's negative log up to constants: larger means less likely).
pub fn knn_log_radius(queries: &[f32], targets: &[f32], d: usize, k: usize) -> f64 {
    let dists = knn_sq_dists(queries, targets, d, k, false);
    let n = dists.len() / k;
    dists
        .chunks_exact(k)
        .map(|r| 0.5 * f64::from(r[k - 1].max(f32::MIN_POSITIVE)).ln())
        .sum::<f64>()
        / n.max(1) as f64
}

/// The k-NN density estimate's negative log-likelihood, mean over queries (nats per point):
/// `p(x) ~ k / (N V_d r_k(x)^d)` with `V_d = pi^(d/2) / Gamma(d/2 + 1)` the unit ball's volume, so
/// `-log p(x) = d log r_k(x) + log N + log V_d - log k` (paper Fig. 4's proxy, with its constants).
pub fn knn_nll(queries: &[f32], targets: &[f32], d: usize, k: usize) -> f64 {
    let n = (targets.len() / d.max(1)) as f64;
    let half = d as f64 / 2.0;
    let log_vd = half * std::f64::consts::PI.ln() - ln_gamma(half + 1.0);
    d as f64 * knn_log_radius(queries, targets, d, k) + n.ln() + log_vd - (k as f64).ln()
}

/// ln Gamma(x) for x > 0 (Lanczos, g = 7, 9 terms; relative error below 1e-13).
pub fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection.
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let t = x + 7.5;
    let a = G[1..]
        .iter()
        .enumerate()
        .fold(G[0], |a, (i, g)| a + g / (x + i as f64 + 1.0));
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// Share of `queries` inside the k-NN manifold of `reference`: within the ball around some reference
/// point whose radius is that point's distance to its k-th nearest other reference point.
fn manifold_coverage(queries: &[f32], reference: &[f32], d: usize, k: usize) -> f64 {
    let radii = knn_sq_dists(reference, reference, d, k, true);
    let radius2: Vec<f32> = radii.chunks_exact(k).map(|r| r[k - 1]).collect();
    let inside = tiled(
        queries,
        reference,
        d,
        || false,
        |hit, _qi, t0, row| {
            if !*hit {
                *hit = row.iter().zip(&radius2[t0..]).any(|(x, r)| x <= r);
            }
        },
    );
    inside.iter().filter(|&&h| h).count() as f64 / inside.len().max(1) as f64
}

/// k-NN precision (share of generated samples inside the real manifold) and recall (share of real
/// samples inside the generated manifold).
pub fn precision_recall(real: &[f32], generated: &[f32], d: usize, k: usize) -> (f64, f64) {
    (
        manifold_coverage(generated, real, d, k),
        manifold_coverage(real, generated, d, k),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn random(n: usize, d: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n * d).map(|_| rng.random_range(-1.0f32..1.0)).collect()
    }

    fn naive(q: &[f32], t: &[f32], d: usize, k: usize, skip_self: bool) -> Vec<f32> {
        q.chunks_exact(d)
            .enumerate()
            .flat_map(|(i, a)| {
                let mut all: Vec<f32> = t
                    .chunks_exact(d)
                    .enumerate()
                    .filter(|(j, _)| !(skip_self && *j == i))
                    .map(|(_, b)| a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum())
                    .collect();
                all.sort_by(f32::total_cmp);
                all.truncate(k);
                all
            })
            .collect()
    }

    #[test]
    fn knn_nll_recovers_a_uniform_density() {
        // Targets uniform on [-1, 1]^2 (density 1/4, NLL ln 4); queries in the interior. The k-NN
        // estimate's bias is log k - digamma(k) (about 0.05 at k = 10).
        assert!((ln_gamma(5.0) - 24f64.ln()).abs() < 1e-12);
        assert!((ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-12);
        assert!((ln_gamma(2.5) - (0.75 * std::f64::consts::PI.sqrt()).ln()).abs() < 1e-12);
        let targets = random(40_000, 2, 3);
        let queries: Vec<f32> = random(2000, 2, 4).iter().map(|x| x * 0.5).collect();
        let got = knn_nll(&queries, &targets, 2, 10);
        assert!((got - 4f64.ln()).abs() < 0.1, "{got} vs {}", 4f64.ln());
        // Gaussian targets in 3-D: the estimate at the queries approaches the analytic NLL.
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let normal = rand_distr::StandardNormal;
        let t: Vec<f32> = (0..60_000 * 3)
            .map(|_| rng.sample::<f32, _>(normal))
            .collect();
        let q: Vec<f32> = (0..1000 * 3)
            .map(|_| rng.sample::<f32, _>(normal) * 0.5)
            .collect();
        let analytic = q
            .chunks_exact(3)
            .map(|x| {
                0.5 * x.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>()
                    + 1.5 * (2.0 * std::f64::consts::PI).ln()
            })
            .sum::<f64>()
            / 1000.0;
        let got = knn_nll(&q, &t, 3, 10);
        assert!((got - analytic).abs() < 0.15, "{got} vs {analytic}");
    }

    #[test]
    fn matches_a_naive_search_across_tiles_and_blocks() {
        // More targets than one tile and queries than one block; d not a multiple of anything.
        let d = 7;
        let q = random(2 * QUERY_BLOCK + 17, d, 1);
        let t = random(TARGET_TILE + 333, d, 2);
        let fast = knn_sq_dists(&q, &t, d, 5, false);
        let slow = naive(&q, &t, d, 5, false);
        for (a, b) in fast.iter().zip(&slow) {
            assert!((a - b).abs() <= 1e-4 * b.max(1.0), "{a} vs {b}");
        }
        let fast = knn_sq_dists(&t[..300 * d], &t[..300 * d], d, 3, true);
        let slow = naive(&t[..300 * d], &t[..300 * d], d, 3, true);
        for (a, b) in fast.iter().zip(&slow) {
            assert!((a - b).abs() <= 1e-4 * b.max(1.0));
        }
    }

    #[test]
    fn log_radius_is_the_mean_log_distance_to_the_kth_neighbour() {
        // Targets on a line at 0, 1, 2, ...; the query at -0.5 has its 3rd neighbour at 2 (2.5 away).
        let t: Vec<f32> = (0..10).map(|i| i as f32).collect();
        let q = [-0.5f32, 4.25];
        // 4.25: neighbours 4 (0.25), 5 (0.75), 3 (1.25).
        let want = (2.5f64.ln() + 1.25f64.ln()) / 2.0;
        assert!((knn_log_radius(&q, &t, 1, 3) - want).abs() < 1e-6);
    }

    #[test]
    fn a_set_against_itself_has_full_precision_and_recall_and_a_collapse_has_low_recall() {
        let d = 4;
        let real = random(400, d, 3);
        let (p, r) = precision_recall(&real, &real, d, 3);
        assert_eq!((p, r), (1.0, 1.0));
        // All generated samples at one real point: precise, but covering almost nothing.
        let collapsed: Vec<f32> = real[..d].repeat(400);
        let (p, r) = precision_recall(&real, &collapsed, d, 3);
        assert_eq!(p, 1.0);
        assert!(r < 0.05, "recall {r}");
    }
}
