//! `--driver=local`: every platform built on this machine, concurrently up
//! to the number of cores, each pushed by digest, then one index naming
//! them all.
//!
//! The host's platform builds natively. A foreign platform builds when
//! none of its stages has to execute code for it — no RUN, or RUN only in
//! stages `FROM --platform=$BUILDPLATFORM` (cross-compilation) — or, with
//! `--emulation=qemu`, when the kernel has a qemu-user interpreter
//! registered for every foreign architecture its RUNs execute for. That is
//! decided before any work starts.

use std::sync::Arc;

use tokio::sync::Semaphore;
use tracing::{info, warn};

use crate::build::{BuildError, BuildOutcome, OutputPlan, PushMode, Session};
use crate::dockerfile::InstructionKind;
use crate::options::BuildOptions;
use crate::options::{Emulation, Isolation};
use crate::platform::Platform;
use crate::run::emulation::{self, BINFMT_MISC_DIR_ENV, EmulationError, Interpreter};

/// A RUN that would execute code for a platform this machine cannot run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignRun {
    pub platform: Platform,
    pub line: usize,
    pub instruction: String,
}

impl std::fmt::Display for ForeignRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{platform} cannot be built on this {host} machine: Dockerfile:{line} `{instruction}` runs code for {platform}. \
             Build it on native nodes with --driver=k8s, or emulate it with --emulation=qemu",
            platform = self.platform,
            host = Platform::host(),
            line = self.line,
            instruction = self.instruction,
        )
    }
}

impl ForeignRun {
    /// Why emulation cannot run this RUN, and what to do: `--emulation=qemu`
    /// asked for it, `auto` (the default) found no interpreter.
    fn emulation_refused(&self, mode: Emulation, why: &EmulationError) -> String {
        let asked = match mode {
            Emulation::Qemu => " with --emulation=qemu",
            Emulation::Auto | Emulation::None => "",
        };
        format!(
            "{platform} cannot be built on this {host} machine{asked}: \
             Dockerfile:{line} `{instruction}` runs code for {platform}, and {why}",
            platform = self.platform,
            host = Platform::host(),
            line = self.line,
            instruction = self.instruction,
        )
    }
}

/// Every RUN a build of `platform` would have to execute for a foreign
/// architecture, the first of each stage, in stage order. A stage runs for
/// its `FROM --platform` when given, else for `platform`.
pub fn foreign_runs(
    session: &Session,
    options: &BuildOptions,
    platform: &Platform,
    host: &Platform,
) -> Result<Vec<ForeignRun>, BuildError> {
    let (_, plan) = session.plan(options, platform)?;
    let mut found = Vec::new();
    for planned in &plan.stages {
        let stage_platform = match &planned.platform {
            Some(text) => text.parse::<Platform>().map_err(BuildError::from)?,
            None => platform.clone(),
        };
        if host.accepts(&stage_platform) {
            continue;
        }
        let stage = &session.dockerfile().stages[planned.index];
        if let Some(run) = stage
            .instructions
            .iter()
            .find(|i| matches!(i.kind, InstructionKind::Run(_)))
        {
            found.push(ForeignRun {
                platform: stage_platform,
                line: run.line,
                instruction: run.text.clone(),
            });
        }
    }
    Ok(found)
}

/// A foreign architecture whose RUNs execute under emulation, for one of
/// the build's platforms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emulated {
    /// The platform being built.
    pub platform: Platform,
    /// The architecture the RUNs execute for (the platform itself, or a
    /// stage's `FROM --platform`).
    pub runs_for: Platform,
    pub interpreter: Interpreter,
}

/// Fails, before any work, when building `platforms` would execute code
/// for an architecture this machine cannot run: without `--emulation`
/// always, with `--emulation=qemu` when binfmt_misc has no usable
/// interpreter for it. Returns what runs under emulation.
pub fn refuse_foreign(
    session: &Session,
    options: &BuildOptions,
    platforms: &[Platform],
) -> Result<Vec<Emulated>, BuildError> {
    let host = Platform::host();
    let mut foreign = Vec::with_capacity(platforms.len());
    for platform in platforms {
        foreign.push((
            platform.clone(),
            foreign_runs(session, options, platform, &host)?,
        ));
    }
    let binfmt_dir = emulation::binfmt_misc_dir(std::env::var_os(BINFMT_MISC_DIR_ENV).as_deref());
    decide_emulation(&foreign, options.multi_platform.emulation, |runs_for| {
        emulation::find_interpreter(&binfmt_dir, runs_for)
    })
    .map_err(BuildError::Other)
}

/// The decision of [`refuse_foreign`]: each platform with the foreign RUNs
/// its build has, the `--emulation` mode, and where an architecture's
/// interpreter is looked up (asked once per platform and architecture).
/// The error is the message for the user.
fn decide_emulation(
    foreign: &[(Platform, Vec<ForeignRun>)],
    mode: Emulation,
    mut interpreter_for: impl FnMut(&Platform) -> Result<Interpreter, EmulationError>,
) -> Result<Vec<Emulated>, String> {
    let mut emulated: Vec<Emulated> = Vec::new();
    for (platform, runs) in foreign {
        for run in runs {
            if mode == Emulation::None {
                return Err(run.to_string());
            }
            if emulated
                .iter()
                .any(|e| &e.platform == platform && e.runs_for == run.platform)
            {
                continue;
            }
            let interpreter =
                interpreter_for(&run.platform).map_err(|why| run.emulation_refused(mode, &why))?;
            emulated.push(Emulated {
                platform: platform.clone(),
                runs_for: run.platform.clone(),
                interpreter,
            });
        }
    }
    Ok(emulated)
}

/// Logs, for `platform`, each architecture its RUNs execute under
/// emulation for: a warning when kiln chose emulation itself
/// (`--emulation=auto`), since it costs time the user may not expect.
fn log_emulation(platform: &Platform, emulated: &[Emulated], mode: Emulation) {
    for e in emulated.iter().filter(|e| &e.platform == platform) {
        match mode {
            Emulation::Auto => warn!("{}", emulation_warning(e)),
            Emulation::Qemu | Emulation::None => info!(
                "[{platform}] RUN for {} executes under qemu-user emulation (binfmt_misc entry {}, {})",
                e.runs_for, e.interpreter.entry, e.interpreter.path
            ),
        }
    }
}

/// The one line `--emulation=auto` says for each emulated architecture.
fn emulation_warning(e: &Emulated) -> String {
    format!(
        "[{platform}] RUN for {runs_for} executes under qemu-user emulation ({entry}), \
         typically 5 to 20 times slower than native; build on native nodes with --driver=k8s, \
         or refuse emulation with --emulation=none",
        platform = e.platform,
        runs_for = e.runs_for,
        entry = e.interpreter.entry,
    )
}

/// A single-platform build: the image is pushed under the destinations'
/// tags (by digest only with `--push-by-digest`, under `<tag>-<platform>`
/// with `--platform-tags`) and written to every file output.
pub async fn build_single(options: &BuildOptions) -> Result<BuildOutcome, BuildError> {
    let platform = options
        .platforms
        .first()
        .cloned()
        .unwrap_or_else(Platform::host);
    let session = Session::open(options).await?;
    let result = build_and_publish(&session, options, platform).await;
    with_cleanup(&session, options, result)
}

/// `--cleanup`: after the build, whether it succeeded or not, `/` is
/// emptied of what an in-place build unpacked there. A failure to do so
/// fails a build that succeeded, and is a warning after one that failed.
fn with_cleanup<T>(
    session: &Session,
    options: &BuildOptions,
    result: Result<T, BuildError>,
) -> Result<T, BuildError> {
    if !options.execution.cleanup {
        return result;
    }
    match (session.clean_up_root(), result) {
        (Ok(()), result) => result,
        (Err(error), Ok(_)) => Err(error),
        (Err(error), Err(failed)) => {
            tracing::warn!("--cleanup: {error}");
            Err(failed)
        }
    }
}

async fn build_and_publish(
    session: &Session,
    options: &BuildOptions,
    platform: Platform,
) -> Result<BuildOutcome, BuildError> {
    let (emulated, _) =
        super::preflight::preflight(session, options, std::slice::from_ref(&platform)).await?;
    log_emulation(&platform, &emulated, options.multi_platform.emulation);
    let image = session.build(options, &platform).await?;
    let multi = &options.multi_platform;
    let mode = if multi.push_by_digest {
        PushMode::DigestOnly
    } else if multi.platform_tags {
        PushMode::DigestAndSuffixedTag(platform.slug())
    } else {
        PushMode::Tags
    };
    session
        .publish(&image, &OutputPlan::from_options(options, mode))
        .await
}

/// One platform's result.
#[derive(Debug, Clone)]
pub struct PlatformBuild {
    pub platform: Platform,
    pub outcome: BuildOutcome,
}

/// Builds and pushes every platform of `options` (by digest; tagged
/// `<tag>-<os>-<arch>` as well with `--platform-tags`, or when no index
/// will name them). Fails before any work when a platform would need
/// emulation that was not asked for or that this machine cannot give;
/// when any platform fails, the error
/// names it and nothing more is published.
pub async fn build_platforms(
    session: Arc<Session>,
    options: Arc<BuildOptions>,
) -> Result<Vec<PlatformBuild>, BuildError> {
    let result = build_all(Arc::clone(&session), Arc::clone(&options)).await;
    with_cleanup(&session, &options, result)
}

async fn build_all(
    session: Arc<Session>,
    options: Arc<BuildOptions>,
) -> Result<Vec<PlatformBuild>, BuildError> {
    let (emulated, _) = super::preflight::preflight(&session, &options, &options.platforms).await?;
    let emulated = Arc::new(emulated);
    let names: Vec<String> = options.platforms.iter().map(|p| p.to_string()).collect();
    info!(
        target: crate::progress::STEP_TARGET,
        platforms = names.len(),
        "building {} platforms: {}",
        names.len(),
        names.join(", ")
    );
    // In place, every platform's stages take the one `/` in turn.
    let cores = match options.execution.isolation {
        Isolation::Inplace => 1,
        Isolation::Chroot => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
    };
    let limit = Arc::new(Semaphore::new(cores));
    let mut tasks = Vec::new();
    for platform in options.platforms.clone() {
        let (session, options, limit, emulated) = (
            Arc::clone(&session),
            Arc::clone(&options),
            Arc::clone(&limit),
            Arc::clone(&emulated),
        );
        // Its lines (pushes, the summary) carry the platform's label.
        let span = tracing::info_span!("platform", platform = %platform);
        tasks.push(tokio::spawn(tracing::Instrument::instrument(
            async move {
                let _permit = limit
                    .acquire()
                    .await
                    .map_err(|e| BuildError::Other(e.to_string()))?;
                log_emulation(&platform, &emulated, options.multi_platform.emulation);
                let image = session.build(&options, &platform).await?;
                let multi = &options.multi_platform;
                let mode = if multi.push_by_digest {
                    PushMode::DigestOnly
                } else if multi.platform_tags || !multi.publish_index {
                    PushMode::DigestAndSuffixedTag(platform.slug())
                } else {
                    PushMode::DigestOnly
                };
                let outcome = session
                    .publish(&image, &OutputPlan::registry_only(&options, mode))
                    .await?;
                Ok::<_, BuildError>(PlatformBuild { platform, outcome })
            },
            span,
        )));
    }
    let mut results = Vec::with_capacity(tasks.len());
    let mut failures = Vec::new();
    let mut codes = Vec::new();
    for (task, platform) in tasks.into_iter().zip(&options.platforms) {
        match task.await {
            Ok(Ok(result)) => results.push(result),
            Ok(Err(error)) => {
                codes.push(error.exit_code());
                failures.push(format!("{platform}: {error}"));
            }
            Err(join) => {
                codes.push(None);
                failures.push(format!("{platform}: build task failed: {join}"));
            }
        }
    }
    if !failures.is_empty() {
        return Err(BuildError::Platforms {
            message: format!(
                "{} of {} platforms failed, no index published:\n  {}",
                failures.len(),
                options.platforms.len(),
                failures.join("\n  ")
            ),
            code: common_code(&codes),
        });
    }
    Ok(results)
}

/// The exit code every failed platform agrees on, if they all have one.
fn common_code(codes: &[Option<i32>]) -> Option<i32> {
    let first = (*codes.first()?)?;
    codes.iter().all(|c| *c == Some(first)).then_some(first)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn platform(text: &str) -> Platform {
        text.parse().unwrap()
    }

    fn run(platform_text: &str, line: usize, instruction: &str) -> ForeignRun {
        ForeignRun {
            platform: platform(platform_text),
            line,
            instruction: instruction.to_string(),
        }
    }

    fn qemu(entry: &str) -> Interpreter {
        Interpreter {
            entry: entry.to_string(),
            path: format!("/usr/libexec/qemu-binfmt/{}-binfmt-P", &entry[5..]),
        }
    }

    /// Interpreters registered for arm64 and s390x only, counting lookups.
    fn registered(
        lookups: &mut Vec<String>,
    ) -> impl FnMut(&Platform) -> Result<Interpreter, EmulationError> + '_ {
        move |p| {
            lookups.push(p.to_string());
            match p.architecture.as_str() {
                "arm64" => Ok(qemu("qemu-aarch64")),
                "s390x" => Ok(qemu("qemu-s390x")),
                _ => Err(EmulationError::NoInterpreter {
                    platform: p.to_string(),
                    dir: PathBuf::from("/proc/sys/fs/binfmt_misc"),
                    machine: 243,
                    qemu_target: "riscv64",
                }),
            }
        }
    }

    #[test]
    fn nothing_foreign_needs_nothing() {
        let foreign = vec![
            (platform("linux/amd64"), vec![]),
            (platform("linux/arm64"), vec![]),
        ];
        for mode in [Emulation::Auto, Emulation::None, Emulation::Qemu] {
            let mut lookups = Vec::new();
            assert_eq!(
                decide_emulation(&foreign, mode, registered(&mut lookups)),
                Ok(vec![])
            );
            assert!(lookups.is_empty(), "{mode:?}: {lookups:?}");
        }
    }

    #[test]
    fn without_emulation_a_foreign_run_is_refused() {
        let foreign = vec![
            (platform("linux/amd64"), vec![]),
            (
                platform("linux/arm64"),
                vec![run("linux/arm64", 3, "RUN make")],
            ),
        ];
        let mut lookups = Vec::new();
        let err =
            decide_emulation(&foreign, Emulation::None, registered(&mut lookups)).unwrap_err();
        assert_eq!(
            err,
            format!(
                "linux/arm64 cannot be built on this {} machine: Dockerfile:3 `RUN make` runs \
                 code for linux/arm64. Build it on native nodes with --driver=k8s, or emulate \
                 it with --emulation=qemu",
                Platform::host()
            )
        );
        assert!(lookups.is_empty());
    }

    #[test]
    fn with_qemu_every_foreign_architecture_needs_an_interpreter() {
        // linux/arm64 runs RUN in two stages for itself and one for s390x
        // (`FROM --platform=linux/s390x`): two lookups.
        let foreign = vec![
            (platform("linux/amd64"), vec![]),
            (
                platform("linux/arm64"),
                vec![
                    run("linux/arm64", 2, "RUN make"),
                    run("linux/s390x", 5, "RUN probe"),
                    run("linux/arm64", 8, "RUN make install"),
                ],
            ),
        ];
        let mut lookups = Vec::new();
        let got = decide_emulation(&foreign, Emulation::Qemu, registered(&mut lookups));
        assert_eq!(
            got,
            Ok(vec![
                Emulated {
                    platform: platform("linux/arm64"),
                    runs_for: platform("linux/arm64"),
                    interpreter: qemu("qemu-aarch64"),
                },
                Emulated {
                    platform: platform("linux/arm64"),
                    runs_for: platform("linux/s390x"),
                    interpreter: qemu("qemu-s390x"),
                },
            ])
        );
        assert_eq!(lookups, ["linux/arm64", "linux/s390x"]);
    }

    #[test]
    fn with_qemu_a_missing_interpreter_is_refused_naming_line_and_ways_out() {
        let foreign = vec![
            (
                platform("linux/arm64"),
                vec![run("linux/arm64", 2, "RUN make")],
            ),
            (
                platform("linux/riscv64"),
                vec![run("linux/riscv64", 2, "RUN make")],
            ),
        ];
        let mut lookups = Vec::new();
        let err =
            decide_emulation(&foreign, Emulation::Qemu, registered(&mut lookups)).unwrap_err();
        assert_eq!(
            err,
            format!(
                "linux/riscv64 cannot be built on this {} machine with --emulation=qemu: \
                 Dockerfile:2 `RUN make` runs code for linux/riscv64, and no qemu-user \
                 interpreter for linux/riscv64 is registered in binfmt_misc \
                 (/proc/sys/fs/binfmt_misc has no entry for ELF machine 243): install \
                 qemu-user-static and register qemu-riscv64 with the F flag (Debian: write the \
                 line of /usr/lib/binfmt.d/qemu-riscv64.conf to \
                 /proc/sys/fs/binfmt_misc/register; scripts/binfmt.sh does it), or build on \
                 native nodes with --driver=k8s",
                Platform::host()
            )
        );
    }

    #[test]
    fn auto_emulates_what_is_registered_and_refuses_the_rest() {
        let arm = vec![(
            platform("linux/arm64"),
            vec![run("linux/arm64", 2, "RUN make")],
        )];
        let mut lookups = Vec::new();
        assert_eq!(
            decide_emulation(&arm, Emulation::Auto, registered(&mut lookups)),
            Ok(vec![Emulated {
                platform: platform("linux/arm64"),
                runs_for: platform("linux/arm64"),
                interpreter: qemu("qemu-aarch64"),
            }])
        );
        let riscv = vec![(
            platform("linux/riscv64"),
            vec![run("linux/riscv64", 2, "RUN make")],
        )];
        let err = decide_emulation(&riscv, Emulation::Auto, registered(&mut lookups)).unwrap_err();
        assert_eq!(
            err,
            format!(
                "linux/riscv64 cannot be built on this {} machine: \
                 Dockerfile:2 `RUN make` runs code for linux/riscv64, and no qemu-user \
                 interpreter for linux/riscv64 is registered in binfmt_misc \
                 (/proc/sys/fs/binfmt_misc has no entry for ELF machine 243): install \
                 qemu-user-static and register qemu-riscv64 with the F flag (Debian: write the \
                 line of /usr/lib/binfmt.d/qemu-riscv64.conf to \
                 /proc/sys/fs/binfmt_misc/register; scripts/binfmt.sh does it), or build on \
                 native nodes with --driver=k8s",
                Platform::host()
            )
        );
        // `none` never looks.
        let mut none_lookups = Vec::new();
        assert!(decide_emulation(&arm, Emulation::None, registered(&mut none_lookups)).is_err());
        assert!(none_lookups.is_empty());
    }

    #[test]
    fn the_auto_warning_names_platform_cost_and_native_builds() {
        let e = Emulated {
            platform: platform("linux/arm64"),
            runs_for: platform("linux/arm64"),
            interpreter: qemu("qemu-aarch64"),
        };
        assert_eq!(
            emulation_warning(&e),
            "[linux/arm64] RUN for linux/arm64 executes under qemu-user emulation \
             (qemu-aarch64), typically 5 to 20 times slower than native; build on native nodes \
             with --driver=k8s, or refuse emulation with --emulation=none"
        );
    }

    #[test]
    fn platforms_share_an_exit_code_only_when_all_agree() {
        let table: [(&[Option<i32>], Option<i32>); 5] = [
            (&[Some(3)], Some(3)),
            (&[Some(3), Some(3)], Some(3)),
            (&[Some(3), Some(4)], None),
            (&[Some(3), None], None),
            (&[], None),
        ];
        for (codes, want) in table {
            assert_eq!(common_code(codes), want, "{codes:?}");
        }
    }
}
