//! What a user sees from the jobs and the query verbs.

use crate::common::{Sandbox, write_tiny_fashion_mnist};

const TINY: &[&str] = &[
    "classifier",
    "--train-size",
    "0",
    "--test-size",
    "0",
    "--steps",
    "40",
    "--hidden",
    "32",
    "--batch-size",
    "20",
    "--log-every",
    "5",
];

#[test]
fn classifier_run_is_recorded_queryable_exportable_and_reused() {
    let sb = Sandbox::new();
    write_tiny_fashion_mnist(&sb.data(), 200, 50);
    let out = sb.ok(TINY);
    assert!(out.contains("run 1 finished: test accuracy"), "{out}");

    // Database rows: one finished run, the loss series, final metrics, params, the checkpoint.
    assert_eq!(
        sb.sql_value("SELECT status FROM runs WHERE id = 1"),
        "finished"
    );
    assert_eq!(
        sb.sql_value("SELECT COUNT(*) FROM metrics WHERE run_id = 1 AND key = 'train/loss'"),
        "9"
    );
    let acc: f64 = sb
        .sql_value("SELECT m_test_accuracy FROM runs_wide WHERE id = 1")
        .parse()
        .unwrap();
    assert!(
        acc > 0.5,
        "a separable toy set must be learnt: accuracy {acc}"
    );
    assert_eq!(sb.sql_value("SELECT p_steps FROM runs_wide"), "40");
    assert_eq!(sb.sql_value("SELECT p_backend FROM runs_wide"), "flex");
    let first: f64 = sb
        .sql_value("SELECT value FROM metrics WHERE key = 'train/loss' ORDER BY step LIMIT 1")
        .parse()
        .unwrap();
    let last: f64 = sb
        .sql_value("SELECT value FROM summary WHERE key = 'train/loss'")
        .parse()
        .unwrap();
    assert!(last < first, "loss must fall: {first} -> {last}");
    let path = sb.sql_value("SELECT path FROM artifacts WHERE run_id = 1 AND kind = 'checkpoint'");
    let sha = sb.sql_value("SELECT sha256 FROM artifacts WHERE run_id = 1");
    let bytes = std::fs::read(&path).expect("checkpoint file exists");
    use sha2::Digest;
    assert_eq!(hex::encode(sha2::Sha256::digest(&bytes)), sha);

    // Listing and showing.
    let list = sb.ok(&["runs", "list"]);
    assert!(
        list.contains("classifier/fashion-mnist") && list.contains("finished"),
        "{list}"
    );
    assert!(list.contains("test/accuracy="), "{list}");
    let show = sb.ok(&["runs", "show", "1"]);
    for needle in [
        "[finished]",
        "batch_size",
        "train/loss",
        "checkpoint",
        "backend    flex",
    ] {
        assert!(show.contains(needle), "missing {needle:?} in\n{show}");
    }

    // The same configuration again is reused, not retrained.
    let again = sb.ok(TINY);
    assert!(
        again.contains("already finished") && again.contains("reused"),
        "{again}"
    );
    assert_eq!(sb.sql_value("SELECT COUNT(*) FROM runs"), "1");
    // A changed setting is a new run.
    let mut changed = TINY.to_vec();
    changed.extend(["--seed", "1"]);
    assert!(sb.ok(&changed).contains("run 2 finished"));

    // Output formats and exports.
    let json = sb.ok(&[
        "sql",
        "SELECT id, status FROM runs ORDER BY id",
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    assert_eq!(v[1]["id"], 2);
    assert_eq!(v[0]["status"], "finished");
    let table = sb.ok(&["sql", "SELECT id FROM runs"]);
    assert!(table.contains("(2 rows)"), "{table}");
    let csv_path = sb.dir.path().join("out/runs.csv");
    sb.ok(&[
        "runs",
        "export",
        "--format",
        "csv",
        "--out",
        csv_path.to_str().unwrap(),
    ]);
    let csv = std::fs::read_to_string(&csv_path).unwrap();
    assert!(
        csv.lines().next().unwrap().contains("m_test_accuracy"),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 3);
    let pq = sb.dir.path().join("out/metrics.parquet");
    let out = sb.ok(&[
        "runs",
        "export",
        "--format",
        "parquet",
        "--table",
        "metrics",
        "--out",
        pq.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(&pq).unwrap();
    assert!(
        bytes.starts_with(b"PAR1") && bytes.ends_with(b"PAR1"),
        "not a parquet file"
    );
    let n_metrics = sb.sql_value("SELECT COUNT(*) FROM metrics");
    assert!(
        out.contains(&format!("wrote {n_metrics} rows of metrics")),
        "{out}"
    );
}

#[test]
fn sql_is_read_only() {
    let sb = Sandbox::new();
    sb.ok(&["db", "init"]);
    sb.ok(&[
        "bench",
        "store-writer",
        "--name",
        "w",
        "--points",
        "5",
        "--batch",
        "5",
    ]);
    for stmt in [
        "DELETE FROM metrics",
        "INSERT INTO sweeps VALUES ('a','b','c',1,1)",
        "DROP TABLE runs",
    ] {
        let (ok, _, err) = sb.run(&["sql", stmt]);
        assert!(!ok, "{stmt} must be refused");
        assert!(err.contains("read-only"), "{stmt}: {err}");
    }
    assert_eq!(sb.sql_value("SELECT COUNT(*) FROM metrics"), "10");
}

#[test]
fn errors_name_what_to_fix() {
    let sb = Sandbox::new();
    // Missing data: names the file and the command that fetches it.
    let (ok, _, err) = sb.run(&["classifier", "--steps", "1"]);
    assert!(!ok);
    assert!(
        err.contains("train-images-idx3-ubyte.gz") && err.contains("just data"),
        "{err}"
    );
    // The failed run is recorded with its error; nothing is lost.
    assert_eq!(sb.sql_value("SELECT status FROM runs"), "failed");
    assert!(sb.sql_value("SELECT error FROM runs").contains("just data"));
    let (ok, out, err) = sb.run(&["data", "check"]);
    assert!(
        !ok && out.contains("MISSING") && err.contains("just data"),
        "{out}\n{err}"
    );
    // A bad config file: file, line and key.
    let cfg = sb.dir.path().join("c.toml");
    std::fs::write(&cfg, "steps = 3\nlearning_rate = 0.1\n").unwrap();
    let (ok, _, err) = sb.run(&["classifier", "--config", cfg.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("c.toml: line 2") && err.contains("unknown field `learning_rate`"),
        "{err}"
    );
    // A backend this binary was not built with names the cargo feature.
    if !cfg!(feature = "cuda") {
        let (ok, _, err) = sb.run(&["classifier", "--backend", "cuda"]);
        assert!(!ok && err.contains("--features cuda"), "{err}");
    }
    let (ok, _, err) = sb.run(&["classifier", "--backend", "flex", "--device", "cuda:1"]);
    assert!(!ok && err.contains("flex runs on the CPU only"), "{err}");
}

#[test]
fn prior_bench_prints_each_backend_next_to_its_reference_device() {
    let sb = Sandbox::new();
    // No PyTorch at this path: the reference is reported unavailable, the backend is still measured.
    let out = sb.ok(&[
        "bench",
        "prior",
        "--size",
        "small",
        "--steps",
        "1",
        "--warmup",
        "0",
        "--backends",
        "flex",
        "--torch-python",
        "/nonexistent/python",
    ]);
    let row = out
        .lines()
        .find(|l| l.contains("small (d 32, w 256, 4 blocks, batch 256)"))
        .unwrap_or_else(|| panic!("no small row in {out}"));
    let cells: Vec<&str> = row.split('│').map(str::trim).collect();
    assert_eq!(cells[2], "flex", "{row}");
    let steps: f64 = cells[3].parse().unwrap_or_else(|_| panic!("{row}"));
    assert!(steps > 0.0, "{row}");
    assert_eq!(cells[4], "cpu", "{row}");
    assert_eq!(cells[5], "unavailable", "{row}");
}

/// The cells of the table row that contains `label`.
fn row_cells(out: &str, label: &str) -> Vec<String> {
    let row = out
        .lines()
        .find(|l| l.contains(label))
        .unwrap_or_else(|| panic!("no row {label:?} in {out}"));
    row.split('│').map(|c| c.trim().to_string()).collect()
}

#[test]
fn generator_bench_times_training_and_sampling_of_both_generators() {
    let sb = Sandbox::new();
    let out = sb.ok(&[
        "bench",
        "generator",
        "--steps",
        "1",
        "--warmup",
        "0",
        "--sample-steps",
        "1",
        "--torch-python",
        "/nonexistent/python",
    ]);
    for label in ["dit: 16 x 16 tokens", "mar: 16 x 16 tokens"] {
        for kind in [", batch 128", ", 250 samples"] {
            let cells = row_cells(&out, &format!("{label}, width 128, depth 4{kind}"));
            let rate: f64 = cells[2].parse().unwrap_or_else(|_| panic!("{cells:?}"));
            assert!(rate > 0.0, "{cells:?}");
            // No PyTorch at that path: no reference, no ratio, and the reason is printed.
            assert_eq!(
                (cells[3].as_str(), cells[4].as_str()),
                ("-", "-"),
                "{cells:?}"
            );
        }
    }
    assert!(out.contains("guided sampling (guidance scale 2)"), "{out}");
    assert!(out.contains("PyTorch reference not run"), "{out}");
}

#[test]
fn trainers_bench_times_each_image_trainer_at_the_cpu_presets_sizes() {
    let sb = Sandbox::new();
    let out = sb.ok(&[
        "bench",
        "trainers",
        "--steps",
        "1",
        "--warmup",
        "0",
        "--torch-python",
        "/nonexistent/python",
    ]);
    for (name, sizes) in [
        ("vae", "batch 64, 8 channels"),
        ("vq", "batch 64, 8 channels, 256 codes"),
        ("classifier", "batch 128, hidden 256"),
    ] {
        let cells = row_cells(&out, &format!("{name} "));
        assert_eq!(cells[2], sizes, "{cells:?}");
        let rate: f64 = cells[3].parse().unwrap_or_else(|_| panic!("{cells:?}"));
        assert!(rate > 0.0, "{cells:?}");
        assert_eq!(
            (cells[4].as_str(), cells[5].as_str()),
            ("-", "-"),
            "{cells:?}"
        );
    }
    assert!(out.contains("vq: PyTorch reference not run"), "{out}");
}

#[test]
fn features_bench_measures_what_it_can_load_and_says_why_not_the_rest() {
    let sb = Sandbox::new();
    let out = sb.ok(&[
        "bench",
        "features",
        "--images",
        "4",
        "--torch-python",
        "/nonexistent/python",
    ]);
    let cells = row_cells(&out, "the project's MLP classifier");
    let rate: f64 = cells[2].parse().unwrap_or_else(|_| panic!("{cells:?}"));
    assert!(rate > 0.0, "{cells:?}");
    // The sandbox's data folder has no weights: EfficientNet is reported with its file; the FID
    // Inception-v3 is measured on untrained weights (its cost does not depend on them), and says so.
    let line = out
        .lines()
        .find(|l| l.starts_with("efficientnet: not measured"))
        .unwrap_or_else(|| panic!("no note for efficientnet in {out}"));
    assert!(line.contains("efficientnet-lite0"), "{line}");
    let cells = row_cells(&out, "the FID Inception-v3");
    assert!(cells[1].contains("untrained weights"), "{cells:?}");
    let rate: f64 = cells[2].parse().unwrap_or_else(|_| panic!("{cells:?}"));
    assert!(rate > 0.0, "{cells:?}");
    assert!(
        out.contains("inception: PyTorch reference not run"),
        "{out}"
    );
}
