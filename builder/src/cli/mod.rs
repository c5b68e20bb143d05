//! The `kiln` command line: kaniko's flags plus kiln's own.

use std::process::ExitCode;

/// Entry point of the `kiln` binary.
pub fn main() -> ExitCode {
    crate::tls::install_crypto_provider();
    ExitCode::SUCCESS
}
