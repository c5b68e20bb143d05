//! The `ci` driver (`--driver=ci`): builds nothing. A CI matrix built each
//! platform with `--digest-file=DIR/<os>-<arch>[-<variant>].digest` into
//! the repository of `--destination`; this reads those digests
//! (`--digests-from=DIR`), checks every image in the registry, and
//! publishes the multi-platform index to every destination.

use std::path::Path;

use tracing::{info, warn};

use super::digests::{self, DigestsError, PlatformDigest};
use super::index::{
    self, IndexOutcome, IndexPlan, IndexPlanError, PublishError, VerifyError, plan_index,
};
use crate::build;
use crate::image::{Descriptor, OciMode};
use crate::options::BuildOptions;
use crate::platform::Platform;
use crate::registry::names::destination_repositories;
use crate::registry::{Reference, Registry, RegistryError};

#[derive(Debug, thiserror::Error)]
pub enum CiError {
    #[error(
        "the ci driver only publishes indexes: it builds nothing and combines the per-platform images named in --digests-from into one index; drop --publish-index=false"
    )]
    NotPublishing,
    #[error(
        "the ci driver needs --digests-from=DIR: the directory where each platform's build wrote --digest-file=DIR/<os>-<arch>[-<variant>].digest"
    )]
    NoDigestsFrom,
    #[error(
        "the ci driver needs --destination: the index is pushed there, and the platform images must already be in its repository"
    )]
    NoDestination,
    #[error(
        "the ci driver needs the platform list: --multi-platform=linux/amd64,linux/arm64 (or a comma list in --platform)"
    )]
    NoPlatforms,
    #[error(
        "--no-push: the ci driver's only output is the index it pushes to --destination; drop --no-push (or use --dry-run to check the images without publishing)"
    )]
    NoPush,
    #[error(transparent)]
    Digests(#[from] DigestsError),
    /// A digest file's image failed its check; `file` is the digest file.
    #[error("{file}: {error}")]
    Child {
        file: String,
        error: Box<VerifyError>,
    },
    #[error(transparent)]
    Plan(#[from] IndexPlanError),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// What the ci driver needs from the options, checked.
#[derive(Debug, PartialEq, Eq)]
struct CiInputs<'a> {
    digests_from: &'a Path,
    oci_mode: OciMode,
}

/// Refuses option sets the ci driver cannot act on.
fn check_options(options: &BuildOptions) -> Result<CiInputs<'_>, CiError> {
    let multi = &options.multi_platform;
    if !multi.publish_index {
        return Err(CiError::NotPublishing);
    }
    let digests_from = multi
        .digests_from
        .as_deref()
        .ok_or(CiError::NoDigestsFrom)?;
    if options.platforms.is_empty() {
        return Err(CiError::NoPlatforms);
    }
    if options.output.destinations.is_empty() {
        return Err(CiError::NoDestination);
    }
    if options.output.no_push && !multi.dry_run {
        return Err(CiError::NoPush);
    }
    Ok(CiInputs {
        digests_from,
        oci_mode: build::oci_mode(options),
    })
}

/// Checks every child in every destination repository and returns the
/// index entries; a failure names the digest file.
async fn verify_children(
    registry: &Registry,
    repositories: &[Reference],
    digests: &[PlatformDigest],
) -> Result<Vec<(Descriptor, Platform)>, CiError> {
    let children: Vec<(Platform, String)> = digests
        .iter()
        .map(|d| (d.platform.clone(), d.digest.clone()))
        .collect();
    index::verify_in_every_repository(registry, repositories, &children)
        .await
        .map_err(|(i, error)| CiError::Child {
            file: digests[i].file_name(),
            error: Box::new(error),
        })
}

/// Runs the ci driver: reads `--digests-from`, verifies each platform's
/// image in the first destination's repository (and in every other
/// destination repository, which must hold them too), chooses the index
/// format, publishes it to every `--destination` and writes the digest
/// files. With `--dry-run` everything is checked (including push access)
/// and nothing is pushed or written; the outcome then has no references.
pub async fn run_ci(options: &BuildOptions) -> Result<IndexOutcome, CiError> {
    let inputs = check_options(options)?;
    // A key that cannot be opened stops the driver before it reads anything.
    let signer = crate::build::load_signer(options).map_err(index::PublishError::from)?;
    let multi = &options.multi_platform;
    for (flag, set) in [
        ("--tar-path", options.output.tar_path.is_some()),
        (
            "--oci-layout-path",
            options.output.oci_layout_path.is_some(),
        ),
    ] {
        if set {
            warn!(
                "{flag} is ignored by the ci driver: it builds nothing and only publishes an index"
            );
        }
    }

    let found = digests::read_digests(inputs.digests_from, &options.platforms)?;
    for child in &found {
        info!(
            "{}: {} is {}",
            child.file_name(),
            child.platform,
            child.digest
        );
    }

    let registry = Registry::new(options.registry.clone())?;
    let repositories = destination_repositories(&options.output.destinations)?;
    let children = verify_children(&registry, &repositories, &found).await?;

    let plan: IndexPlan = plan_index(
        inputs.oci_mode,
        multi.legacy_manifest_list,
        &children,
        &multi.index_annotations,
    )?;

    if multi.dry_run {
        for repo in &repositories {
            registry.check_push_access(repo).await?;
        }
        let blob = crate::image::index_blob(plan.format, &children, &multi.index_annotations)
            .map_err(PublishError::from)?;
        info!(
            "dry run: would publish {} {} to {}",
            blob.media_type,
            blob.digest,
            options.output.destinations.join(", ")
        );
        return Ok(IndexOutcome {
            digest: blob.digest.clone(),
            media_type: blob.media_type.clone(),
            size: blob.bytes.len() as u64,
            references: Vec::new(),
        });
    }

    let outcome =
        index::publish_to_destinations(&registry, options, &children, plan, signer.as_ref())
            .await?;
    Ok(outcome)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn options(args: &[&str]) -> BuildOptions {
        let mut all = vec!["kiln"];
        all.extend_from_slice(args);
        let args = <crate::cli::Args as clap::Parser>::try_parse_from(all).unwrap();
        let mut options = args.into_options_with_env(&|_| None).unwrap();
        options.platforms = crate::platform::parse_list("linux/amd64,linux/arm64").unwrap();
        options.multi_platform.driver = crate::options::Driver::Ci;
        options.multi_platform.publish_index = true;
        options.multi_platform.digests_from = Some(std::path::PathBuf::from("/out"));
        options
    }

    #[test]
    fn options_the_ci_driver_refuses() {
        type Edit = fn(&mut BuildOptions);
        let table: Vec<(Edit, &str)> = vec![
            (
                |o| o.multi_platform.publish_index = false,
                "the ci driver only publishes indexes: it builds nothing and combines the per-platform images named in --digests-from into one index; drop --publish-index=false",
            ),
            (
                |o| o.multi_platform.digests_from = None,
                "the ci driver needs --digests-from=DIR: the directory where each platform's build wrote --digest-file=DIR/<os>-<arch>[-<variant>].digest",
            ),
            (
                |o| o.platforms.clear(),
                "the ci driver needs the platform list: --multi-platform=linux/amd64,linux/arm64 (or a comma list in --platform)",
            ),
            (
                |o| o.output.destinations.clear(),
                "the ci driver needs --destination: the index is pushed there, and the platform images must already be in its repository",
            ),
            (
                |o| o.output.no_push = true,
                "--no-push: the ci driver's only output is the index it pushes to --destination; drop --no-push (or use --dry-run to check the images without publishing)",
            ),
        ];
        for (edit, want) in table {
            let mut o = options(&["--destination=127.0.0.1:5000/app:1"]);
            edit(&mut o);
            assert_eq!(check_options(&o).unwrap_err().to_string(), want);
        }
    }

    #[test]
    fn oci_mode_flag_maps_to_the_image_mode() {
        let table = [
            ("--oci-mode=oci", OciMode::Oci),
            ("--oci-mode=docker", OciMode::Docker),
            ("--oci-mode=auto", OciMode::Auto),
        ];
        for (flag, want) in table {
            let o = options(&["--destination=127.0.0.1:5000/app:1", flag]);
            assert_eq!(
                check_options(&o).unwrap(),
                CiInputs {
                    digests_from: Path::new("/out"),
                    oci_mode: want
                },
                "{flag}"
            );
        }
        let mut dry = options(&["--destination=127.0.0.1:5000/app:1"]);
        dry.output.no_push = true;
        dry.multi_platform.dry_run = true;
        assert!(check_options(&dry).is_ok());
    }

    #[test]
    fn repositories_are_listed_once_first_destination_first() {
        let destinations: Vec<String> = [
            "127.0.0.1:5000/app:sha",
            "127.0.0.1:5000/app:latest",
            "127.0.0.1:5000/mirror/app:sha",
            "localhost:5001/app:1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let got: Vec<String> = destination_repositories(&destinations)
            .unwrap()
            .iter()
            .map(Reference::whole)
            .collect();
        assert_eq!(
            got,
            [
                "127.0.0.1:5000/app:sha",
                "127.0.0.1:5000/mirror/app:sha",
                "localhost:5001/app:1"
            ]
        );
    }
}
