//! Neural networks used by the pipeline's stages.

pub mod classifier;
pub mod dit;
pub mod efficientnet;
pub mod inception;
pub mod latent_ae;
pub mod mar;
pub mod posterior;
pub mod tokenizer;
