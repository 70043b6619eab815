//! What a researcher needs to trust a result, as a new user meets it: provenance that follows the
//! binary, sweeps that grow instead of silently shrinking, cost before running, progress in logs,
//! and help on every flag.

use crate::common::{Sandbox, bin};
use crate::sweep::{sweep_text, write};

/// The revision this binary reports (`flowprior --version`: `flowprior 0.1.0 (revision R)`).
fn own_revision() -> String {
    let out = std::process::Command::new(bin())
        .arg("--version")
        .output()
        .expect("version");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split("revision ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .unwrap_or_else(|| panic!("no revision in {text:?}"))
        .to_string()
}

#[test]
fn runs_record_the_binarys_revision_wherever_it_runs_from() {
    let sb = Sandbox::new();
    // An unrelated git repository as the working directory.
    let repo = sb.dir.path().join("elsewhere");
    std::fs::create_dir_all(&repo).expect("mkdir");
    let git = |args: &[&str]| {
        let ok = std::process::Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@t"])
            .args(args)
            .current_dir(&repo)
            .output()
            .expect("git")
            .status
            .success();
        assert!(ok, "git {args:?}");
    };
    git(&["init", "-q"]);
    std::fs::write(repo.join("f"), "x").expect("write");
    git(&["add", "f"]);
    git(&["commit", "-q", "-m", "x"]);
    let out = sb
        .cmd()
        .current_dir(&repo)
        .args(["bench", "store-writer", "--name", "w", "--points", "3"])
        .output()
        .expect("run");
    assert!(out.status.success());
    let rev = own_revision();
    assert_eq!(sb.sql_value("SELECT git_rev FROM runs WHERE id = 1"), rev);
    let show = sb.ok(&["runs", "show", "1"]);
    assert!(show.contains(&format!("revision   {rev}")), "{show}");
    assert!(show.contains("build      flowprior "), "{show}");
    assert!(show.contains("threads"), "{show}");
    assert_eq!(
        sb.sql_value("SELECT COUNT(*) FROM runs WHERE build IS NOT NULL AND threads >= 1"),
        "1"
    );
}

#[test]
fn more_seeds_add_to_a_sweep_and_its_report_and_dry_runs_estimate_the_cost() {
    let sb = Sandbox::new();
    let f = write(
        &sb,
        "grow",
        &sweep_text(r#"["moons"]"#, "[0.01]", "[0]", 40, ""),
    );
    let f = f.to_str().expect("utf-8");
    // A fresh store: nothing to estimate from, and it says so.
    let plan = sb.ok(&["sweep", "run", f, "--dry-run"]);
    assert!(plan.contains("est. time"), "{plan}");
    assert!(plan.contains("no estimate for 2 stage runs"), "{plan}");
    sb.ok(&["sweep", "run", f]);
    // Another seed: estimated from the finished runs like it, added to the sweep.
    let plan = sb.ok(&[
        "sweep",
        "run",
        f,
        "--seeds",
        "1",
        "--dry-run",
        "--workers",
        "2",
    ]);
    assert!(
        plan.contains("seeds 1 added to sweep grow (now 0, 1)"),
        "{plan}"
    );
    assert!(plan.contains("estimated time: "), "{plan}");
    assert!(plan.contains("for the 2 with an estimate"), "{plan}");
    assert!(plan.contains("with 2 workers"), "{plan}");
    assert!(!plan.contains("no estimate"), "{plan}");
    let out = sb.ok(&["sweep", "run", f, "--seeds", "1"]);
    assert!(out.contains("seeds 1 added to sweep grow"), "{out}");
    let status = sb.ok(&["sweep", "status", "grow"]);
    assert_eq!(status.matches("│ finished │").count(), 4, "{status}");
    let reports = sb.dir.path().join("reports");
    sb.ok(&["report", "grow", "--out", reports.to_str().expect("utf-8")]);
    let md = std::fs::read_to_string(reports.join("grow.md")).expect("report");
    assert!(md.contains("over 2 seeds (0, 1)"), "{md}");
    // Another preset replaces the registration, and says so.
    let plan = sb.ok(&["sweep", "run", f, "--preset", "small", "--dry-run"]);
    assert!(
        plan.contains("was registered differently before (preset smoke -> small)"),
        "{plan}"
    );
}

#[test]
fn progress_reaches_a_log_as_plain_lines() {
    let sb = Sandbox::new();
    let out = sb
        .cmd()
        .env("FLOWPRIOR_PROGRESS_EVERY", "0")
        .args(["-v", "toy", "--target", "moons", "--preset", "tiny"])
        .output()
        .expect("toy");
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("[progress "), "{err}");
    assert!(err.contains("prior moons"), "{err}");
    assert!(!err.contains('\u{1b}'), "colour codes in a log: {err:?}");
    // A reused run says where its figures are.
    let again = sb.ok(&["toy", "--target", "moons", "--preset", "tiny"]);
    assert!(
        again.contains("reused; its figures were drawn when it ran"),
        "{again}"
    );
    // toy_align runs carry their target.
    assert_eq!(
        sb.sql_value("SELECT p_target FROM runs_wide WHERE stage = 'toy_align'"),
        "moons"
    );
}

#[test]
fn every_flag_has_help_and_the_documented_names_parse() {
    let verbs: &[&[&str]] = &[
        &["classifier"],
        &["toy"],
        &["sweep", "run"],
        &["sweep", "status"],
        &["report"],
        &["runs", "list"],
        &["runs", "show"],
        &["runs", "stale"],
        &["runs", "export"],
        &["sql"],
        &["bench", "prior"],
        &["bench", "knn"],
        &["bench", "align"],
        &["bench", "generator"],
        &["bench", "features"],
        &["bench", "trainers"],
        &["bench", "all"],
        &["bench", "store"],
        &["bench", "store-writer"],
        &["db", "init"],
        &["stage", "run"],
        &["stage", "list"],
    ];
    let mut bare = Vec::new();
    for v in verbs {
        let out = std::process::Command::new(bin())
            .args(*v)
            .arg("--help")
            .output()
            .expect("help");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        // An option or argument line that is nothing but its name, with no more-indented text
        // under it (clap's long layout puts the help there), has no help.
        let lines: Vec<&str> = text.lines().collect();
        let indent = |l: &str| l.len() - l.trim_start().len();
        for (i, line) in lines.iter().enumerate() {
            let t = line.trim();
            let is_item = line.starts_with("  ") && (t.starts_with('-') || t.starts_with('<'));
            let name_only = t
                .split_whitespace()
                .all(|w| w.starts_with('-') || w.starts_with('<') || w.ends_with(','));
            let described_below = lines
                .get(i + 1)
                .is_some_and(|n| !n.trim().is_empty() && indent(n) > indent(line));
            if is_item && !t.is_empty() && name_only && !described_below {
                bare.push(format!("{v:?}: {t}"));
            }
        }
    }
    assert!(bare.is_empty(), "flags without help: {bare:#?}");
    let (ok, _, err) = Sandbox::new().run(&["classifier", "--dataset", "mnist-5k", "--steps", "1"]);
    assert!(!ok, "no data in the sandbox");
    assert!(!err.contains("invalid value"), "{err}");
}

#[test]
fn a_dry_run_names_missing_data_and_config_errors_name_key_and_line() {
    let sb = Sandbox::new();
    let f = write(
        &sb,
        "needs_data",
        "stages = [\"classifier\"]\npreset = \"smoke\"\nseeds = [0]\n",
    );
    let plan = sb.ok(&["sweep", "run", f.to_str().expect("utf-8"), "--dry-run"]);
    assert!(
        plan.contains("missing input: classifier")
            && plan.contains("dataset fashion-mnist is missing"),
        "{plan}"
    );
    let cfg = sb.dir.path().join("bad.toml");
    std::fs::write(&cfg, "seed = 3\nwidth = \"wide\"\n").expect("write");
    let (ok, _, err) = sb.run(&[
        "toy",
        "--preset",
        "tiny",
        "--config",
        cfg.to_str().expect("utf-8"),
    ]);
    assert!(!ok);
    assert!(
        err.contains("bad.toml: line 2: `width`: invalid type"),
        "{err}"
    );
}
