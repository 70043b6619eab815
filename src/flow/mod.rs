//! Flow priors: the velocity network, flow-matching and alignment losses, samplers, exact
//! log-likelihood and the prior's trainer.
//!
//! # Time convention (one for the whole crate)
//! **t = 0 is noise, t = 1 is data** (the paper's convention):
//! `x_t = (1 - t) x0 + t x1` with `x0 ~ N(0, I)`, and the network predicts the velocity
//! `dx_t/dt = x1 - x0`. Sampling integrates `dx/dt = v(x, t)` from t = 0 to t = 1.
//!
//! The public code of the paper uses the opposite convention (t = 0 data, target `noise - data`).
//! The two describe the same loss under `t -> 1 - t, v -> -v`; [`ReversedTime`] wraps a field
//! trained that way so that it can be used here unchanged.

pub mod likelihood;
pub mod loss;
pub mod net;
pub mod sample;
pub mod shard;
pub mod train;

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

pub use likelihood::{Divergence, divergence, elbo_c, log_likelihood};
pub use loss::{align_loss, align_loss_with, flow_matching_loss, flow_matching_loss_with};
pub use net::{FlowNetConfig, SimpleMlpAdaLn};
pub use sample::{Solver, sample};

/// A time-dependent velocity field v(x, t) on [N, d] points and [N] times (t = 0 noise, t = 1 data).
pub trait VelocityField<B: Backend> {
    fn velocity(&self, x: Tensor<B, 2>, t: Tensor<B, 1>) -> Tensor<B, 2>;
}

impl<B: Backend> VelocityField<B> for SimpleMlpAdaLn<B> {
    fn velocity(&self, x: Tensor<B, 2>, t: Tensor<B, 1>) -> Tensor<B, 2> {
        self.forward(x, t)
    }
}

/// A field trained with the opposite convention (t = 0 data, target noise - data), seen in this
/// crate's convention: `v(x, t) = -u(x, 1 - t)`.
pub struct ReversedTime<F>(pub F);

impl<B: Backend, F: VelocityField<B>> VelocityField<B> for ReversedTime<F> {
    fn velocity(&self, x: Tensor<B, 2>, t: Tensor<B, 1>) -> Tensor<B, 2> {
        self.0.velocity(x, t.neg() + 1.0).neg()
    }
}

#[cfg(test)]
pub(crate) mod tests;
