//! Multi-platform indexes: OCI image index or Docker manifest list, from
//! per-platform manifests in the order given. No timestamps, compact JSON,
//! fixed key order: the same children give the same index digest.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::descriptor::{Blob, Descriptor, DescriptorPlatform};
use super::manifest::format_name;
use super::media::{self, ManifestFormat};
use crate::platform::Platform;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IndexError {
    #[error(
        "a Docker manifest list cannot carry annotations ({keys}); drop --index-annotations or --legacy-manifest-list"
    )]
    DockerAnnotations { keys: String },
    #[error(
        "a Docker manifest list cannot list BuildKit's attestation manifests (--attest-layout=buildkit); publish an OCI index (without --oci-mode=docker and --legacy-manifest-list), or keep the documents as referrers (--attest-layout=referrers)"
    )]
    DockerAttestations,
    #[error("an index needs at least one platform manifest")]
    Empty,
    #[error(
        "manifest {digest} for {platform} has media type {found}, which a {format} index cannot list"
    )]
    ChildType {
        format: &'static str,
        digest: String,
        platform: String,
        found: String,
    },
    #[error("platform {0} appears twice in the index")]
    DuplicatePlatform(String),
    #[error("not an image index: {0}")]
    Parse(String),
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IndexJson {
    schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
}

fn child_allowed(format: ManifestFormat, media_type: &str) -> bool {
    match format {
        // Registries and runtimes accept Docker manifests in an OCI index.
        ManifestFormat::Oci => ManifestFormat::of_manifest(media_type).is_some(),
        ManifestFormat::Docker => media_type == media::DOCKER_MANIFEST,
    }
}

/// The index over `children` (manifest descriptor, platform), in order.
/// Any annotations or platform already on a child descriptor are replaced
/// by the given platform.
pub fn index_bytes(
    format: ManifestFormat,
    children: &[(Descriptor, Platform)],
    annotations: &BTreeMap<String, String>,
) -> Result<Vec<u8>, IndexError> {
    index_bytes_with_attestations(format, children, &[], annotations)
}

/// [`index_bytes`] followed by BuildKit's attestation manifests
/// (`--attest-layout=buildkit`), listed as given: their platform is
/// `unknown/unknown` and their annotations name the image they describe,
/// which only an OCI index can carry.
pub fn index_bytes_with_attestations(
    format: ManifestFormat,
    children: &[(Descriptor, Platform)],
    attestations: &[Descriptor],
    annotations: &BTreeMap<String, String>,
) -> Result<Vec<u8>, IndexError> {
    if format == ManifestFormat::Docker && !attestations.is_empty() {
        return Err(IndexError::DockerAttestations);
    }
    if children.is_empty() {
        return Err(IndexError::Empty);
    }
    if format == ManifestFormat::Docker && !annotations.is_empty() {
        return Err(IndexError::DockerAnnotations {
            keys: annotations.keys().cloned().collect::<Vec<_>>().join(", "),
        });
    }
    let mut manifests = Vec::with_capacity(children.len());
    for (i, (descriptor, platform)) in children.iter().enumerate() {
        if children[..i].iter().any(|(_, p)| p == platform) {
            return Err(IndexError::DuplicatePlatform(platform.to_string()));
        }
        if !child_allowed(format, &descriptor.media_type) {
            return Err(IndexError::ChildType {
                format: format_name(format),
                digest: descriptor.digest.clone(),
                platform: platform.to_string(),
                found: descriptor.media_type.clone(),
            });
        }
        let mut entry =
            Descriptor::new(&descriptor.media_type, &descriptor.digest, descriptor.size);
        entry.platform = Some(DescriptorPlatform::from(platform));
        manifests.push(entry);
    }
    manifests.extend(attestations.iter().cloned());
    let json = IndexJson {
        schema_version: 2,
        media_type: Some(format.index_media_type().to_string()),
        manifests,
        annotations: annotations.clone(),
    };
    Ok(serde_json::to_vec(&json).unwrap_or_default())
}

/// [`index_bytes`] as a [`Blob`].
pub fn index_blob(
    format: ManifestFormat,
    children: &[(Descriptor, Platform)],
    annotations: &BTreeMap<String, String>,
) -> Result<Blob, IndexError> {
    index_blob_with_attestations(format, children, &[], annotations)
}

/// [`index_bytes_with_attestations`] as a [`Blob`].
pub fn index_blob_with_attestations(
    format: ManifestFormat,
    children: &[(Descriptor, Platform)],
    attestations: &[Descriptor],
    annotations: &BTreeMap<String, String>,
) -> Result<Blob, IndexError> {
    let bytes = index_bytes_with_attestations(format, children, attestations, annotations)?;
    Ok(Blob::new(format.index_media_type(), bytes))
}

/// The entries of an index or manifest list (for choosing a base image's
/// platform, or for extending an OCI layout's `index.json`).
pub fn parse_index(bytes: &[u8]) -> Result<Vec<Descriptor>, IndexError> {
    let json: IndexJson =
        serde_json::from_slice(bytes).map_err(|e| IndexError::Parse(e.to_string()))?;
    Ok(json.manifests)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::image::digest::sha256_digest;

    const A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn children(media_type: &str) -> Vec<(Descriptor, Platform)> {
        vec![
            (
                Descriptor::new(media_type, A, 500),
                Platform::new("linux", "amd64", None),
            ),
            (
                Descriptor::new(media_type, B, 501),
                Platform::new("linux", "arm64", None),
            ),
        ]
    }

    #[test]
    fn oci_index_bytes_are_exact() {
        let annotations = BTreeMap::from([
            (
                "org.opencontainers.image.source".to_string(),
                "https://github.com/org/repo".to_string(),
            ),
            (
                "org.opencontainers.image.licenses".to_string(),
                "Apache-2.0".to_string(),
            ),
        ]);
        let blob = index_blob(
            ManifestFormat::Oci,
            &children(media::OCI_MANIFEST),
            &annotations,
        )
        .unwrap();
        let want = concat!(
            r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":["#,
            r#"{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","size":500,"platform":{"architecture":"amd64","os":"linux"}},"#,
            r#"{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb","size":501,"platform":{"architecture":"arm64","os":"linux"}}],"#,
            r#""annotations":{"org.opencontainers.image.licenses":"Apache-2.0","org.opencontainers.image.source":"https://github.com/org/repo"}}"#
        );
        assert_eq!(String::from_utf8(blob.bytes.clone()).unwrap(), want);
        assert_eq!(blob.digest, sha256_digest(want.as_bytes()));
        assert_eq!(
            blob.digest,
            "sha256:bc424ae3dc18139a1cbc54b79f7d9e1c923657725890269514fc0992b936b7f1"
        );
        assert_eq!(blob.media_type, media::OCI_INDEX);
    }

    #[test]
    fn docker_manifest_list_bytes_are_exact() {
        let bytes = index_bytes(
            ManifestFormat::Docker,
            &children(media::DOCKER_MANIFEST),
            &BTreeMap::new(),
        )
        .unwrap();
        let want = concat!(
            r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":["#,
            r#"{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","size":500,"platform":{"architecture":"amd64","os":"linux"}},"#,
            r#"{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":"sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb","size":501,"platform":{"architecture":"arm64","os":"linux"}}]}"#
        );
        assert_eq!(String::from_utf8(bytes).unwrap(), want);
    }

    #[test]
    fn order_is_kept_as_given() {
        let mut reversed = children(media::OCI_MANIFEST);
        reversed.reverse();
        let bytes = index_bytes(ManifestFormat::Oci, &reversed, &BTreeMap::new()).unwrap();
        let digests: Vec<String> = parse_index(&bytes)
            .unwrap()
            .into_iter()
            .map(|d| d.digest)
            .collect();
        assert_eq!(digests, vec![B.to_string(), A.to_string()]);
    }

    #[test]
    fn invalid_indexes_are_refused() {
        let notes = BTreeMap::from([("k".to_string(), "v".to_string())]);
        let mut dup = children(media::OCI_MANIFEST);
        dup[1].1 = Platform::new("linux", "x86_64", None);
        type Case = (
            ManifestFormat,
            Vec<(Descriptor, Platform)>,
            BTreeMap<String, String>,
            &'static str,
        );
        let cases: Vec<Case> = vec![
            (
                ManifestFormat::Docker,
                children(media::DOCKER_MANIFEST),
                notes,
                "a Docker manifest list cannot carry annotations (k); drop --index-annotations or --legacy-manifest-list",
            ),
            (
                ManifestFormat::Oci,
                vec![],
                BTreeMap::new(),
                "an index needs at least one platform manifest",
            ),
            (
                ManifestFormat::Docker,
                children(media::OCI_MANIFEST),
                BTreeMap::new(),
                "manifest sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa for linux/amd64 has media type application/vnd.oci.image.manifest.v1+json, which a Docker index cannot list",
            ),
            (
                ManifestFormat::Oci,
                dup,
                BTreeMap::new(),
                "platform linux/amd64 appears twice in the index",
            ),
        ];
        for (format, children, annotations, want) in cases {
            let err = index_bytes(format, &children, &annotations).unwrap_err();
            assert_eq!(err.to_string(), want);
        }
    }
}
