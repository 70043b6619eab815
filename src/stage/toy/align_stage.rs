//! The `toy_align` stage: free points optimised on L_align alone under a frozen toy prior.

use crate::stage::prelude::*;
use crate::stage::toy::{ToyAlignConfig, ToyAlignJob, ToyPriorConfig};

pub struct ToyAlign;

impl Stage for ToyAlign {
    fn name(&self) -> &'static str {
        crate::stage::toy::TOY_ALIGN
    }

    fn inputs(&self) -> &'static [&'static str] {
        &[crate::stage::toy::TOY_PRIOR]
    }

    fn defaults(&self, scale: Scale) -> Value {
        to_json(&ToyAlignConfig::preset(scale))
    }

    checks_as!(ToyAlignConfig);

    fn run_spec(
        &self,
        cfg: &Value,
        inputs: &[SpecInput<'_>],
        _env: &SpecEnv<'_>,
    ) -> std::result::Result<RunSpec, String> {
        let prior = typed::<ToyPriorConfig>(inputs.first().map_or(&Value::Null, |i| i.config))?;
        Ok(typed::<ToyAlignConfig>(cfg)?.run_spec(&prior))
    }

    fn provenance(&self, _cfg: &Value) -> Vec<(&'static str, String)> {
        vec![(
            "feature network",
            "none (toy NLL: analytic for mixtures, Gaussian KDE otherwise)".to_string(),
        )]
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
        let Some(prior) = inputs.first() else {
            return Err(bad("needs its toy_prior run".into()));
        };
        let job = ToyAlignJob {
            config: typed(cfg).map_err(&bad)?,
            prior: typed(prior.config).map_err(&bad)?,
            prior_run: prior.run,
            store: ctx.store,
            figures_dir: None,
            claim: ctx.claim,
        };
        let out = run_job(backend, device, job)??;
        Ok(StageRun::of(out.reused, out.run_id))
    }
}
