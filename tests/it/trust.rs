//! What a hostile user tries: concurrent starters of a new store, diverging training, hostile and huge
//! SQL, mistyped and read-only stores. Each test names what it guards against.

use std::io::Read;
use std::time::{Duration, Instant};

use crate::common::{Sandbox, bin};

/// 8 processes create and migrate the same new store at once, 50 rounds: none may fail.
#[test]
fn concurrent_starters_of_a_new_store_all_succeed() {
    let sb = Sandbox::new();
    for round in 0..50 {
        let db = sb.dir.path().join(format!("r{round}/store.db"));
        let children: Vec<_> = (0..8)
            .map(|_| {
                std::process::Command::new(bin())
                    .arg("--db")
                    .arg(&db)
                    .args(["db", "init"])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("spawn db init")
            })
            .collect();
        for c in children {
            let out = c.wait_with_output().expect("db init");
            assert!(
                out.status.success(),
                "round {round}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// A prior with an absurd learning rate: its run fails (naming the key and step), its alignment
/// stage never runs, and nothing of it is reported as a finished number.
#[test]
fn a_diverging_toy_prior_fails_and_blocks_its_alignment() {
    let sb = Sandbox::new();
    let cfg = sb.dir.path().join("diverge.toml");
    std::fs::write(&cfg, "prior_lr = 1e6\n").expect("write config");
    let (ok, out, err) = sb.run(&[
        "toy",
        "--target",
        "moons",
        "--preset",
        "tiny",
        "--config",
        cfg.to_str().expect("utf-8"),
    ]);
    assert!(!ok, "a diverged prior must fail the command\n{out}");
    assert!(
        err.contains("diverged") || err.contains("not a finite number"),
        "{err}"
    );
    assert_eq!(
        sb.sql_value("SELECT status FROM runs WHERE stage = 'toy_prior'"),
        "failed"
    );
    let error = sb.sql_value("SELECT error FROM runs WHERE stage = 'toy_prior'");
    assert!(error.contains("prior/"), "the error names the key: {error}");
    assert_eq!(
        sb.sql_value("SELECT COUNT(*) FROM runs WHERE stage = 'toy_align' AND status = 'finished'"),
        "0"
    );
    // Everything logged before the failure is kept.
    let logged: i64 = sb
        .sql_value("SELECT COUNT(*) FROM metrics m JOIN runs r ON r.id = m.run_id WHERE r.stage = 'toy_prior'")
        .parse()
        .expect("count");
    assert!(logged > 0);
}

#[test]
fn sql_refuses_several_statements_and_writes_before_touching_the_store() {
    let sb = Sandbox::new();
    sb.ok(&["db", "init"]);
    let (ok, out, err) = sb.run(&[
        "sql",
        "SELECT 1 AS a; SELECT 2 AS b, 3 AS c",
        "--format",
        "json",
    ]);
    assert!(!ok, "{out}");
    assert!(err.contains("2 statements given"), "{err}");
    let target = sb.dir.path().join("copy.db");
    let (ok, _, err) = sb.run(&["sql", &format!("VACUUM INTO '{}'", target.display())]);
    assert!(!ok);
    assert!(err.contains("`VACUUM` is not run"), "{err}");
    assert!(
        !target.exists(),
        "a refused statement must not create a file"
    );
    // An empty result names its columns and says it has no rows (a header-only table drew no
    // closing border).
    let empty = sb.ok(&["sql", "SELECT id, stage FROM runs"]);
    assert_eq!(empty, "columns: id, stage\n(0 rows)\n");
    assert_eq!(
        sb.ok(&["sql", "SELECT id FROM runs", "--format", "json"])
            .trim(),
        "[]"
    );
}

/// A query of 3 million rows streams in constant memory (it grew ~450 bytes per row when held whole)
/// and the table format is cut, saying so.
#[test]
fn sql_streams_large_results_and_caps_the_table() {
    let sb = Sandbox::new();
    sb.ok(&["db", "init"]);
    let rows = 3_000_000;
    let q = format!(
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT {rows}) SELECT x, x * 0.5 AS half FROM c"
    );
    let mut child = sb
        .cmd()
        .args(["sql", &q, "--format", "csv"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn sql");
    let pid = child.id();
    let mut stdout = child.stdout.take().expect("stdout");
    // Read the output as it comes while sampling the process's resident memory.
    let reader = std::thread::spawn(move || {
        let (mut lines, mut buf) = (0usize, vec![0u8; 1 << 16]);
        loop {
            let n = stdout.read(&mut buf).expect("read");
            if n == 0 {
                return lines;
            }
            lines += buf[..n].iter().filter(|b| **b == b'\n').count();
        }
    });
    let mut peak_kb = 0u64;
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().expect("wait").is_none() {
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status"))
            && let Some(kb) = status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        {
            peak_kb = peak_kb.max(kb);
        }
        assert!(Instant::now() < deadline, "the query did not end");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(reader.join().expect("reader"), rows + 1);
    assert!(
        peak_kb < 300 * 1024,
        "resident memory peaked at {} MiB for {rows} rows",
        peak_kb / 1024
    );
    let table = sb.ok(&[
        "sql",
        &q.replace(&rows.to_string(), "50"),
        "--max-rows",
        "5",
    ]);
    assert!(
        table.contains("(50 rows; the first 5 shown"),
        "{}",
        &table[table.len().saturating_sub(300)..]
    );
    assert!(!table.contains("│ 6 "), "{table}");
}

#[test]
fn read_verbs_refuse_a_missing_store_and_create_nothing() {
    let sb = Sandbox::new();
    let typo = sb.dir.path().join("no/such/dir/x.db");
    for verb in [
        vec!["runs", "list"],
        vec!["runs", "stale"],
        vec!["runs", "show", "1"],
        vec!["sql", "SELECT 1"],
        vec!["report", "smoke"],
        vec!["sweep", "status", "smoke"],
        vec!["sweep", "list"],
    ] {
        let out = std::process::Command::new(bin())
            .arg("--db")
            .arg(&typo)
            .args(&verb)
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{verb:?}");
        assert!(err.contains("no run store at"), "{verb:?}: {err}");
    }
    assert!(
        !sb.dir.path().join("no").exists(),
        "a read verb created folders"
    );
}

#[test]
fn errors_name_each_cause_once_and_stages_are_named_for_a_typo() {
    let sb = Sandbox::new();
    sb.ok(&["bench", "store-writer", "--name", "w", "--points", "3"]);
    let (ok, _, err) = sb.run(&["sql", "SELECT nope FROM runs"]);
    assert!(!ok);
    assert_eq!(err.matches("no such column").count(), 1, "{err}");
    let (ok, _, err) = sb.run(&["runs", "list", "--stage", "bench_store"]);
    assert!(!ok);
    assert!(
        err.contains("no run of that stage; the store has runs of: bench-store"),
        "{err}"
    );
}

/// Results shipped read-only (file and folder not writable) can still be listed, queried and
/// reported. As root, permission bits do not bind, so the verbs run as `nobody` there.
#[test]
fn a_read_only_store_can_be_read() {
    let sb = Sandbox::new();
    sb.ok(&["bench", "store-writer", "--name", "w", "--points", "3"]);
    let db = sb.db();
    let folder = db.parent().expect("folder").to_path_buf();
    for p in [sb.dir.path(), folder.as_path()] {
        set_mode(p, 0o755);
    }
    for entry in std::fs::read_dir(&folder).expect("list") {
        let path = entry.expect("entry").path();
        set_mode(&path, if path.is_dir() { 0o555 } else { 0o444 });
    }
    set_mode(&folder, 0o555);
    let as_reader = |args: &[&str]| {
        let mut c = if is_root() {
            let mut c = std::process::Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", bin()]);
            c
        } else {
            std::process::Command::new(bin())
        };
        let out = c.arg("--db").arg(&db).args(args).output().expect("run");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = as_reader(&["runs", "list"]);
    assert!(ok, "{err}");
    assert!(out.contains("bench-store"), "{out}");
    let (ok, out, err) = as_reader(&[
        "sql",
        "SELECT COUNT(*) AS n FROM metrics",
        "--format",
        "csv",
    ]);
    assert!(ok, "{err}");
    assert_eq!(out, "n\n6\n");
    set_mode(&folder, 0o755);
}

fn set_mode(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}
