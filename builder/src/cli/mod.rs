//! The `kiln` command line: kaniko's flags plus kiln's own.
//!
//! `args` defines the flags, `validate` turns them into the typed
//! `options` the build engine consumes, `logging` sets up stderr logs.

pub mod args;
pub mod logging;
pub mod options;
pub mod validate;
pub mod values;

use std::process::ExitCode;

use clap::Parser;

pub use args::Args;
pub use logging::init_logging;
pub use options::BuildOptions;
pub use validate::{CliError, UNSUPPORTED};

/// Entry point of the `kiln` binary.
pub fn main() -> ExitCode {
    crate::tls::install_crypto_provider();
    // Usage errors exit with 2 and --help with 0, from inside clap.
    let args = Args::parse();
    let logging = &args.logging;
    if let Err(error) = init_logging(logging.verbosity, logging.log_format, logging.log_timestamp) {
        return report(&error.into());
    }
    let outcome = args
        .into_options()
        .map_err(anyhow::Error::from)
        .and_then(|options| {
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(execute(options))
        });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => report(&error),
    }
}

fn report(error: &anyhow::Error) -> ExitCode {
    // `{:#}` joins the cause chain with ": ", one line a user can grep.
    eprintln!("error: {error:#}");
    ExitCode::FAILURE
}

/// Runs the build the options describe and reports where the image went.
pub async fn execute(options: BuildOptions) -> anyhow::Result<()> {
    let outcome = crate::build::run(&options).await?;
    for pushed in &outcome.pushed {
        println!("{pushed}");
    }
    if outcome.pushed.is_empty() {
        println!("{}", outcome.digest);
    }
    Ok(())
}
