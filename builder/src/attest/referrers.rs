//! Attaching documents to a pushed image as OCI 1.1 referrers.
//!
//! A document becomes an *artifact manifest*: an OCI image manifest whose
//! `artifactType` says what it carries, whose config is the empty
//! descriptor, whose one layer is the document, and whose `subject` is the
//! image manifest it describes. Registries with the referrers API
//! (distribution-spec 1.1) index it by its subject; `oras discover` and
//! `cosign tree` list it. A registry without that API (Docker's
//! registry 2.8, Debian's `docker-registry`) gets the spec's fallback, the
//! *tag schema*: an OCI index tagged `sha256-<subject hex>` listing the
//! referrers, read, extended and pushed again.
//!
//! The image index itself never lists these (unlike BuildKit's
//! `unknown/unknown` entries, which clients pulling by platform must skip).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::image::media::{OCI_INDEX, OCI_MANIFEST};
use crate::image::{Descriptor, sha256_digest};
use crate::registry::{Access, Registry, RegistryError, parse_reference};

/// The OCI empty descriptor's content: artifact manifests carry no config.
const EMPTY_CONFIG: &[u8] = b"{}";
/// Its media type (OCI image-spec 1.1).
const EMPTY_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";

/// One document to attach to an image manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// The artifact manifest's `artifactType`, also its layer's media type
    /// (`application/spdx+json`, `application/vnd.in-toto+json`).
    pub artifact_type: String,
    pub bytes: Vec<u8>,
    /// Annotations of the artifact manifest and its descriptor in the
    /// referrers listing (e.g. `in-toto.io/predicate-type`), so a client
    /// can pick the document without fetching it.
    pub annotations: BTreeMap<String, String>,
}

/// The image manifest documents are attached to.
#[derive(Clone, Debug)]
pub struct Subject<'a> {
    /// Its repository, `registry/name` (no tag, no digest).
    pub repository: &'a str,
    pub descriptor: Descriptor,
}

/// How a registry took the referrer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listing {
    /// Indexed by the registry's referrers API.
    ReferrersApi,
    /// In the `sha256-<hex>` index of the tag schema.
    TagSchema,
}

/// A referrer pushed next to its subject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attached {
    /// `repository@sha256:…` of the artifact manifest.
    pub reference: String,
    pub listing: Listing,
}

#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("the referrers index {tag} in {repository} is not an OCI index: {reason}")]
    BadReferrersIndex {
        repository: String,
        tag: String,
        reason: String,
    },
}

/// The artifact manifest of `attachment` about `subject`, as pushed: the
/// bytes are fixed by their content alone (no time), so attaching the same
/// document twice gives the same manifest.
pub fn artifact_manifest(subject: &Descriptor, attachment: &Attachment) -> Vec<u8> {
    let subject = json!({
        "mediaType": subject.media_type,
        "digest": subject.digest,
        "size": subject.size,
    });
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": attachment.artifact_type,
        "config": {
            "mediaType": EMPTY_CONFIG_MEDIA_TYPE,
            "digest": sha256_digest(EMPTY_CONFIG),
            "size": EMPTY_CONFIG.len(),
            "data": "e30=",
        },
        "layers": [{
            "mediaType": attachment.artifact_type,
            "digest": sha256_digest(&attachment.bytes),
            "size": attachment.bytes.len(),
        }],
        "subject": subject,
    });
    if !attachment.annotations.is_empty() {
        manifest["annotations"] = json!(attachment.annotations);
    }
    // serde_json's map keeps keys sorted: the same document always gives
    // the same bytes.
    serde_json::to_vec(&manifest).unwrap_or_default()
}

/// Writes `attachment` about `subject` into an OCI layout as the artifact
/// manifest a registry would have got (listed in `index.json`, no tag):
/// where a registry refused it, the document is not lost. Returns the
/// artifact manifest's digest.
pub fn write_to_layout(
    layout: &crate::image::OciLayout,
    subject: &Descriptor,
    attachment: &Attachment,
) -> Result<String, crate::image::LayoutError> {
    use crate::image::Blob;
    layout.put_blob(&Blob::new(EMPTY_CONFIG_MEDIA_TYPE, EMPTY_CONFIG.to_vec()))?;
    layout.put_blob(&Blob::new(
        &attachment.artifact_type,
        attachment.bytes.clone(),
    ))?;
    let manifest = Blob::new(OCI_MANIFEST, artifact_manifest(subject, attachment));
    layout.put_blob(&manifest)?;
    layout.add_to_index(&manifest, None)?;
    Ok(manifest.digest)
}

/// The tag of the tag schema's referrers index for `digest`
/// (`sha256:abc…` → `sha256-abc…`).
pub fn fallback_tag(digest: &str) -> String {
    digest.replacen(':', "-", 1)
}

/// Pushes `attachment` as a referrer of `subject`: its blobs, the artifact
/// manifest by digest, and, where the registry has no referrers API, the
/// tag schema's index.
pub async fn attach(
    registry: &Registry,
    subject: &Subject<'_>,
    attachment: &Attachment,
) -> Result<Attached, AttachError> {
    let repository = parse_reference(subject.repository)?;
    for bytes in [EMPTY_CONFIG, attachment.bytes.as_slice()] {
        registry.push_blob_bytes(&repository, bytes).await?;
    }
    let manifest = artifact_manifest(&subject.descriptor, attachment);
    let digest = sha256_digest(&manifest);
    let by_digest = parse_reference(&format!("{}@{digest}", subject.repository))?;
    let pushed = registry
        .push_referrer_manifest(&by_digest, &manifest, OCI_MANIFEST)
        .await?;
    let reference = format!("{}@{}", subject.repository, pushed.digest);
    // A registry that indexed the subject says so (`OCI-Subject`); one that
    // did not may still list referrers (the header is recent): the spec's
    // test is whether the referrers endpoint answers.
    if pushed.subject_indexed
        || registry
            .fetch_referrers(&repository, &subject.descriptor.digest)
            .await?
            .is_some()
    {
        return Ok(Attached {
            reference,
            listing: Listing::ReferrersApi,
        });
    }
    let mut entry = Descriptor::new(OCI_MANIFEST, &pushed.digest, manifest.len() as u64);
    entry.annotations = attachment.annotations.clone();
    entry.extra.insert(
        "artifactType".into(),
        attachment.artifact_type.clone().into(),
    );
    add_to_fallback_index(registry, subject, entry).await?;
    Ok(Attached {
        reference,
        listing: Listing::TagSchema,
    })
}

/// Adds `entry` to the `sha256-<subject hex>` index (made when missing),
/// keeping every referrer already listed.
async fn add_to_fallback_index(
    registry: &Registry,
    subject: &Subject<'_>,
    entry: Descriptor,
) -> Result<(), AttachError> {
    let tag = fallback_tag(&subject.descriptor.digest);
    let tagged = parse_reference(&format!("{}:{tag}", subject.repository))?;
    let bad = |reason: String| AttachError::BadReferrersIndex {
        repository: subject.repository.to_string(),
        tag: tag.clone(),
        reason,
    };
    let mut index = match registry.fetch_manifest_raw(&tagged, Access::Push).await {
        Ok((bytes, _, _)) => {
            serde_json::from_slice::<Value>(&bytes).map_err(|e| bad(e.to_string()))?
        }
        Err(error) if error.is_not_found() => json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [],
        }),
        Err(error) => return Err(error.into()),
    };
    let manifests = index
        .get_mut("manifests")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| bad("it has no manifests list".to_string()))?;
    if manifests
        .iter()
        .any(|m| m.get("digest").and_then(Value::as_str) == Some(entry.digest.as_str()))
    {
        return Ok(());
    }
    manifests.push(serde_json::to_value(&entry).map_err(|e| bad(e.to_string()))?);
    let bytes = serde_json::to_vec(&index).map_err(|e| bad(e.to_string()))?;
    registry
        .push_manifest_raw(&tagged, &bytes, OCI_INDEX)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn subject() -> Descriptor {
        Descriptor::new(
            OCI_MANIFEST,
            "sha256:0000000000000000000000000000000000000000000000000000000000000001",
            512,
        )
    }

    #[test]
    fn an_artifact_manifest_names_its_subject_type_and_document() {
        let attachment = Attachment {
            artifact_type: "application/vnd.in-toto+json".into(),
            bytes: b"{\"_type\":\"x\"}".to_vec(),
            annotations: BTreeMap::from([(
                "in-toto.io/predicate-type".to_string(),
                "https://slsa.dev/provenance/v1".to_string(),
            )]),
        };
        let bytes = artifact_manifest(&subject(), &attachment);
        let manifest: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(manifest["mediaType"], OCI_MANIFEST);
        assert_eq!(manifest["artifactType"], "application/vnd.in-toto+json");
        assert_eq!(manifest["config"]["mediaType"], EMPTY_CONFIG_MEDIA_TYPE);
        assert_eq!(
            manifest["config"]["digest"],
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert_eq!(
            manifest["layers"][0]["digest"],
            sha256_digest(&attachment.bytes)
        );
        assert_eq!(manifest["layers"][0]["size"], attachment.bytes.len());
        assert_eq!(manifest["subject"]["digest"], subject().digest);
        assert_eq!(manifest["subject"]["size"], 512);
        assert_eq!(
            manifest["annotations"]["in-toto.io/predicate-type"],
            "https://slsa.dev/provenance/v1"
        );
        // The same document, the same manifest.
        assert_eq!(bytes, artifact_manifest(&subject(), &attachment));
    }

    #[test]
    fn the_fallback_tag_replaces_the_algorithm_separator() {
        assert_eq!(fallback_tag("sha256:abc"), "sha256-abc");
    }
}
