//! The `kiln` command line: kaniko's flags plus kiln's own.
//!
//! `args` defines the flags, `validate` turns them into the typed
//! `options` the build engine consumes, `logging` sets up stderr logs.

pub mod args;
pub mod choices;
pub mod kaniko;
pub mod logging;
pub mod reference;
pub mod validate;
pub mod values;

use std::process::ExitCode;

use clap::Parser;

pub use crate::options::{self, BuildOptions};
pub use args::Args;
pub use logging::init_logging;
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
    if let [from, to] = args.registry.copy_docker_config.as_slice() {
        return match crate::registry::copy_docker_config(from, to) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => report(&error.into()),
        };
    }
    // Before anything is fetched or run: from here on the credentials are
    // in kiln's memory only.
    if let Some(path) = &args.registry.take_docker_config {
        let taken = crate::registry::take_docker_config(path).map_err(anyhow::Error::from);
        if let Err(error) = taken.and_then(|taken| {
            crate::registry::install_taken_docker_config(taken)
                .map_err(|_| anyhow::anyhow!("a docker config was already taken"))
        }) {
            return report(&error);
        }
    }
    {
        use std::io::IsTerminal;
        crate::progress::install(crate::progress::choose(
            logging.progress,
            std::io::stderr().is_terminal(),
            logging.log_format == logging::LogFormat::Json,
        ));
    }
    let outcome = args
        .into_options()
        .map_err(anyhow::Error::from)
        .and_then(|options| {
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(execute_interruptible(options))
        });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => report(&error),
    }
}

/// [`execute`], unless SIGTERM or SIGINT comes first: then the running
/// RUN steps are killed, the work directories (with any secret) removed,
/// one line printed, and kiln exits with 128 + the signal (143, 130).
/// `--driver=k8s` keeps its own Ctrl-C dialogue and the default SIGTERM.
async fn execute_interruptible(options: BuildOptions) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    if options.multi_platform.driver == options::Driver::K8s {
        return execute(options).await;
    }
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    // Not dropped on a signal: its work directory stays registered (and
    // on disk) until `clean_up` has killed the steps that use it.
    let build = execute(options);
    tokio::pin!(build);
    let (name, number) = tokio::select! {
        result = &mut build => return result,
        _ = terminate.recv() => ("SIGTERM", 15),
        _ = interrupt.recv() => ("SIGINT", 2),
    };
    // Blocking this thread is fine: kiln exits right after. No early
    // return from here on: dropping `build` now would wait for the
    // registry `clean_up` keeps locked.
    let cleaned = crate::run::interrupt::clean_up();
    match logging::json_lines() {
        true => tracing::error!(
            exit_code = 128 + number,
            "{}",
            interrupted_line(name, &cleaned).trim_start_matches("error: ")
        ),
        false => eprintln!("{}", interrupted_line(name, &cleaned)),
    }
    std::process::exit(128 + number);
}

/// The one line kiln prints when a signal stops the build.
fn interrupted_line(signal: &str, cleaned: &crate::run::interrupt::Cleaned) -> String {
    let mut line = format!(
        "error: interrupted by {signal}: killed {} running RUN step(s), removed {} temporary director{}",
        cleaned.steps_killed,
        cleaned.directories_removed,
        if cleaned.directories_removed == 1 {
            "y"
        } else {
            "ies"
        },
    );
    for (path, err) in &cleaned.directories_kept {
        line.push_str(&format!(
            "; could not remove {} ({err}): delete it, it may hold secrets",
            path.display()
        ));
    }
    line
}

fn report(error: &anyhow::Error) -> ExitCode {
    let message = one_line(error);
    let code = exit_code(error);
    // With --log-format=json the error is one more object of the stream.
    match logging::json_lines() {
        true => tracing::error!(exit_code = exit_code_number(error), "{message}"),
        false => eprintln!("error: {message}"),
    }
    code
}

/// The number [`exit_code`] exits with.
fn exit_code_number(error: &anyhow::Error) -> u8 {
    error
        .chain()
        .find_map(|cause| {
            // A driver's error forwards to its cause (transparent), so the
            // build error inside it is not a link of the chain itself.
            cause
                .downcast_ref::<crate::drivers::DriverError>()
                .map(crate::drivers::DriverError::exit_code)
                .or_else(|| {
                    cause
                        .downcast_ref::<crate::build::BuildError>()
                        .map(crate::build::BuildError::exit_code)
                })
        })
        .flatten()
        .and_then(|c| u8::try_from(c).ok())
        .filter(|c| *c != 0)
        .unwrap_or(1)
}

/// A failed RUN's own exit code, as `docker build` and a shell script
/// would end with; 1 for every other failure.
fn exit_code(error: &anyhow::Error) -> ExitCode {
    ExitCode::from(exit_code_number(error))
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
    let result = drivers::run(options).await.map_err(anyhow::Error::from);
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
                tracing::info!("{}: {}{cache}", build.platform, outcome.digest);
            }
            match index {
                // Every tag kept its image (--push-ignore-immutable-tag-errors):
                // the index built is the result.
                Some(index) if index.references.is_empty() => println!("{}", index.digest),
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
    use super::{interrupted_line, one_line};
    use crate::run::interrupt::Cleaned;

    #[test]
    fn interrupted_line_is_one_line() {
        let cases = [
            (
                Cleaned {
                    steps_killed: 1,
                    directories_removed: 1,
                    directories_kept: vec![],
                },
                "error: interrupted by SIGTERM: killed 1 running RUN step(s), removed 1 temporary \
                 directory",
            ),
            (
                Cleaned {
                    steps_killed: 0,
                    directories_removed: 0,
                    directories_kept: vec![("/tmp/kiln-x".into(), "busy".to_string())],
                },
                "error: interrupted by SIGTERM: killed 0 running RUN step(s), removed 0 temporary \
                 directories; could not remove /tmp/kiln-x (busy): delete it, it may hold secrets",
            ),
        ];
        for (cleaned, want) in cases {
            assert_eq!(interrupted_line("SIGTERM", &cleaned), want);
        }
    }

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
