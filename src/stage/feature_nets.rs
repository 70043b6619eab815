//! Feature networks of the FID-like metrics (rFID here, FID / IS for generators), each named in the
//! metrics it produces: the project's MLP classifier (a stage input), EfficientNet-Lite0 (ImageNet
//! weights from `just data`) and the standard FID Inception-v3 (`pt_inception-2015-12-05` weights, which
//! a user supplies: they cannot be downloaded on these machines).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::models::classifier::MlpClassifier;
use crate::models::efficientnet::EfficientNetLite0;
use crate::models::inception::{self, InceptionV3};
use crate::tensors::{to_host, to_host_f32};
use crate::train::blocks::{blocks_of, on_shard_threads, row_blocks};

/// The key under which a run's identity records the content of its feature networks' weights.
pub const WEIGHTS_KEY: &str = "feature_weights";

/// pytorch-fid's weights file, expected in the data folder.
pub const INCEPTION_FILE: &str = "weights/pt_inception-2015-12-05-6726825d.pth";

/// A feature network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeatureNet {
    /// The project's MLP classifier (the sweep's `classifier` stage), penultimate layer.
    Classifier,
    /// EfficientNet-Lite0, pooled 1280-d features of the image resized to 224x224 (bilinear), grey
    /// repeated over RGB, values in [0, 255].
    Efficientnet,
    /// The FID Inception-v3, pool3 (2048-d) of the image resized to 299x299 (bilinear), in [-1, 1].
    Inception,
}

impl FeatureNet {
    pub fn name(self) -> &'static str {
        match self {
            FeatureNet::Classifier => "classifier",
            FeatureNet::Efficientnet => "efficientnet",
            FeatureNet::Inception => "inception",
        }
    }

    /// For reports' provenance.
    pub fn describe(self) -> &'static str {
        match self {
            FeatureNet::Classifier => "the project's MLP classifier (penultimate layer)",
            FeatureNet::Efficientnet => "EfficientNet-Lite0 pooled features (ImageNet weights)",
            FeatureNet::Inception => "the FID Inception-v3 pool3 (pt_inception-2015-12-05 weights)",
        }
    }

    /// Several networks for provenance: "A and B".
    pub fn describe_all(nets: &[FeatureNet]) -> String {
        nets.iter()
            .map(|n| n.describe())
            .collect::<Vec<_>>()
            .join(" and ")
    }

    /// The weights file in the data folder (the classifier's come from its stage run).
    pub fn weights_file(self, data_dir: &Path) -> Option<PathBuf> {
        match self {
            FeatureNet::Classifier => None,
            FeatureNet::Efficientnet => Some(data_dir.join(super::dino::LITE0_FILE)),
            FeatureNet::Inception => Some(data_dir.join(INCEPTION_FILE)),
        }
    }
}

/// The content identity of every weights file `nets` read, by network name (part of a run's identity).
pub fn weights_identity(
    nets: &[FeatureNet],
    data_dir: &Path,
    identity: impl Fn(&Path) -> String,
) -> BTreeMap<String, String> {
    nets.iter()
        .filter_map(|n| {
            n.weights_file(data_dir)
                .map(|f| (n.name().to_string(), identity(&f)))
        })
        .collect()
}

/// The classifier of a finished `classifier` run (its checkpoint artifact, checked), for `classes`
/// classes of 784-pixel images.
pub fn load_classifier<B: Backend>(
    store: &crate::store::Store,
    up: &crate::jobs::Upstream<super::classifier::ClassifierConfig>,
    classes: usize,
    device: &B::Device,
) -> Result<MlpClassifier<B>> {
    use burn::module::Module;
    use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};
    let file = crate::jobs::input_artifact(store, up.run, "checkpoint")?;
    MlpClassifier::<B>::new(784, up.config.hidden, classes, device)
        .load_file(
            file.clone(),
            &NamedMpkFileRecorder::<FullPrecisionSettings>::new(),
            device,
        )
        .map_err(|e| Error::input(&file, format!("cannot load the classifier: {e}")))
}

/// The identity entry of the weights files (none when no network reads a file).
pub fn weights_entry(
    weights: &BTreeMap<String, String>,
) -> Option<(&'static str, serde_json::Value)> {
    (!weights.is_empty()).then(|| (WEIGHTS_KEY, crate::util::config_json(weights)))
}

/// A loaded feature network.
pub enum LoadedNet<'a, B: Backend> {
    Classifier(&'a MlpClassifier<B>),
    Efficientnet(Box<EfficientNetLite0<B>>),
    Inception(Box<InceptionV3<B>>),
}

impl<'a, B: Backend> LoadedNet<'a, B> {
    /// Loads `net` (the classifier is the one given).
    pub fn load(
        net: FeatureNet,
        data_dir: &Path,
        classifier: &'a MlpClassifier<B>,
        device: &B::Device,
    ) -> Result<Self> {
        let file = net.weights_file(data_dir);
        Ok(match (net, file) {
            (FeatureNet::Efficientnet, Some(f)) => LoadedNet::Efficientnet(Box::new(
                EfficientNetLite0::load(&f, device).map_err(|m| Error::input(&f, m))?,
            )),
            (FeatureNet::Inception, Some(f)) => {
                if !f.exists() {
                    return Err(Error::input(
                        &f,
                        "the FID Inception-v3 weights are not there: put pytorch-fid's \
                         pt_inception-2015-12-05-6726825d.pth at this path (they cannot be \
                         downloaded on these machines), or drop `inception` from the feature networks"
                            .into(),
                    ));
                }
                LoadedNet::Inception(Box::new(
                    InceptionV3::load(&f, device).map_err(|m| Error::input(&f, m))?,
                ))
            }
            _ => LoadedNet::Classifier(classifier),
        })
    }

    /// Features (n x d, row-major) and d of grey 28x28 images `x` ([n * 784] in [0, 1]).
    pub fn features(&self, x: &[f32], device: &B::Device) -> (Vec<f32>, usize) {
        let out = self.features_and_logits(x, device);
        (out.features, out.dim)
    }

    /// Features and class logits (for the Inception Score) of grey 28x28 images `x`. The classifier's
    /// chunks run in blocks side by side on flex (one per thread: a chunk's products are too small to
    /// share out); the convolutional networks' chunks one after another, their convolutions spreading
    /// the images over the threads.
    pub fn features_and_logits(&self, x: &[f32], device: &B::Device) -> NetOutput {
        let parts: Vec<&[f32]> = x.chunks(self.chunk() * 784).collect();
        let blocks = match self {
            LoadedNet::Classifier(_) => blocks_of::<B>(parts.len(), 1),
            _ => 1,
        };
        let run = |range: std::ops::Range<usize>| {
            let mut out = NetOutput::default();
            for part in &parts[range] {
                self.chunk_into(part, device, &mut out);
            }
            out
        };
        let outs = if blocks > 1 {
            on_shard_threads(row_blocks(parts.len(), blocks), run)
        } else {
            vec![run(0..parts.len())]
        };
        // The blocks' rows in order, after the first block's.
        outs.into_iter()
            .reduce(|mut out, o| {
                out.features.extend(o.features);
                out.logits.extend(o.logits);
                out
            })
            .unwrap_or_default()
    }

    /// Images a chunk holds: what one pass of the network takes at once.
    pub fn chunk(&self) -> usize {
        match self {
            LoadedNet::Classifier(_) => 500,
            LoadedNet::Efficientnet(_) | LoadedNet::Inception(_) => 16,
        }
    }

    /// One chunk of images through the network, its features and logits appended to `out`.
    fn chunk_into(&self, part: &[f32], device: &B::Device, out: &mut NetOutput) {
        let t = crate::tensors::from_host_f32::<B>(part.to_vec(), 784, device);
        let (f, l) = match self {
            LoadedNet::Classifier(c) => {
                let f = c.features(t);
                (f.clone(), c.head(f))
            }
            LoadedNet::Efficientnet(e) => {
                let (_, pooled, logits) = e.forward(super::dino::to_rgb224(t));
                (pooled, logits)
            }
            LoadedNet::Inception(n) => n.forward(inception::grey_to_input(t, inception::INPUT)),
        };
        out.dim = f.dims()[1];
        out.classes = l.dims()[1];
        out.features.extend(to_host_f32(f));
        out.logits.extend(to_host(l));
    }
}

/// Features (n x dim) and logits (n x classes) of a batch of images.
#[derive(Default)]
pub struct NetOutput {
    pub features: Vec<f32>,
    pub dim: usize,
    pub logits: Vec<f64>,
    pub classes: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    type B = crate::backend::TestBackend;

    #[test]
    fn missing_inception_weights_are_named_and_identities_cover_weight_files() {
        let dir = tempfile::tempdir().expect("tmp");
        let device = Default::default();
        let c = MlpClassifier::<B>::new(784, 8, 10, &device);
        let e = match LoadedNet::load(FeatureNet::Inception, dir.path(), &c, &device) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("no weights there"),
        };
        assert!(
            e.contains("pt_inception-2015-12-05-6726825d.pth")
                && e.contains("cannot be downloaded"),
            "{e}"
        );
        // The classifier needs no file; its features are its penultimate layer.
        let net = LoadedNet::load(FeatureNet::Classifier, dir.path(), &c, &device).expect("loads");
        let (f, d) = net.features(&vec![0.5; 3 * 784], &device);
        assert_eq!((f.len(), d), (24, 8));
        let ids = weights_identity(
            &[
                FeatureNet::Classifier,
                FeatureNet::Inception,
                FeatureNet::Efficientnet,
            ],
            dir.path(),
            |p| {
                p.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned()
            },
        );
        assert_eq!(
            ids.into_iter().collect::<Vec<_>>(),
            vec![
                (
                    "efficientnet".to_string(),
                    "efficientnet-lite0-57934424.pth".to_string()
                ),
                (
                    "inception".to_string(),
                    "pt_inception-2015-12-05-6726825d.pth".to_string()
                ),
            ]
        );
    }
}
