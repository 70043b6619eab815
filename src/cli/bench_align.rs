//! `flowprior bench align`: the tokenizer stage's training step (lambda = 0 and lambda > 0) beside the
//! same step in PyTorch eager (scripts/bench_tokenizer.py), and the alignment's extra time against its
//! floor: the prior's extra flops (forward and input gradient on B x L x flow_mul points) at the flop
//! rate of the prior trainer at the same size, measured in the same run.

use super::bench::{compare, preset_config, profile_name, run_reference};
use crate::backend::{BackendKind, DeviceSpec, run_job};
use crate::bench::align::{AlignBench, PriorFlops};
use crate::bench::prior::PriorBench;
use crate::models::tokenizer::Regulariser;
use crate::stage::tokenizer::TokenizerConfig;
use crate::sweep::Scale;

/// The lambda of the aligned rows.
const LAMBDA: f64 = 0.01;
/// The prior trainer's batch when its flop rate is measured (the sweeps' and the paper's).
const PRIOR_BATCH: usize = 256;

/// PyTorch's steps/s of the same step on `device` (`cpu` or `cuda`), or why there is none.
fn reference(
    python: &std::path::Path,
    tok: &TokenizerConfig,
    (width, depth): (usize, usize),
    lambda: f64,
    (steps, warmup, threads): (usize, usize, usize),
    device: &str,
) -> Result<f64, String> {
    let args: Vec<String> = [
        tok.tokens.to_string(),
        tok.channels.to_string(),
        tok.width.to_string(),
        tok.depth.to_string(),
        tok.heads.to_string(),
        tok.batch.to_string(),
        width.to_string(),
        depth.to_string(),
        lambda.to_string(),
        tok.flow_mul.to_string(),
        tok.l1_weight.to_string(),
        tok.perceptual_weight.to_string(),
        tok.adv_weight.to_string(),
        steps.to_string(),
        warmup.to_string(),
        threads.to_string(),
        device.to_string(),
        tok.regulariser.name().to_string(),
        match tok.regulariser {
            Regulariser::None => 0.0,
            Regulariser::Kl => tok.kl_weight,
            Regulariser::Softvq => tok.entropy_weight,
        }
        .to_string(),
        tok.codebook_size.to_string(),
        tok.tau.to_string(),
    ]
    .into();
    run_reference(python, "scripts/bench_tokenizer.py", &args, threads)
}

pub fn align_bench(
    steps: usize,
    warmup: usize,
    threads: usize,
    only: &[String],
    backend: BackendKind,
    python: &std::path::Path,
) -> anyhow::Result<()> {
    super::set_threads(threads.max(1));
    let preset = |s: Scale| -> anyhow::Result<TokenizerConfig> {
        preset_config(crate::stage::tokenizer::TOKENIZER, s)
    };
    // The sweeps' small tokenizer with the small and the paper prior, and the paper-proportioned
    // tokenizer (64 x 32 tokens) with both; the discriminator on from the first step.
    let small = TokenizerConfig {
        disc_start: 0,
        ..preset(Scale::Small)?
    };
    let paper = TokenizerConfig {
        disc_start: 0,
        batch: 32,
        ..preset(Scale::Paper)?
    };
    // The small tokenizer with the other two regularisers too (Table 1's KL and SoftVQ rows).
    let with = |regulariser| TokenizerConfig {
        regulariser,
        ..small.clone()
    };
    let (small_kl, small_softvq) = (with(Regulariser::Kl), with(Regulariser::Softvq));
    let names = |name: &str, tok: &TokenizerConfig, (width, depth): (usize, usize)| {
        (
            format!(
                "{name}: {} x {} tokens, width {}, depth {}, batch {}",
                tok.tokens, tok.channels, tok.width, tok.depth, tok.batch
            ),
            format!("d {}, width {width}, {depth} blocks", tok.channels),
        )
    };
    let all = [
        ("small", &small, (256, 3)),
        ("small", &small, (1024, 6)),
        ("small, KL", &small_kl, (256, 3)),
        ("small, SoftVQ", &small_softvq, (256, 3)),
        ("paper (batch 32)", &paper, (256, 3)),
        ("paper (batch 32)", &paper, (1024, 6)),
    ];
    let label = |(name, tok, prior): &(&str, &TokenizerConfig, (usize, usize))| {
        let (t, p) = names(name, tok, *prior);
        format!("{t} | {p}")
    };
    let cases: Vec<_> = all
        .iter()
        .filter(|case| only.iter().all(|o| label(case).contains(o.as_str())))
        .collect();
    if cases.is_empty() {
        let rows: Vec<String> = all.iter().map(label).collect();
        anyhow::bail!(
            "--only {only:?} matches no row; the rows (tokenizer | prior) are:\n{}",
            rows.join("\n")
        );
    }
    let device = DeviceSpec::parse(backend, None)?;
    let torch_device = device.torch_name();
    let mut speed = tabled::builder::Builder::default();
    speed.push_record([
        "tokenizer",
        "prior",
        "lambda = 0: flowprior / PyTorch steps/s",
        "ratio",
        "lambda > 0: flowprior / PyTorch steps/s",
        "ratio",
    ]);
    let mut cost = tabled::builder::Builder::default();
    cost.push_record([
        "tokenizer",
        "prior",
        "extra s / step",
        "prior trainer GFLOP/s",
        "floor s / step",
        "extra / floor",
        "<= 1.15",
    ]);
    let mut failures = Vec::new();
    for &&(name, tok, (width, depth)) in &cases {
        let measure = |lambda: f64| {
            run_job(
                backend,
                device,
                AlignBench {
                    tokenizer: TokenizerConfig {
                        lambda,
                        ..tok.clone()
                    },
                    prior_width: width,
                    prior_depth: depth,
                    steps,
                    warmup,
                },
            )
        };
        let plain = measure(0.0)?;
        let aligned = measure(LAMBDA)?;
        let sizes = (steps, warmup, threads);
        let torch_plain = reference(python, tok, (width, depth), 0.0, sizes, torch_device);
        let torch_aligned = reference(python, tok, (width, depth), LAMBDA, sizes, torch_device);
        let flops = PriorFlops::new(tok.channels, width, depth);
        let prior_steps = run_job(
            backend,
            device,
            PriorBench {
                dim: tok.channels,
                width,
                depth,
                batch: PRIOR_BATCH,
                steps: steps.max(3),
                warmup: warmup.max(1),
            },
        )?;
        let rate = flops.train * PRIOR_BATCH as f64 * prior_steps;
        let points = (tok.batch * tok.tokens * tok.flow_mul.max(1)) as f64;
        let floor = flops.align() * points / rate;
        let extra = 1.0 / aligned - 1.0 / plain;
        let (tok_name, prior_name) = names(name, tok, (width, depth));
        let row = |l: &str| format!("{name} tokenizer, prior width {width}, {l}");
        let [plain_ours, plain_theirs, plain_ratio] = compare(
            ("align", &row("lambda = 0")),
            plain,
            torch_plain,
            &mut failures,
        );
        let [aligned_ours, aligned_theirs, aligned_ratio] = compare(
            ("align", &row("lambda > 0")),
            aligned,
            torch_aligned,
            &mut failures,
        );
        speed.push_record([
            tok_name.clone(),
            prior_name.clone(),
            format!("{plain_ours} / {plain_theirs}"),
            plain_ratio,
            format!("{aligned_ours} / {aligned_theirs}"),
            aligned_ratio,
        ]);
        cost.push_record([
            tok_name,
            prior_name,
            format!("{extra:.3}"),
            format!("{:.1}", rate / 1e9),
            format!("{floor:.3}"),
            format!("{:.2}", extra / floor),
            if extra <= 1.15 * floor { "yes" } else { "no" }.into(),
        ]);
    }
    println!(
        "tokenizer training step (pixel + perceptual + adversarial terms and the discriminator step; \
         lambda > 0 adds lambda * L_align with flow_mul 4), {} backend, {threads} thread(s), {steps} \
         timed steps after {warmup} warm-up, flowprior {}; PyTorch eager on the {torch_device} beside it",
        backend.name(),
        profile_name()
    );
    println!("{}", speed.build().with(tabled::settings::Style::sharp()));
    println!(
        "the cost of alignment: the extra seconds of a lambda > 0 step against the floor, the prior's \
         forward and input-gradient flops on B x L x flow_mul points at the prior trainer's flop rate \
         (batch {PRIOR_BATCH}, same size and threads, this run)"
    );
    println!("{}", cost.build().with(tabled::settings::Style::sharp()));
    failures.dedup();
    for f in failures {
        println!("PyTorch reference not run ({f}); `just torch` installs it");
    }
    Ok(())
}
