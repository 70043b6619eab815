//! `flowprior toy`: per target, train the flow prior, then optimise free points on L_align alone,
//! logging L_align, the target NLL (analytic for the mixtures, Gaussian KDE otherwise) and the flow's
//! exact NLL as series, summary metrics at the end, and the paper's figures as PNG files.

/// The two [`Stage`](crate::stage::Stage) implementations (the registry's entries).
pub mod align_stage;
pub mod prior_stage;

use std::path::PathBuf;
use std::time::Instant;

use burn::module::{AutodiffModule, Module, Param};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Distribution, Tensor};
use rand::SeedableRng;
use serde::Serialize;

use crate::backend::BackendJob;
use crate::error::{Error, Result};
use crate::flow::train::{StepLog, load_prior, train_prior};
use crate::flow::{Divergence, SimpleMlpAdaLn, align_loss, log_likelihood};
use crate::jobs::{Claim, JobRun};
use crate::optim::Adam;
use crate::plot;
use crate::store::{ActiveRun, Store};
use crate::tensors::{from_host, scalar, to_host};
use crate::toy::Target;
use crate::toy::kde::Kde;
use crate::toy::metrics::{coverage, energy_distance, mode_shares, quantile, spearman};
use crate::train::{LrSchedule, Trainer, finite};

mod config;
pub use config::{TOY_ALIGN, TOY_PRIOR, ToyAlignConfig, ToyConfig, ToyPreset, ToyPriorConfig};

/// Rows of each set the energy distance uses at most (O(n^2) pairs).
const ENERGY_MAX_N: usize = 2000;
/// Mixed into the seed of the second true sample behind `final/energy_distance_ref`.
const ENERGY_REF_SEED: u64 = 0x5eed_e4e7;

/// (t, x0) draws per point of the logged, low-variance L_align estimate (`align/loss_eval`).
const EVAL_FLOW_MUL: usize = 16;

/// Free points optimised on L_align.
#[derive(Module, Debug)]
pub struct FreePoints<B: Backend> {
    pub y: Param<Tensor<B, 2>>,
}

/// What a toy alignment run reports.
#[derive(Debug, Clone, Serialize)]
pub struct ToyOutcome {
    pub run_id: i64,
    pub target: Target,
    pub reused: bool,
    pub summary: Vec<(String, f64)>,
    pub figures: Vec<PathBuf>,
}

/// The `toy_prior` stage's job: trains the prior and saves it as the run's `prior` artifact.
pub struct ToyPriorJob<'a> {
    pub config: ToyPriorConfig,
    pub store: &'a Store,
    pub claim: Claim,
}

impl BackendJob for ToyPriorJob<'_> {
    type Output = Result<JobRun<i64>>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Result<JobRun<i64>> {
        let spec = self.config.run_spec();
        let backend = self.config.backend.name();
        crate::jobs::run_or_reuse(self.store, &spec, backend, self.claim, |run| {
            let cfg = &self.config;
            B::seed(&device, cfg.seed);
            let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
            tracing::info!(
                run = run.id(),
                target = cfg.target.name(),
                "toy: training the prior"
            );
            let prior = train_toy_prior::<B>(cfg, run, &device, &mut rng)?;
            let dir = crate::jobs::run_dir(self.store, run.id())?;
            let stem = dir.join("prior");
            let file = crate::jobs::save_weights(&prior, &stem)?;
            run.artifact("prior", &file)?;
            Ok(run.id())
        })
    }
}

/// The `toy_align` stage's job: free points on L_align under the frozen prior of run `prior_run`.
pub struct ToyAlignJob<'a> {
    pub config: ToyAlignConfig,
    pub prior: ToyPriorConfig,
    pub prior_run: i64,
    pub store: &'a Store,
    /// Where the figures go (a `<target>` folder inside); None: the run's artifact folder.
    pub figures_dir: Option<PathBuf>,
    pub claim: Claim,
}

impl BackendJob for ToyAlignJob<'_> {
    type Output = Result<ToyOutcome>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Result<ToyOutcome> {
        let spec = self.config.run_spec(&self.prior);
        let backend = self.config.backend.name();
        let outcome = crate::jobs::run_or_reuse(self.store, &spec, backend, self.claim, |run| {
            run_toy_align::<B>(&self, run, &device)
        })?;
        Ok(match outcome {
            JobRun::Ran(o) => o,
            JobRun::Reused { run, summary } => ToyOutcome {
                run_id: run.id,
                target: self.prior.target,
                reused: true,
                summary: summary
                    .into_iter()
                    .filter(|s| s.key.starts_with("final/"))
                    .map(|s| (s.key, s.value.unwrap_or(f64::NAN)))
                    .collect(),
                figures: vec![],
            },
        })
    }
}

/// Target NLL: exact for the Gaussian mixtures, Gaussian KDE otherwise.
enum Nll {
    Analytic(Target),
    Kde(Kde),
}

impl Nll {
    fn of(&self, points: &[f64]) -> Vec<f64> {
        match self {
            Nll::Analytic(t) => points
                .chunks_exact(2)
                .map(|p| -t.log_density([p[0], p[1]]).unwrap_or(f64::NAN))
                .collect(),
            Nll::Kde(k) => k.log_density(points).into_iter().map(|v| -v).collect(),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Nll::Analytic(_) => "analytic",
            Nll::Kde(_) => "kde",
        }
    }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// Trains the prior on fresh target samples, logging its loss, gradient norm and learning rate.
fn train_toy_prior<B: AutodiffBackend>(
    cfg: &ToyPriorConfig,
    run: &mut ActiveRun<'_>,
    device: &B::Device,
    rng: &mut rand::rngs::StdRng,
) -> Result<SimpleMlpAdaLn<B>> {
    let bar = crate::jobs::progress_bar(
        cfg.prior_steps as u64,
        &format!("prior {}", cfg.target.name()),
    );
    let log_every = (cfg.prior_steps / 200).max(1);
    let started = Instant::now();
    let tc = cfg.prior_train();
    let mut next_batch =
        |_step: usize| from_host::<B>(&cfg.target.sample(cfg.prior_batch, rng), 2, device);
    let mut on_step = |log: StepLog| -> Result<bool> {
        if log.step.is_multiple_of(log_every) || log.step + 1 == cfg.prior_steps {
            run.log("prior/loss", log.step as i64, log.loss)?;
            run.log("prior/grad_norm", log.step as i64, log.grad_norm)?;
            run.log("prior/lr", log.step as i64, log.lr)?;
        }
        finite(log.step, "prior/loss", log.loss)?;
        bar.inc(1);
        Ok(true)
    };
    let net = train_prior::<B, Error>(cfg.net(), &tc, device, &mut next_batch, &mut on_step)?;
    bar.finish_and_clear();
    run.log(
        "prior/steps_per_s",
        cfg.prior_steps as i64,
        cfg.prior_steps as f64 / started.elapsed().as_secs_f64().max(1e-9),
    )?;
    Ok(net.no_grad())
}

/// L_align landscape on a grid (the public figure's convention: squared error summed over the two
/// dimensions, averaged over t in linspace(0.1, 0.9, 20) and `draws` noise draws).
fn landscape<B: Backend>(
    prior: &SimpleMlpAdaLn<B>,
    grid_pts: &[f64],
    draws: usize,
    device: &B::Device,
) -> Vec<f64> {
    let n = grid_pts.len() / 2;
    let y = from_host::<B>(grid_pts, 2, device);
    let mut acc = vec![0f64; n];
    let ts: Vec<f64> = (0..20).map(|i| 0.1 + 0.8 * i as f64 / 19.0).collect();
    for &t in &ts {
        for _ in 0..draws.max(1) {
            let x0 = y.random_like(Distribution::Normal(0.0, 1.0));
            let xt = x0.clone() * (1.0 - t) + y.clone() * t;
            let v = prior.forward(xt, Tensor::full([n], t, device));
            let err = (v - (y.clone() - x0)).powi_scalar(2).sum_dim(1);
            for (a, e) in acc.iter_mut().zip(to_host(err)) {
                *a += e;
            }
        }
    }
    let k = (ts.len() * draws.max(1)) as f64;
    acc.into_iter().map(|a| a / k).collect()
}

fn run_toy_align<B: AutodiffBackend>(
    job: &ToyAlignJob<'_>,
    run: &mut ActiveRun<'_>,
    device: &B::Device,
) -> Result<ToyOutcome> {
    let cfg = &job.config;
    let target = job.prior.target;
    // The target lives in the prior's identity; recorded here too (not part of this run's identity)
    // so that `toy_align` rows can be filtered by it without a join.
    run.store().set_params(
        run.id(),
        &[(
            "target".into(),
            crate::store::ParamValue::Text(target.name().to_string()),
        )],
    )?;
    B::seed(device, cfg.seed);
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    let file = crate::jobs::input_artifact(job.store, job.prior_run, "prior")?;
    let prior: SimpleMlpAdaLn<B> = load_prior(job.prior.net(), &file, device)
        .map_err(|message| Error::input(&file, message))?;
    let prior = prior.no_grad();

    // The NLL oracle and the reference ("true") samples.
    let nll = match target.components() {
        Some(_) => Nll::Analytic(target),
        None => Nll::Kde(Kde::new(
            &target.sample(cfg.kde_samples, &mut rng),
            cfg.kde_bandwidth,
        )),
    };
    let truth = target.sample(cfg.points, &mut rng);
    let truth_nll = nll.of(&truth);
    let truth_mean = mean(&truth_nll);
    let threshold = quantile(&truth_nll, 0.95);
    let exact_n = cfg.exact_points.min(cfg.points);
    let flow_truth = log_likelihood::<B, _>(
        &prior,
        from_host::<B::InnerBackend>(&truth[..2 * exact_n], 2, device),
        cfg.exact_steps,
        Divergence::Exact,
    );
    let flow_truth_nll = -mean(&flow_truth);

    // Free points y ~ N(0, I), optimised with Adam on L_align alone.
    tracing::info!(run = run.id(), "toy: optimising free points on L_align");
    let prior_eval = prior.valid();
    let pts = FreePoints {
        y: Param::from_tensor(Tensor::<B, 2>::random(
            [cfg.points, 2],
            Distribution::Normal(0.0, 1.0),
            device,
        )),
    };
    let lr = LrSchedule::Constant { lr: cfg.align_lr };
    let mut trainer = Trainer::new(pts, Adam::default(), lr)
        .with_progress(cfg.align_steps, &format!("align {}", target.name()));
    let (mut curve_align, mut curve_nll, mut curve_flow) = (Vec::new(), Vec::new(), Vec::new());
    let mut frames: Vec<(String, Vec<f64>)> = Vec::new();
    let snapshot_every = (cfg.align_steps / 5).max(1);
    let mut evals = 0usize;
    let mut last_loss = f64::NAN;
    for step in 0..=cfg.align_steps {
        let pts = trainer.model();
        let loss = align_loss(&prior, pts.y.val(), cfg.flow_mul);
        last_loss = scalar(loss.clone());
        finite(step, "align/loss", last_loss)?;
        if step % cfg.eval_every == 0 || step == cfg.align_steps {
            let y = to_host(pts.y.val().inner());
            let m = mean(&nll.of(&y));
            run.log("align/loss", step as i64, last_loss)?;
            // A lower-variance estimate for the curves: 16 (t, x0) draws per point, no autodiff.
            let eval_loss = scalar(align_loss(&prior_eval, pts.y.val().inner(), EVAL_FLOW_MUL));
            run.log("align/loss_eval", step as i64, eval_loss)?;
            run.log("align/nll", step as i64, m)?;
            curve_align.push((step as f64, eval_loss));
            curve_nll.push((step as f64, m));
            if evals.is_multiple_of(cfg.exact_every.max(1)) || step == cfg.align_steps {
                let sub = from_host::<B::InnerBackend>(&y[..2 * exact_n], 2, device);
                let f = -mean(&log_likelihood::<B, _>(
                    &prior,
                    sub,
                    cfg.exact_steps,
                    Divergence::Exact,
                ));
                run.log("align/flow_nll", step as i64, f)?;
                curve_flow.push((step as f64, f));
            }
            evals += 1;
        }
        if step % snapshot_every == 0 || step == cfg.align_steps {
            frames.push((format!("step {step}"), to_host(pts.y.val().inner())));
        }
        if step == cfg.align_steps {
            break;
        }
        trainer.step(step, loss);
    }
    let pts = trainer.finish().model;

    // Summary metrics.
    let y = to_host(pts.y.val().inner());
    let final_nll = nll.of(&y);
    let mut summary = vec![
        ("final/points_nll".to_string(), mean(&final_nll)),
        ("final/true_nll".to_string(), truth_mean),
        (
            "final/start_nll".to_string(),
            curve_nll.first().map(|p| p.1).unwrap_or(f64::NAN),
        ),
        (
            "final/coverage".to_string(),
            coverage(&final_nll, threshold),
        ),
        ("final/align_loss".to_string(), last_loss),
        (
            "final/flow_nll_points".to_string(),
            curve_flow.last().map(|p| p.1).unwrap_or(f64::NAN),
        ),
        ("final/flow_nll_true".to_string(), flow_truth_nll),
        // A two-sample distance to the target that a collapse cannot hide, with the value two
        // independent true samples of this size give (the noise floor).
        (
            "final/energy_distance".to_string(),
            energy_distance(&y, &truth, ENERGY_MAX_N),
        ),
        (
            "final/energy_distance_ref".to_string(),
            energy_distance(
                &target.sample(
                    cfg.points,
                    &mut rand::rngs::StdRng::seed_from_u64(cfg.seed ^ ENERGY_REF_SEED),
                ),
                &truth,
                ENERGY_MAX_N,
            ),
        ),
        (
            "final/curve_rank_corr".to_string(),
            spearman(
                &curve_align.iter().map(|p| p.1).collect::<Vec<_>>(),
                &curve_nll.iter().map(|p| p.1).collect::<Vec<_>>(),
            ),
        ),
    ];
    if let Some((means, _)) = target.components() {
        let s = target.scale();
        let scaled: Vec<[f64; 2]> = means.iter().map(|m| [m[0] / s, m[1] / s]).collect();
        let shares = mode_shares(&y, &scaled);
        summary.push((
            "final/modes_covered".into(),
            shares.iter().filter(|&&x| x >= 0.05).count() as f64,
        ));
        summary.push((
            "final/largest_mode_share".into(),
            shares.iter().cloned().fold(0.0, f64::max),
        ));
    }

    // Landscapes on a grid over [-3, 3]^2: L_align vs NLL.
    let g = cfg.grid.max(2);
    let grid_pts: Vec<f64> = (0..g * g)
        .flat_map(|k| {
            let (i, j) = (k % g, k / g);
            [
                -3.0 + 6.0 * (i as f64 + 0.5) / g as f64,
                -3.0 + 6.0 * (j as f64 + 0.5) / g as f64,
            ]
        })
        .collect();
    let inner = prior_eval;
    let land = landscape(&inner, &grid_pts, cfg.landscape_draws, device);
    let grid_nll = nll.of(&grid_pts);
    summary.push((
        "final/landscape_rank_corr".into(),
        spearman(&land, &grid_nll),
    ));
    for (k, v) in &summary {
        run.log(k, cfg.align_steps as i64, *v)?;
    }

    // Figures (paper Fig. 3 panels and Fig. 6 snapshots).
    let out = match &job.figures_dir {
        Some(d) => d.join(target.name()),
        None => crate::jobs::run_dir(job.store, run.id())?.join("figures"),
    };
    std::fs::create_dir_all(&out).map_err(Error::write(&out))?;
    let extent = (-3.0, 3.0, -3.0, 3.0);
    let perr = |e: plot::PlotError| Error::Write {
        path: PathBuf::from(&e.path),
        message: e.message,
    };
    let name = target.name();
    let figs = vec![
        out.join("points_on_nll.png"),
        out.join("align_landscape.png"),
        out.join("curves.png"),
        out.join("snapshots.png"),
    ];
    plot::heatmap_with_points(
        &figs[0],
        &format!("{name}: final points on the target NLL ({})", nll.name()),
        &plot::Grid {
            nx: g,
            ny: g,
            extent,
            values: &grid_nll,
        },
        &format!("NLL ({})", nll.name()),
        &y,
        plotters::style::RED,
    )
    .map_err(perr)?;
    plot::heatmap_with_points(
        &figs[1],
        &format!("{name}: L_align landscape with data samples"),
        &plot::Grid {
            nx: g,
            ny: g,
            extent,
            values: &land,
        },
        "L_align",
        &truth,
        plotters::style::WHITE,
    )
    .map_err(perr)?;
    plot::curves(
        &figs[2],
        &format!("{name}: L_align and NLL during optimisation"),
        "step",
        &[
            ("L_align", &curve_align),
            (&format!("NLL ({})", nll.name()), &curve_nll),
            ("exact flow NLL", &curve_flow),
        ],
    )
    .map_err(perr)?;
    plot::snapshots(
        &figs[3],
        &format!("{name}: points during optimisation"),
        extent,
        &truth,
        &frames,
    )
    .map_err(perr)?;
    for f in &figs {
        run.artifact("figure", f)?;
    }
    Ok(ToyOutcome {
        run_id: run.id(),
        target,
        reused: false,
        summary,
        figures: figs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_sends_each_key_to_the_stages_that_have_it() {
        let base = ToyConfig::preset(ToyPreset::Smoke, Target::Moons);
        let patch = serde_json::json!({"seed": 7, "width": 16, "align_steps": 9});
        let cfg = base
            .overlay(patch.as_object().expect("object"))
            .expect("valid patch");
        assert_eq!((cfg.prior.seed, cfg.align.seed), (7, 7));
        assert_eq!((cfg.prior.width, cfg.align.align_steps), (16, 9));
        assert_eq!(cfg.prior.target, Target::Moons);
        let bad = serde_json::json!({"widht": 16});
        assert_eq!(
            base.overlay(bad.as_object().expect("object")),
            Err("unknown setting `widht` of the toy experiment".to_string())
        );
        let wrong = serde_json::json!({"width": "wide"});
        let e = base
            .overlay(wrong.as_object().expect("object"))
            .expect_err("a string is not a width");
        assert!(
            e.starts_with("`width`: invalid type: string \"wide\""),
            "{e}"
        );
    }
}
