//! The `generator` stage (paper Table 1, right half): a class-conditional generator trained by flow
//! matching on the latent tokens of the sweep's `tokenizer` run, sampled with and without
//! classifier-free guidance, its samples decoded by that tokenizer and scored against real test images
//! with FID-like Frechet distances, the Inception Score and k-NN precision/recall, each named by its
//! feature network. Two generators: `dit`, a small DiT with adaLN-Zero (latent flow matching, seed
//! 003), and `mar`, the paper's masked autoregressive transformer with a per-token flow head
//! (`models::mar`).
//!
//! Latents are divided by their global standard deviation before training (the scaling factor MAR
//! estimates from data) and multiplied back before decoding.

/// Its [`Stage`](crate::stage::Stage) implementation (the registry's entry).
pub mod stage;

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::{AutodiffModule, Module};
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::backend::BackendJob;
use crate::data::Split;
use crate::error::{Error, Result};
use crate::features::read_features;
use crate::jobs::Upstream;
use crate::jobs::{Claim, JobRun};
use crate::metrics::accuracy::top1_accuracy;
use crate::metrics::frechet::frechet_from_samples;
use crate::metrics::inception_score::{inception_score, softmax_rows};
use crate::metrics::knn::precision_recall;
use crate::models::cond::{BatchLoss, LabelledLatents, train_generator};
use crate::models::dit::Dit;
use crate::models::mar::{CfgSchedule, Mar};
use crate::models::tokenizer::Tokenizer;
use crate::stage::classifier::ClassifierConfig;
use crate::stage::feature_nets::{FeatureNet, LoadedNet, load_classifier, weights_identity};
use crate::stage::tokenizer::{LABELS, LATENTS, TokenizerConfig};
use crate::store::{ActiveRun, Store};
use crate::tensors::to_host_f32;
use crate::train::finite;

mod config;
pub use config::{GeneratorConfig, GeneratorKind, MaskSchedule, OPTIONAL_SETTINGS, sample_chunk};

/// Stage name.
pub const GENERATOR: &str = "generator";
/// The size of the semantic head of tokenizer runs recorded before they logged it: the `dino` stage's
/// pooled features, their only source then.
const LEGACY_SEMANTIC_DIM: usize = 1280;

/// The job.
pub struct GeneratorJob<'a> {
    pub config: GeneratorConfig,
    pub classifier: Upstream<ClassifierConfig>,
    pub tokenizer: Upstream<TokenizerConfig>,
    pub data_dir: PathBuf,
    pub store: &'a Store,
    pub claim: Claim,
}

impl BackendJob for GeneratorJob<'_> {
    type Output = Result<JobRun<i64>>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Result<JobRun<i64>> {
        let weights = weights_identity(
            &self.config.metrics,
            &self.data_dir,
            crate::util::file_identity,
        );
        let spec = self
            .config
            .run_spec(&self.classifier.hash, &self.tokenizer.hash, &weights);
        let backend = self.config.backend.name();
        crate::jobs::run_or_reuse(self.store, &spec, backend, self.claim, |run| {
            train::<B>(&self, run, &device).map(|()| run.id())
        })
    }
}

/// The tokenizer's semantic head size, as its run recorded it (`semantic/dim`); runs recorded before
/// that key existed had a head exactly when `semantic_weight > 0`, of the dino features' size.
fn semantic_dim(job: &GeneratorJob<'_>, semantic_weight: f64) -> Result<usize> {
    let recorded = job
        .store
        .series(job.tokenizer.run, crate::stage::tokenizer::SEMANTIC_DIM_KEY)?;
    Ok(match recorded.last() {
        Some(&(_, v)) => v as usize,
        None if semantic_weight > 0.0 => LEGACY_SEMANTIC_DIM,
        None => 0,
    })
}

/// One feature network's view of the real test images, against which samples are scored.
struct Reference<'a, B: Backend> {
    net: FeatureNet,
    loaded: LoadedNet<'a, B>,
    features: Vec<f32>,
    dim: usize,
}

impl<B: Backend> Reference<'_, B> {
    /// Logs `{prefix}/{fid,is,is_std,precision,recall}_{net}` of the decoded `samples`, and with
    /// `asked` (the class each sample was drawn for; given for the project classifier, whose classes
    /// are the dataset's) `{prefix}/class_acc_{net}`: how often the net sees the class asked for.
    fn log_scores(
        &self,
        run: &mut ActiveRun<'_>,
        prefix: &str,
        samples: &[f32],
        asked: Option<&[i64]>,
        cfg: &GeneratorConfig,
        device: &B::Device,
    ) -> Result<()> {
        let out = self.loaded.features_and_logits(samples, device);
        if let Some(asked) = asked {
            let acc = top1_accuracy(&out.logits, out.classes, asked);
            run.log(
                &format!("{prefix}/class_acc_{}", self.net.name()),
                cfg.steps as i64,
                acc,
            )?;
        }
        let fid = frechet_from_samples(&self.features, &out.features, out.dim);
        let probs = softmax_rows(&out.logits, out.classes);
        let (is, is_std) = inception_score(&probs, out.classes, cfg.is_splits);
        let (p, r) = precision_recall(&self.features, &out.features, self.dim, cfg.knn_k);
        let name = self.net.name();
        for (k, v) in [
            ("fid", fid),
            ("is", is),
            ("is_std", is_std),
            ("precision", p),
            ("recall", r),
        ] {
            run.log(&format!("{prefix}/{k}_{name}"), cfg.steps as i64, v)?;
        }
        Ok(())
    }
}

/// A trained generator (its EMA weights).
enum Generator<B: Backend> {
    Dit(Box<Dit<B>>),
    /// With its number of sampling steps over the tokens and its guidance schedule.
    Mar(Box<Mar<B>>, usize, CfgSchedule),
}

impl<B: Backend> Generator<B> {
    /// Latent tokens [B, L, C] for labels `y` with `steps` Euler steps (per token for MAR) and
    /// guidance scale `s`.
    fn sample(
        &self,
        y: &[i64],
        [tokens, channels]: [usize; 2],
        steps: usize,
        s: f64,
        rng: &mut StdRng,
        device: &B::Device,
    ) -> Tensor<B, 3> {
        let b = y.len();
        match self {
            Generator::Dit(net) => {
                let x0: Vec<f32> = (0..b * tokens * channels)
                    .map(|_| rng.sample::<f32, _>(rand_distr::StandardNormal))
                    .collect();
                let x0 = Tensor::from_data(TensorData::new(x0, [b, tokens, channels]), device);
                let y = Tensor::<B, 1, Int>::from_data(TensorData::new(y.to_vec(), [b]), device);
                net.sample(x0, y, steps, s)
            }
            Generator::Mar(net, iters, schedule) => {
                let z = net.sample(y, channels, *iters, steps, s, *schedule, rng, device);
                Tensor::from_data(TensorData::new(z, [b, tokens, channels]), device)
            }
        }
    }

    /// Saves the weights to `stem` + `.mpk`.
    fn save_file(&self, stem: &Path) -> Result<PathBuf> {
        match self {
            Generator::Dit(net) => crate::jobs::save_weights(net.as_ref(), stem),
            Generator::Mar(net, ..) => crate::jobs::save_weights(net.as_ref(), stem),
        }
    }
}

fn train<B: AutodiffBackend>(
    job: &GeneratorJob<'_>,
    run: &mut ActiveRun<'_>,
    device: &B::Device,
) -> Result<()> {
    let cfg = &job.config;
    let tcfg = &job.tokenizer.config;
    cfg.check_inputs(&job.classifier.config, tcfg)
        .map_err(|m| Error::input(Path::new(GENERATOR), m))?;
    B::seed(device, cfg.seed);
    let lat_file = crate::jobs::input_artifact(job.store, job.tokenizer.run, LATENTS)?;
    let lab_file = crate::jobs::input_artifact(job.store, job.tokenizer.run, LABELS)?;
    let mut set = read_features(&lat_file, None)?;
    let labels: Vec<i64> = read_features(&lab_file, None)?
        .data
        .iter()
        .map(|v| *v as i64)
        .collect();
    if labels.len() != set.n || set.n == 0 {
        return Err(Error::input(
            &lab_file,
            format!("{} labels for {} latents", labels.len(), set.n),
        ));
    }
    let test = tcfg
        .dataset
        .load(&job.data_dir, Split::Test)?
        .take(cfg.test_size);
    let classes = test.classes;
    if let Some(bad) = labels.iter().find(|&&y| y < 0 || y as usize >= classes) {
        return Err(Error::input(
            &lab_file,
            format!("label {bad} outside 0..{classes}"),
        ));
    }
    // The scaling factor: 1 / std of every latent value (left at 1 for constant latents).
    let std = set.scale_to_unit_std();
    let scale = if std > 0.0 { 1.0 / std } else { 1.0 };
    run.log("latent/scale", 0, scale)?;
    let latents = set.data;
    let train_cfg = cfg.train_config();
    tracing::info!(
        run = run.id(),
        generator = cfg.generator.name(),
        latents = set.n,
        tokens = set.tokens,
        dim = set.dim,
        "generator: training"
    );
    let bar = crate::jobs::progress_bar(cfg.steps as u64, GENERATOR);
    let log_every = (cfg.steps / 100).max(1);
    let started = Instant::now();
    let mut on_step = |step: usize, loss: f64| -> Result<()> {
        if step.is_multiple_of(log_every) || step + 1 == cfg.steps {
            run.log("gen/loss", step as i64, loss)?;
        }
        finite(step, "gen/loss", loss)?;
        bar.inc(1);
        Ok(())
    };
    let [tokens, channels] = [set.tokens, set.dim];
    let data = LabelledLatents {
        latents: &latents,
        labels: &labels,
        tokens,
        channels,
    };
    let net = match cfg.generator {
        GeneratorKind::Dit => {
            let net = train_generator(
                Dit::<B>::new(cfg.dit_shape(tokens, channels, classes), device),
                &data,
                &train_cfg,
                device,
                BatchLoss::Flow(Dit::forward),
                &mut on_step,
            )?;
            Generator::Dit(Box::new(net.valid()))
        }
        GeneratorKind::Mar => {
            let (flow_mul, ratio) = (cfg.flow_mul(), cfg.mask_ratio());
            let net = train_generator(
                Mar::<B>::new(cfg.mar_shape(tokens, channels, classes), device),
                &data,
                &train_cfg,
                device,
                BatchLoss::Masked {
                    loss: Mar::loss_with,
                    flow_mul,
                    ratio,
                },
                &mut on_step,
            )?;
            Generator::Mar(Box::new(net.valid()), cfg.iters(tokens), cfg.cfg_schedule())
        }
    };
    bar.finish_and_clear();
    run.log(
        "gen/steps_per_s",
        cfg.steps as i64,
        cfg.steps as f64 / started.elapsed().as_secs_f64().max(1e-9),
    )?;
    // MAR's class path: how far apart two classes' conditions are (0: the class is not used).
    if let Generator::Mar(net, ..) = &net {
        run.log(
            "gen/class_signal",
            cfg.steps as i64,
            net.class_signal(channels, device),
        )?;
    }

    // The tokenizer that decodes, and the feature networks.
    let tok_file = crate::jobs::input_artifact(job.store, job.tokenizer.run, "weights")?;
    let semantic_dim = semantic_dim(job, tcfg.semantic_weight)?;
    let tokenizer = Tokenizer::<B::InnerBackend>::new(tcfg.shape(semantic_dim), device)
        .load_file(
            tok_file.clone(),
            &NamedMpkFileRecorder::<FullPrecisionSettings>::new(),
            device,
        )
        .map_err(|e| Error::input(&tok_file, format!("cannot load the tokenizer: {e}")))?;
    let classifier =
        load_classifier::<B::InnerBackend>(job.store, &job.classifier, classes, device)?;
    let all: Vec<usize> = (0..test.len()).collect();
    let (real_images, real_labels) = test.gather(&all);
    // The class each sample is drawn for (sample i: class i mod classes).
    let asked: Vec<i64> = (0..cfg.samples).map(|i| (i % classes) as i64).collect();

    // Samples without and with guidance, from the same noise, orders and labels, drawn in chunks of
    // `sample_chunk(backend)` samples (the chunking orders the draws, so it is fixed per backend).
    let chunk_size = sample_chunk(cfg.backend);
    let generate = |s: f64| -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(cfg.seed ^ 0x5eed);
        let mut images = Vec::with_capacity(cfg.samples * 784);
        let ids: Vec<usize> = (0..cfg.samples).collect();
        for chunk in ids.chunks(chunk_size) {
            let y: Vec<i64> = chunk.iter().map(|&i| asked[i]).collect();
            let z = net.sample(
                &y,
                [tokens, channels],
                cfg.sample_steps,
                s,
                &mut rng,
                device,
            ) / scale;
            images.extend(to_host_f32(tokenizer.decode(z)));
        }
        images
    };
    let plain = generate(1.0);
    let guided = generate(cfg.cfg_scale);
    run.log("gen_cfg/scale", cfg.steps as i64, cfg.cfg_scale)?;
    for &fnet in &cfg.metrics {
        let loaded = LoadedNet::load(fnet, &job.data_dir, &classifier, device)?;
        let real_out = loaded.features_and_logits(&real_images, device);
        // The reference: the Inception Score of the real test images themselves.
        let (is_real, _) = inception_score(
            &softmax_rows(&real_out.logits, real_out.classes),
            real_out.classes,
            cfg.is_splits,
        );
        run.log(
            &format!("ref/is_{}", fnet.name()),
            cfg.steps as i64,
            is_real,
        )?;
        // Only the project classifier's classes are the dataset's (EfficientNet's are ImageNet's).
        let labelled = fnet == FeatureNet::Classifier;
        if labelled {
            run.log(
                &format!("ref/class_acc_{}", fnet.name()),
                cfg.steps as i64,
                top1_accuracy(&real_out.logits, real_out.classes, &real_labels),
            )?;
        }
        let reference = Reference {
            net: fnet,
            loaded,
            features: real_out.features,
            dim: real_out.dim,
        };
        for (prefix, images) in [("gen", &plain), ("gen_cfg", &guided)] {
            let asked = labelled.then_some(asked.as_slice());
            reference.log_scores(run, prefix, images, asked, cfg, device)?;
        }
    }

    // Artifacts: the generator's weights and a grid of guided samples (one row per class).
    let dir = crate::jobs::run_dir(job.store, run.id())?;
    let stem = dir.join(GENERATOR);
    run.artifact("weights", &net.save_file(&stem)?)?;
    let per_class = (cfg.samples / classes).min(10);
    let mut grid = Vec::with_capacity(classes * per_class * 784);
    for c in 0..classes {
        for j in 0..per_class {
            let i = j * classes + c;
            grid.extend_from_slice(&guided[i * 784..(i + 1) * 784]);
        }
    }
    let png = dir.join("samples.png");
    crate::plot::image_grid(&png, &grid, 28, per_class.max(1), 2)
        .map_err(|e| Error::write(&png)(std::io::Error::other(e.to_string())))?;
    run.artifact("figure", &png)?;
    Ok(())
}

#[cfg(test)]
mod tests;
