//! The stage registry: every kind of stage a sweep can run, its inputs, its preset configurations, how
//! its configuration is checked, and how it runs.
//!
//! Adding a stage (priors, autoencoders, generators) means adding a variant here: a typed configuration
//! (serde, `deny_unknown_fields`, with `seed` and `backend` fields), its inputs, presets per [`Scale`],
//! and a job that claims its run through [`crate::jobs::run_or_reuse`] and records artifacts that its
//! dependents read with [`crate::jobs::input_artifact`].

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::spec::Scale;
use crate::backend::{BackendKind, DeviceSpec, run_job};
use crate::error::{Error, Result};
use crate::jobs::Upstream;
use crate::jobs::classifier::{ClassifierConfig, TrainClassifier};
use crate::jobs::dino::{DinoConfig, DinoJob};
use crate::jobs::generator::{GeneratorConfig, GeneratorJob, GeneratorKind};
use crate::jobs::latent_ae::{LatentAeConfig, LatentAeJob};
use crate::jobs::prior::{PriorConfig, PriorJob};
use crate::jobs::tokenizer::{FeatureNet, TokenizerConfig, TokenizerJob};
use crate::jobs::toy::{ToyAlignConfig, ToyAlignJob, ToyPreset, ToyPriorConfig, ToyPriorJob};
use crate::jobs::{Claim, JobRun};
use crate::models::latent_ae::AeKind;
use crate::store::{RunSpec, Store};
use crate::toy::Target;

/// Kinds of stages. Variants are declared in dependency order (inputs before the stages that read
/// them), which `Ord` follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StageKind {
    /// The MLP classifier on an image dataset (the project's feature network).
    Classifier,
    /// A flow prior trained on a 2-D toy target.
    ToyPrior,
    /// Free points optimised on L_align under a frozen toy prior.
    ToyAlign,
    /// A small KL-VAE on an image dataset; its latents are the `vae` prior source.
    Vae,
    /// A small VQ-VAE on an image dataset; its codebook is the `vq` prior source.
    Vq,
    /// Image features of a pretrained visual encoder (EfficientNet-Lite0 here): the `dino` source.
    Dino,
    /// A flow prior trained on projected target features (qwen / file / vae / vq sources).
    Prior,
    /// An image tokenizer (autoencoder), aligned to the prior or with a baseline regulariser.
    Tokenizer,
    /// A class-conditional generator on the tokenizer's latents, scored with and without CFG.
    Generator,
}

/// An input's configuration and hash, as identifying a dependent run needs them.
#[derive(Clone, Copy)]
pub struct SpecInput<'a> {
    pub config: &'a Value,
    pub hash: &'a str,
}

/// What identifying a stage run needs beyond its settings: the data folder, to name the content of
/// the files a stage reads (each file hashed once per expansion).
pub struct SpecEnv<'a> {
    pub data_dir: &'a Path,
    hashes: std::cell::RefCell<std::collections::HashMap<PathBuf, String>>,
}

impl<'a> SpecEnv<'a> {
    pub fn new(data_dir: &'a Path) -> SpecEnv<'a> {
        SpecEnv {
            data_dir,
            hashes: Default::default(),
        }
    }

    fn file_identity(&self, path: &Path) -> String {
        self.hashes
            .borrow_mut()
            .entry(path.to_path_buf())
            .or_insert_with(|| crate::util::file_identity(path))
            .clone()
    }
}

/// Where and how stages run.
pub struct StageCtx<'a> {
    pub store: &'a Store,
    pub data_dir: PathBuf,
    /// `--device`, when given.
    pub device: Option<String>,
    pub claim: Claim,
}

/// How a stage's run went (its run id either way).
pub enum StageRun {
    /// This process ran it to the end.
    Ran(i64),
    /// It was finished already or another live process holds it: nothing ran.
    Taken(i64),
}

impl StageRun {
    fn of(reused: bool, run: i64) -> StageRun {
        if reused {
            StageRun::Taken(run)
        } else {
            StageRun::Ran(run)
        }
    }
}

impl From<JobRun<i64>> for StageRun {
    fn from(r: JobRun<i64>) -> StageRun {
        match r {
            JobRun::Ran(id) => StageRun::Ran(id),
            JobRun::Reused { run, .. } => StageRun::Taken(run.id),
        }
    }
}

/// A finished upstream run a stage reads: its plan configuration (without inputs), its configuration
/// hash and its run id.
pub struct StageInput<'a> {
    pub config: &'a Value,
    pub hash: &'a str,
    pub run: i64,
}

fn typed<T: DeserializeOwned>(cfg: &Value) -> std::result::Result<T, String> {
    serde_json::from_value(cfg.clone()).map_err(|e| e.to_string())
}

/// A finished input run with its configuration typed.
fn upstream<C: DeserializeOwned>(i: &StageInput<'_>) -> std::result::Result<Upstream<C>, String> {
    Ok(Upstream {
        run: i.run,
        hash: i.hash.to_string(),
        config: typed(i.config)?,
    })
}

fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or_default()
}

fn toy_preset(s: Scale) -> ToyPreset {
    match s {
        Scale::Smoke => ToyPreset::Smoke,
        Scale::Small => ToyPreset::Small,
        Scale::Paper => ToyPreset::Paper,
    }
}

impl StageKind {
    pub const ALL: [StageKind; 9] = [
        StageKind::Classifier,
        StageKind::ToyPrior,
        StageKind::ToyAlign,
        StageKind::Vae,
        StageKind::Vq,
        StageKind::Dino,
        StageKind::Prior,
        StageKind::Tokenizer,
        StageKind::Generator,
    ];

    pub fn name(self) -> &'static str {
        match self {
            StageKind::Classifier => "classifier",
            StageKind::ToyPrior => crate::jobs::toy::TOY_PRIOR,
            StageKind::ToyAlign => crate::jobs::toy::TOY_ALIGN,
            StageKind::Vae => crate::jobs::latent_ae::VAE,
            StageKind::Vq => crate::jobs::latent_ae::VQ,
            StageKind::Dino => crate::jobs::dino::DINO,
            StageKind::Prior => crate::jobs::prior::PRIOR,
            StageKind::Tokenizer => crate::jobs::tokenizer::TOKENIZER,
            StageKind::Generator => crate::jobs::generator::GENERATOR,
        }
    }

    pub fn parse(s: &str) -> Option<StageKind> {
        StageKind::ALL.into_iter().find(|k| k.name() == s)
    }

    /// "a, b, c": every stage name, for messages.
    pub fn names() -> String {
        StageKind::ALL.map(StageKind::name).join(", ")
    }

    /// The stages whose finished runs this stage may read (what some configuration of it reads).
    pub fn inputs(self) -> &'static [StageKind] {
        match self {
            StageKind::ToyAlign => &[StageKind::ToyPrior],
            StageKind::Prior => &[StageKind::Vae, StageKind::Vq, StageKind::Dino],
            StageKind::Tokenizer => &[StageKind::Classifier, StageKind::Prior, StageKind::Dino],
            StageKind::Generator => &[StageKind::Classifier, StageKind::Tokenizer],
            StageKind::Classifier
            | StageKind::ToyPrior
            | StageKind::Vae
            | StageKind::Vq
            | StageKind::Dino => &[],
        }
    }

    /// The stages a configuration of this stage reads: a prior reads the `vae` / `vq` / `dino` stage
    /// when that is its source; a tokenizer reads the classifier, and the prior when `prior` is set.
    pub fn inputs_for(self, cfg: &Value) -> Vec<StageKind> {
        match self {
            StageKind::Prior => typed::<PriorConfig>(cfg)
                .ok()
                .and_then(|p| p.source_stage())
                .and_then(StageKind::parse)
                .into_iter()
                .collect(),
            StageKind::Tokenizer => match typed::<TokenizerConfig>(cfg) {
                Ok(t) => t.inputs(),
                Err(_) => vec![StageKind::Classifier],
            },
            k => k.inputs().to_vec(),
        }
    }

    /// Whether the stage always reads all of `inputs()` (checkable from `stages` alone); otherwise the
    /// inputs depend on the configuration and are checked per grid point.
    pub fn is_static_inputs(self) -> bool {
        !matches!(self, StageKind::Prior | StageKind::Tokenizer)
    }

    /// This stage and every stage it may read, directly or not.
    pub fn upstream(self) -> Vec<StageKind> {
        let mut out = vec![self];
        for k in self.inputs() {
            for u in k.upstream() {
                if !out.contains(&u) {
                    out.push(u);
                }
            }
        }
        out
    }

    /// Settings a sweep may set that [`StageKind::defaults`] leaves out (optional ones, absent from a
    /// configuration unless set, so that adding them kept older runs' identities).
    pub fn optional_settings(self) -> &'static [&'static str] {
        match self {
            StageKind::Generator => crate::jobs::generator::OPTIONAL_SETTINGS,
            _ => &[],
        }
    }

    /// The stage's configuration at a scale preset, as a JSON object (every setting present except
    /// the [`StageKind::optional_settings`]).
    pub fn defaults(self, scale: Scale) -> Value {
        match self {
            StageKind::Classifier => {
                let base = ClassifierConfig::default();
                to_json(&match scale {
                    Scale::Smoke => ClassifierConfig {
                        train_size: 2000,
                        test_size: 500,
                        hidden: 64,
                        steps: 60,
                        ..base
                    },
                    Scale::Small => base,
                    Scale::Paper => ClassifierConfig {
                        train_size: 0,
                        test_size: 0,
                        steps: 3000,
                        ..base
                    },
                })
            }
            StageKind::ToyPrior => {
                to_json(&ToyPriorConfig::preset(toy_preset(scale), Target::Mixture))
            }
            StageKind::ToyAlign => to_json(&ToyAlignConfig::preset(toy_preset(scale))),
            StageKind::Vae | StageKind::Vq => {
                let base = LatentAeConfig::default();
                to_json(&match scale {
                    Scale::Smoke => LatentAeConfig {
                        train_size: 2000,
                        test_size: 300,
                        steps: 60,
                        batch: 64,
                        feature_images: 500,
                        ..base
                    },
                    Scale::Small => base,
                    Scale::Paper => LatentAeConfig {
                        steps: 20_000,
                        feature_images: 0,
                        test_size: 10_000,
                        ..base
                    },
                })
            }
            StageKind::Dino => {
                let base = DinoConfig::default();
                to_json(&match scale {
                    Scale::Smoke => DinoConfig {
                        images: 150,
                        ..base
                    },
                    Scale::Small => base,
                    Scale::Paper => DinoConfig {
                        images: 10_000,
                        ..base
                    },
                })
            }
            StageKind::Prior => {
                let base = PriorConfig::default();
                to_json(&match scale {
                    Scale::Smoke => PriorConfig {
                        dim: 16,
                        max_rows: 6000,
                        holdout: 500,
                        width: 64,
                        depth: 2,
                        steps: 300,
                        lr: 1e-3,
                        warmup: 30,
                        ema_decay: 0.99,
                        eval_samples: 500,
                        sample_steps: 20,
                        diag_rows: 1000,
                        ..base
                    },
                    Scale::Small => PriorConfig {
                        width: 256,
                        depth: 3,
                        steps: 4000,
                        lr: 5e-4,
                        warmup: 200,
                        ema_decay: 0.999,
                        eval_samples: 2000,
                        sample_steps: 50,
                        diag_rows: 3000,
                        ..base
                    },
                    Scale::Paper => base,
                })
            }
            StageKind::Tokenizer => {
                let base = TokenizerConfig::default();
                to_json(&match scale {
                    Scale::Smoke => TokenizerConfig {
                        train_size: 2000,
                        test_size: 200,
                        width: 32,
                        depth: 1,
                        heads: 2,
                        steps: 60,
                        batch: 32,
                        warmup: 5,
                        disc_start: 30,
                        eval_every: 20,
                        eval_images: 64,
                        exact_tokens: 16,
                        exact_steps: 4,
                        rfid: vec![FeatureNet::Classifier],
                        latent_images: 500,
                        ..base
                    },
                    Scale::Small => base,
                    Scale::Paper => TokenizerConfig {
                        tokens: 64,
                        channels: 32,
                        width: 192,
                        depth: 4,
                        heads: 6,
                        steps: 50_000,
                        batch: 256,
                        lr: 4e-4,
                        warmup: 1000,
                        disc_start: 10_000,
                        eval_every: 1000,
                        eval_images: 1000,
                        test_size: 10_000,
                        latent_images: 0,
                        ..base
                    },
                })
            }
            StageKind::Generator => {
                let base = GeneratorConfig::default();
                to_json(&match scale {
                    Scale::Smoke => GeneratorConfig {
                        width: 32,
                        depth: 1,
                        heads: 2,
                        steps: 150,
                        batch: 64,
                        lr: 1e-3,
                        warmup: 10,
                        ema_decay: 0.9,
                        sample_steps: 10,
                        samples: 200,
                        test_size: 200,
                        ..base
                    },
                    Scale::Small => base,
                    Scale::Paper => GeneratorConfig {
                        width: 384,
                        depth: 8,
                        heads: 6,
                        steps: 100_000,
                        batch: 256,
                        lr: 1e-4,
                        warmup: 2500,
                        ema_decay: 0.9999,
                        samples: 10_000,
                        ..base
                    },
                })
            }
        }
    }

    /// Checks only that every setting has the right type.
    pub fn check_types(self, cfg: &Value) -> std::result::Result<(), String> {
        match self {
            StageKind::Classifier => typed::<ClassifierConfig>(cfg).map(drop),
            StageKind::ToyPrior => typed::<ToyPriorConfig>(cfg).map(drop),
            StageKind::ToyAlign => typed::<ToyAlignConfig>(cfg).map(drop),
            StageKind::Vae | StageKind::Vq => typed::<LatentAeConfig>(cfg).map(drop),
            StageKind::Dino => typed::<DinoConfig>(cfg).map(drop),
            StageKind::Prior => typed::<PriorConfig>(cfg).map(drop),
            StageKind::Tokenizer => typed::<TokenizerConfig>(cfg).map(drop),
            StageKind::Generator => typed::<GeneratorConfig>(cfg).map(drop),
        }
    }

    /// Checks a configuration: every setting of the right type, values valid together.
    pub fn check(self, cfg: &Value) -> std::result::Result<(), String> {
        match self {
            StageKind::Classifier => typed::<ClassifierConfig>(cfg)?.validate(),
            StageKind::ToyPrior => typed::<ToyPriorConfig>(cfg)?.validate(),
            StageKind::ToyAlign => typed::<ToyAlignConfig>(cfg)?.validate(),
            StageKind::Vae | StageKind::Vq => typed::<LatentAeConfig>(cfg)?.validate(),
            StageKind::Dino => typed::<DinoConfig>(cfg)?.validate(),
            StageKind::Prior => typed::<PriorConfig>(cfg)?.validate(),
            StageKind::Tokenizer => typed::<TokenizerConfig>(cfg)?.validate(),
            StageKind::Generator => typed::<GeneratorConfig>(cfg)?.validate(),
        }
    }

    /// The backend a configuration names.
    pub fn backend(self, cfg: &Value) -> BackendKind {
        cfg.get("backend")
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or(BackendKind::Flex)
    }

    /// The run of a configuration whose inputs have configurations `inputs` (in `self.inputs()`
    /// order). The same spec as the stage's own command builds, so a sweep and a direct command
    /// share runs.
    pub fn run_spec(
        self,
        cfg: &Value,
        inputs: &[SpecInput<'_>],
        env: &SpecEnv<'_>,
    ) -> std::result::Result<RunSpec, String> {
        Ok(match self {
            StageKind::Classifier => typed::<ClassifierConfig>(cfg)?.run_spec(),
            StageKind::ToyPrior => typed::<ToyPriorConfig>(cfg)?.run_spec(),
            StageKind::ToyAlign => {
                let prior =
                    typed::<ToyPriorConfig>(inputs.first().map_or(&Value::Null, |i| i.config))?;
                typed::<ToyAlignConfig>(cfg)?.run_spec(&prior)
            }
            StageKind::Vae => typed::<LatentAeConfig>(cfg)?.run_spec(AeKind::Vae),
            StageKind::Vq => typed::<LatentAeConfig>(cfg)?.run_spec(AeKind::Vq),
            StageKind::Dino => {
                let d = typed::<DinoConfig>(cfg)?;
                d.run_spec(&env.file_identity(&d.weights_file(env.data_dir)))
            }
            StageKind::Prior => {
                let p = typed::<PriorConfig>(cfg)?;
                match (p.source_stage().and_then(StageKind::parse), inputs.first()) {
                    (Some(kind), Some(input)) => p.run_spec_on_stage(kind.name(), input.hash),
                    (Some(kind), None) => {
                        return Err(format!("needs the `{}` stage", kind.name()));
                    }
                    (None, _) => {
                        let (file, _) = p.source_file(env.data_dir);
                        p.run_spec(&env.file_identity(&file))
                    }
                }
            }
            StageKind::Tokenizer => {
                let t = typed::<TokenizerConfig>(cfg)?;
                let [classifier, prior, semantic] = t.input_slots(inputs);
                let Some(classifier) = classifier else {
                    return Err("needs the `classifier` stage".into());
                };
                let prior_cfg = prior.map(|p| typed::<PriorConfig>(p.config)).transpose()?;
                let dino_cfg = semantic
                    .map(|p| typed::<DinoConfig>(p.config))
                    .transpose()?;
                t.check_inputs(
                    &typed(classifier.config)?,
                    prior_cfg.as_ref(),
                    dino_cfg.as_ref(),
                )?;
                let weights =
                    crate::jobs::feature_nets::weights_identity(&t.rfid, env.data_dir, |f| {
                        env.file_identity(f)
                    });
                t.run_spec(
                    classifier.hash,
                    prior.map(|p| p.hash),
                    semantic.map(|p| p.hash),
                    &weights,
                )
            }
            StageKind::Generator => {
                let g = typed::<GeneratorConfig>(cfg)?;
                let (Some(classifier), Some(tokenizer)) = (inputs.first(), inputs.get(1)) else {
                    return Err("needs the `classifier` and `tokenizer` stages".into());
                };
                g.check_inputs(&typed(classifier.config)?, &typed(tokenizer.config)?)?;
                let weights =
                    crate::jobs::feature_nets::weights_identity(&g.metrics, env.data_dir, |f| {
                        env.file_identity(f)
                    });
                g.run_spec(classifier.hash, tokenizer.hash, &weights)
            }
        })
    }

    /// Provenance lines for reports: (what, value).
    pub fn provenance(self, cfg: &Value) -> Vec<(&'static str, String)> {
        let text = |k: &str| {
            cfg.get(k)
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string())
                })
                .unwrap_or_default()
        };
        match self {
            StageKind::Classifier => vec![("dataset", text("dataset"))],
            StageKind::ToyPrior => vec![
                (
                    "dataset",
                    format!("2-D toy target `{}` (generated)", text("target")),
                ),
                (
                    "prior source",
                    format!(
                        "flow prior trained in-project on the toy target (width {}, depth {}, {} steps)",
                        text("width"),
                        text("depth"),
                        text("prior_steps")
                    ),
                ),
            ],
            StageKind::ToyAlign => vec![(
                "feature network",
                "none (toy NLL: analytic for mixtures, Gaussian KDE otherwise)".to_string(),
            )],
            StageKind::Dino => vec![(
                "feature network",
                "EfficientNet-Lite0, ImageNet weights (stand-in for DINOv2)".to_string(),
            )],
            StageKind::Vae | StageKind::Vq => vec![(
                "dataset",
                cfg.get("dataset")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
                    .to_string(),
            )],
            StageKind::Tokenizer => match typed::<TokenizerConfig>(cfg) {
                Ok(t) => vec![
                    (
                        "tokenizer",
                        format!(
                            "ViT encoder/decoder, {} latent tokens x {} dims, width {}, depth {}; {} steps",
                            t.tokens, t.channels, t.width, t.depth, t.steps
                        ),
                    ),
                    (
                        "feature network",
                        format!(
                            "rFID on {}",
                            t.rfid
                                .iter()
                                .map(|n| n.describe())
                                .collect::<Vec<_>>()
                                .join(" and ")
                        ),
                    ),
                ],
                Err(_) => vec![],
            },
            StageKind::Generator => match typed::<GeneratorConfig>(cfg) {
                Ok(g) => vec![
                    (
                        "generator",
                        match g.generator {
                            GeneratorKind::Dit => format!(
                                "DiT (adaLN-Zero), width {}, depth {}, {} steps; Euler {} steps; CFG scale {}; {} samples",
                                g.width, g.depth, g.steps, g.sample_steps, g.cfg_scale, g.samples
                            ),
                            GeneratorKind::Mar => format!(
                                "MAR with a flow head, width {}, depth {}, {} steps; Euler {} steps per token; CFG scale {} (linear schedule); {} samples",
                                g.width, g.depth, g.steps, g.sample_steps, g.cfg_scale, g.samples
                            ),
                        },
                    ),
                    (
                        "feature network",
                        format!(
                            "FID / IS / precision-recall on {}",
                            g.metrics
                                .iter()
                                .map(|n| n.describe())
                                .collect::<Vec<_>>()
                                .join(" and ")
                        ),
                    ),
                ],
                Err(_) => vec![],
            },
            StageKind::Prior => match typed::<PriorConfig>(cfg) {
                Ok(p) => vec![
                    ("prior source", p.source_label()),
                    (
                        "projection",
                        format!("{} to d2 = {}", p.projection.name(), p.dim),
                    ),
                ],
                Err(_) => vec![],
            },
        }
    }

    /// Runs (or finds finished, or finds held elsewhere) the stage's run for `cfg`, whose inputs are
    /// the finished runs `inputs` (in `self.inputs()` order).
    pub fn run(
        self,
        ctx: &StageCtx<'_>,
        cfg: &Value,
        inputs: &[StageInput<'_>],
    ) -> Result<StageRun> {
        let bad = |m: String| Error::input(Path::new(self.name()), m);
        let backend = self.backend(cfg);
        let device = DeviceSpec::parse(backend, ctx.device.as_deref())?;
        match self {
            StageKind::Classifier => {
                let job = TrainClassifier {
                    config: typed(cfg).map_err(bad)?,
                    data_dir: ctx.data_dir.clone(),
                    artifacts_dir: ctx.store.artifacts_dir(),
                    store: ctx.store,
                    claim: ctx.claim,
                };
                let out = run_job(backend, device, job)??;
                Ok(StageRun::of(out.reused, out.run_id))
            }
            StageKind::ToyPrior => {
                let job = ToyPriorJob {
                    config: typed(cfg).map_err(bad)?,
                    store: ctx.store,
                    claim: ctx.claim,
                };
                Ok(run_job(backend, device, job)??.into())
            }
            StageKind::Vae | StageKind::Vq => {
                let job = LatentAeJob {
                    kind: if self == StageKind::Vae {
                        AeKind::Vae
                    } else {
                        AeKind::Vq
                    },
                    config: typed(cfg).map_err(bad)?,
                    data_dir: ctx.data_dir.clone(),
                    store: ctx.store,
                    claim: ctx.claim,
                };
                Ok(run_job(backend, device, job)??.into())
            }
            StageKind::Dino => {
                let job = DinoJob {
                    config: typed(cfg).map_err(bad)?,
                    data_dir: ctx.data_dir.clone(),
                    store: ctx.store,
                    claim: ctx.claim,
                };
                Ok(run_job(backend, device, job)??.into())
            }
            StageKind::Prior => {
                let config: PriorConfig = typed(cfg).map_err(bad)?;
                let input = match (config.source_stage(), inputs.first()) {
                    (Some(_), Some(i)) => Some(Upstream {
                        run: i.run,
                        hash: i.hash.to_string(),
                        config: (),
                    }),
                    (Some(stage), None) => {
                        return Err(bad(format!("needs its `{stage}` run")));
                    }
                    (None, _) => None,
                };
                let job = PriorJob {
                    config,
                    input,
                    data_dir: ctx.data_dir.clone(),
                    store: ctx.store,
                    claim: ctx.claim,
                };
                Ok(run_job(backend, device, job)??.into())
            }
            StageKind::Tokenizer => {
                let config: TokenizerConfig = typed(cfg).map_err(bad)?;
                let [classifier, prior, semantic] = config.input_slots(inputs);
                let need = |what: &str| bad(format!("needs its {what} run"));
                let classifier =
                    upstream(classifier.ok_or_else(|| need("classifier"))?).map_err(bad)?;
                let prior = match (config.prior, prior) {
                    (true, Some(p)) => Some(upstream(p).map_err(bad)?),
                    (true, None) => return Err(need("prior")),
                    (false, _) => None,
                };
                let semantic = match (config.semantic_weight > 0.0, semantic) {
                    (true, Some(p)) => Some(upstream(p).map_err(bad)?),
                    (true, None) => return Err(need("dino")),
                    (false, _) => None,
                };
                let job = TokenizerJob {
                    config,
                    classifier,
                    prior,
                    semantic,
                    data_dir: ctx.data_dir.clone(),
                    store: ctx.store,
                    claim: ctx.claim,
                };
                Ok(run_job(backend, device, job)??.into())
            }
            StageKind::Generator => {
                let (Some(c), Some(t)) = (inputs.first(), inputs.get(1)) else {
                    return Err(bad("needs its classifier and tokenizer runs".into()));
                };
                let job = GeneratorJob {
                    config: typed(cfg).map_err(bad)?,
                    classifier: upstream(c).map_err(bad)?,
                    tokenizer: upstream(t).map_err(bad)?,
                    data_dir: ctx.data_dir.clone(),
                    store: ctx.store,
                    claim: ctx.claim,
                };
                Ok(run_job(backend, device, job)??.into())
            }
            StageKind::ToyAlign => {
                let Some(prior) = inputs.first() else {
                    return Err(bad("needs its toy_prior run".into()));
                };
                let job = ToyAlignJob {
                    config: typed(cfg).map_err(bad)?,
                    prior: typed(prior.config).map_err(bad)?,
                    prior_run: prior.run,
                    store: ctx.store,
                    figures_dir: None,
                    claim: ctx.claim,
                };
                let out = run_job(backend, device, job)??;
                Ok(StageRun::of(out.reused, out.run_id))
            }
        }
    }
}
