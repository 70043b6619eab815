use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};

use super::*;
use crate::backend::{TestAutodiff, TestBackend};

fn values<const D: usize, B: Backend>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().expect("f32")
}

fn close(ours: &[f32], theirs: &[f32], tol: f32, what: &str) {
    assert_eq!(ours.len(), theirs.len(), "{what}: lengths");
    for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
        assert!(
            (a - b).abs() <= tol * (1.0 + b.abs()),
            "{what}[{i}]: {a} vs {b}"
        );
    }
}

/// (in, out, kernel, stride, padding) of the layers the models use, and a few others.
const CONVS: [(usize, usize, usize, usize, usize); 5] = [
    (1, 32, 4, 2, 1),  // enc1 / discriminator c1
    (32, 64, 4, 2, 1), // enc2
    (64, 8, 1, 1, 0),  // enc_out
    (32, 1, 3, 1, 1),  // dec_out
    (3, 5, 3, 2, 0),
];

fn conv_layer<B: Backend>((i, o, k, s, p): (usize, usize, usize, usize, usize)) -> Conv2d<B> {
    Conv2dConfig::new([i, o], [k, k])
        .with_stride([s, s])
        .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
        .init(&Default::default())
}

fn transpose_layer<B: Backend>(
    (i, o, k, s, p): (usize, usize, usize, usize, usize),
) -> ConvTranspose2d<B> {
    ConvTranspose2dConfig::new([i, o], [k, k])
        .with_stride([s, s])
        .with_padding([p, p])
        .init(&Default::default())
}

/// Forward values and the gradients of `sum(y * r)` (x, weight, bias) through `f`.
fn run_grads<M: Module<TestAutodiff>>(
    layer: &M,
    x: &Tensor<TestBackend, 4>,
    f: impl Fn(&M, Tensor<TestAutodiff, 4>) -> Tensor<TestAutodiff, 4>,
    weight: impl Fn(&M) -> Tensor<TestAutodiff, 4>,
    bias: impl Fn(&M) -> Tensor<TestAutodiff, 1>,
) -> [Vec<f32>; 4] {
    let device = Default::default();
    let xa = Tensor::<TestAutodiff, 4>::from_data(x.to_data(), &device).require_grad();
    let y = f(layer, xa.clone());
    // The same weighting for both implementations: a fixed pattern.
    let n = y.dims().iter().product::<usize>();
    let pattern: Vec<f32> = (0..n).map(|i| ((i * 37) % 17) as f32 / 8.0 - 1.0).collect();
    let r = Tensor::<TestAutodiff, 4>::from_data(
        burn::tensor::TensorData::new(pattern, y.dims()),
        &device,
    );
    let g = (y.clone() * r).sum().backward();
    [
        values(y),
        values(xa.grad(&g).expect("x has a gradient")),
        values(weight(layer).grad(&g).expect("weight has a gradient")),
        values(bias(layer).grad(&g).expect("bias has a gradient")),
    ]
}

#[test]
fn convolutions_and_their_gradients_equal_burns_layer() {
    let device = Default::default();
    for (case, shape) in CONVS.into_iter().enumerate() {
        let layer = conv_layer::<TestAutodiff>(shape);
        let side = if shape.0 == 1 { 28 } else { 7 + case };
        let x = Tensor::<TestBackend, 4>::random(
            [3, shape.0, side, side],
            Distribution::Normal(0.0, 1.0),
            &device,
        );
        assert!(
            conv_op(&layer, x.dims()).is_some(),
            "case {case} runs on the kernels"
        );
        let weight = |l: &Conv2d<TestAutodiff>| l.weight.val();
        let bias = |l: &Conv2d<TestAutodiff>| l.bias.as_ref().expect("bias").val();
        let ours = run_grads(&layer, &x, conv2d, weight, bias);
        let theirs = run_grads(&layer, &x, |l, x| l.forward(x), weight, bias);
        for (i, what) in ["y", "dx", "dw", "db"].iter().enumerate() {
            close(&ours[i], &theirs[i], 2e-5, &format!("case {case} {what}"));
        }
    }
}

#[test]
fn transposed_convolutions_and_their_gradients_equal_burns_layer() {
    let device = Default::default();
    let shapes = [
        (64, 32, 4, 2, 1),
        (32, 32, 4, 2, 1),
        (3, 2, 3, 2, 0),
        (4, 6, 3, 1, 1),
    ];
    for (case, shape) in shapes.into_iter().enumerate() {
        let layer = transpose_layer::<TestAutodiff>(shape);
        let x = Tensor::<TestBackend, 4>::random(
            [3, shape.0, 5 + case, 7],
            Distribution::Normal(0.0, 1.0),
            &device,
        );
        assert!(
            transpose_op(&layer, x.dims()).is_some(),
            "case {case} runs on the kernels"
        );
        let weight = |l: &ConvTranspose2d<TestAutodiff>| l.weight.val();
        let bias = |l: &ConvTranspose2d<TestAutodiff>| l.bias.as_ref().expect("bias").val();
        let ours = run_grads(&layer, &x, conv_transpose2d, weight, bias);
        let theirs = run_grads(&layer, &x, |l, x| l.forward(x), weight, bias);
        for (i, what) in ["y", "dx", "dw", "db"].iter().enumerate() {
            close(&ours[i], &theirs[i], 2e-5, &format!("case {case} {what}"));
        }
    }
}

/// The convolution's definition, summed in f64: `y[n, o, i, j] = b[o] + sum_{c, u, v}
/// w[o, c, u, v] x[n, c, i s + u - p, j s + v - p]` (zero outside the image).
fn direct(
    x: &[f32],
    xd: [usize; 4],
    w: &[f32],
    wd: [usize; 4],
    b: &[f32],
    s: usize,
    p: usize,
) -> Vec<f64> {
    let [n, c, h, wi] = xd;
    let [o, _, k, _] = wd;
    let (oh, ow) = ((h + 2 * p - k) / s + 1, (wi + 2 * p - k) / s + 1);
    let mut y = vec![0.0f64; n * o * oh * ow];
    for a in 0..n {
        for q in 0..o {
            for i in 0..oh {
                for j in 0..ow {
                    let mut acc = f64::from(b[q]);
                    for ch in 0..c {
                        for u in 0..k {
                            for v in 0..k {
                                let (yy, xx) = (
                                    (i * s + u) as isize - p as isize,
                                    (j * s + v) as isize - p as isize,
                                );
                                if yy >= 0 && xx >= 0 && (yy as usize) < h && (xx as usize) < wi {
                                    acc += f64::from(w[((q * c + ch) * k + u) * k + v])
                                        * f64::from(
                                            x[((a * c + ch) * h + yy as usize) * wi + xx as usize],
                                        );
                                }
                            }
                        }
                    }
                    y[((a * o + q) * oh + i) * ow + j] = acc;
                }
            }
        }
    }
    y
}

#[test]
fn the_forward_pass_matches_the_definition_summed_in_f64() {
    let device = Default::default();
    for shape in CONVS {
        let layer = conv_layer::<TestBackend>(shape);
        let x = Tensor::<TestBackend, 4>::random(
            [2, shape.0, 9, 8],
            Distribution::Normal(0.0, 1.0),
            &device,
        );
        let got = values(conv2d(&layer, x.clone()));
        let (xv, wv) = (values(x.clone()), values(layer.weight.val()));
        let bv = values(layer.bias.as_ref().expect("bias").val());
        let want = direct(
            &xv,
            x.dims(),
            &wv,
            layer.weight.val().dims(),
            &bv,
            shape.3,
            shape.4,
        );
        assert_eq!(got.len(), want.len());
        for (a, b) in got.iter().zip(&want) {
            assert!(
                (f64::from(*a) - b).abs() < 1e-4 * (1.0 + b.abs()),
                "{a} vs {b}"
            );
        }
    }
}

#[test]
fn two_threads_give_the_one_thread_results_up_to_summation_order() {
    let device = Default::default();
    let shape = (32, 16, 4, 2, 1);
    let layer = transpose_layer::<TestAutodiff>(shape);
    let x =
        Tensor::<TestBackend, 4>::random([5, 32, 7, 7], Distribution::Normal(0.0, 1.0), &device);
    let weight = |l: &ConvTranspose2d<TestAutodiff>| l.weight.val();
    let bias = |l: &ConvTranspose2d<TestAutodiff>| l.bias.as_ref().expect("bias").val();
    let pool = |k| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(k)
            .build()
            .expect("pool")
    };
    let one = pool(1).install(|| run_grads(&layer, &x, conv_transpose2d, weight, bias));
    let two = pool(2).install(|| run_grads(&layer, &x, conv_transpose2d, weight, bias));
    for i in 0..4 {
        close(&two[i], &one[i], 1e-5, "2 threads vs 1");
    }
}

#[test]
fn other_configurations_fall_back_to_burns_layer() {
    let device = Default::default();
    let dilated = Conv2dConfig::new([2, 3], [3, 3])
        .with_dilation([2, 2])
        .init::<TestBackend>(&device);
    assert!(conv_op(&dilated, [1, 2, 9, 9]).is_none());
    let grouped = Conv2dConfig::new([4, 4], [3, 3])
        .with_groups(2)
        .init::<TestBackend>(&device);
    assert!(conv_op(&grouped, [1, 4, 9, 9]).is_none());
    let lopsided = Conv2dConfig::new([1, 2], [3, 3])
        .with_padding(PaddingConfig2d::Explicit(1, 0, 2, 0))
        .init::<TestBackend>(&device);
    assert!(conv_op(&lopsided, [1, 1, 9, 9]).is_none());
    let unbiased = Conv2dConfig::new([1, 2], [3, 3])
        .with_bias(false)
        .init::<TestBackend>(&device);
    assert!(conv_op(&unbiased, [1, 1, 9, 9]).is_none());
    let padded_out = ConvTranspose2dConfig::new([2, 2], [3, 3])
        .with_stride([2, 2])
        .with_padding_out([1, 1])
        .init::<TestBackend>(&device);
    assert!(transpose_op(&padded_out, [1, 2, 4, 4]).is_none());
    // And the fallback computes Burn's result.
    let x = Tensor::<TestBackend, 4>::random([2, 2, 9, 9], Distribution::Normal(0.0, 1.0), &device);
    close(
        &values(conv2d(&dilated, x.clone())),
        &values(dilated.forward(x)),
        0.0,
        "dilated",
    );
}
