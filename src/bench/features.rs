//! The feature networks' forward pass (what `flowprior bench features` measures): grey 28x28 images
//! through `LoadedNet::features_and_logits`, as rFID, FID and the dino stage run them (the resize to
//! the network's input included), timed after an untimed chunk. Without its checkpoint the FID
//! Inception-v3 runs on untrained weights (norms folded as at load): its cost does not depend on them.

use std::path::PathBuf;
use std::time::Instant;

use burn::tensor::backend::AutodiffBackend;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::backend::BackendJob;
use crate::models::classifier::MlpClassifier;
use crate::models::inception::InceptionV3;
use crate::stage::feature_nets::{FeatureNet, LoadedNet};

/// The project classifier's hidden width (the `classifier` stage's default) and classes.
const HIDDEN: usize = 256;
const CLASSES: usize = 10;

/// One measured network.
#[derive(Debug, Clone)]
pub struct FeatureBench {
    pub net: FeatureNet,
    /// Images in the timed pass.
    pub images: usize,
    /// Timed passes; the median one's rate is reported.
    pub repeats: usize,
    /// Where the weights files are (`data/`).
    pub data_dir: PathBuf,
}

impl FeatureBench {
    /// Whether the network's weights file is there (the classifier needs none).
    pub fn has_weights(&self) -> bool {
        self.net
            .weights_file(&self.data_dir)
            .is_none_or(|f| f.exists())
    }
}

impl BackendJob for FeatureBench {
    /// Images per second, or why the network could not be loaded.
    type Output = Result<f64, String>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Result<f64, String> {
        B::seed(&device, 0);
        // Untrained classifier weights: the cost does not depend on them.
        let classifier = MlpClassifier::<B::InnerBackend>::new(784, HIDDEN, CLASSES, &device);
        let net = match LoadedNet::load(self.net, &self.data_dir, &classifier, &device) {
            Ok(net) => net,
            // Without its checkpoint, the FID Inception-v3 on untrained weights with its norms folded
            // as at load: the same operations, so the same cost.
            Err(_) if self.net == FeatureNet::Inception && !self.has_weights() => {
                let mut net = InceptionV3::<B::InnerBackend>::new(&device);
                net.fold_batch_norms();
                LoadedNet::Inception(Box::new(net))
            }
            Err(e) => return Err(e.to_string()),
        };
        let mut rng = StdRng::seed_from_u64(0);
        let n = self.images.max(1);
        let images: Vec<f32> = (0..n * 784).map(|_| rng.random::<f32>()).collect();
        // One chunk per thread first (allocation, kernel compilation and tuning, and the classifier's
        // side-by-side blocks start their threads).
        let warm_images = net.chunk() * rayon::current_num_threads();
        let warm = &images[..images.len().min(warm_images * 784)];
        let _ = net.features_and_logits(warm, &device);
        let timed = || {
            let start = Instant::now();
            let out = net.features_and_logits(&images, &device);
            (out, start.elapsed().as_secs_f64())
        };
        let (out, first) = timed();
        let mut times = vec![first];
        times.extend((1..self.repeats.max(1)).map(|_| timed().1));
        times.sort_by(f64::total_cmp);
        let secs = times[times.len() / 2];
        if out.features.len() != n * out.dim {
            return Err(format!(
                "{} gave {} feature values for {n} images of dimension {}",
                self.net.name(),
                out.features.len(),
                out.dim
            ));
        }
        Ok(n as f64 / secs.max(1e-9))
    }
}
