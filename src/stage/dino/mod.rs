//! The `dino` stage: semantic visual features of a dataset's images, the `dino` prior source. A DINOv2
//! checkpoint is not available on these machines; the stand-in is EfficientNet-Lite0 with ImageNet
//! weights (the file `just data` fetches, or `weights` given by the user), and reports say so.
//! Images (28x28 grey) are resized to 224x224 (bilinear), repeated over 3 channels, kept in [0, 255].
//! Features: the 7x7 spatial tokens of the last stage ([N, 49, 1280]) or the pooled vector ([N, 1280]).

/// Its [`Stage`](crate::stage::Stage) implementation (the registry's entry).
pub mod stage;

use std::path::{Path, PathBuf};

use burn::tensor::Tensor;
use burn::tensor::backend::{AutodiffBackend, Backend};
use serde::{Deserialize, Serialize};

use crate::backend::{BackendJob, BackendKind};
use crate::config::positive_counts;
use crate::data::{DatasetId, Split};
use crate::error::{Error, Result};
use crate::features::write_npy;
use crate::jobs::{Claim, JobRun};
use crate::models::efficientnet::{EfficientNetLite0, IMAGE_SIZE};
use crate::store::{ActiveRun, RunSpec, Store};
use crate::tensors::to_host;

pub const DINO: &str = "dino";
/// The EfficientNet-Lite0 weights `just data` fetches (relative to the data folder).
pub const LITE0_FILE: &str = "weights/efficientnet-lite0-57934424.pth";
/// The key under which a run's identity records its weights file's content.
const WEIGHTS_KEY: &str = "weights_sha256";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DinoConfig {
    pub dataset: DatasetId,
    /// Training images whose features are extracted (the first N of the train split).
    pub images: usize,
    /// The pooled 1280-d vector per image instead of the 49 spatial tokens.
    pub pooled: bool,
    /// Images per forward pass.
    pub batch: usize,
    /// EfficientNet-Lite0 weights (relative: in the data folder); "" = the file `just data` fetches.
    /// (No seed: extraction is deterministic, so every seed of a sweep shares one run.)
    pub weights: String,
    pub backend: BackendKind,
}

impl Default for DinoConfig {
    fn default() -> Self {
        DinoConfig {
            dataset: DatasetId::FashionMnist,
            images: 2000,
            pooled: false,
            batch: 16,
            weights: String::new(),
            backend: BackendKind::Flex,
        }
    }
}

impl DinoConfig {
    pub fn validate(&self) -> std::result::Result<(), String> {
        positive_counts(&[("images", self.images), ("batch", self.batch)])
    }

    pub fn weights_file(&self, data_dir: &Path) -> PathBuf {
        let p = Path::new(if self.weights.is_empty() {
            LITE0_FILE
        } else {
            &self.weights
        });
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            data_dir.join(p)
        }
    }

    /// The run on the weights file whose content identity is `weights` (see `util::file_identity`).
    pub fn run_spec(&self, weights: &str) -> RunSpec {
        let mut config = crate::util::config_json(self);
        if let Some(obj) = config.as_object_mut() {
            obj.insert(WEIGHTS_KEY.into(), serde_json::Value::from(weights));
        }
        RunSpec {
            stage: DINO.into(),
            name: format!(
                "{DINO}/{}-{}",
                self.dataset.name(),
                if self.pooled { "pooled" } else { "tokens" }
            ),
            config,
            seed: None,
        }
    }
}

pub struct DinoJob<'a> {
    pub config: DinoConfig,
    pub data_dir: PathBuf,
    pub store: &'a Store,
    pub claim: Claim,
}

impl BackendJob for DinoJob<'_> {
    type Output = Result<JobRun<i64>>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Result<JobRun<i64>> {
        let weights = self.config.weights_file(&self.data_dir);
        let spec = self.config.run_spec(&crate::util::file_identity(&weights));
        let backend = self.config.backend.name();
        crate::jobs::run_or_reuse(self.store, &spec, backend, self.claim, |run| {
            extract::<B::InnerBackend>(&self, &weights, run, &device)
        })
    }
}

/// Grey 28x28 images in [0, 1] ([b, 784]) as EfficientNet-Lite0's input: [b, 3, 224, 224] in [0, 255].
pub fn to_rgb224<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 4> {
    crate::tensors::grey28_to_rgb(x, IMAGE_SIZE, 0.0, 255.0)
}

fn extract<B: Backend>(
    job: &DinoJob<'_>,
    weights: &Path,
    run: &mut ActiveRun<'_>,
    device: &B::Device,
) -> Result<i64> {
    let cfg = &job.config;
    let model = EfficientNetLite0::<B>::load(weights, device)
        .map_err(|message| Error::input(weights, message))?;
    run.artifact("weights", weights)?;
    let train = cfg.dataset.load(&job.data_dir, Split::Train)?;
    if train.dim() != 784 {
        return Err(Error::Input {
            path: job.data_dir.clone(),
            message: format!(
                "the dino stage reads 28x28 images, {} has {}x{}",
                train.name, train.height, train.width
            ),
        });
    }
    let n = cfg.images.min(train.len());
    let per = if cfg.pooled { 1280 } else { 49 * 1280 };
    let mut data = Vec::with_capacity(n * per);
    let bar = crate::jobs::progress_bar(n as u64, "dino features");
    let idx: Vec<usize> = (0..n).collect();
    for chunk in idx.chunks(cfg.batch) {
        let (x, _) = train.gather(chunk);
        let (tokens, pooled, _) = model.forward(to_rgb224(crate::tensors::from_host_f32::<B>(
            x, 784, device,
        )));
        let out = if cfg.pooled {
            to_host(pooled)
        } else {
            to_host(tokens)
        };
        data.extend(out.into_iter().map(|v| v as f32));
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    run.log("dino/images", 0, n as f64)?;
    let dir = crate::jobs::run_dir(job.store, run.id())?;
    let file = dir.join("features.npy");
    let shape: Vec<usize> = if cfg.pooled {
        vec![n, 1280]
    } else {
        vec![n, 49, 1280]
    };
    write_npy(&file, &data, &shape).map_err(Error::write(&file))?;
    run.artifact(crate::stage::latent_ae::FEATURES, &file)?;
    Ok(run.id())
}
