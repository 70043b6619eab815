//! The committed results (results/NAME.sqlite, results/NAME.md and its figures in results/NAME/):
//! each report regenerates byte for byte from its committed store, on a fresh clone, without
//! rerunning anything.

use std::path::{Path, PathBuf};

use crate::common::Sandbox;

fn results_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("results")
}

/// The committed stores, by sweep name.
fn committed() -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(results_dir())
        .expect("results/ is committed")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sqlite"))
        .filter_map(|p| Some((p.file_stem()?.to_str()?.to_string(), p)))
        .collect();
    out.sort();
    out
}

#[test]
fn every_committed_report_regenerates_byte_identical_from_its_store() {
    let stores = committed();
    assert!(!stores.is_empty(), "no results/*.sqlite is committed");
    for (name, store) in stores {
        let sb = Sandbox::new();
        // A copy: reading must not touch the committed file (and SQLite may leave -wal files).
        std::fs::create_dir_all(sb.db().parent().expect("parent")).expect("runs dir");
        std::fs::copy(&store, sb.db()).expect("copy the store");
        let out = sb.dir.path().join("reports");
        let out_s = out.to_str().expect("utf-8 path");
        sb.ok(&["report", &name, "--out", out_s, "--check"]);
        let committed_md = results_dir().join(format!("{name}.md"));
        let want = std::fs::read(&committed_md)
            .unwrap_or_else(|e| panic!("{}: {e}", committed_md.display()));
        let got = std::fs::read(out.join(format!("{name}.md"))).expect("regenerated report");
        assert!(
            want == got,
            "results/{name}.md differs from the report its store gives now:\n{}",
            String::from_utf8_lossy(&got)
        );
        let figures = results_dir().join(&name);
        let mut n = 0;
        for entry in std::fs::read_dir(&figures).expect("committed figures") {
            let path = entry.expect("entry").path();
            let file = path.file_name().expect("file name");
            let got = std::fs::read(out.join(&name).join(file))
                .unwrap_or_else(|e| panic!("{name}/{}: not regenerated ({e})", file.display()));
            assert!(
                std::fs::read(&path).expect("committed figure") == got,
                "results/{name}/{} differs from the regenerated figure",
                file.display()
            );
            n += 1;
        }
        assert!(n > 0, "results/{name}/ holds no figure");
        // The store answers queries on its own.
        let runs = sb.ok(&[
            "sql",
            "SELECT COUNT(*) AS n FROM runs WHERE status = 'finished'",
        ]);
        assert!(runs.contains('n'), "{runs}");
    }
}
