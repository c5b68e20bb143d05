//! Image manifests (OCI image manifest, Docker v2 schema 2) as bytes.
//!
//! Written with kiln's own structs in a fixed field order and compact
//! JSON, so the manifest digest is a function of its inputs alone.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::descriptor::{Blob, Descriptor};
use super::media::{self, ManifestFormat};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error(
        "Docker manifests cannot carry annotations ({keys}); use --oci-mode=oci or drop the annotations"
    )]
    DockerAnnotations { keys: String },
    #[error(
        "the config descriptor has media type {found}, but a {format} manifest needs {expected}"
    )]
    ConfigType {
        format: &'static str,
        found: String,
        expected: &'static str,
    },
    #[error(
        "layer {digest} has media type {found}, which a {format} manifest cannot reference; convert base layers with media::convert_layer_media_type first"
    )]
    LayerType {
        format: &'static str,
        digest: String,
        found: String,
    },
    #[error("not an image manifest: {0}")]
    Parse(String),
    #[error("unsupported manifest media type {0:?} (expected an OCI or Docker v2 image manifest)")]
    UnsupportedMediaType(String),
}

pub(crate) fn format_name(format: ManifestFormat) -> &'static str {
    match format {
        ManifestFormat::Oci => "OCI",
        ManifestFormat::Docker => "Docker",
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestJson {
    schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    config: Descriptor,
    layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
}

/// An image manifest read back: its family, config and layers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedManifest {
    pub format: ManifestFormat,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    pub annotations: BTreeMap<String, String>,
}

fn layer_allowed(format: ManifestFormat, media_type: &str) -> bool {
    match format {
        ManifestFormat::Oci => {
            media_type.starts_with("application/vnd.oci.image.layer.")
                // Foreign Docker layers keep their type in OCI images.
                || media_type == media::DOCKER_LAYER_FOREIGN_GZIP
        }
        ManifestFormat::Docker => {
            media_type.starts_with("application/vnd.docker.image.rootfs.")
                || media::is_foreign_layer(media_type)
        }
    }
}

/// The manifest for a config and its layers, in `format`.
/// Annotations are an OCI feature and refused for Docker.
pub fn manifest_bytes(
    format: ManifestFormat,
    config: &Descriptor,
    layers: &[Descriptor],
    annotations: &BTreeMap<String, String>,
) -> Result<Vec<u8>, ManifestError> {
    let name = format_name(format);
    if format == ManifestFormat::Docker && !annotations.is_empty() {
        return Err(ManifestError::DockerAnnotations {
            keys: annotations.keys().cloned().collect::<Vec<_>>().join(", "),
        });
    }
    if config.media_type != format.config_media_type() {
        return Err(ManifestError::ConfigType {
            format: name,
            found: config.media_type.clone(),
            expected: format.config_media_type(),
        });
    }
    if let Some(bad) = layers
        .iter()
        .find(|l| !layer_allowed(format, &l.media_type))
    {
        return Err(ManifestError::LayerType {
            format: name,
            digest: bad.digest.clone(),
            found: bad.media_type.clone(),
        });
    }
    let json = ManifestJson {
        schema_version: 2,
        media_type: Some(format.manifest_media_type().to_string()),
        config: config.clone(),
        layers: layers.to_vec(),
        annotations: annotations.clone(),
    };
    // Plain structs with string keys: serialisation cannot fail.
    Ok(serde_json::to_vec(&json).unwrap_or_default())
}

/// [`manifest_bytes`] as a [`Blob`] with its digest and media type.
pub fn manifest_blob(
    format: ManifestFormat,
    config: &Descriptor,
    layers: &[Descriptor],
    annotations: &BTreeMap<String, String>,
) -> Result<Blob, ManifestError> {
    let bytes = manifest_bytes(format, config, layers, annotations)?;
    Ok(Blob::new(format.manifest_media_type(), bytes))
}

/// Reads an image manifest; `media_type` is the one the registry or the
/// index gave, used when the manifest itself has none (older OCI ones).
pub fn parse_manifest(
    bytes: &[u8],
    media_type: Option<&str>,
) -> Result<ParsedManifest, ManifestError> {
    let json: ManifestJson =
        serde_json::from_slice(bytes).map_err(|e| ManifestError::Parse(e.to_string()))?;
    let media_type = json
        .media_type
        .as_deref()
        .or(media_type)
        .unwrap_or(media::OCI_MANIFEST);
    let format = ManifestFormat::of_manifest(media_type)
        .ok_or_else(|| ManifestError::UnsupportedMediaType(media_type.to_string()))?;
    Ok(ParsedManifest {
        format,
        config: json.config,
        layers: json.layers,
        annotations: json.annotations,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::image::digest::sha256_digest;

    const CFG: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const L1: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    #[test]
    fn oci_manifest_bytes_are_exact() {
        let config = Descriptor::new(media::OCI_CONFIG, CFG, 100);
        let layers = [Descriptor::new(media::OCI_LAYER_ZSTD, L1, 200)];
        let annotations = BTreeMap::from([
            (
                "org.opencontainers.image.title".to_string(),
                "t".to_string(),
            ),
            ("a".to_string(), "b".to_string()),
        ]);
        let bytes = manifest_bytes(ManifestFormat::Oci, &config, &layers, &annotations).unwrap();
        let want = concat!(
            r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","#,
            r#""config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","size":100},"#,
            r#""layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+zstd","digest":"sha256:2222222222222222222222222222222222222222222222222222222222222222","size":200}],"#,
            r#""annotations":{"a":"b","org.opencontainers.image.title":"t"}}"#
        );
        assert_eq!(String::from_utf8(bytes.clone()).unwrap(), want);
        let blob = manifest_blob(ManifestFormat::Oci, &config, &layers, &annotations).unwrap();
        assert_eq!(blob.digest, sha256_digest(want.as_bytes()));
        assert_eq!(
            blob.digest,
            "sha256:37e3847c60f1e3c00ef93f9cc24735094c74945c02edb1f23aa14d90817aaa68"
        );
    }

    #[test]
    fn docker_manifest_bytes_are_exact() {
        let config = Descriptor::new(media::DOCKER_CONFIG, CFG, 100);
        let layers = [
            Descriptor::new(media::DOCKER_LAYER_GZIP, L1, 200),
            Descriptor::new(media::DOCKER_LAYER_GZIP, L1, 200),
        ];
        let bytes =
            manifest_bytes(ManifestFormat::Docker, &config, &layers, &BTreeMap::new()).unwrap();
        let want = concat!(
            r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","#,
            r#""config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","size":100},"#,
            r#""layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"sha256:2222222222222222222222222222222222222222222222222222222222222222","size":200},"#,
            r#"{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"sha256:2222222222222222222222222222222222222222222222222222222222222222","size":200}]}"#
        );
        assert_eq!(String::from_utf8(bytes).unwrap(), want);
    }

    #[test]
    fn mismatched_inputs_are_refused() {
        let oci_config = Descriptor::new(media::OCI_CONFIG, CFG, 1);
        let docker_config = Descriptor::new(media::DOCKER_CONFIG, CFG, 1);
        let zstd = Descriptor::new(media::OCI_LAYER_ZSTD, L1, 1);
        let notes = BTreeMap::from([("k".to_string(), "v".to_string())]);
        let cases = [
            (
                ManifestFormat::Docker,
                &docker_config,
                vec![],
                notes.clone(),
                "Docker manifests cannot carry annotations (k); use --oci-mode=oci or drop the annotations",
            ),
            (
                ManifestFormat::Docker,
                &oci_config,
                vec![],
                BTreeMap::new(),
                "the config descriptor has media type application/vnd.oci.image.config.v1+json, but a Docker manifest needs application/vnd.docker.container.image.v1+json",
            ),
            (
                ManifestFormat::Docker,
                &docker_config,
                vec![zstd],
                BTreeMap::new(),
                "layer sha256:2222222222222222222222222222222222222222222222222222222222222222 has media type application/vnd.oci.image.layer.v1.tar+zstd, which a Docker manifest cannot reference; convert base layers with media::convert_layer_media_type first",
            ),
        ];
        for (format, config, layers, annotations, want) in cases {
            let err = manifest_bytes(format, config, &layers, &annotations).unwrap_err();
            assert_eq!(err.to_string(), want);
        }
    }

    #[test]
    fn parse_round_trip() {
        let config = Descriptor::new(media::DOCKER_CONFIG, CFG, 100);
        let layers = vec![Descriptor::new(media::DOCKER_LAYER_GZIP, L1, 200)];
        let bytes =
            manifest_bytes(ManifestFormat::Docker, &config, &layers, &BTreeMap::new()).unwrap();
        let parsed = parse_manifest(&bytes, None).unwrap();
        assert_eq!(
            parsed,
            ParsedManifest {
                format: ManifestFormat::Docker,
                config,
                layers,
                annotations: BTreeMap::new(),
            }
        );
        let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
        assert!(parse_manifest(index, None).is_err());
    }
}
