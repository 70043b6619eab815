//! ODE samplers: integrate dx/dt = v(x, t) from noise (t = 0) to data (t = 1) with fixed steps.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use super::VelocityField;

/// Fixed-step ODE solver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Solver {
    /// x += dt v(x, t): one evaluation per step.
    Euler,
    /// Heun's predictor-corrector (explicit trapezoid): two evaluations per step, second order.
    Heun,
}

fn times<B: Backend>(n: usize, t: f64, device: &B::Device) -> Tensor<B, 1> {
    Tensor::full([n], t, device)
}

/// Pushes `x0` (noise, [N, d]) through the flow from t = 0 to t = 1 in `steps` steps.
pub fn sample<B: Backend, V: VelocityField<B>>(
    field: &V,
    x0: Tensor<B, 2>,
    steps: usize,
    solver: Solver,
) -> Tensor<B, 2> {
    let [n, _] = x0.dims();
    let device = x0.device();
    let dt = 1.0 / steps.max(1) as f64;
    let mut x = x0;
    for k in 0..steps.max(1) {
        let t = k as f64 * dt;
        let v = field.velocity(x.clone(), times::<B>(n, t, &device));
        x = match solver {
            Solver::Euler => x + v * dt,
            Solver::Heun => {
                let pred = x.clone() + v.clone() * dt;
                let v2 = field.velocity(pred, times::<B>(n, t + dt, &device));
                x + (v + v2) * (dt / 2.0)
            }
        };
    }
    x
}
