use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use super::*;

type B = crate::backend::TestAutodiff;

/// One trainable scalar with loss `(w - a)^2`, whose Adam steps have closed forms.
#[derive(Module, Debug)]
struct Scalar<B: Backend> {
    w: Param<Tensor<B, 1>>,
}

fn scalar(w: f32) -> Scalar<B> {
    Scalar {
        w: Param::from_tensor(Tensor::from_data(
            TensorData::new(vec![w], [1]),
            &Default::default(),
        )),
    }
}

fn value<Bk: Backend>(m: &Scalar<Bk>) -> f32 {
    m.w.val().into_data().to_vec::<f32>().expect("f32")[0]
}

fn loss(m: &Scalar<B>, a: f32) -> Tensor<B, 1> {
    (m.w.val() - a).powi_scalar(2).sum()
}

/// Burn's Adam at step 1: `m = g (1 - b1)`, `v = g^2 (1 - b2)`, and the update
/// `m sqrt(1 - b2) / (1 - b1) / (sqrt(v) + eps sqrt(1 - b2))` reduces to `g / (|g| + eps)`.
fn first_adam_step(w: f64, g: f64, lr: f64) -> f64 {
    w - lr * g / (g.abs() + 1e-5)
}

#[test]
fn a_step_moves_the_weight_as_adams_closed_form_with_the_scheduled_rate() {
    let schedule = LrSchedule::Cosine {
        lr: 0.1,
        warmup: 4,
        total: 10,
        min_lr: 0.0,
    };
    let mut t = Trainer::new(scalar(2.0), Adam::default(), schedule);
    let l = loss(t.model(), 0.5);
    let up = t.step(0, l);
    assert_eq!(up.lr, 0.1 / 4.0);
    assert_eq!(
        up.grad_norm, None,
        "the norm is computed only when clipping"
    );
    let want = first_adam_step(2.0, 2.0 * 1.5, 0.025);
    assert!((f64::from(value(t.model())) - want).abs() < 1e-6);
    assert_eq!(t.steps(), 1);
}

#[test]
fn clipping_reports_the_norm_before_it_and_steps_on_the_clipped_gradient() {
    let lr = LrSchedule::Constant { lr: 0.01 };
    let mut t = Trainer::new(scalar(-1.0), Adam::default(), lr).with_grad_clip(Some(0.5));
    let l = loss(t.model(), 1.0);
    let up = t.step(0, l);
    // g = 2 (w - a) = -4, clipped to -4 * 0.5 / (4 + 1e-6).
    let g = -4.0;
    assert!((up.grad_norm.expect("clipping on") - 4.0).abs() < 1e-6);
    let clipped = g * 0.5 / (4.0 + 1e-6);
    let want = first_adam_step(-1.0, clipped, 0.01);
    assert!((f64::from(value(t.model())) - want).abs() < 1e-6);
}

#[test]
fn finishing_returns_the_exponential_average_when_ema_is_on() {
    let lr = LrSchedule::Constant { lr: 0.1 };
    let mut t = Trainer::new(scalar(2.0), Adam::default(), lr).with_ema(0.9);
    let l = loss(t.model(), 0.0);
    t.step(0, l);
    let raw = f64::from(value(t.model()));
    assert!((raw - first_adam_step(2.0, 4.0, 0.1)).abs() < 1e-6);
    let done = t.finish();
    let avg = f64::from(value(&done.model));
    assert!((avg - (0.9 * 2.0 + 0.1 * raw)).abs() < 1e-6, "{avg}");
    assert!(done.steps_per_s > 0.0);

    // Without EMA the raw weights come back.
    let mut t = Trainer::new(scalar(2.0), Adam::default(), lr);
    let l = loss(t.model(), 0.0);
    t.step(0, l);
    assert!((f64::from(value(&t.finish().model)) - raw).abs() < 1e-7);
}

#[test]
fn several_steps_equal_burns_adam_on_one_graph() {
    // A linear layer on a fixed batch, 6 steps: the shared trainer against Burn's own optimiser.
    let device = Default::default();
    let init = LinearConfig::new(3, 2).init::<B>(&device);
    let x = Tensor::<B, 2>::from_data(
        TensorData::new(vec![0.5f32, -1.0, 2.0, 1.5, 0.25, -0.75], [2, 3]),
        &device,
    );
    let target = Tensor::<B, 2>::from_data(
        TensorData::new(vec![1.0f32, -2.0, 0.5, 3.0], [2, 2]),
        &device,
    );
    let mse = |m: &Linear<B>| {
        (m.forward(x.clone()) - target.clone())
            .powi_scalar(2)
            .mean()
    };
    let schedule = LrSchedule::Cosine {
        lr: 0.05,
        warmup: 2,
        total: 6,
        min_lr: 0.005,
    };

    let mut ours = Trainer::new(
        crate::train::ema::ema_copy(&init),
        Adam::default(),
        schedule,
    );
    let mut theirs = crate::train::ema::ema_copy(&init);
    let mut optim = AdamConfig::new().init::<B, Linear<B>>();
    for step in 0..6 {
        let l = mse(ours.model());
        ours.step(step, l);
        let grads = GradientsParams::from_grads(mse(&theirs).backward(), &theirs);
        theirs = optim.step(schedule.at(step), theirs, grads);
    }
    let a = ours
        .model()
        .weight
        .val()
        .into_data()
        .to_vec::<f32>()
        .expect("f32");
    let b = theirs
        .weight
        .val()
        .into_data()
        .to_vec::<f32>()
        .expect("f32");
    for (p, q) in a.iter().zip(&b) {
        assert!((p - q).abs() <= 1e-6 * q.abs().max(1.0), "{p} vs {q}");
    }
}

#[test]
fn a_non_finite_value_is_a_divergence_naming_the_metric_and_step() {
    assert_eq!(finite(3, "x/loss", 1.5).ok(), Some(1.5));
    match finite(7, "x/loss", f64::NAN) {
        Err(Error::Diverged { step, key, value }) => {
            assert_eq!((step, key.as_str()), (7, "x/loss"));
            assert!(value.is_nan());
        }
        other => panic!("expected a divergence, got {other:?}"),
    }
    assert!(finite(0, "x/loss", f64::INFINITY).is_err());
}

#[test]
fn row_block_gradients_equal_one_graph_over_the_batch() {
    // A mean loss over 70 rows: 1, 2 and 3 blocks (each its own graph and thread) give the gradient
    // of the one-graph batch mean, up to the order of float sums.
    use crate::train::blocks::block_grads;
    let device = Default::default();
    let net = LinearConfig::new(4, 3).init::<B>(&device);
    let n = 70;
    let xs: Vec<f32> = (0..n * 4)
        .map(|i| ((i * 13) % 29) as f32 / 7.0 - 2.0)
        .collect();
    let x = Tensor::<B, 2>::from_data(TensorData::new(xs, [n, 4]), &device).inner();
    let loss = |m: &Linear<B>, rows: std::ops::Range<usize>| {
        let xb = Tensor::<B, 2>::from_inner(x.clone().slice(rows));
        m.forward(xb).powi_scalar(2).mean()
    };
    let grads_of = |blocks| {
        let (value, grads) = block_grads(&net, n, blocks, loss);
        let g = grads
            .get::<<B as burn::tensor::backend::AutodiffBackend>::InnerBackend, 2>(net.weight.id)
            .expect("weight gradient");
        (value, g.into_data().to_vec::<f32>().expect("f32"))
    };
    let (v1, g1) = grads_of(1);
    for blocks in [2, 3] {
        let (v, g) = grads_of(blocks);
        assert!(
            (v - v1).abs() < 1e-5 * v1.abs().max(1.0),
            "{blocks}: {v} vs {v1}"
        );
        for (a, b) in g.iter().zip(&g1) {
            assert!(
                (a - b).abs() < 1e-5 * b.abs().max(1.0),
                "{blocks}: {a} vs {b}"
            );
        }
    }
}
