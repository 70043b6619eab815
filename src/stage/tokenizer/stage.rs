//! The `tokenizer` stage: an image tokenizer (ViT autoencoder), aligned to a frozen flow prior or
//! with a baseline regulariser. Reads the classifier (perceptual loss, rFID), the prior when aligned,
//! and the dino stage when it has a semantic loss.

use crate::stage::dino::DinoConfig;
use crate::stage::prelude::*;
use crate::stage::prior::PriorConfig;
use crate::stage::tokenizer::{FeatureNet, TokenizerConfig, TokenizerJob};

pub struct Tokenizer;

impl Stage for Tokenizer {
    fn name(&self) -> &'static str {
        crate::stage::tokenizer::TOKENIZER
    }

    fn inputs(&self) -> &'static [&'static str] {
        &[
            crate::stage::classifier::CLASSIFIER,
            crate::stage::prior::PRIOR,
            crate::stage::dino::DINO,
        ]
    }

    fn inputs_for(&self, cfg: &Value) -> Vec<&'static str> {
        match typed::<TokenizerConfig>(cfg) {
            Ok(t) => t.inputs(),
            Err(_) => vec![crate::stage::classifier::CLASSIFIER],
        }
    }

    fn is_static_inputs(&self) -> bool {
        false
    }

    fn defaults(&self, scale: Scale) -> Value {
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
            // Sized by measurement (docs/sweeps.md, "The cpu preset"): at batch 32 the plain AE
            // reconstructs better after 500 steps than batch 64 or 128 do after 1000 and 3000; the
            // adversarial term is off (from step 500 on it took test PSNR from 15.4 back to 13.3 by
            // step 1000, with a grid texture), which also saves the discriminator's step.
            Scale::Cpu => TokenizerConfig {
                steps: 500,
                batch: 32,
                warmup: 50,
                adv_weight: 0.0,
                disc_start: 500,
                eval_every: 100,
                exact_tokens: 16,
                rfid: vec![FeatureNet::Classifier],
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

    checks_as!(TokenizerConfig);

    fn run_spec(
        &self,
        cfg: &Value,
        inputs: &[SpecInput<'_>],
        env: &SpecEnv<'_>,
    ) -> std::result::Result<RunSpec, String> {
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
        let weights = crate::stage::feature_nets::weights_identity(&t.rfid, env.data_dir, |f| {
            env.file_identity(f)
        });
        Ok(t.run_spec(
            classifier.hash,
            prior.map(|p| p.hash),
            semantic.map(|p| p.hash),
            &weights,
        ))
    }

    fn provenance(&self, cfg: &Value) -> Vec<(&'static str, String)> {
        let Ok(t) = typed::<TokenizerConfig>(cfg) else {
            return vec![];
        };
        vec![
            (
                "tokenizer",
                format!(
                    "ViT encoder/decoder, {} latent tokens x {} dims, width {}, depth {}; {} steps",
                    t.tokens, t.channels, t.width, t.depth, t.steps
                ),
            ),
            (
                "feature network",
                format!("rFID on {}", FeatureNet::describe_all(&t.rfid)),
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
        let config: TokenizerConfig = typed(cfg).map_err(&bad)?;
        let [classifier, prior, semantic] = config.input_slots(inputs);
        let need = |what: &str| bad(format!("needs its {what} run"));
        let classifier = upstream(classifier.ok_or_else(|| need("classifier"))?).map_err(&bad)?;
        let prior = match (config.prior, prior) {
            (true, Some(p)) => Some(upstream(p).map_err(&bad)?),
            (true, None) => return Err(need("prior")),
            (false, _) => None,
        };
        let semantic = match (config.semantic_weight > 0.0, semantic) {
            (true, Some(p)) => Some(upstream(p).map_err(&bad)?),
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
}
