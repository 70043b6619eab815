//! The `classifier` stage: the MLP classifier on an image dataset (the project's feature network for
//! rFID / FID and the tokenizer's perceptual loss).

use crate::stage::classifier::{ClassifierConfig, TrainClassifier};
use crate::stage::prelude::*;

pub struct Classifier;

impl Stage for Classifier {
    fn name(&self) -> &'static str {
        crate::stage::classifier::CLASSIFIER
    }

    fn defaults(&self, scale: Scale) -> Value {
        let base = ClassifierConfig::default();
        to_json(&match scale {
            Scale::Smoke => ClassifierConfig {
                train_size: 2000,
                test_size: 500,
                hidden: 64,
                steps: 60,
                ..base
            },
            Scale::Cpu | Scale::Small => base,
            Scale::Paper => ClassifierConfig {
                train_size: 0,
                test_size: 0,
                steps: 3000,
                ..base
            },
        })
    }

    checks_as!(ClassifierConfig);

    fn run_spec(
        &self,
        cfg: &Value,
        _inputs: &[SpecInput<'_>],
        _env: &SpecEnv<'_>,
    ) -> std::result::Result<RunSpec, String> {
        Ok(typed::<ClassifierConfig>(cfg)?.run_spec())
    }

    fn provenance(&self, cfg: &Value) -> Vec<(&'static str, String)> {
        vec![("dataset", crate::stage::setting_text(cfg, "dataset"))]
    }

    fn run(
        &self,
        ctx: &StageCtx<'_>,
        cfg: &Value,
        _inputs: &[StageInput<'_>],
        backend: BackendKind,
        device: DeviceSpec,
    ) -> Result<StageRun> {
        let job = TrainClassifier {
            config: typed(cfg).map_err(bad(self.name()))?,
            data_dir: ctx.data_dir.clone(),
            artifacts_dir: ctx.store.artifacts_dir(),
            store: ctx.store,
            claim: ctx.claim,
        };
        let out = run_job(backend, device, job)??;
        Ok(StageRun::of(out.reused, out.run_id))
    }
}
