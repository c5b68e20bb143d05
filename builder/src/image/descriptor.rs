//! Content descriptors as they appear in manifests and indexes.
//!
//! kiln's own type rather than `oci_spec::image::Descriptor`: that one
//! keeps annotations in a `HashMap`, whose serialisation order changes from
//! run to run, and manifest bytes must not.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::digest::sha256_digest;
use crate::platform::Platform;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<DescriptorPlatform>,
    /// Fields kiln does not model (`artifactType`, `data`), kept when a
    /// descriptor read from elsewhere is written again.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Descriptor {
    pub fn new(media_type: &str, digest: &str, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.to_string(),
            digest: digest.to_string(),
            size,
            urls: Vec::new(),
            annotations: BTreeMap::new(),
            platform: None,
            extra: Map::new(),
        }
    }
}

/// A small JSON blob (config, manifest, index) with its digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blob {
    pub media_type: String,
    pub digest: String,
    pub bytes: Vec<u8>,
}

impl Blob {
    pub fn new(media_type: &str, bytes: Vec<u8>) -> Blob {
        Blob {
            media_type: media_type.to_string(),
            digest: sha256_digest(&bytes),
            bytes,
        }
    }

    pub fn descriptor(&self) -> Descriptor {
        Descriptor::new(&self.media_type, &self.digest, self.bytes.len() as u64)
    }
}

/// The `platform` object of an index entry. Field order is the OCI
/// specification's; Docker manifest lists use the same names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DescriptorPlatform {
    pub architecture: String,
    pub os: String,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    #[serde(rename = "os.features", default, skip_serializing_if = "Vec::is_empty")]
    pub os_features: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<String>,
}

impl From<&Platform> for DescriptorPlatform {
    fn from(p: &Platform) -> DescriptorPlatform {
        DescriptorPlatform {
            architecture: p.architecture.clone(),
            os: p.os.clone(),
            os_version: None,
            os_features: Vec::new(),
            variant: p.variant.clone(),
            features: Vec::new(),
        }
    }
}

impl From<&DescriptorPlatform> for Platform {
    fn from(p: &DescriptorPlatform) -> Platform {
        Platform::new(&p.os, &p.architecture, p.variant.as_deref())
    }
}

/// A descriptor that does not convert between kiln's type and the
/// registry client's (OCI) one.
#[derive(Debug, thiserror::Error)]
#[error("descriptor {digest} is not valid OCI: {source}")]
pub struct ConversionError {
    pub digest: String,
    #[source]
    pub source: serde_json::Error,
}

/// kiln's descriptor as the registry client's (OCI) type.
pub fn to_oci(descriptor: &Descriptor) -> Result<oci_spec::image::Descriptor, ConversionError> {
    serde_json::to_value(descriptor)
        .and_then(serde_json::from_value)
        .map_err(|source| ConversionError {
            digest: descriptor.digest.clone(),
            source,
        })
}

/// The registry client's (OCI) descriptor as kiln's type.
pub fn from_oci(descriptor: &oci_spec::image::Descriptor) -> Result<Descriptor, ConversionError> {
    serde_json::to_value(descriptor)
        .and_then(serde_json::from_value)
        .map_err(|source| ConversionError {
            digest: descriptor.digest().to_string(),
            source,
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn serialises_in_fixed_order_without_empty_fields() {
        let mut d = Descriptor::new("application/x", "sha256:ab", 3);
        assert_eq!(
            serde_json::to_string(&d).unwrap(),
            r#"{"mediaType":"application/x","digest":"sha256:ab","size":3}"#
        );
        d.annotations.insert("z".into(), "1".into());
        d.annotations.insert("a".into(), "2".into());
        d.platform = Some(DescriptorPlatform::from(&Platform::new(
            "linux", "arm64", None,
        )));
        assert_eq!(
            serde_json::to_string(&d).unwrap(),
            r#"{"mediaType":"application/x","digest":"sha256:ab","size":3,"annotations":{"a":"2","z":"1"},"platform":{"architecture":"arm64","os":"linux"}}"#
        );
    }

    #[test]
    fn unknown_descriptor_fields_are_kept() {
        let text = r#"{"mediaType":"m","digest":"sha256:ab","size":1,"artifactType":"application/spdx+json"}"#;
        let d: Descriptor = serde_json::from_str(text).unwrap();
        assert_eq!(serde_json::to_string(&d).unwrap(), text);
    }

    #[test]
    fn platform_round_trip_normalises() {
        let parsed: DescriptorPlatform =
            serde_json::from_str(r#"{"architecture":"aarch64","os":"linux","os.version":"x"}"#)
                .unwrap();
        assert_eq!(parsed.os_version.as_deref(), Some("x"));
        assert_eq!(
            Platform::from(&parsed),
            Platform::new("linux", "arm64", None)
        );
    }
}
