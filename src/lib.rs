//! flowprior: an experiment harness for "Aligning Latent Spaces with Flow Priors" (Li et al., 2025)
//! and the latent flow matching it builds on.
//!
//! Modules, one concern each:
//! * [`backend`]: run-time choice of Burn backend (flex CPU, CUDA, libtorch) behind cargo features;
//! * [`store`]: the SQLite run store (runs, params, metric series, summaries, artifacts);
//! * [`data`]: dataset readers, in-memory datasets and batching, the data catalogue;
//! * [`config`]: TOML configuration loading with precise errors;
//! * [`flow`]: the flow prior (velocity network, losses, samplers, exact likelihood, its trainer);
//! * [`train`]: the training loop every trainer shares (Adam step, clipping, EMA, schedules, progress);
//! * [`toy`]: 2-D toy targets and their metrics; [`plot`]: PNG figures;
//! * [`models`], [`jobs`]: networks and the jobs that train them;
//! * `simd`: the CPU's vector instruction sets, for the hand-written element-wise kernels;
//! * [`activation`], [`conv`]: activations and convolutions with their own kernels on the CPU backend;
//! * [`cli`]: the `flowprior` command line.

pub mod activation;
pub mod backend;
pub mod bench;
pub mod cli;
pub mod config;
pub mod conv;
pub mod data;
pub mod dense;
pub mod error;
pub mod features;
pub mod flow;
pub mod heap;
pub mod jobs;
pub mod linalg;
pub mod metrics;
pub mod models;
pub mod optim;
pub mod plot;
pub mod preset;
pub mod progress;
pub mod projection;
pub mod provenance;
pub mod report;
pub(crate) mod simd;
pub mod stage;
pub mod store;
pub mod sweep;
pub mod tensors;
pub mod toy;
pub mod train;
pub mod util;

#[cfg(test)]
mod layering;

pub use error::{Error, Result};
