//! The `vae` and `vq` stages: a small KL-VAE / VQ-VAE on an image dataset, whose latents (vae) or
//! codebook (vq) are prior sources. One implementation, two registry entries.

use crate::models::latent_ae::AeKind;
use crate::stage::latent_ae::{LatentAeConfig, LatentAeJob};
use crate::stage::prelude::*;

/// A latent autoencoder stage of one kind.
pub struct LatentAe {
    kind: AeKind,
    name: &'static str,
}

/// The `vae` stage.
pub static VAE: LatentAe = LatentAe {
    kind: AeKind::Vae,
    name: crate::stage::latent_ae::VAE,
};

/// The `vq` stage.
pub static VQ: LatentAe = LatentAe {
    kind: AeKind::Vq,
    name: crate::stage::latent_ae::VQ,
};

impl Stage for LatentAe {
    fn name(&self) -> &'static str {
        self.name
    }

    fn defaults(&self, scale: Scale) -> Value {
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
            Scale::Cpu => LatentAeConfig {
                test_size: 1000,
                steps: 400,
                batch: 64,
                feature_images: 5000,
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

    checks_as!(LatentAeConfig);

    fn run_spec(
        &self,
        cfg: &Value,
        _inputs: &[SpecInput<'_>],
        _env: &SpecEnv<'_>,
    ) -> std::result::Result<RunSpec, String> {
        Ok(typed::<LatentAeConfig>(cfg)?.run_spec(self.kind))
    }

    fn provenance(&self, cfg: &Value) -> Vec<(&'static str, String)> {
        vec![(
            "dataset",
            cfg.get("dataset")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string(),
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
        let job = LatentAeJob {
            kind: self.kind,
            config: typed(cfg).map_err(bad(self.name))?,
            data_dir: ctx.data_dir.clone(),
            store: ctx.store,
            claim: ctx.claim,
        };
        Ok(run_job(backend, device, job)??.into())
    }
}
