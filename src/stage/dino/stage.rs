//! The `dino` stage: image features of a pretrained visual encoder (EfficientNet-Lite0 here, the
//! stand-in for DINOv2), a prior source.

use crate::stage::dino::{DinoConfig, DinoJob};
use crate::stage::prelude::*;

pub struct Dino;

impl Stage for Dino {
    fn name(&self) -> &'static str {
        crate::stage::dino::DINO
    }

    fn defaults(&self, scale: Scale) -> Value {
        let base = DinoConfig::default();
        to_json(&match scale {
            Scale::Smoke => DinoConfig {
                images: 150,
                ..base
            },
            Scale::Cpu => DinoConfig {
                images: 500,
                ..base
            },
            Scale::Small => base,
            Scale::Paper => DinoConfig {
                images: 10_000,
                ..base
            },
        })
    }

    checks_as!(DinoConfig);

    fn run_spec(
        &self,
        cfg: &Value,
        _inputs: &[SpecInput<'_>],
        env: &SpecEnv<'_>,
    ) -> std::result::Result<RunSpec, String> {
        let d = typed::<DinoConfig>(cfg)?;
        Ok(d.run_spec(&env.file_identity(&d.weights_file(env.data_dir))))
    }

    fn provenance(&self, _cfg: &Value) -> Vec<(&'static str, String)> {
        vec![(
            "feature network",
            "EfficientNet-Lite0, ImageNet weights (stand-in for DINOv2)".to_string(),
        )]
    }

    fn run(
        &self,
        ctx: &StageCtx<'_>,
        cfg: &Value,
        _inputs: &[StageInput<'_>],
        backend: BackendKind,
        device: DeviceSpec,
    ) -> Result<StageRun> {
        let job = DinoJob {
            config: typed(cfg).map_err(bad(self.name()))?,
            data_dir: ctx.data_dir.clone(),
            store: ctx.store,
            claim: ctx.claim,
        };
        Ok(run_job(backend, device, job)??.into())
    }
}
