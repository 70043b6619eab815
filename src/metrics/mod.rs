//! Metrics computed on the host: Frechet distances between feature statistics, exact k-nearest-neighbour
//! search and what is built on it (the k-NN NLL proxy, precision/recall), intrinsic dimension,
//! top-1 accuracy of class logits.

pub mod accuracy;
pub mod frechet;
pub mod image;
pub mod inception_score;
pub mod intrinsic;
pub mod knn;
