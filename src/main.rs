fn main() -> std::process::ExitCode {
    flowprior::cli::main()
}
