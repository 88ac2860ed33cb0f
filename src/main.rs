//! Binary entry point: everything happens in the library's `cli::main`.

fn main() -> std::process::ExitCode {
    redis_loadgen::cli::main()
}
