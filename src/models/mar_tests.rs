//! MAR's network, flow head and sampler, checked against closed forms and known mixtures.

use super::*;
use rand::SeedableRng;

type B = crate::backend::TestBackend;

#[test]
fn the_sampling_schedule_follows_the_cosine_and_reveals_every_token_once() {
    // 16 tokens in 4 steps: floor(16 cos(pi/8)) = 14, floor(16 cos(pi/4)) = 11,
    // floor(16 cos(3 pi/8)) = 6, then 0.
    assert_eq!(unknown_after_each_step(16, 4), vec![14, 11, 6, 0]);
    // One token per step when iters = l (the clamp keeps at least one revealed per step).
    assert_eq!(unknown_after_each_step(3, 3), vec![2, 1, 0]);
    assert_eq!(unknown_after_each_step(4, 10), vec![3, 2, 1, 0]);
    assert_eq!(unknown_after_each_step(1, 1), vec![0]);
}

#[test]
fn cosine_masks_hide_counts_with_maskgits_distribution() {
    // r = cos(pi/2 u): P(ceil(l r) <= k) = P(r <= k/l) = 1 - (2/pi) acos(k/l).
    let (l, draws) = (4usize, 20_000usize);
    let mut rng = StdRng::seed_from_u64(0);
    let mut freq = [0usize; 5];
    for _ in 0..draws {
        let m = train_mask(2, l, MaskRatio::Cosine, &mut rng);
        let per: Vec<usize> = m
            .chunks_exact(l)
            .map(|r| r.iter().filter(|v| **v == 1.0).count())
            .collect();
        assert_eq!(per[0], per[1]);
        freq[per[0]] += 1;
    }
    assert_eq!(freq[0], 0, "at least one token is masked");
    let cdf = |k: usize| 1.0 - std::f64::consts::FRAC_2_PI * (k as f64 / l as f64).acos();
    for (k, &count) in freq.iter().enumerate().skip(1) {
        let want = cdf(k) - cdf(k - 1);
        let got = count as f64 / draws as f64;
        // Binomial standard error at 20k draws is below 0.0036.
        assert!((got - want).abs() < 0.015, "count {k}: {got} vs {want}");
    }
}

#[test]
fn training_masks_hide_the_same_count_per_sample_between_70_and_100_percent() {
    let mut rng = StdRng::seed_from_u64(0);
    let mut counts = std::collections::BTreeSet::new();
    for _ in 0..200 {
        let m = train_mask(
            5,
            10,
            MaskRatio::Mar {
                min: MASK_RATIO_MIN,
            },
            &mut rng,
        );
        let per: Vec<usize> = m
            .chunks_exact(10)
            .map(|r| r.iter().filter(|v| **v == 1.0).count())
            .collect();
        assert!(per.iter().all(|c| *c == per[0]), "{per:?}");
        assert!((7..=10).contains(&per[0]), "{per:?}");
        assert!(m.iter().all(|v| *v == 0.0 || *v == 1.0));
        counts.insert(per[0]);
    }
    // ceil(10 r) for r in [0.7, 1] is 7 only at r = 0.7 exactly; 8, 9 and 10 all occur.
    assert_eq!(counts.into_iter().collect::<Vec<_>>(), vec![8, 9, 10]);
}

#[test]
fn a_fresh_generator_predicts_zero_velocity_and_samples_its_noise() {
    let device = Default::default();
    let shape = small(3, 16, 2, 2);
    let net = Mar::<B>::new(shape, &device);
    let x = Tensor::<B, 3>::random([4, 3, 2], Distribution::Normal(0.0, 1.0), &device);
    let mask = Tensor::<B, 2>::from_data(TensorData::new(vec![1f32; 12], [4, 3]), &device);
    let y = Tensor::<B, 1, Int>::from_data(TensorData::new(vec![0i64, 1, 2, 0], [4]), &device);
    let z = net.condition(x.clone(), mask, y);
    assert_eq!(z.dims(), [4, 3, 16]);
    let v: Vec<f32> = net
        .head
        .forward(
            x.reshape([12, 2]),
            Tensor::<B, 1>::full([12], 0.3, &device),
            z.reshape([12, 16]),
        )
        .into_data()
        .to_vec()
        .expect("f32");
    assert!(v.iter().all(|v| *v == 0.0));
    // With zero velocity every token is its N(0, 1) starting noise: mean ~0, variance ~1.
    let mut rng = StdRng::seed_from_u64(1);
    let out = net.sample(
        &vec![0i64; 500],
        2,
        3,
        4,
        2.0,
        CfgSchedule::Linear,
        &mut rng,
        &device,
    );
    assert_eq!(out.len(), 500 * 3 * 2);
    let mean = out.iter().map(|v| f64::from(*v)).sum::<f64>() / out.len() as f64;
    let var = out.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / out.len() as f64;
    assert!(mean.abs() < 0.06 && (var - 1.0).abs() < 0.1, "{mean} {var}");
}

type A = burn::backend::Autodiff<B>;

use crate::models::testing::Perturb;

/// With `flow_mul` k each token's condition z must get the gradients of ITS OWN k copies: the same
/// loss on inputs tiled on the host (k = 1, the same draws) gives each copy's gradient, summed per
/// token here. Tokens with weight 0 get none. (Burn's `repeat_dim` sent each token other tokens'
/// gradients; see `tensors::tile_rows`.)
#[test]
fn the_flow_heads_condition_gradient_sums_each_tokens_own_copies() {
    use crate::tensors::{from_host_f32, to_host};
    let device = Default::default();
    let (n, w, c, k) = (5usize, 6usize, 2usize, 3usize);
    let head = FlowHead::<A> {
        cond: init_linear(w, 8, Init::Xavier, &device),
        net: FlowNetConfig {
            dim: c,
            width: 8,
            depth: 1,
        }
        .init(&device),
    }
    .map(&mut Perturb);
    let mut r = StdRng::seed_from_u64(3);
    let mut draw = |len: usize| -> Vec<f32> {
        (0..len)
            .map(|_| r.sample::<f32, _>(rand_distr::StandardNormal))
            .collect()
    };
    let (zv, xv) = (draw(n * w), draw(n * c));
    let wv = vec![1.0f32, 0.0, 1.0, 1.0, 0.0];
    let weight = |v: Vec<f32>| {
        let len = v.len();
        Tensor::<A, 1>::from_data(TensorData::new(v, [len]), &device)
    };

    let z = from_host_f32::<A>(zv.clone(), w, &device).require_grad();
    let loss = head.loss(
        z.clone(),
        from_host_f32(xv.clone(), c, &device),
        weight(wv.clone()),
        k,
        &mut StdRng::seed_from_u64(9),
    );
    let value = crate::tensors::scalar(loss.clone());
    let got = to_host(z.grad(&loss.backward()).expect("z has a gradient"));

    let zt = from_host_f32::<A>(zv.repeat(k), w, &device).require_grad();
    let tiled = head.loss(
        zt.clone(),
        from_host_f32(xv.repeat(k), c, &device),
        weight(wv.repeat(k)),
        1,
        &mut StdRng::seed_from_u64(9),
    );
    assert!((crate::tensors::scalar(tiled.clone()) - value).abs() < 1e-6 * value.abs());
    let per_copy = to_host(zt.grad(&tiled.backward()).expect("z has a gradient"));
    let scale = per_copy.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(scale > 0.0);
    for i in 0..n {
        for j in 0..w {
            let want: f64 = (0..k).map(|r| per_copy[(r * n + i) * w + j]).sum();
            let g = got[i * w + j];
            assert!(
                (g - want).abs() <= 1e-5 * scale,
                "token {i} value {j}: {g} vs {want}"
            );
            if wv[i] == 0.0 {
                assert_eq!(g, 0.0, "token {i} has weight 0");
            }
        }
    }
}

/// A small shape: 2 channels, 1 block of 2 heads, a flow head of width 8 and 1 block.
fn small(tokens: usize, width: usize, classes: usize, buffer: usize) -> MarShape {
    MarShape {
        tokens,
        channels: 2,
        width,
        depth: 1,
        heads: 2,
        classes,
        buffer,
        head_width: 8,
        head_depth: 1,
        pos_std: EMBED_STD_MAR,
    }
}

#[test]
fn guided_head_steps_combine_the_conditional_and_unconditional_velocities() {
    let device = Default::default();
    let net = Mar::<B>::new(small(2, 8, 2, 1), &device).map(&mut Perturb);
    let n = 6;
    let x0 = Tensor::<B, 2>::random([n, 2], Distribution::Normal(0.0, 1.0), &device);
    let zc = Tensor::<B, 2>::random([n, 8], Distribution::Normal(0.0, 1.0), &device);
    let zu = Tensor::<B, 2>::random([n, 8], Distribution::Normal(0.0, 1.0), &device);
    let t0 = Tensor::<B, 1>::zeros([n], &device);
    let host = |t: Tensor<B, 2>| -> Vec<f32> { t.into_data().iter::<f32>().collect() };
    let vc = host(net.head.forward(x0.clone(), t0.clone(), zc.clone()));
    let vu = host(net.head.forward(x0.clone(), t0, zu.clone()));
    assert!(vc.iter().zip(&vu).any(|(a, b)| (a - b).abs() > 1e-3));
    // One Euler step over [0, 1]: x0 + v_u + s (v_c - v_u); unguided: x0 + v_c.
    let x = host(x0.clone());
    let guided = host(
        net.head
            .sample(x0.clone(), Tensor::cat(vec![zc.clone(), zu], 0), 1, 3.0),
    );
    let plain = host(net.head.sample(x0, zc, 1, 1.0));
    for i in 0..2 * n {
        let want = x[i] + vu[i] + 3.0 * (vc[i] - vu[i]);
        assert!(
            (guided[i] - want).abs() < 1e-4,
            "{i}: {} vs {want}",
            guided[i]
        );
        assert!((plain[i] - (x[i] + vc[i])).abs() < 1e-4, "{i}");
    }
}

#[test]
fn the_flow_head_reproduces_gaussians_given_its_condition() {
    // Two conditions (fixed random vectors z_c) and token values N(m_c, diag(s_c^2)): the head,
    // its masked loss and its Euler sampler must reproduce each Gaussian given its z.
    use burn::module::AutodiffModule;
    use burn::optim::{AdamConfig, GradientsParams, Optimizer};
    let specs = [([2.0f32, 0.0], [0.3f32, 0.6]), ([-1.5, 1.0], [0.25, 0.25])];
    let device = Default::default();
    let mut rng = StdRng::seed_from_u64(4);
    let w = 16;
    let table: Vec<f32> = (0..2 * w)
        .map(|_| rng.sample::<f32, _>(rand_distr::StandardNormal))
        .collect();
    let mut head = FlowHead::<A> {
        cond: init_linear(w, 32, Init::Xavier, &device),
        net: FlowNetConfig {
            dim: 2,
            width: 32,
            depth: 2,
        }
        .init(&device),
    };
    let mut optim = AdamConfig::new().init::<A, FlowHead<A>>();
    let batch = 128;
    for step in 0..800 {
        let classes: Vec<usize> = (0..batch).map(|_| rng.random_range(0..2)).collect();
        let z: Vec<f32> = classes
            .iter()
            .flat_map(|&c| table[c * w..(c + 1) * w].to_vec())
            .collect();
        let x: Vec<f32> = classes
            .iter()
            .flat_map(|&c| {
                let (m, s) = specs[c];
                [0, 1].map(|d| m[d] + s[d] * rng.sample::<f32, _>(rand_distr::StandardNormal))
            })
            .collect();
        // Half the tokens carry weight 0: they must not count.
        let weight: Vec<f32> = (0..batch).map(|i| (i % 2) as f32).collect();
        let x: Vec<f32> = x
            .chunks_exact(2)
            .zip(&weight)
            .flat_map(|(p, wt)| if *wt == 0.0 { [9.0, 9.0] } else { [p[0], p[1]] })
            .collect();
        let loss = head.loss(
            Tensor::from_data(TensorData::new(z, [batch, w]), &device),
            Tensor::from_data(TensorData::new(x, [batch, 2]), &device),
            Tensor::from_data(TensorData::new(weight, [batch]), &device),
            4,
            &mut rng,
        );
        let lr = if step < 600 { 3e-3 } else { 5e-4 };
        let grads = GradientsParams::from_grads(loss.backward(), &head);
        head = optim.step(lr, head, grads);
    }
    let head = head.valid();
    let k = 2000;
    for (c, (m, s)) in specs.iter().enumerate() {
        let z: Vec<f32> = (0..k)
            .flat_map(|_| table[c * w..(c + 1) * w].to_vec())
            .collect();
        let out: Vec<f32> = head
            .sample(
                Tensor::random([k, 2], Distribution::Normal(0.0, 1.0), &device),
                Tensor::from_data(TensorData::new(z, [k, w]), &device),
                50,
                1.0,
            )
            .into_data()
            .to_vec()
            .expect("f32");
        crate::linalg::assert_gaussian_2d(
            &out,
            (*m, *s),
            (0.1, 0.3, 0.01, 0.04),
            &format!("condition {c}"),
        );
    }
}

#[test]
fn the_transformer_carries_known_tokens_to_the_masked_positions() {
    // Four tokens sharing a random sign (2s, 0); one revealed at a random position. A linear
    // read-out of the masked positions' conditions, trained with the transformer, must recover
    // the sign: error ~0, where a model blind to the known token can do no better than 2.0.
    use burn::optim::{AdamConfig, GradientsParams, Optimizer};
    #[derive(Module, Debug)]
    struct Probe<B: Backend> {
        mar: Mar<B>,
        out: Linear<B>,
    }
    let device = Default::default();
    let (l, w, b) = (4, 32, 64);
    let shape = small(l, w, 2, 2);
    let mut net = Probe::<A> {
        mar: Mar::new(shape, &device),
        out: init_linear(w, 2, Init::Xavier, &device),
    };
    let mut optim = AdamConfig::new().init::<A, Probe<A>>();
    let mut rng = StdRng::seed_from_u64(0);
    let mut last = f64::INFINITY;
    for step in 0..300 {
        let mut x = Vec::with_capacity(b * l * 2);
        let mut mask = vec![1f32; b * l];
        for row in mask.chunks_exact_mut(l) {
            let s: f32 = if rng.random::<bool>() { 2.0 } else { -2.0 };
            x.extend((0..l).flat_map(|_| [s, 0.0]));
            row[rng.random_range(0..l)] = 0.0;
        }
        let x = Tensor::<A, 3>::from_data(TensorData::new(x, [b, l, 2]), &device);
        let m = Tensor::<A, 2>::from_data(TensorData::new(mask, [b, l]), &device);
        let y = Tensor::<A, 1, Int>::from_data(TensorData::new(vec![0i64; b], [b]), &device);
        let z = net.mar.condition(x.clone(), m.clone(), y);
        let err = (net.out.forward(z.reshape([b * l, w])) - x.reshape([b * l, 2]))
            .powi_scalar(2)
            .mean_dim(1)
            .reshape([b * l]);
        let m = m.reshape([b * l]);
        let loss = (err * m.clone()).sum() / m.sum();
        if step >= 290 {
            last = last.min(crate::tensors::scalar(loss.clone()));
        }
        let grads = GradientsParams::from_grads(loss.backward(), &net);
        net = optim.step(1e-3, net, grads);
    }
    assert!(last < 0.05, "masked-token error {last}");
}

#[test]
fn the_class_signal_is_zero_exactly_when_classes_share_an_embedding() {
    let device = Default::default();
    let net = Mar::<B>::new(small(3, 8, 3, 2), &device);
    assert!(net.class_signal(2, &device) > 0.05);
    // Every class given the same embedding: identical conditions.
    let same = Tensor::<B, 2>::ones([4, 8], &device) * 0.3;
    let mut net = net;
    net.class_emb.weight = Param::from_tensor(same);
    assert!(net.class_signal(2, &device) < 1e-6);
}

#[test]
fn completion_keeps_the_known_tokens_and_fills_the_others() {
    let device = Default::default();
    let net = Mar::<B>::new(small(3, 8, 2, 1), &device);
    let values: Vec<f32> = (0..2 * 3 * 2).map(|i| 100.0 + i as f32).collect();
    let unknown = vec![false, true, false, true, false, false];
    let mut rng = StdRng::seed_from_u64(2);
    let out = net.complete(
        values.clone(),
        unknown.clone(),
        &[0, 1],
        2,
        3,
        2,
        2.0,
        CfgSchedule::Constant,
        &mut rng,
        &device,
    );
    for (i, u) in unknown.iter().enumerate() {
        let (a, b) = (&out[2 * i..2 * i + 2], &values[2 * i..2 * i + 2]);
        if *u {
            // A fresh head has zero velocity: the token is its noise, nowhere near 100.
            assert!(a.iter().all(|v| v.abs() < 10.0), "token {i}: {a:?}");
        } else {
            assert_eq!(a, b, "token {i}");
        }
    }
}

#[test]
fn guidance_schedules_match_their_closed_forms() {
    // MAR's linear schedule over L = 4 tokens at s = 3: 1 + 2 (4 - after) / 4.
    for (after, want) in [(3, 1.5), (2, 2.0), (1, 2.5), (0, 3.0)] {
        assert_eq!(CfgSchedule::Linear.scale(3.0, 4, after), want);
        assert_eq!(CfgSchedule::Constant.scale(3.0, 4, after), 3.0);
    }
    // Unguided (s = 1) is 1 on both.
    assert_eq!(CfgSchedule::Linear.scale(1.0, 16, 7), 1.0);
    assert_eq!(CfgSchedule::Constant.scale(1.0, 16, 7), 1.0);
    // The setting's spelling.
    let c: CfgSchedule = serde_json::from_str("\"constant\"").expect("constant");
    assert_eq!(c, CfgSchedule::Constant);
    assert_eq!(CfgSchedule::default(), CfgSchedule::Linear);
}

#[test]
fn the_guidance_schedule_changes_guided_samples_only() {
    let device = Default::default();
    let net = Mar::<B>::new(small(2, 8, 2, 1), &device).map(&mut Perturb);
    let draw = |s: f64, schedule: CfgSchedule| {
        let mut rng = StdRng::seed_from_u64(4);
        net.sample(&[0, 1, 1], 2, 2, 3, s, schedule, &mut rng, &device)
    };
    // Unguided, the schedule is not used.
    assert_eq!(
        draw(1.0, CfgSchedule::Linear),
        draw(1.0, CfgSchedule::Constant)
    );
    // Guided, the first of the two steps runs at 1 + (s - 1) / 2 on the linear schedule and at s on
    // the constant one, so the samples differ.
    let (linear, constant) = (
        draw(3.0, CfgSchedule::Linear),
        draw(3.0, CfgSchedule::Constant),
    );
    assert!(
        linear
            .iter()
            .zip(&constant)
            .any(|(a, b)| (a - b).abs() > 1e-4),
        "{linear:?} {constant:?}"
    );
}
