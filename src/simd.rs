//! The CPU's vector instruction sets, detected once per process, for the hand-written element-wise
//! kernels (GELU and SiLU in `activation`, the host Adam in `optim`). Each kernel is one generic loop
//! compiled once per [`Isa`] with `#[target_feature]` and picked at run time, so one binary uses
//! AVX-512 where the CPU has it and stays correct on a CPU with AVX2 only or neither.
//!
//! `FLOWPRIOR_MAX_ISA` (`avx2` or `baseline`) caps the set these kernels use, to measure how the binary
//! runs on a CPU without AVX-512 (`scripts/bench-avx2.sh`; docs/benchmarks.md). The matrix products
//! (gemm) follow the build instead: the default `avx512` feature compiles their AVX-512 kernels.

/// The environment variable that caps the instruction set.
pub const MAX_ISA_VAR: &str = "FLOWPRIOR_MAX_ISA";

/// An instruction set a kernel can be compiled for, ordered narrowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Isa {
    /// What every x86-64 (or other) CPU this binary runs on has.
    Baseline,
    /// AVX2 with FMA.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// AVX-512 Foundation.
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Isa {
    /// The widest instruction set this CPU can run, within the cap of `FLOWPRIOR_MAX_ISA` when it is
    /// set (detected on every call; see [`Isa::current`]).
    pub(crate) fn detect() -> Isa {
        let cap = std::env::var(MAX_ISA_VAR).ok();
        match Isa::capped(&Isa::available(), cap.as_deref()) {
            Ok(isa) => isa,
            Err(widest) => {
                tracing::warn!(
                    "{MAX_ISA_VAR}={:?} is not one of avx512, avx2, baseline: ignored",
                    cap.unwrap_or_default()
                );
                widest
            }
        }
    }

    /// The widest of `available` (listed narrowest first) at or below `cap` (`avx512`, `avx2` or
    /// `baseline`, any case; None: no cap). An unknown cap is an error carrying the widest set.
    fn capped(available: &[Isa], cap: Option<&str>) -> Result<Isa, Isa> {
        let widest = *available.last().unwrap_or(&Isa::Baseline);
        let limit = match cap.map(str::to_ascii_lowercase).as_deref() {
            None | Some("avx512") => return Ok(widest),
            Some("baseline") => Isa::Baseline,
            #[cfg(target_arch = "x86_64")]
            Some("avx2") => Isa::Avx2,
            #[cfg(not(target_arch = "x86_64"))]
            Some("avx2") => Isa::Baseline,
            Some(_) => return Err(widest),
        };
        // Only sets the CPU has: the kernels may run nothing else.
        Ok(available
            .iter()
            .copied()
            .rfind(|a| *a <= limit)
            .unwrap_or(Isa::Baseline))
    }

    /// Every instruction set this CPU can run, the baseline first and the widest last (tests run
    /// each kernel under each of them).
    pub(crate) fn available() -> Vec<Isa> {
        let mut v = vec![Isa::Baseline];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                v.push(Isa::Avx2);
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                v.push(Isa::Avx512);
            }
        }
        v
    }

    /// The set's name as `FLOWPRIOR_MAX_ISA` spells it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Isa::Baseline => "baseline",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => "avx2",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => "avx512",
        }
    }

    /// [`Isa::detect`], detected once per process.
    pub(crate) fn current() -> Isa {
        static ISA: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
        *ISA.get_or_init(Isa::detect)
    }
}

#[cfg(test)]
mod tests {
    use super::Isa;

    #[test]
    fn the_baseline_comes_first_and_the_current_set_is_the_widest_available() {
        let all = Isa::available();
        assert_eq!(all[0], Isa::Baseline);
        assert_eq!(Isa::current(), Isa::detect());
        if std::env::var(super::MAX_ISA_VAR).is_err() {
            assert_eq!(Some(&Isa::current()), all.last());
        }
    }

    /// The cap lowers the set and never raises it; an unknown value is refused.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_cap_picks_the_widest_set_at_or_below_it() {
        let all = [Isa::Baseline, Isa::Avx2, Isa::Avx512];
        let avx2_only = [Isa::Baseline, Isa::Avx2];
        assert_eq!(Isa::capped(&all, None), Ok(Isa::Avx512));
        assert_eq!(Isa::capped(&all, Some("avx512")), Ok(Isa::Avx512));
        assert_eq!(Isa::capped(&all, Some("AVX2")), Ok(Isa::Avx2));
        assert_eq!(Isa::capped(&all, Some("baseline")), Ok(Isa::Baseline));
        assert_eq!(Isa::capped(&avx2_only, Some("avx512")), Ok(Isa::Avx2));
        assert_eq!(
            Isa::capped(&[Isa::Baseline], Some("avx2")),
            Ok(Isa::Baseline)
        );
        assert_eq!(Isa::capped(&all, Some("sse9")), Err(Isa::Avx512));
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_available_sets_are_what_the_cpu_reports() {
        let all = Isa::available();
        assert_eq!(
            all.contains(&Isa::Avx512),
            std::arch::is_x86_feature_detected!("avx512f")
        );
        assert_eq!(
            all.contains(&Isa::Avx2),
            std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
        );
    }
}
