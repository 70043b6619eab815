use super::*;
use crate::activation::{CHUNK, backward as pw_backward, forward as pw_forward};

/// erf in f64 by Simpson's rule on 2/sqrt(pi) exp(-s^2) over [0, u] (error far below f32's).
fn erf_ref(u: f64) -> f64 {
    let n = 4000;
    let h = u / n as f64;
    let f = |s: f64| (-s * s).exp();
    let mut acc = f(0.0) + f(u);
    for i in 1..n {
        acc += f(i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 };
    }
    acc * h / 3.0 * 2.0 / std::f64::consts::PI.sqrt()
}

fn gelu_ref(x: f64) -> f64 {
    0.5 * x * (1.0 + erf_ref(x / std::f64::consts::SQRT_2))
}

fn gelu_grad_ref(x: f64) -> f64 {
    let pdf = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
    0.5 * (1.0 + erf_ref(x / std::f64::consts::SQRT_2)) + x * pdf
}

fn grid(lo: f32, hi: f32, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| lo + (hi - lo) * i as f32 / (n - 1) as f32)
        .collect()
}

#[test]
fn exp_is_within_a_few_ulps_of_std() {
    for v in grid(-87.0, 0.0, 20_001) {
        let want = (v as f64).exp();
        let got = exp_nonpositive(v) as f64;
        assert!(
            ((got - want) / want).abs() < 4e-7,
            "exp({v}) = {got}, want {want}"
        );
    }
    // Far below the clamp: tiny, positive, finite.
    let tiny = exp_nonpositive(-1e4);
    assert!(tiny > 0.0 && tiny < 1e-37, "{tiny}");
}

#[test]
fn erf_is_within_the_abramowitz_stegun_bound() {
    let mut worst = 0.0f64;
    for u in grid(-6.0, 6.0, 2401) {
        let (e, g) = erf_and_gauss(u);
        let want = erf_ref(u as f64);
        worst = worst.max((e as f64 - want).abs());
        // exp of the f32 square (the square's own rounding is not the exponential's error).
        let gw = (-((u * u) as f64)).exp();
        assert!(((g as f64 - gw) / gw).abs() < 4e-7, "exp(-{u}^2)");
    }
    // A&S 7.1.26: 1.5e-7, plus the f32 rounding of the polynomial and the exponential (a few
    // ulps of 1, 1.2e-7 each); measured 4.2e-7.
    assert!(worst < 5e-7, "largest erf error {worst}");
    // Odd, and exact at 0.
    assert_eq!(erf_and_gauss(0.0).0, 0.0);
    assert_eq!(erf_and_gauss(-1.3).0, -erf_and_gauss(1.3).0);
    // A loose check that the bound is real: a wrong constant breaks it.
    assert!((erf_and_gauss(0.5).0 as f64 - erf_ref(0.5)).abs() > 1e-10);
}

#[test]
fn every_instruction_set_gives_the_closed_forms_bit_for_bit_alike() {
    // An odd length, so every vector loop has a remainder.
    let x = grid(-10.0, 10.0, 4001);
    crate::activation::check_every_isa::<Gelu>(&x, gelu_ref, gelu_grad_ref);
}

#[test]
fn the_parallel_split_matches_one_thread() {
    let x: Vec<f32> = (0..3 * CHUNK + 17)
        .map(|i| ((i * 37) % 1001) as f32 / 100.0 - 5.0)
        .collect();
    let g: Vec<f32> = x.iter().map(|v| v.cos()).collect();
    let one = (pw_forward::<Gelu>(&x), pw_backward::<Gelu>(&x, &g));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    let many = pool.install(|| (pw_forward::<Gelu>(&x), pw_backward::<Gelu>(&x, &g)));
    assert_eq!(one, many);
}

#[test]
fn tensor_gelu_and_its_gradient_agree_with_burns() {
    use burn::tensor::activation::gelu as burns;
    crate::activation::check_against_burn((gelu, gelu), (burns, burns), gelu_grad_ref, 3.0);
}
