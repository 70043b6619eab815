//! The process heap's policy for training. Every step allocates and frees the same large tensors
//! (activations, gradients, Adam moments: hundreds of KiB to MiB each). glibc serves blocks above its
//! mmap threshold (128 KiB at start) with a fresh `mmap` and returns them with `munmap` on free, so
//! each step pays page faults and zeroing on memory it had a moment ago: 10-15% of a prior training
//! step here (`perf`: `exc_page_fault`, `clear_page_erms`). [`keep_freed_memory`] raises the mmap
//! threshold to 32 MiB (glibc's documented maximum on 64-bit, above any tensor a
//! step here allocates) and stops trimming the heap, so freed blocks are
//! reused in place. The cost: the process keeps its peak heap until it exits (training runs reach a
//! steady working set anyway).

/// The mmap threshold set: glibc's documented maximum on 64-bit targets (`DEFAULT_MMAP_THRESHOLD_MAX`).
pub const MMAP_THRESHOLD: usize = 32 << 20;

/// Applies the policy; `true` where it is in force (glibc on Linux), `false` elsewhere (the system
/// allocator's defaults stay) or if glibc refused a value.
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets allocator parameters; it is called before any thread is started.
        let mmap = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int) };
        let trim = unsafe { libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX) };
        mmap == 1 && trim == 1
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_accepts_the_policy() {
        assert!(keep_freed_memory());
    }
}
