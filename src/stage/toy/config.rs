//! The toy experiment's configurations: one target's two stages (the prior on the target, the free
//! points under it), their presets per scale, checks and run identities.

use crate::backend::BackendKind;
use crate::config::{fractions, positive_counts, positive_rates};
use crate::flow::FlowNetConfig;
use crate::flow::train::{OptimizerKind, PriorTrainConfig};
use crate::store::RunSpec;
use crate::toy::Target;
use crate::train::LrSchedule;
use serde::{Deserialize, Serialize};

/// The toy's presets are the project's scale presets: `paper` is the paper's setting, `small` a few
/// minutes on a laptop, `smoke` (also `tiny`) seconds.
pub use crate::preset::Scale as ToyPreset;

/// Configuration of one toy experiment (one target): its two stages, run one after the other by
/// `flowprior toy` as a sweep runs them.
#[derive(Debug, Clone, PartialEq)]
pub struct ToyConfig {
    pub prior: ToyPriorConfig,
    pub align: ToyAlignConfig,
}

impl ToyConfig {
    pub fn preset(p: ToyPreset, target: Target) -> ToyConfig {
        ToyConfig {
            prior: ToyPriorConfig::preset(p, target),
            align: ToyAlignConfig::preset(p),
        }
    }

    /// Checks both stages' settings; names the offending key.
    pub fn validate(&self) -> std::result::Result<(), String> {
        self.prior.validate()?;
        self.align.validate()
    }

    /// The seed of both stages.
    pub fn set_seed(&mut self, seed: u64) {
        self.prior.seed = seed;
        self.align.seed = seed;
    }

    /// The backend of both stages.
    pub fn set_backend(&mut self, backend: BackendKind) {
        self.prior.backend = backend;
        self.align.backend = backend;
    }

    /// Applies `patch`, a flat table of settings of either stage (`seed` and `backend` go to both);
    /// a key neither stage has, or a value of the wrong type, is an error naming the key.
    pub fn overlay(
        &self,
        patch: &serde_json::Map<String, serde_json::Value>,
    ) -> std::result::Result<ToyConfig, String> {
        /// `base` with the patch's keys that it has set; a value of the wrong type is reported with
        /// its key (`width`: invalid type ...).
        fn apply<T: Serialize + serde::de::DeserializeOwned>(
            base: &T,
            patch: &serde_json::Map<String, serde_json::Value>,
        ) -> std::result::Result<T, String> {
            let v = serde_json::to_value(base).map_err(|e| e.to_string())?;
            let with = |keys: &mut dyn Iterator<Item = (&String, &serde_json::Value)>| {
                let mut v = v.clone();
                if let Some(obj) = v.as_object_mut() {
                    for (k, x) in keys {
                        if let Some(slot) = obj.get_mut(k) {
                            *slot = x.clone();
                        }
                    }
                }
                serde_json::from_value::<T>(v)
            };
            with(&mut patch.iter()).map_err(|e| {
                match patch
                    .iter()
                    .find_map(|kv| with(&mut std::iter::once(kv)).err().map(|e| (kv.0, e)))
                {
                    Some((k, e)) => format!("`{k}`: {e}"),
                    None => e.to_string(),
                }
            })
        }
        let (prior, align) = (
            crate::util::config_json(&self.prior),
            crate::util::config_json(&self.align),
        );
        if let Some(k) = patch
            .keys()
            .find(|k| prior.get(k.as_str()).is_none() && align.get(k.as_str()).is_none())
        {
            return Err(format!("unknown setting `{k}` of the toy experiment"));
        }
        Ok(ToyConfig {
            prior: apply(&self.prior, patch)?,
            align: apply(&self.align, patch)?,
        })
    }
}

/// The `toy_prior` stage: a flow prior trained on a 2-D target. Every field is part of its identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToyPriorConfig {
    pub target: Target,
    pub backend: BackendKind,
    pub seed: u64,
    /// Prior network width and residual blocks (paper: 512, 4).
    pub width: usize,
    pub depth: usize,
    /// Prior training: steps, batch, learning rate (paper: 100k, 256, 1e-4).
    pub prior_steps: usize,
    pub prior_batch: usize,
    pub prior_lr: f64,
    /// Optimiser of the prior (the paper's toy: Adam), warm-up steps before a cosine decay (0: constant
    /// rate), global grad-norm clipping, and EMA decay (0: the raw weights are the prior, as in the toy).
    pub prior_optimizer: OptimizerKind,
    pub prior_warmup: usize,
    pub grad_clip: Option<f64>,
    pub ema_decay: f64,
}

impl ToyPriorConfig {
    /// Paper: width 512, 4 blocks, Adam 1e-4, batch 256, 100k steps, raw weights (no EMA).
    pub fn preset(p: ToyPreset, target: Target) -> ToyPriorConfig {
        let base = ToyPriorConfig {
            target,
            backend: BackendKind::Flex,
            seed: 0,
            width: 512,
            depth: 4,
            prior_steps: 100_000,
            prior_batch: 256,
            prior_lr: 1e-4,
            prior_optimizer: OptimizerKind::Adam,
            prior_warmup: 0,
            grad_clip: None,
            ema_decay: 0.0,
        };
        match p {
            ToyPreset::Paper => base,
            ToyPreset::Small | ToyPreset::Cpu => ToyPriorConfig {
                width: 128,
                depth: 3,
                prior_steps: 4000,
                prior_lr: 1e-3,
                ..base
            },
            ToyPreset::Smoke => ToyPriorConfig {
                width: 64,
                depth: 2,
                prior_steps: 1500,
                prior_lr: 2e-3,
                ..base
            },
        }
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        positive_counts(&[
            ("width", self.width),
            ("depth", self.depth),
            ("prior_steps", self.prior_steps),
            ("prior_batch", self.prior_batch),
        ])?;
        positive_rates(&[("prior_lr", self.prior_lr)])?;
        if self.prior_warmup > 0 && self.prior_warmup >= self.prior_steps {
            return Err(format!(
                "`prior_warmup` ({}) must be below `prior_steps` ({})",
                self.prior_warmup, self.prior_steps
            ));
        }
        if let Some(c) = self.grad_clip {
            positive_rates(&[("grad_clip", c)])?;
        }
        fractions(&[("ema_decay", self.ema_decay)])?;
        Ok(())
    }

    pub fn net(&self) -> FlowNetConfig {
        FlowNetConfig {
            dim: 2,
            width: self.width,
            depth: self.depth,
        }
    }

    /// The prior's training settings.
    pub fn prior_train(&self) -> PriorTrainConfig {
        let schedule = if self.prior_warmup == 0 {
            LrSchedule::Constant { lr: self.prior_lr }
        } else {
            LrSchedule::Cosine {
                lr: self.prior_lr,
                warmup: self.prior_warmup,
                total: self.prior_steps,
                min_lr: 0.0,
            }
        };
        PriorTrainConfig {
            optimizer: self.prior_optimizer,
            schedule,
            beta1: 0.9,
            beta2: 0.999,
            weight_decay: 0.0,
            grad_clip: self.grad_clip,
            ema_decay: self.ema_decay,
            steps: self.prior_steps,
            batch: self.prior_batch,
        }
    }

    pub fn run_spec(&self) -> RunSpec {
        RunSpec {
            stage: TOY_PRIOR.into(),
            name: format!("{TOY_PRIOR}/{}", self.target.name()),
            config: crate::util::config_json(self),
            seed: Some(self.seed as i64),
        }
    }
}

/// The `toy_align` stage: free points optimised on L_align under a frozen `toy_prior`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToyAlignConfig {
    pub backend: BackendKind,
    pub seed: u64,
    /// Free points and their optimisation (paper: 1000 points, Adam 1e-2, 5000 steps).
    pub points: usize,
    pub align_steps: usize,
    pub align_lr: f64,
    /// Independent (t, x0) draws per point in L_align.
    pub flow_mul: usize,
    /// Evaluate NLL every N alignment steps; the exact flow NLL every `exact_every` evaluations
    /// on the first `exact_points` points with `exact_steps` RK4 steps.
    pub eval_every: usize,
    pub exact_every: usize,
    pub exact_points: usize,
    pub exact_steps: usize,
    /// KDE reference samples and bandwidth (paper: 100k, 0.1) for targets without a closed form.
    pub kde_samples: usize,
    pub kde_bandwidth: f64,
    /// Landscape grid resolution over [-3, 3]^2 and (t, x0) draws per grid point.
    pub grid: usize,
    pub landscape_draws: usize,
}

impl ToyAlignConfig {
    /// Paper: 1000 points, Adam 1e-2, 5000 steps; KDE on 100k samples with bandwidth 0.1.
    pub fn preset(p: ToyPreset) -> ToyAlignConfig {
        let base = ToyAlignConfig {
            backend: BackendKind::Flex,
            seed: 0,
            points: 1000,
            align_steps: 5000,
            align_lr: 1e-2,
            flow_mul: 1,
            eval_every: 50,
            exact_every: 10,
            exact_points: 200,
            exact_steps: 20,
            kde_samples: 100_000,
            kde_bandwidth: 0.1,
            grid: 60,
            landscape_draws: 4,
        };
        match p {
            ToyPreset::Paper => base,
            ToyPreset::Small | ToyPreset::Cpu => ToyAlignConfig {
                align_steps: 2000,
                eval_every: 40,
                kde_samples: 20_000,
                grid: 40,
                ..base
            },
            ToyPreset::Smoke => ToyAlignConfig {
                points: 300,
                align_steps: 300,
                eval_every: 25,
                exact_every: 6,
                exact_points: 50,
                exact_steps: 8,
                kde_samples: 4000,
                grid: 24,
                landscape_draws: 2,
                ..base
            },
        }
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        positive_counts(&[
            ("points", self.points),
            ("flow_mul", self.flow_mul),
            ("eval_every", self.eval_every),
            ("exact_every", self.exact_every),
            ("exact_points", self.exact_points),
            ("exact_steps", self.exact_steps),
            ("kde_samples", self.kde_samples),
            ("grid", self.grid),
            ("landscape_draws", self.landscape_draws),
        ])?;
        positive_rates(&[
            ("align_lr", self.align_lr),
            ("kde_bandwidth", self.kde_bandwidth),
        ])
    }

    /// The run of this stage under the prior whose run spec is `prior`: its identity includes the
    /// prior's configuration hash (`inputs.toy_prior`).
    pub fn run_spec(&self, prior: &ToyPriorConfig) -> RunSpec {
        let config = crate::jobs::identity(
            self,
            &[(TOY_PRIOR, &prior.run_spec().hash())],
            crate::jobs::tiled_gradient_entry(self.flow_mul > 1),
        );
        RunSpec {
            stage: TOY_ALIGN.into(),
            name: format!("{TOY_ALIGN}/{}", prior.target.name()),
            config,
            seed: Some(self.seed as i64),
        }
    }
}

/// Stage names of the toy experiment.
pub const TOY_PRIOR: &str = "toy_prior";
pub const TOY_ALIGN: &str = "toy_align";
