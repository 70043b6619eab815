// mimalloc keeps freed memory for the next allocation. With glibc's allocator every large tensor
// (above its mmap threshold) was a fresh mapping: page faults and the kernel zeroing each page on every
// allocation, which took up to a quarter of a feature network's forward pass and several percent of a
// training step.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    flowprior::cli::main()
}
