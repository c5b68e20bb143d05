//! The `kiln` command line: kaniko's flags plus kiln's own.
//!
//! `args` defines the flags, `validate` turns them into the typed
//! `options` the build engine consumes, `logging` sets up stderr logs.

pub mod args;
pub mod logging;
pub mod options;
pub mod reference;
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
    // A RUN step (in place, as kiln's user or as root without
    // CAP_SYS_PTRACE) must not read kiln's environment, memory or file
    // descriptors through /proc, nor trace it.
    if let Err(err) = crate::run::make_not_dumpable() {
        eprintln!("warning: cannot make kiln not dumpable (prctl PR_SET_DUMPABLE): {err}");
    }
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
    eprintln!("error: {}", one_line(error));
    ExitCode::FAILURE
}

/// The error and its causes joined with ": ", one line a user can grep.
/// Many errors already quote their cause in their own message; a cause
/// whose text is already there is not repeated.
fn one_line(error: &anyhow::Error) -> String {
    let mut message = error.to_string();
    for cause in error.chain().skip(1) {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
    }
    message
}

/// Runs the build the options describe and prints, on stdout, what a
/// script wants to capture: the pushed `name@digest` references (or the
/// digest, when nothing was pushed).
pub async fn execute(options: BuildOptions) -> anyhow::Result<()> {
    use crate::drivers::{self, Outcome};
    let report_to = options.k8s.build_request.clone();
    let started = std::time::Instant::now();
    let result = drivers::run(options).await;
    if let Some(target) = report_to {
        let reported = result.as_ref().map(Clone::clone).map_err(one_line);
        drivers::k8s::report::report(&target, &reported, started.elapsed()).await;
    }
    match result? {
        Outcome::Image(outcome) => {
            for pushed in &outcome.pushed {
                println!("{pushed}");
            }
            if outcome.pushed.is_empty() {
                println!("{}", outcome.digest);
            }
        }
        Outcome::Platforms { platforms, index } => {
            for build in &platforms {
                let outcome = &build.outcome;
                // The layer cache's counts, when it looked anything up.
                let cache = match outcome.cache_hits + outcome.cache_misses {
                    0 => String::new(),
                    _ => format!(
                        " ({} cache hits, {} cache misses)",
                        outcome.cache_hits, outcome.cache_misses
                    ),
                };
                eprintln!("{}: {}{cache}", build.platform, outcome.digest);
            }
            match index {
                Some(index) => index.references.iter().for_each(|r| println!("{r}")),
                None => platforms
                    .iter()
                    .for_each(|b| b.outcome.pushed.iter().for_each(|p| println!("{p}"))),
            }
        }
        // A dry run of the ci driver pushes nothing: its digest is the result.
        Outcome::Index(index) if index.references.is_empty() => println!("{}", index.digest),
        Outcome::Index(index) => index.references.iter().for_each(|r| println!("{r}")),
        Outcome::Plan(plan) => print!("{plan}"),
        Outcome::Submitted(lines) => lines.iter().for_each(|l| println!("{l}")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[derive(Debug, thiserror::Error)]
    #[error("reading Dockerfile /ctx/Dockerfile: {source}")]
    struct Quoting {
        source: std::io::Error,
    }

    #[test]
    fn causes_are_joined_once() {
        let io = || std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory");
        let quoted = anyhow::Error::new(Quoting { source: io() });
        assert_eq!(
            one_line(&quoted),
            "reading Dockerfile /ctx/Dockerfile: No such file or directory"
        );
        let wrapped = anyhow::Error::new(io()).context("fetching the context");
        assert_eq!(
            one_line(&wrapped),
            "fetching the context: No such file or directory"
        );
    }
}
