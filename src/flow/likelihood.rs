//! Exact log-likelihood of points under a flow, by the instantaneous change of variables:
//! `log p_1(x_1) = log N(x_0; 0, I) - \int_0^1 div v(x_t, t) dt`, integrating the ODE backwards from
//! the data point (t = 1) to noise (t = 0) with classical RK4 on the pair (x, \int div).
//!
//! The divergence is exact for small d (all d diagonal Jacobian entries from one backward pass over
//! d stacked copies of the batch) or Hutchinson's estimator `E[eps^T J eps]` with Rademacher probes
//! for large d. Also the term `C(y)` of the paper's Proposition 1.

use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Distribution, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::VelocityField;

/// How to compute div v = Tr(dv/dx).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Divergence {
    /// Every diagonal Jacobian entry (cost: a batch d times larger).
    Exact,
    /// Hutchinson's estimator averaged over `probes` Rademacher vectors (unbiased, noisy).
    Hutchinson { probes: usize },
}

/// Velocity (inner backend) and divergence (per point, f64) of `field` at points `x` and time `t`.
pub fn divergence<B: AutodiffBackend, V: VelocityField<B>>(
    field: &V,
    x: Tensor<B::InnerBackend, 2>,
    t: f64,
    how: Divergence,
) -> (Tensor<B::InnerBackend, 2>, Vec<f64>) {
    let [n, d] = x.dims();
    let device = x.device();
    let (copies, probe): (usize, Tensor<B::InnerBackend, 2>) = match how {
        Divergence::Exact => {
            // Copy i of the batch reads column i: mask[i*n + r, j] = [i == j].
            let mut mask = vec![0f32; d * n * d];
            for i in 0..d {
                for r in 0..n {
                    mask[(i * n + r) * d + i] = 1.0;
                }
            }
            (
                d,
                Tensor::from_data(TensorData::new(mask, [d * n, d]), &device),
            )
        }
        Divergence::Hutchinson { probes } => {
            let p = probes.max(1);
            let signs = Tensor::<B::InnerBackend, 2>::random(
                [p * n, d],
                Distribution::Bernoulli(0.5),
                &device,
            );
            (p, signs * 2.0 - 1.0)
        }
    };
    let xs = Tensor::<B, 2>::from_inner(x.repeat_dim(0, copies)).require_grad();
    let ts = Tensor::<B, 1>::full([copies * n], t, &device);
    let v = field.velocity(xs.clone(), ts);
    let weighted = (v.clone() * Tensor::<B, 2>::from_inner(probe.clone())).sum();
    let grads = weighted.backward();
    let g = xs
        .grad(&grads)
        .unwrap_or_else(|| Tensor::zeros([copies * n, d], &device));
    let per_copy = (g * probe).sum_dim(1).reshape([copies, n]);
    let div_t = match how {
        Divergence::Exact => per_copy.sum_dim(0),
        Divergence::Hutchinson { .. } => per_copy.mean_dim(0),
    };
    let div: Vec<f64> = div_t.into_data().iter::<f64>().collect();
    let velocity = v.inner().slice([0..n, 0..d]);
    (velocity, div)
}

/// Standard-normal log-density of each row of `x`.
pub fn std_normal_log_density<B: burn::tensor::backend::Backend>(x: Tensor<B, 2>) -> Vec<f64> {
    let [n, d] = x.dims();
    let values: Vec<f64> = x.into_data().iter::<f64>().collect();
    let c = d as f64 * (2.0 * std::f64::consts::PI).ln();
    (0..n)
        .map(|i| {
            -0.5 * (values[i * d..(i + 1) * d]
                .iter()
                .map(|v| v * v)
                .sum::<f64>()
                + c)
        })
        .collect()
}

/// log p_1(x) of each row of `x` ([N, d]) under the flow, with `steps` RK4 steps backwards in time.
pub fn log_likelihood<B: AutodiffBackend, V: VelocityField<B>>(
    field: &V,
    x: Tensor<B::InnerBackend, 2>,
    steps: usize,
    how: Divergence,
) -> Vec<f64> {
    let [n, _] = x.dims();
    let steps = steps.max(1);
    let h = 1.0 / steps as f64;
    let mut x = x;
    let mut integral = vec![0f64; n];
    let mut t = 1.0;
    for _ in 0..steps {
        let (k1, d1) = divergence::<B, V>(field, x.clone(), t, how);
        let (k2, d2) =
            divergence::<B, V>(field, x.clone() - k1.clone() * (h / 2.0), t - h / 2.0, how);
        let (k3, d3) =
            divergence::<B, V>(field, x.clone() - k2.clone() * (h / 2.0), t - h / 2.0, how);
        let (k4, d4) = divergence::<B, V>(field, x.clone() - k3.clone() * h, t - h, how);
        x = x - (k1 + k2 * 2.0 + k3 * 2.0 + k4) * (h / 6.0);
        for i in 0..n {
            integral[i] += (d1[i] + 2.0 * d2[i] + 2.0 * d3[i] + d4[i]) * h / 6.0;
        }
        t -= h;
    }
    std_normal_log_density(x)
        .into_iter()
        .zip(integral)
        .map(|(lp0, int)| lp0 - int)
        .collect()
}

/// Monte-Carlo estimate of `C(y) = -E_{s ~ U[0,1], x0 ~ N(0,I)} Tr(dv/dz((1 - s) x0 + s y, s))`
/// (Proposition 1: `log p_1(y) >= C(y) - L_align(y)` with L_align's squared norm summed over
/// dimensions), per row of `y`, from `samples` draws of (s, x0).
pub fn elbo_c<B: AutodiffBackend, V: VelocityField<B>>(
    field: &V,
    y: Tensor<B::InnerBackend, 2>,
    samples: usize,
    how: Divergence,
    seed_s: &mut impl rand::Rng,
) -> Vec<f64> {
    let [n, _] = y.dims();
    let mut acc = vec![0f64; n];
    let samples = samples.max(1);
    for _ in 0..samples {
        let s: f64 = seed_s.random();
        let x0 = y.random_like(Distribution::Normal(0.0, 1.0));
        let z = x0 * (1.0 - s) + y.clone() * s;
        let (_, div) = divergence::<B, V>(field, z, s, how);
        for i in 0..n {
            acc[i] -= div[i] / samples as f64;
        }
    }
    acc
}
