//! `--driver=local`: every platform built on this machine, concurrently up
//! to the number of cores, each pushed by digest, then one index naming
//! them all.
//!
//! The host's platform builds natively. A foreign platform builds only when
//! none of its stages has to execute code for it — no RUN, or RUN only in
//! stages `FROM --platform=$BUILDPLATFORM` (cross-compilation) — unless
//! `--emulation=qemu` is given. That is decided before any work starts.

use std::sync::Arc;

use tokio::sync::Semaphore;
use tracing::info;

use crate::build::{BuildError, BuildOutcome, OutputPlan, PushMode, Session};
use crate::cli::BuildOptions;
use crate::cli::options::Emulation;
use crate::dockerfile::InstructionKind;
use crate::platform::Platform;

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

/// The first RUN a build of `platform` would have to execute for a foreign
/// architecture, if any. A stage runs for its `FROM --platform` when given,
/// else for `platform`.
pub fn foreign_run(
    session: &Session,
    options: &BuildOptions,
    platform: &Platform,
    host: &Platform,
) -> Result<Option<ForeignRun>, BuildError> {
    let (_, plan) = session.plan(options, platform)?;
    for planned in &plan.stages {
        let stage_platform = match &planned.platform {
            Some(text) => text
                .parse::<Platform>()
                .map_err(|e| BuildError::Other(e.to_string()))?,
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
            return Ok(Some(ForeignRun {
                platform: stage_platform,
                line: run.line,
                instruction: run.text.clone(),
            }));
        }
    }
    Ok(None)
}

/// Fails, before any work, when building `platforms` would execute code
/// for an architecture this machine cannot run and `--emulation` was not
/// asked for.
pub fn refuse_foreign(
    session: &Session,
    options: &BuildOptions,
    platforms: &[Platform],
) -> Result<(), BuildError> {
    if options.multi_platform.emulation != Emulation::None {
        return Ok(());
    }
    let host = Platform::host();
    for platform in platforms {
        if let Some(foreign) = foreign_run(session, options, platform, &host)? {
            return Err(BuildError::Other(foreign.to_string()));
        }
    }
    Ok(())
}

/// A single-platform build: the image is pushed under the destinations'
/// tags and written to every file output.
pub async fn build_single(options: &BuildOptions) -> Result<BuildOutcome, BuildError> {
    let platform = options
        .platforms
        .first()
        .cloned()
        .unwrap_or_else(Platform::host);
    let session = Session::open(options).await?;
    refuse_foreign(&session, options, std::slice::from_ref(&platform))?;
    let image = session.build(options, &platform).await?;
    session
        .publish(&image, &OutputPlan::from_options(options, PushMode::Tags))
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
/// emulation that was not asked for; when any platform fails, the error
/// names it and nothing more is published.
pub async fn build_platforms(
    session: Arc<Session>,
    options: Arc<BuildOptions>,
) -> Result<Vec<PlatformBuild>, BuildError> {
    refuse_foreign(&session, &options, &options.platforms)?;
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let limit = Arc::new(Semaphore::new(cores));
    let mut tasks = Vec::new();
    for platform in options.platforms.clone() {
        let (session, options, limit) = (
            Arc::clone(&session),
            Arc::clone(&options),
            Arc::clone(&limit),
        );
        tasks.push(tokio::spawn(async move {
            let _permit = limit
                .acquire()
                .await
                .map_err(|e| BuildError::Other(e.to_string()))?;
            info!("[{platform}] building");
            let image = session.build(&options, &platform).await?;
            let mode =
                if options.multi_platform.platform_tags || !options.multi_platform.publish_index {
                    PushMode::DigestAndSuffixedTag(platform.slug())
                } else {
                    PushMode::DigestOnly
                };
            let outcome = session
                .publish(&image, &OutputPlan::registry_only(&options, mode))
                .await?;
            info!("[{platform}] done: {}", outcome.digest);
            Ok::<_, BuildError>(PlatformBuild { platform, outcome })
        }));
    }
    let mut results = Vec::with_capacity(tasks.len());
    let mut failures = Vec::new();
    for (task, platform) in tasks.into_iter().zip(&options.platforms) {
        match task.await {
            Ok(Ok(result)) => results.push(result),
            Ok(Err(error)) => failures.push(format!("{platform}: {error}")),
            Err(join) => failures.push(format!("{platform}: build task failed: {join}")),
        }
    }
    if !failures.is_empty() {
        return Err(BuildError::Other(format!(
            "{} of {} platforms failed, no index published:\n  {}",
            failures.len(),
            options.platforms.len(),
            failures.join("\n  ")
        )));
    }
    Ok(results)
}
