//! The `toy_prior` stage: a flow prior trained on a 2-D toy target (paper Fig. 3, 5, 6).

use crate::stage::prelude::*;
use crate::stage::toy::{ToyPriorConfig, ToyPriorJob};
use crate::toy::Target;

pub struct ToyPrior;

impl Stage for ToyPrior {
    fn name(&self) -> &'static str {
        crate::stage::toy::TOY_PRIOR
    }

    fn defaults(&self, scale: Scale) -> Value {
        to_json(&ToyPriorConfig::preset(scale, Target::Mixture))
    }

    checks_as!(ToyPriorConfig);

    fn run_spec(
        &self,
        cfg: &Value,
        _inputs: &[SpecInput<'_>],
        _env: &SpecEnv<'_>,
    ) -> std::result::Result<RunSpec, String> {
        Ok(typed::<ToyPriorConfig>(cfg)?.run_spec())
    }

    fn provenance(&self, cfg: &Value) -> Vec<(&'static str, String)> {
        let text = |k: &str| crate::stage::setting_text(cfg, k);
        vec![
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
        ]
    }

    fn run(
        &self,
        ctx: &StageCtx<'_>,
        cfg: &Value,
        _inputs: &[StageInput<'_>],
        backend: BackendKind,
        device: DeviceSpec,
    ) -> Result<StageRun> {
        let job = ToyPriorJob {
            config: typed(cfg).map_err(bad(self.name()))?,
            store: ctx.store,
            claim: ctx.claim,
        };
        Ok(run_job(backend, device, job)??.into())
    }
}
