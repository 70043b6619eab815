//! Neural networks used by the pipeline's stages, and the class-conditional flow-matching training and
//! sampling of the generators built from them (`cond`).

pub mod classifier;
pub mod cond;
pub mod dit;
pub mod efficientnet;
pub mod heads;
pub mod inception;
pub mod latent_ae;
pub mod layers;
pub mod mar;
pub mod posterior;
pub mod tokenizer;

/// Test helpers shared by the models' tests.
#[cfg(test)]
pub(crate) mod testing {
    use burn::module::{ModuleMapper, Param};
    use burn::tensor::backend::Backend;
    use burn::tensor::{Distribution, Tensor};

    /// Adds N(0, 0.1^2) noise to every parameter: turns a zero-initialised network into one with
    /// non-zero outputs. On an autodiff backend the parameters stay leaves that require a gradient.
    pub(crate) struct Perturb;

    impl<B: Backend> ModuleMapper<B> for Perturb {
        fn map_float<const D: usize>(&mut self, p: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            p.map(|t| {
                let grad = t.is_require_grad();
                let moved = (t.clone() + t.random_like(Distribution::Normal(0.0, 0.1))).detach();
                if grad { moved.require_grad() } else { moved }
            })
        }
    }
}
