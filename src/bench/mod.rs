//! Benchmark jobs: training steps of the pipeline timed on a backend, beside the PyTorch replicas
//! of the same steps that `flowprior bench` runs in the same invocation.

pub mod align;
pub mod features;
pub mod generator;
pub mod kde;
pub mod prior;
pub mod trainers;
