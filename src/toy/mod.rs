//! The 2-D toy experiments of the paper (Fig. 3, 5, 6): train a flow prior on a 2-D target, then
//! optimise free points on L_align alone and watch their likelihood under the target rise.

pub mod kde;
pub mod metrics;
pub mod targets;

pub use targets::{ALL_TARGETS, Target};
