//! What a `--driver=local` build checks before its first step, and
//! `--dry-run` checks the same way so both refuse with the same message:
//! every RUN for a foreign architecture can run here (emulation), every
//! base image has every platform (several platforms), and every
//! destination accepts pushes (unless `--no-push` or
//! `--skip-push-permission-check`, as kaniko) and, when the build pushes
//! OCI manifests with no Docker fallback, accepts an OCI manifest (see
//! [`crate::registry::Registry::check_oci_support`] for how, and its limits).

use crate::build::{BuildError, Session};
use crate::dockerfile::Base;
use crate::drivers::index::rejects_media_type;
use crate::image::media::{Compression, OciMode};
use crate::options::BuildOptions;
use crate::platform::Platform;
use crate::registry::{RegistryError, parse_reference};

use super::local::{Emulated, refuse_foreign};

/// Whether the destinations' push access was checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushCheck {
    Checked,
    /// `--no-push`: nothing to check.
    NoPush,
    /// `--skip-push-permission-check`.
    Skipped,
}

/// Runs every check; returns what runs under emulation and whether push
/// access was checked.
pub async fn preflight(
    session: &Session,
    options: &BuildOptions,
    platforms: &[Platform],
) -> Result<(Vec<Emulated>, PushCheck), BuildError> {
    let emulated = refuse_foreign(session, options, platforms)?;
    // The registry checks are independent: asked at once.
    let bases = async {
        match platforms.len() > 1 {
            true => check_bases(session, options, platforms).await,
            false => Ok(()),
        }
    };
    let ((), push) = futures::try_join!(bases, check_push_access(session, options))?;
    Ok((emulated, push))
}

/// Every base image (and image a stage mounts or copies from) has an
/// entry for the platform its stage is built for. Only a missing platform
/// fails here; other errors (an unreachable registry whose image
/// `--cache-dir` has) are left to the build, which knows the fallbacks.
async fn check_bases(
    session: &Session,
    options: &BuildOptions,
    platforms: &[Platform],
) -> Result<(), BuildError> {
    // (platform, Dockerfile line, image, the platform it is pulled for),
    // in the order a build meets them: the first missing one is reported.
    let mut wanted: Vec<(&Platform, usize, String, Platform)> = Vec::new();
    for platform in platforms {
        let (_, plan) = session.plan(options, platform)?;
        for planned in &plan.stages {
            let stage = &session.dockerfile().stages[planned.index];
            let stage_platform = match &planned.platform {
                Some(text) => text.parse::<Platform>().map_err(BuildError::from)?,
                None => platform.clone(),
            };
            let base = match &planned.base {
                Base::Image(reference) => Some(reference),
                Base::Scratch | Base::Stage(_) => None,
            };
            for image in base.into_iter().chain(&planned.images) {
                let check = (platform, stage.line, image.clone(), stage_platform.clone());
                if !wanted.contains(&check) {
                    wanted.push(check);
                }
            }
        }
    }
    let answers = futures::future::join_all(
        wanted
            .iter()
            .map(|(_, _, image, for_platform)| session.registry().pull_image(image, for_platform)),
    )
    .await;
    for ((platform, line, _, _), answer) in wanted.iter().zip(answers) {
        if let Err(error @ RegistryError::NoMatchingPlatform { .. }) = answer {
            return Err(BuildError::Other(format!(
                "{platform} cannot be built: Dockerfile:{line}: {error}; nothing was \
                 built, no index published. Drop {platform} from the platforms, or use \
                 a base image that has it",
            )));
        }
    }
    Ok(())
}

/// kaniko's push permission check: each destination's registry is asked
/// to start an upload, before anything is built.
async fn check_push_access(
    session: &Session,
    options: &BuildOptions,
) -> Result<PushCheck, BuildError> {
    if options.output.no_push {
        return Ok(PushCheck::NoPush);
    }
    if options.output.skip_push_permission_check {
        return Ok(PushCheck::Skipped);
    }
    for destination in &options.output.destinations {
        let target = parse_reference(destination)?;
        session
            .registry()
            .check_push_access(&target)
            .await
            .map_err(|error| {
                BuildError::Other(format!(
                    "{error}; nothing was built (--skip-push-permission-check builds anyway)"
                ))
            })?;
        if pushes_only_oci(options) {
            session
                .registry()
                .check_oci_support(&target)
                .await
                .map_err(|error| {
                    if rejects_media_type(&error) {
                        BuildError::Other(format!(
                            "registry doesn't support OCI media types: {error}; use \
                             --oci-mode=docker --legacy-manifest-list=true; nothing was built"
                        ))
                    } else {
                        BuildError::Other(format!(
                            "{error}; nothing was built (--skip-push-permission-check builds anyway)"
                        ))
                    }
                })?;
        }
    }
    Ok(PushCheck::Checked)
}

/// Whether the build pushes OCI manifests with no Docker fallback:
/// `--oci-mode=oci`, or `auto` with zstd layers (which a Docker manifest
/// cannot reference). `auto` otherwise falls back where OCI is refused.
pub(super) fn pushes_only_oci(options: &BuildOptions) -> bool {
    match options.output.oci_mode {
        OciMode::Oci => true,
        OciMode::Auto => options.output.compression == Compression::Zstd,
        OciMode::Docker => false,
    }
}
