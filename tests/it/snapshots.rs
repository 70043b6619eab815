//! Snapshots of what users read (insta; files in tests/it/snapshots/): the help of every verb and the
//! plan a dry run prints. A change to any of them shows up as a failing test and a readable diff;
//! after checking it, `INSTA_UPDATE=always cargo test --test it snapshots` accepts it.

use crate::common::{Sandbox, bin};
use crate::sweep::{sweep_text, write};

fn help(args: &[&str]) -> String {
    let out = std::process::Command::new(bin())
        .args(args)
        .arg("--help")
        .env_remove("FLOWPRIOR_BACKEND")
        .env_remove("FLOWPRIOR_DIVERGENCE_FACTOR")
        .env_remove("FLOWPRIOR_DB")
        .env_remove("FLOWPRIOR_DATA")
        .output()
        .expect("help");
    assert!(out.status.success(), "{args:?} --help failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn help_of_every_verb() {
    let verbs: &[&[&str]] = &[
        &[],
        &["toy"],
        &["classifier"],
        &["sweep", "run"],
        &["sweep", "status"],
        &["sweep", "worker"],
        &["sweep", "submit"],
        &["stage", "run"],
        &["stage", "list"],
        &["report"],
        &["runs", "list"],
        &["runs", "show"],
        &["runs", "stale"],
        &["runs", "export"],
        &["sql"],
        &["db", "init"],
        &["data", "check"],
        &["bench", "prior"],
        &["bench", "knn"],
        &["bench", "align"],
        &["bench", "generator"],
        &["bench", "features"],
        &["bench", "all"],
        &["bench", "store"],
    ];
    for v in verbs {
        let name = if v.is_empty() {
            "help".to_string()
        } else {
            format!("help_{}", v.join("_"))
        };
        insta::assert_snapshot!(name, help(v));
    }
}

#[test]
fn dry_run_plan_of_a_sweep_on_a_fresh_store() {
    let sb = Sandbox::new();
    let f = write(
        &sb,
        "plan",
        &sweep_text(r#"["mixture", "moons"]"#, "[0.01, 0.03]", "[0]", 40, ""),
    );
    let plan = sb.ok(&["sweep", "run", f.to_str().expect("utf-8"), "--dry-run"]);
    let shown = plan.replace(&sb.dir.path().display().to_string(), "[sandbox]");
    insta::assert_snapshot!("dry_run_plan", shown);
}

#[test]
fn sql_outputs_in_every_format() {
    let sb = Sandbox::new();
    sb.ok(&["db", "init"]);
    let q = "SELECT 1 AS id, 'toy_prior' AS stage, 0.5 AS value, NULL AS missing \
             UNION ALL SELECT 2, 'a, \"quoted\" name', 1e-3, NULL";
    for format in ["table", "csv", "json"] {
        insta::assert_snapshot!(
            format!("sql_{format}"),
            sb.ok(&["sql", q, "--format", format])
        );
    }
}

/// `runs list` with the clock columns (started, took) blanked: the rest is what a user reads.
#[test]
fn runs_list_of_two_runs() {
    let sb = Sandbox::new();
    for name in ["first", "second"] {
        sb.ok(&["bench", "store-writer", "--name", name, "--points", "3"]);
    }
    let list = sb.ok(&["runs", "list"]);
    let blanked: Vec<String> = list
        .lines()
        .map(|line| {
            let cells: Vec<&str> = line.split('│').collect();
            if cells.len() < 10 || line.contains("started (UTC)") {
                return line.to_string();
            }
            cells
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    if i == 7 || i == 8 {
                        // Same width, every character of the value replaced.
                        c.chars()
                            .map(|ch| if ch == ' ' { ' ' } else { '~' })
                            .collect()
                    } else {
                        c.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join("│")
        })
        .collect();
    insta::assert_snapshot!("runs_list", blanked.join("\n"));
}

/// `bench align --only` with text no row contains: an error that lists the rows to choose from,
/// before anything is measured.
#[test]
fn bench_align_only_names_the_rows_when_nothing_matches() {
    let sb = Sandbox::new();
    let (ok, _, err) = sb.run(&["bench", "align", "--only", "no such row"]);
    assert!(!ok, "a filter matching nothing must fail");
    assert!(
        err.contains("--only [\"no such row\"] matches no row"),
        "{err}"
    );
    assert!(
        err.contains("small, KL: 16 x 16 tokens") && err.contains("| d 16, width 1024, 6 blocks"),
        "the rows are listed: {err}"
    );
}
