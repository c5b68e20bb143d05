//! Publishing a multi-platform index (`--publish-index`): checking each
//! child in the registry, choosing OCI image index or Docker manifest list,
//! and pushing the index to every destination.
//!
//! The choice of format is a function of values ([`plan_index`]); the
//! registry work ([`verify_child`], [`publish_index`]) goes through the one
//! [`Registry`] client and the index bytes come from
//! [`crate::image::index_blob`], so the ci driver, the local driver and the
//! operator publish the same bytes for the same children.

use std::collections::BTreeMap;
use std::str::FromStr;

use tracing::{info, warn};

use crate::attest::AttestLayout;
use crate::attest::buildkit_layout::{LayoutError, publish_attestation_manifests};
use crate::image::media::{self, ManifestFormat, OciMode};
use crate::image::{
    ConfigError, Descriptor, IndexError, ManifestError, index_blob_with_attestations, parse_config,
};
use crate::platform::Platform;
use crate::registry::names::{destination_repositories, repository_of};
use crate::registry::{Access, Reference, Registry, RegistryError, parse_reference};

/// The index to publish: its format, and whether a registry that refuses
/// the OCI index may be given a Docker manifest list instead
/// (`--oci-mode=auto`, possible only when every child is a Docker manifest
/// and there are no index annotations).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexPlan {
    pub format: ManifestFormat,
    pub docker_fallback: bool,
}

/// What was published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexOutcome {
    /// `sha256:…` of the index bytes.
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    /// `name@digest` for each destination, in the order given.
    pub references: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IndexPlanError {
    #[error(
        "{flag} asks for a Docker manifest list, but the image for {platform} ({digest}) is an OCI image manifest, which a Docker manifest list cannot list without mislabelling it; rebuild that platform with --oci-mode=docker, or publish an OCI index (--oci-mode=oci without --legacy-manifest-list)"
    )]
    OciChildInDockerList {
        flag: &'static str,
        platform: String,
        digest: String,
    },
    #[error(
        "{flag} asks for a Docker manifest list, which cannot carry --index-annotations ({keys}); drop the annotations, or publish an OCI index (--oci-mode=oci without --legacy-manifest-list)"
    )]
    AnnotationsOnDockerList { flag: &'static str, keys: String },
    #[error(
        "the image for {platform} ({digest}) has media type {media_type}, which is not an image manifest an index can list"
    )]
    NotAManifest {
        platform: String,
        digest: String,
        media_type: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(
        "manifest {digest} for {platform} is not in {repository}; push each platform's image to {repository} before publishing the index ({error})"
    )]
    NotFound {
        digest: String,
        platform: String,
        repository: String,
        error: RegistryError,
    },
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(
        "manifest {digest} in {repository} is {what} ({media_type}), not a single-platform image manifest; name the platform's own image manifest, as --digest-file writes it"
    )]
    NotAnImageManifest {
        digest: String,
        repository: String,
        what: &'static str,
        media_type: String,
    },
    #[error("manifest {digest} in {repository}: {error}")]
    Manifest {
        digest: String,
        repository: String,
        error: ManifestError,
    },
    #[error("config {config} of manifest {digest} in {repository}: {error}")]
    Config {
        config: String,
        digest: String,
        repository: String,
        error: String,
    },
    #[error("manifest {digest} is for {found}, not {wanted}")]
    PlatformMismatch {
        digest: String,
        found: String,
        wanted: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("no --destination to publish the index to")]
    NoDestination,
    #[error(
        "--destination={0} names a digest; an index is published under a tag (e.g. {1}:latest)"
    )]
    DigestDestination(String, String),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The wording and the advice are the seed guides'.
    #[error(
        "registry doesn't support OCI media types: {error}; use --oci-mode=docker --legacy-manifest-list=true{extra}"
    )]
    OciRejected {
        error: Box<RegistryError>,
        extra: String,
    },
    #[error(transparent)]
    DigestFiles(#[from] crate::build::BuildError),
    #[error(transparent)]
    Sign(#[from] crate::attest::sign::SignError),
    #[error("--attest-layout=buildkit: {0}")]
    AttestationManifests(#[from] LayoutError),
}

/// Publishes the index to every `--destination`, signs it there with
/// `signer` (`--sign-key`), and writes its digest where the digest-file
/// flags ask: the last step of both drivers.
pub async fn publish_to_destinations(
    registry: &Registry,
    options: &crate::options::BuildOptions,
    children: &[(Descriptor, Platform)],
    plan: IndexPlan,
    signer: Option<&crate::attest::sign::Signer>,
) -> Result<IndexOutcome, PublishError> {
    let output = &options.output;
    let attestations = match output.attest_layout {
        AttestLayout::Referrers => Vec::new(),
        AttestLayout::BuildKit => {
            let repositories = destination_repositories(&output.destinations)?;
            publish_attestation_manifests(registry, &repositories, children).await?
        }
    };
    let outcome = publish_index(
        registry,
        &output.destinations,
        children,
        &attestations,
        plan,
        &options.multi_platform.index_annotations,
        output.push_ignore_immutable_tag_errors,
    )
    .await?;
    if let Some(signer) = signer {
        for repository in crate::attest::repositories_of(&outcome.references) {
            let signature =
                crate::attest::sign::push_signature(registry, signer, repository, &outcome.digest)
                    .await?;
            info!("signed index {repository}@{} ({signature})", outcome.digest);
        }
    }
    crate::build::write_digest_files(
        &output.destinations,
        crate::build::DigestFiles::from_output(output),
        &outcome.digest,
    )?;
    Ok(outcome)
}

/// Chooses the index format. `--legacy-manifest-list` or `--oci-mode=docker`
/// give a Docker manifest list, which can only list Docker manifests and
/// carries no annotations: anything else is refused rather than
/// mislabelled. Otherwise an OCI image index, which lists either family.
pub fn plan_index(
    oci_mode: OciMode,
    legacy_manifest_list: bool,
    children: &[(Descriptor, Platform)],
    annotations: &BTreeMap<String, String>,
) -> Result<IndexPlan, IndexPlanError> {
    let mut all_docker = true;
    for (descriptor, platform) in children {
        match ManifestFormat::of_manifest(&descriptor.media_type) {
            Some(ManifestFormat::Docker) => {}
            Some(ManifestFormat::Oci) => all_docker = false,
            None => {
                return Err(IndexPlanError::NotAManifest {
                    platform: platform.to_string(),
                    digest: descriptor.digest.clone(),
                    media_type: descriptor.media_type.clone(),
                });
            }
        }
    }
    let docker_flag = if legacy_manifest_list {
        Some("--legacy-manifest-list")
    } else if oci_mode == OciMode::Docker {
        Some("--oci-mode=docker")
    } else {
        None
    };
    let Some(flag) = docker_flag else {
        return Ok(IndexPlan {
            format: ManifestFormat::Oci,
            docker_fallback: oci_mode == OciMode::Auto && all_docker && annotations.is_empty(),
        });
    };
    if let Some((descriptor, platform)) = children
        .iter()
        .find(|(d, _)| d.media_type != media::DOCKER_MANIFEST)
    {
        return Err(IndexPlanError::OciChildInDockerList {
            flag,
            platform: platform.to_string(),
            digest: descriptor.digest.clone(),
        });
    }
    if !annotations.is_empty() {
        return Err(IndexPlanError::AnnotationsOnDockerList {
            flag,
            keys: annotations.keys().cloned().collect::<Vec<_>>().join(", "),
        });
    }
    Ok(IndexPlan {
        format: ManifestFormat::Docker,
        docker_fallback: false,
    })
}

/// Checks that `digest` in `repo`'s repository is an image manifest (OCI
/// or Docker v2 schema 2) whose config says `platform`, and returns its
/// descriptor for the index. Reads with the destination's flags
/// (`Access::Push`).
pub async fn verify_child(
    registry: &Registry,
    repo: &Reference,
    digest: &str,
    platform: &Platform,
) -> Result<Descriptor, VerifyError> {
    let repository = repository_of(repo);
    let reference = repo.clone_with_digest(digest.to_string());
    let (bytes, media_type, _) = registry
        .fetch_manifest_raw(&reference, Access::Push)
        .await
        .map_err(|error| {
            if error.is_not_found() {
                VerifyError::NotFound {
                    digest: digest.to_string(),
                    platform: platform.to_string(),
                    repository: repository.clone(),
                    error,
                }
            } else {
                VerifyError::Registry(error)
            }
        })?;
    if ManifestFormat::of_manifest(&media_type).is_none() {
        let what = match media_type.as_str() {
            media::OCI_INDEX => "an OCI image index",
            media::DOCKER_MANIFEST_LIST => "a Docker manifest list",
            _ => "not an image manifest",
        };
        return Err(VerifyError::NotAnImageManifest {
            digest: digest.to_string(),
            repository,
            what,
            media_type,
        });
    }
    let manifest = crate::image::parse_manifest(&bytes, Some(&media_type)).map_err(|error| {
        VerifyError::Manifest {
            digest: digest.to_string(),
            repository: repository.clone(),
            error,
        }
    })?;
    let config_error = |error: String| VerifyError::Config {
        config: manifest.config.digest.clone(),
        digest: digest.to_string(),
        repository: repository.clone(),
        error,
    };
    let config_digest = oci_spec::image::Digest::from_str(&manifest.config.digest)
        .map_err(|e| config_error(e.to_string()))?;
    let config_descriptor = oci_spec::image::Descriptor::new(
        oci_spec::image::MediaType::from(manifest.config.media_type.as_str()),
        manifest.config.size,
        config_digest,
    );
    let config_bytes = registry
        .fetch_blob_bytes(&reference, &config_descriptor, Access::Push)
        .await?;
    let config = parse_config(&config_bytes).map_err(|error| match error {
        ConfigError::Parse(e) => config_error(format!("not an image config: {e}")),
        other => config_error(other.to_string()),
    })?;
    let found = Platform::new(&config.os, &config.architecture, config.variant.as_deref());
    if &found != platform {
        return Err(VerifyError::PlatformMismatch {
            digest: digest.to_string(),
            found: found.to_string(),
            wanted: platform.to_string(),
        });
    }
    Ok(Descriptor::new(&media_type, digest, bytes.len() as u64))
}

/// Checks every `(platform, digest)` child in `repo` with [`verify_child`],
/// all at once, and returns the index entries in the order given. The
/// error reported is the first in that order, with its position.
pub async fn verify_children(
    registry: &Registry,
    repo: &Reference,
    children: &[(Platform, String)],
) -> Result<Vec<(Descriptor, Platform)>, (usize, VerifyError)> {
    let checks = children
        .iter()
        .enumerate()
        .map(|(i, (platform, digest))| async move {
            verify_child(registry, repo, digest, platform)
                .await
                .map(|descriptor| (descriptor, platform.clone()))
                .map_err(|error| (i, error))
        });
    futures::future::join_all(checks)
        .await
        .into_iter()
        .collect()
}

/// Checks every child in every destination repository (an index pushed to
/// a repository must find its children there) and returns the entries of
/// the first, which name the children for the index. The error is the
/// first failure, with the child's position.
pub async fn verify_in_every_repository(
    registry: &Registry,
    repositories: &[Reference],
    children: &[(Platform, String)],
) -> Result<Vec<(Descriptor, Platform)>, (usize, VerifyError)> {
    let mut entries = Vec::new();
    for (i, repo) in repositories.iter().enumerate() {
        let verified = verify_children(registry, repo, children).await?;
        if i == 0 {
            entries = verified;
        }
    }
    Ok(entries)
}

/// A registry that refuses a manifest for its media type answers 400
/// (MANIFEST_INVALID, UNSUPPORTED) or 415. A 400 about missing children
/// (MANIFEST_BLOB_UNKNOWN) is not about the media type.
pub fn rejects_media_type(error: &RegistryError) -> bool {
    let status = error.status();
    let blob_unknown = error.to_string().contains("BLOB_UNKNOWN");
    matches!(status, Some(400 | 415)) && !blob_unknown
}

/// `registry/repo:tag` (as typed) → `registry/repo`.
pub fn name_of(destination: &str) -> &str {
    let without_digest = destination.split('@').next().unwrap_or(destination);
    match without_digest.rfind(':') {
        Some(colon) if !without_digest[colon..].contains('/') => &without_digest[..colon],
        _ => without_digest,
    }
}

/// Builds the index over `children` (in order) with
/// [`crate::image::index_blob`] and pushes it to every destination under
/// the tag it names. With `plan.docker_fallback`, a registry that refuses
/// the OCI index gets a Docker manifest list instead — at every
/// destination, so all of them hold the same digest. With
/// `ignore_immutable_tags` (`--push-ignore-immutable-tag-errors`), a
/// destination whose existing tag the registry refuses to overwrite keeps
/// its image with a warning, and is left out of the references.
pub async fn publish_index(
    registry: &Registry,
    destinations: &[String],
    children: &[(Descriptor, Platform)],
    attestations: &[Descriptor],
    plan: IndexPlan,
    annotations: &BTreeMap<String, String>,
    ignore_immutable_tags: bool,
) -> Result<IndexOutcome, PublishError> {
    if destinations.is_empty() {
        return Err(PublishError::NoDestination);
    }
    let mut targets = Vec::with_capacity(destinations.len());
    for destination in destinations {
        let target = parse_reference(destination)?;
        if target.digest().is_some() {
            return Err(PublishError::DigestDestination(
                destination.clone(),
                name_of(destination).to_string(),
            ));
        }
        targets.push(target);
    }
    let mut format = plan.format;
    'formats: loop {
        let blob = index_blob_with_attestations(format, children, attestations, annotations)?;
        // The destinations whose tag now names this index.
        let mut pushed = Vec::with_capacity(targets.len());
        for (target, destination) in targets.iter().zip(destinations) {
            match registry
                .push_manifest_raw(target, &blob.bytes, &blob.media_type)
                .await
            {
                Ok(_) => {
                    info!("pushed index {target}@{}", blob.digest);
                    pushed.push(destination);
                }
                Err(error)
                    if ignore_immutable_tags
                        && error.refuses_immutable_tag()
                        && registry
                            .fetch_manifest_raw(target, Access::Push)
                            .await
                            .is_ok() =>
                {
                    warn!(
                        "{destination} exists and the registry refused to overwrite it ({error}); \
                         it keeps its image, the index {} is not published there \
                         (--push-ignore-immutable-tag-errors)",
                        blob.digest
                    );
                }
                Err(error) if format == ManifestFormat::Oci && rejects_media_type(&error) => {
                    if plan.docker_fallback && attestations.is_empty() {
                        warn!(
                            "{} refused the OCI image index ({error}); publishing a Docker manifest list instead (--oci-mode=auto)",
                            target.resolve_registry()
                        );
                        format = ManifestFormat::Docker;
                        continue 'formats;
                    }
                    let extra = oci_rejected_advice(children, annotations);
                    return Err(PublishError::OciRejected {
                        error: Box::new(error),
                        extra,
                    });
                }
                Err(error) => return Err(error.into()),
            }
        }
        return Ok(IndexOutcome {
            digest: blob.digest.clone(),
            media_type: blob.media_type.clone(),
            size: blob.bytes.len() as u64,
            references: pushed
                .iter()
                .map(|d| format!("{}@{}", name_of(d), blob.digest))
                .collect(),
        });
    }
}

/// What else stands between the user and a Docker manifest list.
fn oci_rejected_advice(
    children: &[(Descriptor, Platform)],
    annotations: &BTreeMap<String, String>,
) -> String {
    let oci: Vec<String> = children
        .iter()
        .filter(|(d, _)| d.media_type != media::DOCKER_MANIFEST)
        .map(|(_, p)| p.to_string())
        .collect();
    let mut advice = String::new();
    if !oci.is_empty() {
        advice.push_str(&format!(
            ", and rebuild the OCI platform images ({}) with --oci-mode=docker",
            oci.join(", ")
        ));
    }
    if !annotations.is_empty() {
        advice.push_str(", and drop --index-annotations (a Docker manifest list has none)");
    }
    advice
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn children(amd64: &str, arm64: &str) -> Vec<(Descriptor, Platform)> {
        vec![
            (
                Descriptor::new(amd64, A, 500),
                Platform::new("linux", "amd64", None),
            ),
            (
                Descriptor::new(arm64, B, 501),
                Platform::new("linux", "arm64", None),
            ),
        ]
    }

    #[test]
    fn index_format_choice() {
        use ManifestFormat::{Docker, Oci};
        let oci = media::OCI_MANIFEST;
        let docker = media::DOCKER_MANIFEST;
        let none = BTreeMap::new();
        let notes = BTreeMap::from([(
            "org.opencontainers.image.title".to_string(),
            "app".to_string(),
        )]);
        let plan = |format, docker_fallback| {
            Ok(IndexPlan {
                format,
                docker_fallback,
            })
        };
        // (--oci-mode, --legacy-manifest-list, child types, annotations, expected)
        type Case<'a> = (
            OciMode,
            bool,
            (&'a str, &'a str),
            &'a BTreeMap<String, String>,
            Result<IndexPlan, &'a str>,
        );
        let table: Vec<Case> = vec![
            (OciMode::Auto, false, (oci, oci), &none, plan(Oci, false)),
            (
                OciMode::Auto,
                false,
                (docker, docker),
                &none,
                plan(Oci, true),
            ),
            (
                OciMode::Auto,
                false,
                (docker, docker),
                &notes,
                plan(Oci, false),
            ),
            (OciMode::Auto, false, (docker, oci), &none, plan(Oci, false)),
            (
                OciMode::Oci,
                false,
                (docker, docker),
                &none,
                plan(Oci, false),
            ),
            (OciMode::Oci, false, (oci, oci), &notes, plan(Oci, false)),
            (
                OciMode::Docker,
                false,
                (docker, docker),
                &none,
                plan(Docker, false),
            ),
            (
                OciMode::Auto,
                true,
                (docker, docker),
                &none,
                plan(Docker, false),
            ),
            (
                OciMode::Oci,
                true,
                (docker, docker),
                &none,
                plan(Docker, false),
            ),
            (
                OciMode::Auto,
                true,
                (docker, oci),
                &none,
                Err(
                    "--legacy-manifest-list asks for a Docker manifest list, but the image for linux/arm64 (sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb) is an OCI image manifest, which a Docker manifest list cannot list without mislabelling it; rebuild that platform with --oci-mode=docker, or publish an OCI index (--oci-mode=oci without --legacy-manifest-list)",
                ),
            ),
            (
                OciMode::Docker,
                false,
                (oci, oci),
                &none,
                Err(
                    "--oci-mode=docker asks for a Docker manifest list, but the image for linux/amd64 (sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa) is an OCI image manifest, which a Docker manifest list cannot list without mislabelling it; rebuild that platform with --oci-mode=docker, or publish an OCI index (--oci-mode=oci without --legacy-manifest-list)",
                ),
            ),
            (
                OciMode::Auto,
                true,
                (docker, docker),
                &notes,
                Err(
                    "--legacy-manifest-list asks for a Docker manifest list, which cannot carry --index-annotations (org.opencontainers.image.title); drop the annotations, or publish an OCI index (--oci-mode=oci without --legacy-manifest-list)",
                ),
            ),
            (
                OciMode::Docker,
                false,
                (docker, docker),
                &notes,
                Err(
                    "--oci-mode=docker asks for a Docker manifest list, which cannot carry --index-annotations (org.opencontainers.image.title); drop the annotations, or publish an OCI index (--oci-mode=oci without --legacy-manifest-list)",
                ),
            ),
            (
                OciMode::Auto,
                false,
                (oci, media::OCI_INDEX),
                &none,
                Err(
                    "the image for linux/arm64 (sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb) has media type application/vnd.oci.image.index.v1+json, which is not an image manifest an index can list",
                ),
            ),
        ];
        for (mode, legacy, (amd64, arm64), annotations, want) in table {
            let got = plan_index(mode, legacy, &children(amd64, arm64), annotations)
                .map_err(|e| e.to_string());
            assert_eq!(
                got,
                want.map_err(str::to_string),
                "{mode} legacy={legacy} {amd64} {arm64} {annotations:?}"
            );
        }
    }

    fn status(status: u16, detail: &str) -> RegistryError {
        RegistryError::Status {
            operation: "pushing manifest to 127.0.0.1:5000/app:1".to_string(),
            status,
            detail: detail.to_string(),
            hint: String::new(),
        }
    }

    #[test]
    fn which_refusals_are_about_the_media_type() {
        let table = [
            (status(400, " (MANIFEST_INVALID: manifest invalid)"), true),
            (status(415, ""), true),
            (status(400, " (UNSUPPORTED: not supported)"), true),
            (
                status(400, " (MANIFEST_BLOB_UNKNOWN: blob unknown to registry)"),
                false,
            ),
            (status(404, " (NAME_UNKNOWN)"), false),
            (status(401, ""), false),
            (status(500, ""), false),
        ];
        for (error, want) in table {
            assert_eq!(rejects_media_type(&error), want, "{error}");
        }
    }

    #[test]
    fn advice_when_oci_is_refused() {
        let none = BTreeMap::new();
        let notes = BTreeMap::from([("k".to_string(), "v".to_string())]);
        let table = [
            (
                children(media::DOCKER_MANIFEST, media::DOCKER_MANIFEST),
                &none,
                "",
            ),
            (
                children(media::DOCKER_MANIFEST, media::OCI_MANIFEST),
                &none,
                ", and rebuild the OCI platform images (linux/arm64) with --oci-mode=docker",
            ),
            (
                children(media::OCI_MANIFEST, media::OCI_MANIFEST),
                &notes,
                ", and rebuild the OCI platform images (linux/amd64, linux/arm64) with --oci-mode=docker, and drop --index-annotations (a Docker manifest list has none)",
            ),
        ];
        for (children, annotations, want) in table {
            assert_eq!(oci_rejected_advice(&children, annotations), want);
        }
        let error = PublishError::OciRejected {
            error: Box::new(status(415, "")),
            extra: oci_rejected_advice(
                &children(media::OCI_MANIFEST, media::DOCKER_MANIFEST),
                &none,
            ),
        };
        assert_eq!(
            error.to_string(),
            "registry doesn't support OCI media types: pushing manifest to 127.0.0.1:5000/app:1: HTTP 415 Unsupported Media Type; use --oci-mode=docker --legacy-manifest-list=true, and rebuild the OCI platform images (linux/amd64) with --oci-mode=docker"
        );
    }

    #[test]
    fn destination_names() {
        let table = [
            ("127.0.0.1:5000/app:1.0", "127.0.0.1:5000/app"),
            ("127.0.0.1:5000/app", "127.0.0.1:5000/app"),
            ("127.0.0.1:5000/team/app:sha-1", "127.0.0.1:5000/team/app"),
            ("app:1", "app"),
            ("registry/app@sha256:abc", "registry/app"),
        ];
        for (destination, want) in table {
            assert_eq!(name_of(destination), want, "{destination}");
        }
    }
}
