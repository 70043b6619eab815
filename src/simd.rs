//! The CPU's vector instruction sets, detected once per process, for the hand-written element-wise
//! kernels (GELU and SiLU in `activation`, the host Adam in `optim`). Each kernel is one generic loop
//! compiled once per [`Isa`] with `#[target_feature]` and picked at run time, so one binary uses
//! AVX-512 where the CPU has it and stays correct on a CPU with AVX2 only or neither.

/// An instruction set a kernel can be compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// The widest instruction set this CPU can run (detected on every call; see [`Isa::current`]).
    pub(crate) fn detect() -> Isa {
        *Isa::available().last().unwrap_or(&Isa::Baseline)
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
        assert_eq!(Some(&Isa::current()), all.last());
        assert_eq!(Isa::current(), Isa::detect());
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
