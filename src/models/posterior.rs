//! A diagonal Gaussian posterior per latent element (the KL-VAE stage and the tokenizer's KL
//! baseline): the reparameterised sample and the KL term to N(0, I), both mean-reduced.

use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};

/// Mean KL(N(mean, exp(logvar)) || N(0, 1)) over elements: `0.5 (mean^2 + e^logvar - logvar - 1)`.
pub fn kl_to_standard_normal<B: Backend, const D: usize>(
    mean: Tensor<B, D>,
    logvar: Tensor<B, D>,
) -> Tensor<B, 1> {
    ((mean.powi_scalar(2) + logvar.clone().exp() - logvar - 1.0) * 0.5).mean()
}

/// A reparameterised sample `mean + exp(logvar / 2) eps` (log-variance clamped to [-30, 20]) and the
/// KL term of the posterior.
pub fn sample_with_kl<B: Backend, const D: usize>(
    mean: Tensor<B, D>,
    logvar: Tensor<B, D>,
) -> (Tensor<B, D>, Tensor<B, 1>) {
    let eps = mean.random_like(Distribution::Normal(0.0, 1.0));
    sample_with_kl_given(mean, logvar, eps)
}

/// [`sample_with_kl`] for a given draw `eps ~ N(0, I)` shaped like `mean`.
pub fn sample_with_kl_given<B: Backend, const D: usize>(
    mean: Tensor<B, D>,
    logvar: Tensor<B, D>,
    eps: Tensor<B, D>,
) -> (Tensor<B, D>, Tensor<B, 1>) {
    let logvar = logvar.clamp(-30.0, 20.0);
    let z = mean.clone() + (logvar.clone() * 0.5).exp() * eps;
    (z, kl_to_standard_normal(mean, logvar))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    type B = crate::backend::TestBackend;

    #[test]
    fn kl_matches_hand_values() {
        let device = Default::default();
        // KL(N(m, e^lv) || N(0, 1)) per element: 0.5 (m^2 + e^lv - lv - 1).
        let m = Tensor::<B, 2>::from_data(
            TensorData::new(vec![0.0f32, 1.0, -2.0, 0.5], [2, 2]),
            &device,
        );
        let lv = Tensor::<B, 2>::from_data(
            TensorData::new(vec![0.0f32, 0.0, 2f32.ln(), -1.0], [2, 2]),
            &device,
        );
        let got: f64 = kl_to_standard_normal(m, lv)
            .into_data()
            .iter::<f64>()
            .next()
            .unwrap();
        let e = std::f64::consts::E;
        let hand = [
            0.0,
            0.5 * 1.0,
            0.5 * (4.0 + 2.0 - 2f64.ln() - 1.0),
            0.5 * (0.25 + 1.0 / e + 1.0 - 1.0),
        ];
        let want = hand.iter().sum::<f64>() / 4.0;
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    }
}
