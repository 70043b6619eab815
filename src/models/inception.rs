//! Inception-v3 as the standard FID tools define it (pytorch-fid's `FIDInceptionA/C/E_1/E_2` blocks on
//! torchvision's Inception-v3: average pools that do not count padding, a max pool in the last block's
//! pool branch, 1008 classes), with the `pt_inception-2015-12-05` weights a user supplies. Inputs are
//! resized to 299x299 (bilinear) and mapped from [0, 1] to [-1, 1]; `pool3` is the 2048-d feature FID
//! uses, the softmax of `logits` what the Inception Score uses.
//!
//! Field names follow the checkpoint's keys (lower-cased: `Conv2d_1a_3x3` -> `conv2d_1a_3x3`,
//! `Mixed_5b` -> `mixed_5b`), so the PyTorch file loads by name.

use crate::dense::linear;
use std::path::Path;

use crate::activation::relu::relu;
use crate::conv::pool::{avg_pool2d, max_pool2d};
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use super::layers::{conv_bn, fold};

/// Input side.
pub const INPUT: usize = 299;
/// pool3 features.
pub const FEATURES: usize = 2048;
/// Classes of the FID network's head (1008, as in the TensorFlow graph).
pub const CLASSES: usize = 1008;

/// Conv (no bias) + BatchNorm (eps 0.001) + ReLU; the norm is folded into the convolution once the
/// weights are loaded ([`InceptionV3::load`]).
#[derive(Module, Debug)]
pub struct BasicConv<B: Backend> {
    conv: Conv2d<B>,
    bn: Option<BatchNorm<B>>,
}

impl<B: Backend> BasicConv<B> {
    /// Kernel (kh, kw), stride, padding (ph, pw).
    fn new(
        cin: usize,
        cout: usize,
        k: (usize, usize),
        stride: usize,
        pad: (usize, usize),
        device: &B::Device,
    ) -> Self {
        BasicConv {
            conv: Conv2dConfig::new([cin, cout], [k.0, k.1])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(pad.0, pad.1, pad.0, pad.1))
                .with_bias(false)
                .init(device),
            bn: Some(BatchNormConfig::new(cout).with_epsilon(1e-3).init(device)),
        }
    }

    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        relu(conv_bn(&self.conv, &self.bn, x))
    }

    fn fold(&mut self) {
        fold(&mut self.conv, &mut self.bn);
    }
}

/// Folds the BatchNorm of each named [`BasicConv`] field of `$m`.
macro_rules! fold_fields {
    ($m:expr; $($f:ident),+) => { $($m.$f.fold();)+ };
}

fn c1<B: Backend>(cin: usize, cout: usize, device: &B::Device) -> BasicConv<B> {
    BasicConv::new(cin, cout, (1, 1), 1, (0, 0), device)
}

/// 3x3 average pool, stride 1, padding 1, padding not counted (the FID variant).
fn avg3<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    avg_pool2d(x, 3, 1, 1)
}

fn max3s2<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    max_pool2d(x, 3, 2, 0)
}

#[derive(Module, Debug)]
pub struct InceptionA<B: Backend> {
    branch1x1: BasicConv<B>,
    branch5x5_1: BasicConv<B>,
    branch5x5_2: BasicConv<B>,
    branch3x3dbl_1: BasicConv<B>,
    branch3x3dbl_2: BasicConv<B>,
    branch3x3dbl_3: BasicConv<B>,
    branch_pool: BasicConv<B>,
}

impl<B: Backend> InceptionA<B> {
    fn fold(&mut self) {
        fold_fields!(self; branch1x1, branch5x5_1, branch5x5_2, branch3x3dbl_1, branch3x3dbl_2, branch3x3dbl_3, branch_pool);
    }

    fn new(cin: usize, pool: usize, d: &B::Device) -> Self {
        InceptionA {
            branch1x1: c1(cin, 64, d),
            branch5x5_1: c1(cin, 48, d),
            branch5x5_2: BasicConv::new(48, 64, (5, 5), 1, (2, 2), d),
            branch3x3dbl_1: c1(cin, 64, d),
            branch3x3dbl_2: BasicConv::new(64, 96, (3, 3), 1, (1, 1), d),
            branch3x3dbl_3: BasicConv::new(96, 96, (3, 3), 1, (1, 1), d),
            branch_pool: c1(cin, pool, d),
        }
    }

    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let b1 = self.branch1x1.forward(x.clone());
        let b5 = self
            .branch5x5_2
            .forward(self.branch5x5_1.forward(x.clone()));
        let b3 = self.branch3x3dbl_3.forward(
            self.branch3x3dbl_2
                .forward(self.branch3x3dbl_1.forward(x.clone())),
        );
        let bp = self.branch_pool.forward(avg3(x));
        Tensor::cat(vec![b1, b5, b3, bp], 1)
    }
}

#[derive(Module, Debug)]
pub struct InceptionB<B: Backend> {
    branch3x3: BasicConv<B>,
    branch3x3dbl_1: BasicConv<B>,
    branch3x3dbl_2: BasicConv<B>,
    branch3x3dbl_3: BasicConv<B>,
}

impl<B: Backend> InceptionB<B> {
    fn fold(&mut self) {
        fold_fields!(self; branch3x3, branch3x3dbl_1, branch3x3dbl_2, branch3x3dbl_3);
    }

    fn new(cin: usize, d: &B::Device) -> Self {
        InceptionB {
            branch3x3: BasicConv::new(cin, 384, (3, 3), 2, (0, 0), d),
            branch3x3dbl_1: c1(cin, 64, d),
            branch3x3dbl_2: BasicConv::new(64, 96, (3, 3), 1, (1, 1), d),
            branch3x3dbl_3: BasicConv::new(96, 96, (3, 3), 2, (0, 0), d),
        }
    }

    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let b3 = self.branch3x3.forward(x.clone());
        let bd = self.branch3x3dbl_3.forward(
            self.branch3x3dbl_2
                .forward(self.branch3x3dbl_1.forward(x.clone())),
        );
        Tensor::cat(vec![b3, bd, max3s2(x)], 1)
    }
}

#[derive(Module, Debug)]
pub struct InceptionC<B: Backend> {
    branch1x1: BasicConv<B>,
    branch7x7_1: BasicConv<B>,
    branch7x7_2: BasicConv<B>,
    branch7x7_3: BasicConv<B>,
    branch7x7dbl_1: BasicConv<B>,
    branch7x7dbl_2: BasicConv<B>,
    branch7x7dbl_3: BasicConv<B>,
    branch7x7dbl_4: BasicConv<B>,
    branch7x7dbl_5: BasicConv<B>,
    branch_pool: BasicConv<B>,
}

impl<B: Backend> InceptionC<B> {
    fn fold(&mut self) {
        fold_fields!(self; branch1x1, branch7x7_1, branch7x7_2, branch7x7_3, branch7x7dbl_1, branch7x7dbl_2, branch7x7dbl_3, branch7x7dbl_4, branch7x7dbl_5, branch_pool);
    }

    fn new(cin: usize, c7: usize, d: &B::Device) -> Self {
        let row = |i, o| BasicConv::new(i, o, (1, 7), 1, (0, 3), d);
        let col = |i, o| BasicConv::new(i, o, (7, 1), 1, (3, 0), d);
        InceptionC {
            branch1x1: c1(cin, 192, d),
            branch7x7_1: c1(cin, c7, d),
            branch7x7_2: row(c7, c7),
            branch7x7_3: col(c7, 192),
            branch7x7dbl_1: c1(cin, c7, d),
            branch7x7dbl_2: col(c7, c7),
            branch7x7dbl_3: row(c7, c7),
            branch7x7dbl_4: col(c7, c7),
            branch7x7dbl_5: row(c7, 192),
            branch_pool: c1(cin, 192, d),
        }
    }

    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let b1 = self.branch1x1.forward(x.clone());
        let mut b7 = self.branch7x7_1.forward(x.clone());
        for c in [&self.branch7x7_2, &self.branch7x7_3] {
            b7 = c.forward(b7);
        }
        let mut bd = self.branch7x7dbl_1.forward(x.clone());
        for c in [
            &self.branch7x7dbl_2,
            &self.branch7x7dbl_3,
            &self.branch7x7dbl_4,
            &self.branch7x7dbl_5,
        ] {
            bd = c.forward(bd);
        }
        let bp = self.branch_pool.forward(avg3(x));
        Tensor::cat(vec![b1, b7, bd, bp], 1)
    }
}

#[derive(Module, Debug)]
pub struct InceptionD<B: Backend> {
    branch3x3_1: BasicConv<B>,
    branch3x3_2: BasicConv<B>,
    branch7x7x3_1: BasicConv<B>,
    branch7x7x3_2: BasicConv<B>,
    branch7x7x3_3: BasicConv<B>,
    branch7x7x3_4: BasicConv<B>,
}

impl<B: Backend> InceptionD<B> {
    fn fold(&mut self) {
        fold_fields!(self; branch3x3_1, branch3x3_2, branch7x7x3_1, branch7x7x3_2, branch7x7x3_3, branch7x7x3_4);
    }

    fn new(cin: usize, d: &B::Device) -> Self {
        InceptionD {
            branch3x3_1: c1(cin, 192, d),
            branch3x3_2: BasicConv::new(192, 320, (3, 3), 2, (0, 0), d),
            branch7x7x3_1: c1(cin, 192, d),
            branch7x7x3_2: BasicConv::new(192, 192, (1, 7), 1, (0, 3), d),
            branch7x7x3_3: BasicConv::new(192, 192, (7, 1), 1, (3, 0), d),
            branch7x7x3_4: BasicConv::new(192, 192, (3, 3), 2, (0, 0), d),
        }
    }

    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let b3 = self
            .branch3x3_2
            .forward(self.branch3x3_1.forward(x.clone()));
        let mut b7 = self.branch7x7x3_1.forward(x.clone());
        for c in [
            &self.branch7x7x3_2,
            &self.branch7x7x3_3,
            &self.branch7x7x3_4,
        ] {
            b7 = c.forward(b7);
        }
        Tensor::cat(vec![b3, b7, max3s2(x)], 1)
    }
}

#[derive(Module, Debug)]
pub struct InceptionE<B: Backend> {
    branch1x1: BasicConv<B>,
    branch3x3_1: BasicConv<B>,
    branch3x3_2a: BasicConv<B>,
    branch3x3_2b: BasicConv<B>,
    branch3x3dbl_1: BasicConv<B>,
    branch3x3dbl_2: BasicConv<B>,
    branch3x3dbl_3a: BasicConv<B>,
    branch3x3dbl_3b: BasicConv<B>,
    branch_pool: BasicConv<B>,
    /// The last block pools with a 3x3 max pool (FIDInceptionE_2), the one before with the
    /// padding-excluding average pool (FIDInceptionE_1).
    max_pool: bool,
}

impl<B: Backend> InceptionE<B> {
    fn fold(&mut self) {
        fold_fields!(self; branch1x1, branch3x3_1, branch3x3_2a, branch3x3_2b, branch3x3dbl_1, branch3x3dbl_2, branch3x3dbl_3a, branch3x3dbl_3b, branch_pool);
    }

    fn new(cin: usize, max_pool: bool, d: &B::Device) -> Self {
        InceptionE {
            branch1x1: c1(cin, 320, d),
            branch3x3_1: c1(cin, 384, d),
            branch3x3_2a: BasicConv::new(384, 384, (1, 3), 1, (0, 1), d),
            branch3x3_2b: BasicConv::new(384, 384, (3, 1), 1, (1, 0), d),
            branch3x3dbl_1: c1(cin, 448, d),
            branch3x3dbl_2: BasicConv::new(448, 384, (3, 3), 1, (1, 1), d),
            branch3x3dbl_3a: BasicConv::new(384, 384, (1, 3), 1, (0, 1), d),
            branch3x3dbl_3b: BasicConv::new(384, 384, (3, 1), 1, (1, 0), d),
            branch_pool: c1(cin, 192, d),
            max_pool,
        }
    }

    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let b1 = self.branch1x1.forward(x.clone());
        let b3 = self.branch3x3_1.forward(x.clone());
        let b3 = Tensor::cat(
            vec![
                self.branch3x3_2a.forward(b3.clone()),
                self.branch3x3_2b.forward(b3),
            ],
            1,
        );
        let bd = self
            .branch3x3dbl_2
            .forward(self.branch3x3dbl_1.forward(x.clone()));
        let bd = Tensor::cat(
            vec![
                self.branch3x3dbl_3a.forward(bd.clone()),
                self.branch3x3dbl_3b.forward(bd),
            ],
            1,
        );
        let pooled = if self.max_pool {
            max_pool2d(x, 3, 1, 1)
        } else {
            avg3(x)
        };
        let bp = self.branch_pool.forward(pooled);
        Tensor::cat(vec![b1, b3, bd, bp], 1)
    }
}

#[derive(Module, Debug)]
pub struct InceptionV3<B: Backend> {
    conv2d_1a_3x3: BasicConv<B>,
    conv2d_2a_3x3: BasicConv<B>,
    conv2d_2b_3x3: BasicConv<B>,
    conv2d_3b_1x1: BasicConv<B>,
    conv2d_4a_3x3: BasicConv<B>,
    mixed_5b: InceptionA<B>,
    mixed_5c: InceptionA<B>,
    mixed_5d: InceptionA<B>,
    mixed_6a: InceptionB<B>,
    mixed_6b: InceptionC<B>,
    mixed_6c: InceptionC<B>,
    mixed_6d: InceptionC<B>,
    mixed_6e: InceptionC<B>,
    mixed_7a: InceptionD<B>,
    mixed_7b: InceptionE<B>,
    mixed_7c: InceptionE<B>,
    fc: Linear<B>,
}

impl<B: Backend> InceptionV3<B> {
    /// Randomly initialised (load weights with [`InceptionV3::load`]).
    pub fn new(device: &B::Device) -> Self {
        let d = device;
        InceptionV3 {
            conv2d_1a_3x3: BasicConv::new(3, 32, (3, 3), 2, (0, 0), d),
            conv2d_2a_3x3: BasicConv::new(32, 32, (3, 3), 1, (0, 0), d),
            conv2d_2b_3x3: BasicConv::new(32, 64, (3, 3), 1, (1, 1), d),
            conv2d_3b_1x1: c1(64, 80, d),
            conv2d_4a_3x3: BasicConv::new(80, 192, (3, 3), 1, (0, 0), d),
            mixed_5b: InceptionA::new(192, 32, d),
            mixed_5c: InceptionA::new(256, 64, d),
            mixed_5d: InceptionA::new(288, 64, d),
            mixed_6a: InceptionB::new(288, d),
            mixed_6b: InceptionC::new(768, 128, d),
            mixed_6c: InceptionC::new(768, 160, d),
            mixed_6d: InceptionC::new(768, 160, d),
            mixed_6e: InceptionC::new(768, 192, d),
            mixed_7a: InceptionD::new(768, d),
            mixed_7b: InceptionE::new(1280, false, d),
            mixed_7c: InceptionE::new(2048, true, d),
            fc: LinearConfig::new(FEATURES, CLASSES).init(d),
        }
    }

    /// Loads a PyTorch state dict with pytorch-fid's key names (`pt_inception-2015-12-05-*.pth`;
    /// every tensor of the model must be found, with the right shape), with the BatchNorms folded
    /// into the convolutions.
    pub fn load(path: &Path, device: &B::Device) -> Result<Self, String> {
        let mut model = Self::new(device);
        model.load_state_dict(path, false)?;
        model.fold_batch_norms();
        Ok(model)
    }

    /// Every BatchNorm folded into its convolution ([`super::layers::fold`]): for inference only,
    /// where the norms use their running statistics.
    pub fn fold_batch_norms(&mut self) {
        fold_fields!(self; conv2d_1a_3x3, conv2d_2a_3x3, conv2d_2b_3x3, conv2d_3b_1x1, conv2d_4a_3x3,
            mixed_5b, mixed_5c, mixed_5d, mixed_6a, mixed_6b, mixed_6c, mixed_6d, mixed_6e, mixed_7a,
            mixed_7b, mixed_7c);
    }

    /// Reads the tensors of a state dict with pytorch-fid's key names into the model (`partial`:
    /// tensors the file lacks keep their values); returns how many were read.
    fn load_state_dict(&mut self, path: &Path, partial: bool) -> Result<usize, String> {
        use burn::store::ModuleSnapshot;
        let mut store = burn_store::PytorchStore::from_file(path)
            .with_key_remapping(r"^Conv2d_", "conv2d_")
            .with_key_remapping(r"^Mixed_", "mixed_")
            .allow_partial(partial);
        let result = self.load_from(&mut store).map_err(|e| {
            format!(
                "{}: not an Inception-v3 FID checkpoint: {e}",
                path.display()
            )
        })?;
        if !result.errors.is_empty() {
            return Err(format!(
                "{}: not an Inception-v3 FID checkpoint: {:?}",
                path.display(),
                result.errors.iter().take(3).collect::<Vec<_>>()
            ));
        }
        Ok(result.applied.len())
    }

    /// (pool3 features [B, 2048], logits [B, 1008]) of images [B, 3, H, W] in [-1, 1] (any size
    /// from 75x75 up; 299x299 is the standard).
    pub fn forward(&self, x: Tensor<B, 4>) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let mut h = self.conv2d_1a_3x3.forward(x);
        h = self.conv2d_2a_3x3.forward(h);
        h = self.conv2d_2b_3x3.forward(h);
        h = max3s2(h);
        h = self.conv2d_3b_1x1.forward(h);
        h = self.conv2d_4a_3x3.forward(h);
        h = max3s2(h);
        h = self.mixed_5b.forward(h);
        h = self.mixed_5c.forward(h);
        h = self.mixed_5d.forward(h);
        h = self.mixed_6a.forward(h);
        h = self.mixed_6b.forward(h);
        h = self.mixed_6c.forward(h);
        h = self.mixed_6d.forward(h);
        h = self.mixed_6e.forward(h);
        h = self.mixed_7a.forward(h);
        h = self.mixed_7b.forward(h);
        h = self.mixed_7c.forward(h);
        let [b, c, _, _] = h.dims();
        let pool = h.mean_dim(3).mean_dim(2).reshape([b, c]);
        let logits = linear(&self.fc, pool.clone());
        (pool, logits)
    }
}

/// Grey 28x28 images in [0, 1] ([B, 784]) as the FID network's input: resized to `side` x `side`
/// (bilinear), repeated over RGB, mapped to [-1, 1].
pub fn grey_to_input<B: Backend>(x: Tensor<B, 2>, side: usize) -> Tensor<B, 4> {
    crate::tensors::grey28_to_rgb(x, side, -1.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::store::{ModuleSnapshot, TensorSnapshot};
    use burn::tensor::TensorData;

    type B = crate::backend::TestBackend;

    /// The deterministic weights of scripts/inception_reference.py: a formula of each parameter's
    /// path and flat index (computed in f64, stored as f32).
    fn formula(path: &str, shape: &[usize]) -> Vec<f32> {
        let n: usize = shape.iter().product();
        let l = path.len() as f64;
        (0..n)
            .map(|i| {
                let i = i as f64;
                let v = if path.ends_with("conv.weight") {
                    let fan_in = (shape[1] * shape[2] * shape[3]) as f64;
                    (4.0 / fan_in).sqrt() * (0.37 * i + l).sin()
                } else if path.ends_with("bn.gamma") {
                    1.0 + 0.1 * (0.5 * i + l).sin()
                } else if path.ends_with("bn.beta") {
                    0.1 * (0.3 * i + l).cos()
                } else if path.ends_with("bn.running_mean") {
                    0.05 * (0.2 * i + l).sin()
                } else if path.ends_with("bn.running_var") {
                    1.0 + 0.5 * (0.1 * i + l).sin().powi(2)
                } else if path == "fc.weight" {
                    0.02 * (0.01 * i + l).sin()
                } else if path == "fc.bias" {
                    0.01 * (0.5 * i).cos()
                } else {
                    panic!("no formula for {path}")
                };
                v as f32
            })
            .collect()
    }

    #[test]
    fn reads_pytorch_fid_key_names() {
        // Two layers saved by torch under pytorch-fid's names (scripts/inception_reference.py).
        let device = Default::default();
        let mut model = InceptionV3::<B>::new(&device);
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inception_keys.pth");
        let read = model.load_state_dict(&file, true).expect("loads");
        assert_eq!(read, 10);
        let host = |t: Tensor<B, 1>| -> Vec<f32> { t.into_data().to_vec().expect("f32") };
        let conv = &model.conv2d_1a_3x3;
        let w: Vec<f32> = conv.conv.weight.val().into_data().to_vec().expect("f32");
        assert_eq!(w, formula("conv2d_1a_3x3.conv.weight", &[32, 3, 3, 3]));
        assert_eq!(
            host(conv.bn.as_ref().expect("bn").gamma.val()),
            formula("conv2d_1a_3x3.bn.gamma", &[32])
        );
        assert_eq!(
            host(conv.bn.as_ref().expect("bn").running_var.value()),
            formula("conv2d_1a_3x3.bn.running_var", &[32])
        );
        assert_eq!(
            host(model.mixed_5b.branch1x1.bn.as_ref().expect("bn").beta.val()),
            formula("mixed_5b.branch1x1.bn.beta", &[64])
        );
        // The full loader refuses a file that lacks most of the network, naming it.
        let e = InceptionV3::<B>::load(&file, &device).expect_err("partial file");
        assert!(e.contains("not an Inception-v3 FID checkpoint"), "{e}");
    }

    #[test]
    fn matches_an_independent_pytorch_forward_on_formula_weights() {
        let fixture: serde_json::Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/inception_fid_reference.json"
        ))
        .expect("fixture");
        let side = fixture["side"].as_u64().expect("side") as usize;
        let want = |k: &str| -> Vec<f64> {
            fixture[k]
                .as_array()
                .expect("array")
                .iter()
                .map(|v| v.as_f64().expect("number"))
                .collect()
        };
        let device = Default::default();
        let mut model = InceptionV3::<B>::new(&device);
        let snaps: Vec<TensorSnapshot> = model
            .collect(None, None, false)
            .into_iter()
            .map(|s| {
                let path = s.full_path();
                let shape = s.shape.to_vec();
                TensorSnapshot::from_data(
                    TensorData::new(formula(&path, &shape), shape),
                    s.path_stack.clone().expect("path"),
                    s.container_stack.clone().expect("containers"),
                    s.tensor_id.expect("id"),
                )
            })
            .collect();
        let n = snaps.len();
        let result = model.apply(snaps, None, None, false);
        assert!(
            result.errors.is_empty() && result.applied.len() == n,
            "{result:?}"
        );
        // 94 conv layers (each with 4 BN tensors) and the classifier.
        assert_eq!(n, 94 * 5 + 2);
        let img: Vec<f32> = (0..784)
            .map(|p| {
                let p = p as f64;
                (0.5 + 0.5 * (0.11 * p).sin() * (0.07 * p).cos()) as f32
            })
            .collect();
        let x = Tensor::<B, 2>::from_data(TensorData::new(img, [1, 784]), &device);
        let input = grey_to_input(x, side);
        // With the norms as loaded, then folded into the convolutions (what `load` returns).
        let expected = (want("pool3"), want("logits"));
        check(model.forward(input.clone()), &expected);
        model.fold_batch_norms();
        assert!(model.conv2d_1a_3x3.bn.is_none() && model.mixed_7c.branch_pool.bn.is_none());
        check(model.forward(input), &expected);
    }

    fn check(
        (pool, logits): (Tensor<B, 2>, Tensor<B, 2>),
        (want_pool, want_logits): &(Vec<f64>, Vec<f64>),
    ) {
        let got: Vec<f32> = pool.into_data().to_vec().expect("f32");
        assert_eq!(got.len(), FEATURES);
        let scale = want_pool.iter().fold(0f64, |m, v| m.max(v.abs()));
        for (i, (g, w)) in got.iter().zip(want_pool).enumerate() {
            assert!(
                (f64::from(*g) - w).abs() <= 1e-3 * scale,
                "pool3[{i}]: {g} vs {w} (scale {scale})"
            );
        }
        let got: Vec<f32> = logits.into_data().to_vec().expect("f32");
        assert_eq!(got.len(), CLASSES);
        let scale = want_logits.iter().fold(0f64, |m, v| m.max(v.abs()));
        for (g, w) in got.iter().zip(want_logits) {
            assert!((f64::from(*g) - w).abs() <= 1e-3 * scale);
        }
    }
}
