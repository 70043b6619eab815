//! What produced a run: this binary's own revision (recorded at build time, see build.rs), its
//! version, profile and compiled backends, and the machine it runs on (CPU model and vector
//! extensions, thread count, GPU). Recorded with every run attempt; never read from the working
//! directory, so running the binary from elsewhere (or from another repository) changes nothing.

/// The revision this binary was built from: a short commit, `-dirty` when tracked files differed
/// from it at build time, or `unknown` when it was built outside a git checkout.
pub const BUILD_REV: &str = env!("FLOWPRIOR_BUILD_REV");

/// `--version`: the crate's version and the build's revision.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (revision ",
    env!("FLOWPRIOR_BUILD_REV"),
    ")"
);

/// The binary's revision (see [`BUILD_REV`]).
pub fn revision() -> &'static str {
    BUILD_REV
}

/// Version, profile and compiled backends: `flowprior 0.1.0 release [flex, cuda]`.
pub fn build() -> String {
    let mut features = Vec::new();
    if cfg!(feature = "flex") {
        features.push("flex");
    }
    if cfg!(feature = "cuda") {
        features.push("cuda");
    }
    if cfg!(feature = "tch") {
        features.push("tch");
    }
    format!(
        "flowprior {} {} [{}]",
        env!("CARGO_PKG_VERSION"),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        features.join(", ")
    )
}

/// The CPU model and the vector extensions that matter for speed (`avx2`, `avx512f`, `amx`), from
/// /proc/cpuinfo; None where that is not available.
pub fn cpu() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let field = |name: &str| {
        info.lines()
            .find(|l| l.split(':').next().is_some_and(|k| k.trim() == name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    };
    let model = field("model name").or_else(|| field("Model"))?;
    let flags = field("flags").unwrap_or_default();
    let have: Vec<&str> = ["avx2", "avx512f", "amx_tile"]
        .into_iter()
        .filter(|f| flags.split_whitespace().any(|x| x == *f))
        .map(|f| if f == "amx_tile" { "amx" } else { f })
        .collect();
    Some(if have.is_empty() {
        model
    } else {
        format!("{model} ({})", have.join(", "))
    })
}

/// The vector kernels this process runs on the CPU: the matrix products' (gemm's AVX-512 kernels are
/// compiled in by the default `avx512` feature) and the project's own (within `FLOWPRIOR_MAX_ISA`).
pub fn kernels() -> String {
    format!(
        "matrix products {}, own kernels {}",
        if cfg!(feature = "avx512") {
            "up to avx512"
        } else {
            "up to avx2 (built without avx512)"
        },
        crate::simd::Isa::current().name()
    )
}

/// Threads the CPU backend computes with (rayon's pool).
pub fn threads() -> i64 {
    rayon::current_num_threads() as i64
}

/// The GPU's name when the run uses a CUDA backend and `nvidia-smi` can tell; None otherwise.
pub fn gpu(backend: &str) -> Option<String> {
    if backend != "cuda" {
        return None;
    }
    let out = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=name", "--format=csv,noheader"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let name = text.lines().next()?.trim();
    (out.status.success() && !name.is_empty()).then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_revision_is_the_builds_not_the_working_directorys() {
        // Built inside this project's checkout: a 12-hex-digit commit, maybe marked dirty.
        let rev = revision();
        let hex = rev.strip_suffix("-dirty").unwrap_or(rev);
        assert!(
            rev == "unknown" || (hex.len() == 12 && hex.chars().all(|c| c.is_ascii_hexdigit())),
            "{rev}"
        );
        assert!(build().starts_with("flowprior "), "{}", build());
        assert!(threads() >= 1);
        assert_eq!(gpu("flex"), None);
    }
}
