//! The `prior` stage: a flow prior trained on projected target features. Its source is a file, the
//! text model's token table, or the output of the `vae` / `vq` / `dino` stage (then its input).

use crate::jobs::Upstream;
use crate::stage::prelude::*;
use crate::stage::prior::{PriorConfig, PriorJob};

pub struct Prior;

impl Stage for Prior {
    fn name(&self) -> &'static str {
        crate::stage::prior::PRIOR
    }

    fn inputs(&self) -> &'static [&'static str] {
        &[
            crate::stage::latent_ae::VAE,
            crate::stage::latent_ae::VQ,
            crate::stage::dino::DINO,
        ]
    }

    /// The source stage, when the source is one.
    fn inputs_for(&self, cfg: &Value) -> Vec<&'static str> {
        typed::<PriorConfig>(cfg)
            .ok()
            .and_then(|p| p.source_stage())
            .into_iter()
            .collect()
    }

    fn is_static_inputs(&self) -> bool {
        false
    }

    fn defaults(&self, scale: Scale) -> Value {
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
            // Width 128: the aligned tokenizer's step runs the prior over B x L x flow_mul points, and
            // at width 256 that pass cost more than the rest of the step.
            Scale::Cpu => PriorConfig {
                width: 128,
                depth: 3,
                steps: 2000,
                lr: 5e-4,
                warmup: 100,
                ema_decay: 0.999,
                eval_samples: 1000,
                sample_steps: 50,
                diag_rows: 2000,
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

    checks_as!(PriorConfig);

    fn run_spec(
        &self,
        cfg: &Value,
        inputs: &[SpecInput<'_>],
        env: &SpecEnv<'_>,
    ) -> std::result::Result<RunSpec, String> {
        let p = typed::<PriorConfig>(cfg)?;
        Ok(match (p.source_stage(), inputs.first()) {
            (Some(stage), Some(input)) => p.run_spec_on_stage(stage, input.hash),
            (Some(stage), None) => return Err(format!("needs the `{stage}` stage")),
            (None, _) => {
                let (file, _) = p.source_file(env.data_dir);
                p.run_spec(&env.file_identity(&file))
            }
        })
    }

    fn provenance(&self, cfg: &Value) -> Vec<(&'static str, String)> {
        match typed::<PriorConfig>(cfg) {
            Ok(p) => vec![
                ("prior source", p.source_label()),
                (
                    "projection",
                    format!("{} to d2 = {}", p.projection.name(), p.dim),
                ),
            ],
            Err(_) => vec![],
        }
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
        let config: PriorConfig = typed(cfg).map_err(&bad)?;
        let input = match (config.source_stage(), inputs.first()) {
            (Some(_), Some(i)) => Some(Upstream {
                run: i.run,
                hash: i.hash.to_string(),
                config: (),
            }),
            (Some(stage), None) => return Err(bad(format!("needs its `{stage}` run"))),
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
}
