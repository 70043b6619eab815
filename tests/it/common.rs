//! Helpers: run the binary, make tiny datasets.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_flowprior")
}

/// A temp folder with a database path and a data folder.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
    /// A PostgreSQL store's URL, used instead of the SQLite file when set.
    pub pg: Option<String>,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox {
            dir: tempfile::tempdir().expect("temp dir"),
            pg: None,
        }
    }

    /// A sandbox whose store is a new database on the test PostgreSQL server, `None` without one
    /// (`flowprior::store::testing`).
    pub fn postgres() -> Option<Sandbox> {
        let url = flowprior::store::testing::fresh_database()?;
        Some(Sandbox {
            pg: Some(url),
            ..Sandbox::new()
        })
    }

    pub fn db(&self) -> PathBuf {
        self.dir.path().join("runs/flowprior.db")
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(bin());
        match &self.pg {
            Some(url) => c
                .arg("--db")
                .arg(url)
                .env("FLOWPRIOR_ARTIFACTS", self.dir.path().join("artifacts")),
            None => c.arg("--db").arg(self.db()),
        };
        c.arg("--data-dir").arg(self.data());
        // One worker of one thread unless a test asks for more: tests run side by side, and a sweep's
        // default (a worker per core) would start processes the tests do not count on.
        c.env_remove("FLOWPRIOR_BACKEND")
            .env("NO_COLOR", "1")
            .env("FLOWPRIOR_WORKERS", "1")
            .env("FLOWPRIOR_THREADS", "1");
        c
    }

    /// Runs the binary with `args`; returns (success, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out: Output = self.cmd().args(args).output().expect("run flowprior");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args);
        assert!(
            ok,
            "flowprior {args:?} failed\nstdout:\n{out}\nstderr:\n{err}"
        );
        out
    }

    /// Links the real EfficientNet-Lite0 weights (fetched by `just data`, part of the set-up) into the
    /// sandbox's data folder.
    pub fn link_efficientnet(&self) {
        let real = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("data/weights/efficientnet-lite0-57934424.pth");
        assert!(
            real.exists(),
            "{} is missing: run `just data` first",
            real.display()
        );
        std::fs::create_dir_all(self.data().join("weights")).expect("mkdir");
        std::os::unix::fs::symlink(
            &real,
            self.data().join("weights/efficientnet-lite0-57934424.pth"),
        )
        .expect("link");
    }

    /// Writes the sweep file `<stem>.toml` in the sandbox and runs it to the end (asserting success).
    pub fn run_sweep(&self, stem: &str, text: &str) -> PathBuf {
        let f = self.dir.path().join(format!("{stem}.toml"));
        std::fs::write(&f, text).expect("write sweep");
        self.ok(&["sweep", "run", f.to_str().expect("utf-8 path")]);
        f
    }

    /// [`Sandbox::sql_value`] as an integer (-1 when it is not one, e.g. before the store exists).
    pub fn sql_i64(&self, q: &str) -> i64 {
        self.sql_value(q).parse().unwrap_or(-1)
    }

    /// One value from a read-only SQL query (CSV output, first data row, first column).
    pub fn sql_value(&self, q: &str) -> String {
        let out = self.ok(&["sql", q, "--format", "csv"]);
        out.lines().nth(1).unwrap_or("").to_string()
    }
}

fn idx(dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&(*d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

fn gz(path: &Path, bytes: &[u8]) {
    let f = std::fs::File::create(path).expect("create");
    let mut e = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
    e.write_all(bytes).expect("write");
    e.finish().expect("finish");
}

/// A learnable stand-in for Fashion-MNIST: class c lights up rows 2c..2c+2 of the 28x28 image,
/// plus deterministic noise. `n_train` and `n_test` images.
pub fn write_tiny_fashion_mnist(data: &Path, n_train: usize, n_test: usize) {
    let dir = data.join("fashion-mnist");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let mut state = 12345u32;
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        (state % 60) as u8
    };
    for (prefix, n) in [("train", n_train), ("t10k", n_test)] {
        let mut px = Vec::with_capacity(n * 784);
        let mut labels = Vec::with_capacity(n);
        for i in 0..n {
            let c = (i % 10) as u8;
            labels.push(c);
            for r in 0..28 {
                for _ in 0..28 {
                    let on = r / 2 == c as usize + 2;
                    px.push(if on { 200 + noise() / 2 } else { noise() });
                }
            }
        }
        gz(
            &dir.join(format!("{prefix}-images-idx3-ubyte.gz")),
            &idx(&[n, 28, 28], &px),
        );
        gz(
            &dir.join(format!("{prefix}-labels-idx1-ubyte.gz")),
            &idx(&[n], &labels),
        );
    }
}
