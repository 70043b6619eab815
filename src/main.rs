// mimalloc keeps freed memory for the next allocation. With glibc's allocator every large tensor
// (above its mmap threshold) was a fresh mapping: page faults and the kernel zeroing each page on every
// allocation, which took up to a quarter of a feature network's forward pass and several percent of a
// training step.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

unsafe extern "C" {
    /// mimalloc's `mi_option_set` (the v2 library libmimalloc-sys builds by default).
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// `mi_option_purge_delay` in mimalloc v2's `mi_option_e` (include/mimalloc.h).
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

fn main() -> std::process::ExitCode {
    // Never hand freed memory back to the OS (mimalloc's default purges it after 10 ms): a training step
    // frees and reallocates the same large gradient buffers every step, and each purge made the next
    // step fault and zero those pages again (a fifth of the paper-size prior's two-thread step). A
    // MIMALLOC_PURGE_DELAY in the environment is left to mimalloc.
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one option of the linked allocator, before any other thread exists.
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    }
    flowprior::cli::main()
}
