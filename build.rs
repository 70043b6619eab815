//! Records the revision this binary is built from (`FLOWPRIOR_BUILD_REV`), so that every run says
//! which code produced it, wherever the binary is run from: the short commit of the checkout that
//! holds this crate, with `-dirty` when tracked files differed from it at build time;
//! `FLOWPRIOR_BUILD_REV` set at build time overrides it (packagers); `unknown` outside a checkout.

use std::path::Path;
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let dir = Path::new(&dir);
    println!("cargo:rerun-if-env-changed=FLOWPRIOR_BUILD_REV");
    for p in ["build.rs", "Cargo.toml", "Cargo.lock", "src", "migrations"] {
        println!("cargo:rerun-if-changed={p}");
    }
    let rev = match std::env::var("FLOWPRIOR_BUILD_REV") {
        Ok(r) if !r.is_empty() => r,
        _ => match git(dir, &["rev-parse", "--short=12", "HEAD"]) {
            Some(mut rev) => {
                // Rebuild the revision when HEAD moves (a commit, a checkout) or the index changes.
                for p in ["HEAD", "index", "packed-refs"] {
                    if let Some(path) = git(dir, &["rev-parse", "--git-path", p]) {
                        println!("cargo:rerun-if-changed={}", dir.join(path).display());
                    }
                }
                if let Some(head_ref) = git(dir, &["symbolic-ref", "-q", "HEAD"])
                    && let Some(path) = git(dir, &["rev-parse", "--git-path", &head_ref])
                {
                    println!("cargo:rerun-if-changed={}", dir.join(path).display());
                }
                let dirty = git(
                    dir,
                    &[
                        "--no-optional-locks",
                        "status",
                        "--porcelain",
                        "--untracked-files=no",
                    ],
                )
                .is_some_and(|s| !s.is_empty());
                if dirty {
                    rev.push_str("-dirty");
                }
                rev
            }
            None => "unknown".into(),
        },
    };
    println!("cargo:rustc-env=FLOWPRIOR_BUILD_REV={rev}");
}
