//! Learning-rate schedules: linear warm-up then cosine decay (the paper's Table 3), or constant.

use serde::{Deserialize, Serialize};

/// A learning-rate schedule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum LrSchedule {
    /// The same rate at every step.
    Constant { lr: f64 },
    /// `lr * (step + 1) / warmup` for the first `warmup` steps, then a cosine from `lr` down to
    /// `min_lr` at `total` steps.
    Cosine {
        lr: f64,
        warmup: usize,
        total: usize,
        min_lr: f64,
    },
}

impl LrSchedule {
    /// The rate at 0-based `step`.
    pub fn at(&self, step: usize) -> f64 {
        match *self {
            LrSchedule::Constant { lr } => lr,
            LrSchedule::Cosine {
                lr,
                warmup,
                total,
                min_lr,
            } => {
                if step < warmup {
                    lr * (step + 1) as f64 / warmup as f64
                } else {
                    let span = total.saturating_sub(warmup).max(1) as f64;
                    let progress = ((step - warmup) as f64 / span).min(1.0);
                    min_lr + 0.5 * (lr - min_lr) * (1.0 + (std::f64::consts::PI * progress).cos())
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine_hits_known_values() {
        let s = LrSchedule::Cosine {
            lr: 1e-3,
            warmup: 10,
            total: 110,
            min_lr: 0.0,
        };
        assert!((s.at(0) - 1e-4).abs() < 1e-15);
        assert!((s.at(9) - 1e-3).abs() < 1e-15);
        assert!((s.at(10) - 1e-3).abs() < 1e-15); // cosine starts at the peak
        assert!((s.at(60) - 5e-4).abs() < 1e-12); // half way: cos(pi/2) = 0
        assert!(s.at(110).abs() < 1e-15);
        assert!(s.at(500).abs() < 1e-15);
        assert_eq!(LrSchedule::Constant { lr: 0.5 }.at(7), 0.5);
    }
}
