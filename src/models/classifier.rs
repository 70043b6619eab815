//! A small MLP image classifier: the project's own feature network for FID-like metrics on
//! 28x28 datasets (trained once per dataset and cached), and the end-to-end job that exercises a
//! backend, the data readers and the run store.

use crate::activation::relu::relu;
use crate::dense::linear;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// Input -> hidden -> hidden -> classes, ReLU between layers.
#[derive(Module, Debug)]
pub struct MlpClassifier<B: Backend> {
    fc1: Linear<B>,
    fc2: Linear<B>,
    head: Linear<B>,
}

impl<B: Backend> MlpClassifier<B> {
    pub fn new(input: usize, hidden: usize, classes: usize, device: &B::Device) -> Self {
        MlpClassifier {
            fc1: LinearConfig::new(input, hidden).init(device),
            fc2: LinearConfig::new(hidden, hidden).init(device),
            head: LinearConfig::new(hidden, classes).init(device),
        }
    }

    /// Penultimate activations: the features FID-like metrics use.
    pub fn features(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        relu(linear(&self.fc2, relu(linear(&self.fc1, x))))
    }

    /// Class logits.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.head(self.features(x))
    }

    /// Class logits of penultimate features.
    pub fn head(&self, features: Tensor<B, 2>) -> Tensor<B, 2> {
        linear(&self.head, features)
    }
}
