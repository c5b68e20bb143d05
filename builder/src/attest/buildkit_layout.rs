//! `--attest-layout=buildkit`: the documents attached to each platform
//! image also listed in the image index the way BuildKit stores them, for
//! tools that read only that layout (Docker Desktop, Docker Scout,
//! `docker buildx imagetools inspect`).
//!
//! BuildKit's layout: per platform image, one *attestation manifest* — an
//! OCI image manifest whose layers are in-toto statements
//! (`application/vnd.in-toto+json`, each annotated with its
//! `in-toto.io/predicate-type`) and whose config is a placeholder image
//! config for `unknown/unknown` — listed in the index with platform
//! `unknown/unknown` and the annotations `vnd.docker.reference.type:
//! attestation-manifest` and `vnd.docker.reference.digest: <the image>`.
//!
//! The index publisher builds these from what the platform builds attached
//! as referrers, so the local driver, the ci driver (whose platform jobs
//! ran elsewhere) and the operator publish the same index from the same
//! registry state. The referrers stay: `oras discover` and `cosign` read
//! them there.

use std::collections::BTreeMap;
use std::str::FromStr;

use serde_json::{Value, json};
use tracing::{info, warn};

use super::provenance::STATEMENT_MEDIA_TYPE;
use super::referrers::fallback_tag;
use crate::image::media::OCI_MANIFEST;
use crate::image::{Descriptor, DescriptorPlatform, parse_index, parse_manifest, sha256_digest};
use crate::platform::Platform;
use crate::registry::{Access, Reference, Registry, RegistryError, parse_reference};

/// The annotation saying what an index entry is.
pub const REFERENCE_TYPE: &str = "vnd.docker.reference.type";
/// The annotation naming the image an attestation manifest is about.
pub const REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";
/// [`REFERENCE_TYPE`]'s value for an attestation manifest.
pub const ATTESTATION_MANIFEST: &str = "attestation-manifest";
/// The in-toto predicate type of an SPDX document.
pub const SPDX_PREDICATE_TYPE: &str = "https://spdx.dev/Document";
/// The annotation of a statement's predicate type.
pub const PREDICATE_TYPE_ANNOTATION: &str = "in-toto.io/predicate-type";
/// The media type kiln attaches SBOMs with.
const SPDX_MEDIA_TYPE: &str = "application/spdx+json";
const IMAGE_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// The config media type of artifact manifests, which some registries
/// list as the artifact type.
const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
/// The most referrers of one image read: a listing is the registry's
/// answer, and each entry costs two fetches.
const MAX_REFERRERS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("the referrers of {subject} in {repository} are not an OCI index: {reason}")]
    BadListing {
        subject: String,
        repository: String,
        reason: String,
    },
}

/// An in-toto statement (v1) about the image `digest` in `repository`.
pub fn statement(
    repository: &str,
    digest: &str,
    predicate_type: &str,
    predicate: Value,
) -> Vec<u8> {
    let (algorithm, hex) = digest.split_once(':').unwrap_or(("sha256", digest));
    serde_json::to_vec(&json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{ "name": repository, "digest": { algorithm: hex } }],
        "predicateType": predicate_type,
        "predicate": predicate,
    }))
    .unwrap_or_default()
}

/// One statement of an attestation manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    pub predicate_type: String,
    pub bytes: Vec<u8>,
}

/// An attestation manifest and the blobs it needs, ready to push.
#[derive(Clone, Debug)]
pub struct AttestationManifest {
    /// The index entry: platform `unknown/unknown`, the reference
    /// annotations.
    pub entry: Descriptor,
    pub manifest: Vec<u8>,
    /// The placeholder config and each statement.
    pub blobs: Vec<Vec<u8>>,
}

/// BuildKit's attestation manifest over `statements` about the image
/// `subject` (its digest). The same statements give the same bytes.
pub fn attestation_manifest(subject: &str, statements: &[Statement]) -> AttestationManifest {
    let layers: Vec<Value> = statements
        .iter()
        .map(|s| {
            json!({
                "mediaType": STATEMENT_MEDIA_TYPE,
                "digest": sha256_digest(&s.bytes),
                "size": s.bytes.len(),
                "annotations": { PREDICATE_TYPE_ANNOTATION: s.predicate_type },
            })
        })
        .collect();
    // BuildKit's placeholder: a valid image config for no platform, its
    // rootfs naming the statements as if they were layers.
    let config = serde_json::to_vec(&json!({
        "architecture": "unknown",
        "os": "unknown",
        "config": {},
        "rootfs": {
            "type": "layers",
            "diff_ids": statements.iter().map(|s| sha256_digest(&s.bytes)).collect::<Vec<_>>(),
        },
    }))
    .unwrap_or_default();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": IMAGE_CONFIG_MEDIA_TYPE,
            "digest": sha256_digest(&config),
            "size": config.len(),
        },
        "layers": layers,
    }))
    .unwrap_or_default();
    let mut entry = Descriptor::new(
        OCI_MANIFEST,
        &sha256_digest(&manifest),
        manifest.len() as u64,
    );
    entry.platform = Some(DescriptorPlatform::from(&Platform::new(
        "unknown", "unknown", None,
    )));
    entry.annotations = BTreeMap::from([
        (REFERENCE_DIGEST.to_string(), subject.to_string()),
        (REFERENCE_TYPE.to_string(), ATTESTATION_MANIFEST.to_string()),
    ]);
    let mut blobs = vec![config];
    blobs.extend(statements.iter().map(|s| s.bytes.clone()));
    AttestationManifest {
        entry,
        manifest,
        blobs,
    }
}

/// The attestation manifests of `children`, made from the referrers the
/// first of `repositories` holds, and pushed to every one of them (an
/// index finds its entries in its own repository). Returns the index
/// entries, in the children's order. A child with no provenance or SBOM
/// attached gets none, with a warning.
pub async fn publish_attestation_manifests(
    registry: &Registry,
    repositories: &[Reference],
    children: &[(Descriptor, Platform)],
) -> Result<Vec<Descriptor>, LayoutError> {
    let Some(first) = repositories.first() else {
        return Ok(Vec::new());
    };
    let mut entries = Vec::new();
    for (child, platform) in children {
        let statements = attached_statements(registry, first, &child.digest).await?;
        if statements.is_empty() {
            warn!(
                "--attest-layout=buildkit: {platform} ({}) has no provenance or SBOM attached in {}; its index entry has no attestation manifest",
                child.digest,
                crate::registry::names::repository_of(first)
            );
            continue;
        }
        let attestation = attestation_manifest(&child.digest, &statements);
        for repository in repositories {
            for blob in &attestation.blobs {
                registry.push_blob_bytes(repository, blob).await?;
            }
            let by_digest = repository.clone_with_digest(attestation.entry.digest.clone());
            registry
                .push_manifest_raw(&by_digest, &attestation.manifest, OCI_MANIFEST)
                .await?;
        }
        info!(
            "attestation manifest {} for {platform}: {}",
            attestation.entry.digest,
            statements
                .iter()
                .map(|s| s.predicate_type.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        entries.push(attestation.entry);
    }
    Ok(entries)
}

/// The in-toto statements of the provenance and SBOM documents attached
/// to `subject` in `repository`: a provenance statement as attached, an
/// SPDX document wrapped in a statement about `subject`. Through the
/// referrers API where the registry has it, else the tag schema's index.
async fn attached_statements(
    registry: &Registry,
    repository: &Reference,
    subject: &str,
) -> Result<Vec<Statement>, LayoutError> {
    let name = crate::registry::names::repository_of(repository);
    let bad = |reason: String| LayoutError::BadListing {
        subject: subject.to_string(),
        repository: name.clone(),
        reason,
    };
    let listing = match registry.fetch_referrers(repository, subject).await? {
        Some(bytes) => Some(bytes),
        None => {
            let tagged = parse_reference(&format!("{name}:{}", fallback_tag(subject)))?;
            match registry.fetch_manifest_raw(&tagged, Access::Push).await {
                Ok((bytes, _, _)) => Some(bytes),
                Err(error) if error.is_not_found() => None,
                Err(error) => return Err(error.into()),
            }
        }
    };
    let Some(listing) = listing else {
        return Ok(Vec::new());
    };
    let referrers = parse_index(&listing).map_err(|e| bad(e.to_string()))?;
    let mut statements: Vec<Statement> = Vec::new();
    for referrer in referrers.iter().take(MAX_REFERRERS) {
        // Some registries list the config's media type (the empty one)
        // rather than the manifest's artifactType: those are read to see.
        let listed = referrer
            .extra
            .get("artifactType")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if ![STATEMENT_MEDIA_TYPE, SPDX_MEDIA_TYPE, EMPTY_MEDIA_TYPE, ""].contains(&listed) {
            continue;
        }
        let Some((artifact_type, document)) = document_of(registry, repository, referrer).await?
        else {
            continue;
        };
        let statement = match artifact_type.as_str() {
            SPDX_MEDIA_TYPE => match serde_json::from_slice::<Value>(&document) {
                Ok(predicate) => Statement {
                    predicate_type: SPDX_PREDICATE_TYPE.to_string(),
                    bytes: self::statement(&name, subject, SPDX_PREDICATE_TYPE, predicate),
                },
                Err(error) => {
                    warn!(
                        "{name}@{}: the SBOM is not JSON ({error}); left out",
                        referrer.digest
                    );
                    continue;
                }
            },
            STATEMENT_MEDIA_TYPE => {
                let predicate_type = serde_json::from_slice::<Value>(&document)
                    .ok()
                    .and_then(|s| s.get("predicateType")?.as_str().map(str::to_string));
                let Some(predicate_type) = predicate_type else {
                    warn!(
                        "{name}@{}: not an in-toto statement; left out",
                        referrer.digest
                    );
                    continue;
                };
                Statement {
                    predicate_type,
                    bytes: document,
                }
            }
            _ => continue,
        };
        if !statements.contains(&statement) {
            statements.push(statement);
        }
    }
    // The listing's order is the registry's: sort, so that the same
    // documents always give the same attestation manifest.
    statements.sort_by_cached_key(|s| (s.predicate_type.clone(), sha256_digest(&s.bytes)));
    Ok(statements)
}

/// The artifact type and the one document of an artifact manifest;
/// `None` (with a warning) for one that is not such a manifest or too
/// large to read.
async fn document_of(
    registry: &Registry,
    repository: &Reference,
    referrer: &Descriptor,
) -> Result<Option<(String, Vec<u8>)>, LayoutError> {
    let name = crate::registry::names::repository_of(repository);
    let reference = repository.clone_with_digest(referrer.digest.clone());
    let (bytes, media_type, _) = registry
        .fetch_manifest_raw(&reference, Access::Push)
        .await?;
    let manifest = match parse_manifest(&bytes, Some(&media_type)) {
        Ok(manifest) if manifest.layers.len() == 1 => manifest,
        _ => {
            warn!(
                "{name}@{}: not an artifact manifest with one document; left out",
                referrer.digest
            );
            return Ok(None);
        }
    };
    let artifact_type = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|m| m.get("artifactType")?.as_str().map(str::to_string))
        .unwrap_or_else(|| manifest.layers[0].media_type.clone());
    if artifact_type != STATEMENT_MEDIA_TYPE && artifact_type != SPDX_MEDIA_TYPE {
        return Ok(None);
    }
    let layer = &manifest.layers[0];
    let digest = match oci_spec::image::Digest::from_str(&layer.digest) {
        Ok(digest) => digest,
        Err(error) => {
            warn!("{name}@{}: {error}; left out", referrer.digest);
            return Ok(None);
        }
    };
    let descriptor = oci_spec::image::Descriptor::new(
        oci_spec::image::MediaType::from(layer.media_type.as_str()),
        layer.size,
        digest,
    );
    match registry
        .fetch_blob_bytes(&reference, &descriptor, Access::Push)
        .await
    {
        Ok(document) => Ok(Some((artifact_type, document))),
        Err(error @ RegistryError::TooLarge { .. }) => {
            warn!("{name}@{}: {error}; left out", referrer.digest);
            Ok(None)
        }
        Err(error) => Err(error.into()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const CHILD: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

    #[test]
    fn an_attestation_manifest_has_buildkits_shape() {
        let provenance = Statement {
            predicate_type: "https://slsa.dev/provenance/v1".into(),
            bytes: statement("r/app", CHILD, "https://slsa.dev/provenance/v1", json!({})),
        };
        let sbom = Statement {
            predicate_type: SPDX_PREDICATE_TYPE.into(),
            bytes: statement(
                "r/app",
                CHILD,
                SPDX_PREDICATE_TYPE,
                json!({"spdxVersion": "SPDX-2.3"}),
            ),
        };
        let made = attestation_manifest(CHILD, &[provenance.clone(), sbom.clone()]);
        let manifest: Value = serde_json::from_slice(&made.manifest).unwrap();
        assert_eq!(manifest["mediaType"], OCI_MANIFEST);
        assert_eq!(manifest["config"]["mediaType"], IMAGE_CONFIG_MEDIA_TYPE);
        assert_eq!(manifest["config"]["digest"], sha256_digest(&made.blobs[0]));
        let config: Value = serde_json::from_slice(&made.blobs[0]).unwrap();
        assert_eq!(config["os"], "unknown");
        assert_eq!(config["architecture"], "unknown");
        assert_eq!(config["rootfs"]["diff_ids"][1], sha256_digest(&sbom.bytes));
        for (i, s) in [&provenance, &sbom].iter().enumerate() {
            let layer = &manifest["layers"][i];
            assert_eq!(layer["mediaType"], STATEMENT_MEDIA_TYPE);
            assert_eq!(layer["digest"], sha256_digest(&s.bytes));
            assert_eq!(
                layer["annotations"][PREDICATE_TYPE_ANNOTATION],
                s.predicate_type.as_str()
            );
            assert_eq!(made.blobs[i + 1], s.bytes);
        }
        let entry = serde_json::to_value(&made.entry).unwrap();
        assert_eq!(entry["digest"], sha256_digest(&made.manifest));
        assert_eq!(
            entry["platform"],
            json!({"architecture": "unknown", "os": "unknown"})
        );
        assert_eq!(entry["annotations"][REFERENCE_TYPE], ATTESTATION_MANIFEST);
        assert_eq!(entry["annotations"][REFERENCE_DIGEST], CHILD);

        let again = attestation_manifest(CHILD, &[provenance, sbom]);
        assert_eq!(again.manifest, made.manifest);
    }

    #[test]
    fn a_statement_names_its_subject() {
        let bytes = statement("r/app", CHILD, SPDX_PREDICATE_TYPE, json!({"a": 1}));
        let value: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(value["_type"], "https://in-toto.io/Statement/v1");
        assert_eq!(value["subject"][0]["name"], "r/app");
        assert_eq!(value["subject"][0]["digest"]["sha256"], &CHILD[7..]);
        assert_eq!(value["predicateType"], SPDX_PREDICATE_TYPE);
        assert_eq!(value["predicate"]["a"], 1);
    }
}
