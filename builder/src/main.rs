//! The `kiln` binary: parse kaniko-compatible flags and run the build.

fn main() -> std::process::ExitCode {
    kiln_builder::cli::main()
}
