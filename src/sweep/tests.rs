//! Sweep files, validation messages, grid expansion, hashing and the node states of the worker loop.

use std::collections::HashSet;
use std::path::Path;

use super::exec::{NodeState, states};
use super::*;
use crate::jobs::Claim;
use crate::store::{RunInfo, RunStatus};

const BASE: &str = r#"
stages = ["toy_prior", "toy_align"]
preset = "smoke"
seeds = [0, 1]

[fixed]
toy_prior.prior_steps = 10

[axes]
toy_prior.target = ["mixture", "moons"]
toy_align.align_lr = [0.01, 0.02, 0.05]
"#;

fn parse(text: &str) -> Result<Sweep, SweepError> {
    Sweep::parse(text, Path::new("sweeps/demo.toml"), Overrides::default())
}

fn problems(text: &str) -> Vec<String> {
    match parse(text) {
        Err(SweepError::Invalid(p)) => p,
        Err(e) => panic!("expected an invalid sweep, got {e}"),
        Ok(_) => panic!("expected an invalid sweep, it parsed"),
    }
}

#[test]
fn grid_crosses_axes_and_seeds_and_shares_upstream_nodes() {
    let sweep = parse(BASE).expect("valid");
    assert_eq!(sweep.name, "demo");
    let plan = Plan::expand(&sweep, Path::new("data")).expect("expands");
    // 2 targets x 3 rates x 2 seeds points; priors depend on (target, seed) only.
    assert_eq!(plan.points.len(), 12);
    let priors = plan
        .nodes
        .iter()
        .filter(|n| n.stage == StageKind::named("toy_prior"))
        .count();
    let aligns = plan
        .nodes
        .iter()
        .filter(|n| n.stage == StageKind::named("toy_align"))
        .count();
    assert_eq!((priors, aligns), (4, 12));
    for n in plan
        .nodes
        .iter()
        .filter(|n| n.stage == StageKind::named("toy_prior"))
    {
        assert_eq!(n.users, 3, "one prior serves every learning rate");
    }
    // Inputs come before their users, and every align node records its prior's hash.
    for (i, n) in plan.nodes.iter().enumerate() {
        for &j in &n.inputs {
            assert!(j < i);
            assert_eq!(
                n.spec.config["inputs"]["toy_prior"].as_str(),
                Some(plan.nodes[j].hash.as_str())
            );
        }
    }
    assert_eq!(
        plan.nodes[1].spec.name,
        "toy_align target=mixture align_lr=0.01 seed=0"
    );
    // The settings reached the configurations.
    assert_eq!(plan.nodes[0].config["prior_steps"], 10);
    assert_eq!(plan.nodes[0].config["target"], "mixture");
}

#[test]
fn hashes_ignore_key_order_and_see_every_change() {
    let a = Plan::expand(&parse(BASE).expect("valid"), Path::new("data")).expect("plan");
    // The same sweep written in another order (sections, keys, stages).
    let reordered = r#"
[axes]
toy_align.align_lr = [0.01, 0.02, 0.05]
toy_prior.target = ["mixture", "moons"]

[fixed]
toy_prior.prior_steps = 10

seeds_dummy = 0
"#
    .replace("seeds_dummy = 0\n", "");
    let text = format!(
        "seeds = [0, 1]\npreset = \"smoke\"\nstages = [\"toy_align\", \"toy_prior\"]\n{reordered}"
    );
    let b = Plan::expand(&parse(&text).expect("valid"), Path::new("data")).expect("plan");
    let hashes = |p: &Plan| {
        let mut h: Vec<String> = p.nodes.iter().map(|n| n.hash.clone()).collect();
        h.sort();
        h
    };
    assert_eq!(hashes(&a), hashes(&b));

    // Any changed setting changes the hash of its stage and of everything downstream.
    let changed = BASE.replace("prior_steps = 10", "prior_steps = 11");
    let c = Plan::expand(&parse(&changed).expect("valid"), Path::new("data")).expect("plan");
    assert!(hashes(&a).iter().all(|h| !hashes(&c).contains(h)));
    // A change in the align stage only leaves the priors' hashes alone.
    let align_only = BASE.replace("[fixed]", "[fixed]\ntoy_align.points = 7");
    let d = Plan::expand(&parse(&align_only).expect("valid"), Path::new("data")).expect("plan");
    for (x, y) in a.nodes.iter().zip(&d.nodes) {
        assert_eq!(x.hash == y.hash, x.stage == StageKind::named("toy_prior"));
    }
    // The preset is part of every configuration.
    let small = Sweep::parse(
        BASE,
        Path::new("sweeps/demo.toml"),
        Overrides {
            preset: Some(Scale::Small),
            ..Default::default()
        },
    )
    .expect("valid");
    let e = Plan::expand(&small, Path::new("data")).expect("plan");
    assert!(hashes(&a).iter().all(|h| !hashes(&e).contains(h)));
    // `--seeds` replaces the file's seeds.
    let one = Sweep::parse(
        BASE,
        Path::new("sweeps/demo.toml"),
        Overrides {
            seeds: Some(vec![7]),
            ..Default::default()
        },
    )
    .expect("valid");
    let plan = Plan::expand(&one, Path::new("data")).expect("plan");
    assert_eq!(plan.points.len(), 6);
    assert!(plan.points.iter().all(|p| p.seed == 7));
    let twice = Sweep::parse(
        BASE,
        Path::new("sweeps/demo.toml"),
        Overrides {
            seeds: Some(vec![1, 1]),
            ..Default::default()
        },
    );
    assert!(
        matches!(twice, Err(SweepError::Invalid(p)) if p == vec!["sweeps/demo.toml: `--seeds`: a seed is listed twice".to_string()])
    );
}

#[test]
fn the_sweep_and_the_toy_command_build_the_same_runs() {
    let sweep = parse(BASE).expect("valid");
    let plan = Plan::expand(&sweep, Path::new("data")).expect("plan");
    let mut cfg = crate::stage::toy::ToyConfig::preset(
        crate::stage::toy::ToyPreset::Smoke,
        crate::toy::Target::Mixture,
    );
    cfg.prior.prior_steps = 10;
    cfg.align.align_lr = 0.01;
    assert_eq!(plan.nodes[0].hash, cfg.prior.run_spec().hash());
    assert_eq!(plan.nodes[1].hash, cfg.align.run_spec(&cfg.prior).hash());
}

#[test]
fn validation_messages_name_the_file_the_key_and_what_was_expected() {
    // Unknown top-level key (serde, with its line).
    let p = problems(&format!("colour = 3\n{BASE}"));
    assert_eq!(
        p,
        vec![
            "sweeps/demo.toml: line 1: unknown field `colour`, expected one of `description`, \
             `stages`, `preset`, `seeds`, `backend`, `fixed`, `axes`, `variants`, `report`"
        ]
    );
    // Unknown setting, wrong type, empty axis, fixed and axis at once, unknown stage.
    let text = r#"
stages = ["toy_prior"]
preset = "smoke"
[fixed]
toy_prior.widht = 3
toy_prior.depth = "deep"
toy_prior.prior_lr = 0.1
toy_align.points = 3
[axes]
toy_prior.width = []
toy_prior.prior_lr = [0.1]
toy_prior.seed = [1, 2]
"#;
    assert_eq!(
        problems(text),
        vec![
            "sweeps/demo.toml: `fixed.toy_prior.widht`: unknown setting of stage `toy_prior`; expected \
             one of depth, ema_decay, grad_clip, prior_batch, prior_lr, prior_optimizer, prior_steps, \
             prior_warmup, target, width",
            "sweeps/demo.toml: `fixed.toy_align`: this stage is not in `stages`",
            "sweeps/demo.toml: `axes.toy_prior.seed`: set with the top-level `seeds` key",
            "sweeps/demo.toml: `axes.toy_prior.width`: expected a non-empty list of values",
            "sweeps/demo.toml: `axes.toy_prior.prior_lr`: `toy_prior.prior_lr` is also set in \
             [fixed]; a setting is either fixed or set by one axis",
            "sweeps/demo.toml: `fixed.toy_prior.depth`: invalid type: string \"deep\", expected usize",
        ]
    );
    // Stages: unknown, missing input; seeds empty.
    let text = "stages = [\"toy_align\", \"gan\"]\npreset = \"smoke\"\nseeds = []\n";
    assert_eq!(
        problems(text),
        vec![
            "sweeps/demo.toml: `stages`: unknown stage `gan`; expected one of classifier, toy_prior, \
             toy_align, vae, vq, dino, prior, tokenizer, generator",
            "sweeps/demo.toml: `stages`: stage `toy_align` needs `toy_prior`: add it to the list",
            "sweeps/demo.toml: `seeds`: expected at least one seed",
        ]
    );
    // A value out of range, on its own.
    let p = problems(&BASE.replace(
        "toy_align.align_lr = [0.01, 0.02, 0.05]",
        "toy_align.align_lr = [0.01, -1.0]",
    ));
    assert_eq!(
        p,
        vec![
            "sweeps/demo.toml: `axes.toy_align.align_lr[1]`: `align_lr` must be a positive number, got -1"
        ]
    );
    // Report tables: a row that is not an axis, an axis neither a row nor pinned.
    let p = problems(&format!(
        "{BASE}\n[[report.tables]]\ntitle = \"t\"\nrows = [\"toy_prior.target\", \"lr\"]\ncolumns = [{{ metric = \"m\" }}]\n"
    ));
    assert_eq!(
        p,
        vec![
            "sweeps/demo.toml: `report.tables[0].rows`: `lr` is not an axis; expected one of \
             toy_prior.target, toy_align.align_lr",
            "sweeps/demo.toml: `report.tables[0].rows`: axis `toy_align.align_lr` is neither a row \
             key nor pinned in `where`",
        ]
    );
}

#[test]
fn impossible_combinations_are_reported_with_the_point() {
    let text = r#"
stages = ["toy_prior"]
preset = "smoke"
[axes]
toy_prior.prior_steps = [50, 500]
toy_prior.prior_warmup = [0, 100]
"#;
    let sweep = parse(text).expect("each value is fine on its own");
    match Plan::expand(&sweep, Path::new("data")) {
        Err(SweepError::Invalid(p)) => assert_eq!(
            p,
            vec![
                "sweeps/demo.toml: the combination toy_prior.prior_steps=50, toy_prior.prior_warmup=100, \
                 seed=0 is impossible for stage `toy_prior`: `prior_warmup` (100) must be below \
                 `prior_steps` (50)"
            ]
        ),
        other => panic!("expected an impossible combination, got {other:?}"),
    }
}

fn run(id: i64, status: RunStatus) -> RunInfo {
    RunInfo {
        id,
        stage: String::new(),
        name: String::new(),
        config: String::new(),
        config_hash: String::new(),
        status,
        created_at: 0.0,
        started_at: None,
        ended_at: None,
        heartbeat_at: Some(crate::util::now_unix()),
        attempts: 1,
        host: Some("another-host".into()),
        pid: Some(1),
        git_rev: None,
        backend: None,
        seed: None,
        error: None,
        build: None,
        cpu: None,
        threads: None,
        gpu: None,
    }
}

#[test]
fn node_states_follow_inputs_failures_and_retries() {
    let text = "stages = [\"toy_prior\", \"toy_align\"]\npreset = \"smoke\"\n[axes]\ntoy_prior.target = [\"mixture\", \"moons\"]\n";
    let plan = Plan::expand(&parse(text).expect("valid"), Path::new("data")).expect("plan");
    // nodes: prior(mixture), align(mixture), prior(moons), align(moons)
    let none = HashSet::new();
    let claim = Claim::new(false);
    let fresh: Vec<Option<RunInfo>> = vec![None; 4];
    assert_eq!(
        states(&plan, &fresh, claim, &none),
        vec![
            NodeState::Ready,
            NodeState::Waiting,
            NodeState::Ready,
            NodeState::Waiting
        ]
    );
    let runs = vec![
        Some(run(1, RunStatus::Failed)),
        Some(run(2, RunStatus::Queued)),
        Some(run(3, RunStatus::Finished)),
        Some(run(4, RunStatus::Running)),
    ];
    assert_eq!(
        states(&plan, &runs, claim, &none),
        vec![
            NodeState::Failed,
            NodeState::Blocked,
            NodeState::Finished,
            NodeState::Running
        ]
    );
    // With --retry-failed the failed prior is ready again, once per worker.
    let retry = Claim::new(true);
    assert_eq!(
        states(&plan, &runs, retry, &none)[..2],
        [NodeState::Ready, NodeState::Waiting]
    );
    let tried: HashSet<usize> = [0].into_iter().collect();
    assert_eq!(
        states(&plan, &runs, retry, &tried)[..2],
        [NodeState::Failed, NodeState::Blocked]
    );
    // A running stage with an old heartbeat is ready to be retaken.
    let mut stale = runs.clone();
    if let Some(r) = stale[3].as_mut() {
        r.heartbeat_at = Some(crate::util::now_unix() - 3600.0);
    }
    assert_eq!(states(&plan, &stale, claim, &none)[3], NodeState::Ready);
}

#[test]
fn a_process_that_is_gone_is_detected() {
    assert!(crate::store::process_alive(i64::from(std::process::id())));
    // Spawn and reap a child: its pid no longer names a live process.
    let mut child = std::process::Command::new("true")
        .spawn()
        .expect("spawn true");
    let pid = i64::from(child.id());
    child.wait().expect("wait");
    assert!(!crate::store::process_alive(pid));
}

#[test]
fn rules_that_tie_two_settings_see_the_fixed_settings_together() {
    let ok = "stages = [\"prior\"]\npreset = \"smoke\"\n[fixed]\nprior.source = \"file\"\nprior.path = \"f.npy\"\n";
    assert!(parse(ok).is_ok());
    let missing = "stages = [\"prior\"]\npreset = \"smoke\"\n[fixed]\nprior.source = \"file\"\n";
    assert_eq!(
        problems(missing),
        vec![
            "sweeps/demo.toml: `fixed.prior`: `path` must name the feature file when `source` is \"file\""
        ]
    );
    let axis =
        "stages = [\"prior\"]\npreset = \"smoke\"\n[axes]\nprior.source = [\"qwen\", \"file\"]\n";
    assert_eq!(
        problems(axis),
        vec![
            "sweeps/demo.toml: `axes.prior.source[1]`: `path` must name the feature file when `source` is \"file\""
        ]
    );
}

#[test]
fn a_prior_on_vae_latents_needs_the_vae_stage() {
    let text =
        "stages = [\"prior\"]\npreset = \"smoke\"\n[axes]\nprior.source = [\"qwen\", \"vae\"]\n";
    let sweep = parse(text).expect("each value is valid on its own");
    match Plan::expand(&sweep, Path::new("data")) {
        Err(SweepError::Invalid(p)) => assert_eq!(
            p,
            vec![
                "sweeps/demo.toml: at prior.source=vae, seed=0, stage `prior` reads stage `vae`: add it to `stages`"
            ]
        ),
        other => panic!("expected a missing stage, got {other:?}"),
    }
    let with = "stages = [\"vae\", \"prior\"]\npreset = \"smoke\"\n[axes]\nprior.source = [\"qwen\", \"vae\"]\n";
    let plan = Plan::expand(&parse(with).expect("valid"), Path::new("data")).expect("plan");
    // One vae node serves both points; only the vae-sourced prior reads it.
    let priors: Vec<&Node> = plan
        .nodes
        .iter()
        .filter(|n| n.stage == StageKind::named("prior"))
        .collect();
    assert_eq!(priors.len(), 2);
    assert_eq!(
        priors.iter().map(|n| n.inputs.len()).collect::<Vec<_>>(),
        vec![0, 1]
    );
}

#[test]
fn a_stage_without_a_seed_is_shared_by_every_seed() {
    let text = "stages = [\"dino\", \"prior\"]\npreset = \"smoke\"\nseeds = [0, 1, 2]\n[fixed]\nprior.source = \"dino\"\n";
    let plan = Plan::expand(&parse(text).expect("valid"), Path::new("data")).expect("plan");
    let dino: Vec<&Node> = plan
        .nodes
        .iter()
        .filter(|n| n.stage == StageKind::named("dino"))
        .collect();
    assert_eq!(dino.len(), 1, "deterministic feature extraction runs once");
    assert_eq!(dino[0].users, 3);
    assert_eq!(
        plan.nodes
            .iter()
            .filter(|n| n.stage == StageKind::named("prior"))
            .count(),
        3
    );
}

const VARIANTS: &str = r#"
stages = ["classifier", "prior", "tokenizer"]
preset = "smoke"
seeds = [0, 1]

[fixed]
prior.dim = 16

[variants.autoencoder]
AE = { tokenizer.lambda = 0.0, tokenizer.prior = false }
KL = { tokenizer.lambda = 0.0, tokenizer.prior = false, tokenizer.regulariser = "kl" }
"Text" = { prior.source = "qwen" }
"Text, PCA" = { prior.source = "qwen", prior.projection = "pca" }

[axes]
tokenizer.width = [32, 64]
"#;

#[test]
fn variants_set_several_settings_and_unread_stages_are_pruned() {
    let sweep = parse(VARIANTS).expect("valid");
    let a = sweep.axis("autoencoder").expect("variant axis");
    assert!(a.variant);
    assert_eq!(a.values.len(), 4);
    let plan = Plan::expand(&sweep, Path::new("data")).expect("expands");
    // 4 variants x 2 widths x 2 seeds.
    assert_eq!(plan.points.len(), 16);
    let count = |k: StageKind| plan.nodes.iter().filter(|n| n.stage == k).count();
    // Priors: two projections x two seeds, shared over widths; none for AE / KL points.
    assert_eq!(count(StageKind::named("prior")), 4);
    assert_eq!(count(StageKind::named("tokenizer")), 16);
    assert_eq!(count(StageKind::named("classifier")), 2);
    for p in &plan.points {
        let label = p.label("autoencoder").expect("label");
        let tok = &plan.nodes[p.nodes[&StageKind::named("tokenizer")]];
        let has_prior = p.nodes.contains_key(&StageKind::named("prior"));
        assert_eq!(has_prior, label.starts_with("Text"), "{label}");
        // The tokenizer reads the prior exactly where the variant aligns.
        assert_eq!(tok.inputs.len(), if has_prior { 2 } else { 1 });
        let cfg = &tok.config;
        match label.as_str() {
            "KL" => assert_eq!(cfg["regulariser"], "kl"),
            "AE" => assert_eq!(cfg["lambda"], 0.0),
            _ => assert_eq!(cfg["lambda"], 0.01),
        }
        if label == "Text, PCA" {
            let prior = &plan.nodes[p.nodes[&StageKind::named("prior")]];
            assert_eq!(prior.config["projection"], "pca");
            assert!(
                prior.spec.name.contains("autoencoder=Text, PCA"),
                "{}",
                prior.spec.name
            );
        }
    }
    for n in &plan.nodes {
        assert!(n.users > 0);
        for &j in &n.inputs {
            assert!(j < plan.nodes.len());
        }
    }
}

#[test]
fn variant_problems_are_named() {
    let text = VARIANTS.replace(
        "[axes]\ntokenizer.width = [32, 64]",
        "[axes]\ntokenizer.lambda = [0.1, 0.2]\n[variants.prior]\nx = { prior.dim = 8 }\n[variants.bad]\ny = 3\nz = { tokenizer.colour = 1 }\nw = { tokenizer.heads = 0 }",
    );
    let p = problems(&text);
    let want = [
        "sweeps/demo.toml: `variants.prior`: a variant table's name is a plain word (not a stage, no '.'); it names the axis in reports",
        "sweeps/demo.toml: `variants.bad.y`: expected the variant's settings: `{ <stage>.<setting> = value, ... }`",
        "sweeps/demo.toml: `variants.bad.z.tokenizer.colour`: unknown setting of stage `tokenizer`",
        "sweeps/demo.toml: `variants.autoencoder`: `tokenizer.lambda` is also set in `axes.tokenizer.lambda`; a setting is either fixed or set by one axis",
        "sweeps/demo.toml: `variants.bad.w`: `heads` must be at least 1",
    ];
    for w in want {
        assert!(
            p.iter().any(|m| m.starts_with(w)),
            "missing {w:?} in {p:#?}"
        );
    }
    // A tokenizer whose latent size differs from the prior's is an impossible combination.
    let text = VARIANTS.replace("prior.dim = 16", "prior.dim = 8");
    let sweep = parse(&text).expect("each setting valid on its own");
    assert_plan_fault(&sweep, "set `prior.dim` = `tokenizer.channels`");
}

#[test]
fn settings_valid_only_with_another_axis_are_checked_per_combination() {
    // MAR's settings in a variant, the generator kind on another axis: each is fine on its own,
    // and only the combinations are checked (the `dit` one is impossible).
    let text = r#"
stages = ["classifier", "tokenizer", "generator"]
preset = "smoke"
seeds = [0]
[fixed]
tokenizer.lambda = 0.0
tokenizer.prior = false
[axes]
generator.generator = ["mar", "dit"]
[variants.sampler]
"one step" = { generator.iters = 1, generator.adam_eps = 1e-5 }
"#;
    let sweep = parse(text).expect("each value valid with some other axis value");
    assert_plan_fault(
        &sweep,
        "`iters` is a setting of generator = \"mar\", not \"dit\"",
    );
    let only_mar = text.replace(r#"["mar", "dit"]"#, r#"["mar"]"#);
    let sweep = parse(&only_mar).expect("valid");
    Plan::expand(&sweep, Path::new("data")).expect("every combination valid");
    // Optional settings are known to the checker (they are absent from the preset's defaults).
    let typo = only_mar.replace("generator.iters", "generator.itres");
    let p = problems(&typo);
    assert!(
        p.iter()
            .any(|m| m.contains("unknown setting of stage `generator`")
                && m.contains("iters")
                && m.contains("adam_eps")),
        "{p:#?}"
    );
}

/// Expanding `sweep` fails with an impossible combination whose message contains `needle`.
fn assert_plan_fault(sweep: &Sweep, needle: &str) {
    match Plan::expand(sweep, Path::new("data")) {
        Err(SweepError::Invalid(p)) => {
            assert!(p.iter().any(|m| m.contains(needle)), "{p:#?}")
        }
        other => panic!("expected an impossible combination, got {other:?}"),
    }
}
