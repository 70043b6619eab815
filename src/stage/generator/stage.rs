//! The `generator` stage: a class-conditional generator (MAR with a flow head, or a DiT trained by
//! flow matching) on a tokenizer's latents, scored with and without classifier-free guidance.

use crate::stage::generator::{GeneratorConfig, GeneratorJob, GeneratorKind};
use crate::stage::prelude::*;

pub struct Generator;

impl Stage for Generator {
    fn name(&self) -> &'static str {
        crate::stage::generator::GENERATOR
    }

    fn inputs(&self) -> &'static [&'static str] {
        &[
            crate::stage::classifier::CLASSIFIER,
            crate::stage::tokenizer::TOKENIZER,
        ]
    }

    fn optional_settings(&self) -> &'static [&'static str] {
        crate::stage::generator::OPTIONAL_SETTINGS
    }

    fn defaults(&self, scale: Scale) -> Value {
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
            // Sized by measurement (docs/sweeps.md, "The cpu preset"): dit's samples become
            // class-recognisable between 1500 and 3000 steps at this width, MAR's between 600 and
            // 2000; 2000 keeps table1's 42 generators and 21 tokenizers near the 2-core budget.
            Scale::Cpu => GeneratorConfig {
                width: 64,
                depth: 2,
                heads: 4,
                steps: 2000,
                batch: 64,
                lr: 1e-3,
                warmup: 50,
                sample_steps: 25,
                samples: 1000,
                test_size: 1000,
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

    checks_as!(GeneratorConfig);

    fn run_spec(
        &self,
        cfg: &Value,
        inputs: &[SpecInput<'_>],
        env: &SpecEnv<'_>,
    ) -> std::result::Result<RunSpec, String> {
        let g = typed::<GeneratorConfig>(cfg)?;
        let (Some(classifier), Some(tokenizer)) = (inputs.first(), inputs.get(1)) else {
            return Err("needs the `classifier` and `tokenizer` stages".into());
        };
        g.check_inputs(&typed(classifier.config)?, &typed(tokenizer.config)?)?;
        let weights = crate::stage::feature_nets::weights_identity(&g.metrics, env.data_dir, |f| {
            env.file_identity(f)
        });
        Ok(g.run_spec(classifier.hash, tokenizer.hash, &weights))
    }

    fn provenance(&self, cfg: &Value) -> Vec<(&'static str, String)> {
        let Ok(g) = typed::<GeneratorConfig>(cfg) else {
            return vec![];
        };
        vec![
            (
                "generator",
                match g.generator {
                    GeneratorKind::Dit => format!(
                        "DiT (adaLN-Zero), width {}, depth {}, {} steps; Euler {} steps; CFG scale {}; {} samples",
                        g.width, g.depth, g.steps, g.sample_steps, g.cfg_scale, g.samples
                    ),
                    GeneratorKind::Mar => format!(
                        "MAR with a flow head, width {}, depth {}, {} steps; Euler {} steps per token; CFG scale {} ({} schedule); {} samples",
                        g.width,
                        g.depth,
                        g.steps,
                        g.sample_steps,
                        g.cfg_scale,
                        g.cfg_schedule().name(),
                        g.samples
                    ),
                },
            ),
            (
                "feature network",
                format!(
                    "FID / IS / precision-recall on {}",
                    crate::stage::feature_nets::FeatureNet::describe_all(&g.metrics)
                ),
            ),
        ]
    }

    fn run(
        &self,
        ctx: &StageCtx<'_>,
        cfg: &Value,
        inputs: &[StageInput<'_>],
        backend: BackendKind,
        device: DeviceSpec,
    ) -> Result<StageRun> {
        let bad = bad(self.name());
        let (Some(c), Some(t)) = (inputs.first(), inputs.get(1)) else {
            return Err(bad("needs its classifier and tokenizer runs".into()));
        };
        let job = GeneratorJob {
            config: typed(cfg).map_err(&bad)?,
            classifier: upstream(c).map_err(&bad)?,
            tokenizer: upstream(t).map_err(&bad)?,
            data_dir: ctx.data_dir.clone(),
            store: ctx.store,
            claim: ctx.claim,
        };
        Ok(run_job(backend, device, job)??.into())
    }
}
