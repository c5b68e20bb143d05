//! Reading manifests: what kind a manifest is, and which entry of an image
//! index serves a platform. Pure functions of the bytes and the platform.

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex};

use crate::platform::Platform;

pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// Accept header for manifest requests: everything kiln can read.
pub(crate) const ACCEPTED_MANIFESTS: [&str; 4] =
    [OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManifestKind {
    /// An OCI image index or a Docker manifest list.
    Index,
    /// One image: an OCI or Docker v2 schema 2 manifest.
    Image,
}

/// The media type a manifest declares, or for OCI documents that omit the
/// optional field, the one its shape implies. `Err` carries what was found.
pub fn manifest_media_type(bytes: &[u8]) -> Result<String, String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        schema_version: Option<u32>,
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
        config: Option<serde_json::Value>,
    }
    let probe: Probe =
        serde_json::from_slice(bytes).map_err(|e| format!("not a JSON manifest ({e})"))?;
    if probe.schema_version == Some(1) {
        return Err(DOCKER_SCHEMA1.to_string());
    }
    match (probe.media_type, probe.manifests, probe.config) {
        (Some(media_type), _, _) => Ok(media_type),
        (None, Some(_), _) => Ok(OCI_INDEX.to_string()),
        (None, None, Some(_)) => Ok(OCI_MANIFEST.to_string()),
        (None, None, None) => {
            Err("a JSON document without mediaType, manifests or config".to_string())
        }
    }
}

pub fn manifest_kind(media_type: &str) -> Option<ManifestKind> {
    match media_type {
        OCI_INDEX | DOCKER_LIST => Some(ManifestKind::Index),
        OCI_MANIFEST | DOCKER_MANIFEST => Some(ManifestKind::Image),
        _ => None,
    }
}

/// The platform an index entry declares. Entries without one, and BuildKit's
/// attestation manifests (`unknown/unknown`), serve no platform.
pub fn entry_platform(entry: &Descriptor) -> Option<Platform> {
    let platform = entry.platform().as_ref()?;
    let os = platform.os().to_string();
    let arch = platform.architecture().to_string();
    if os.is_empty() || arch.is_empty() || os == "unknown" || arch == "unknown" {
        return None;
    }
    Some(Platform::new(&os, &arch, platform.variant().as_deref()))
}

/// The entry of `index` that best runs on `wanted` (the earliest one among
/// equals), or every platform the index does offer.
pub fn select_entry<'a>(
    index: &'a ImageIndex,
    wanted: &Platform,
) -> Result<&'a Descriptor, Vec<Platform>> {
    let mut best: Option<(u32, &Descriptor)> = None;
    let mut available = Vec::new();
    for entry in index.manifests() {
        let Some(platform) = entry_platform(entry) else {
            continue;
        };
        if let Some(score) = wanted.match_score(&platform)
            && best.is_none_or(|(best_score, _)| score > best_score)
        {
            best = Some((score, entry));
        }
        if !available.contains(&platform) {
            available.push(platform);
        }
    }
    best.map(|(_, entry)| entry).ok_or(available)
}

/// The platform an image configuration declares, `None` when it leaves
/// os or architecture empty (some tools do for scratch images).
pub fn config_platform(config: &ImageConfiguration) -> Option<Platform> {
    let os = config.os().to_string();
    let arch = config.architecture().to_string();
    if os.is_empty() || arch.is_empty() {
        return None;
    }
    Some(Platform::new(&os, &arch, config.variant().as_deref()))
}

pub(crate) fn list_platforms(platforms: &[Platform]) -> String {
    if platforms.is_empty() {
        return "none".to_string();
    }
    platforms
        .iter()
        .map(Platform::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(entries: &[(&str, &str, Option<&str>)]) -> ImageIndex {
        let manifests: Vec<String> = entries
            .iter()
            .enumerate()
            .map(|(n, (os, arch, variant))| {
                let variant = variant
                    .map(|v| format!(r#","variant":"{v}""#))
                    .unwrap_or_default();
                format!(
                    r#"{{"mediaType":"{OCI_MANIFEST}","digest":"sha256:{n:064x}","size":100,"platform":{{"os":"{os}","architecture":"{arch}"{variant}}}}}"#
                )
            })
            .collect();
        let json = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}]}}"#,
            manifests.join(",")
        );
        serde_json::from_str(&json).unwrap()
    }

    #[test]
    fn picks_the_best_entry_for_each_platform() {
        let idx = index(&[
            ("linux", "amd64", None),
            ("linux", "arm", Some("v6")),
            ("linux", "arm", Some("v7")),
            ("linux", "arm64", Some("v8")),
            ("unknown", "unknown", None),
            ("linux", "amd64", None),
        ]);
        let table = [
            ("linux/amd64", Some(0)),
            ("linux/arm64", Some(3)),
            ("linux/arm64", Some(3)),
            ("linux/arm/v7", Some(2)),
            ("linux/arm/v6", Some(1)),
            ("linux/s390x", None),
        ];
        for (wanted, want) in table {
            let platform: Platform = wanted.parse().unwrap();
            let got = select_entry(&idx, &platform)
                .ok()
                .map(|d| d.digest().to_string());
            let want = want.map(|n: usize| format!("sha256:{n:064x}"));
            assert_eq!(got, want, "{wanted}");
        }
    }

    #[test]
    fn arm64_entries_without_variant_match() {
        let idx = index(&[("linux", "arm64", None)]);
        let platform: Platform = "linux/arm64".parse().unwrap();
        assert_eq!(
            select_entry(&idx, &platform).unwrap().digest().to_string(),
            format!("sha256:{:064x}", 0)
        );
    }

    #[test]
    fn a_miss_lists_what_is_available() {
        let idx = index(&[
            ("linux", "amd64", None),
            ("linux", "arm64", Some("v8")),
            ("unknown", "unknown", None),
            ("linux", "arm64", None),
        ]);
        let platform: Platform = "linux/s390x".parse().unwrap();
        let available = select_entry(&idx, &platform).unwrap_err();
        assert_eq!(list_platforms(&available), "linux/amd64, linux/arm64");
        assert_eq!(list_platforms(&[]), "none");
    }

    #[test]
    fn media_types_from_field_or_shape() {
        let table: [(&str, Result<&str, &str>); 6] = [
            (
                r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{}}"#,
                Ok(DOCKER_MANIFEST),
            ),
            (r#"{"schemaVersion":2,"manifests":[]}"#, Ok(OCI_INDEX)),
            (
                r#"{"schemaVersion":2,"config":{},"layers":[]}"#,
                Ok(OCI_MANIFEST),
            ),
            (
                r#"{"schemaVersion":1,"name":"x","fsLayers":[]}"#,
                Err(DOCKER_SCHEMA1),
            ),
            (
                r#"{"schemaVersion":2}"#,
                Err("a JSON document without mediaType, manifests or config"),
            ),
            (
                "<html>",
                Err("not a JSON manifest (expected value at line 1 column 1)"),
            ),
        ];
        for (json, want) in table {
            let got = manifest_media_type(json.as_bytes());
            assert_eq!(got.as_deref().map_err(String::as_str), want, "{json}");
        }
        assert_eq!(manifest_kind(DOCKER_LIST), Some(ManifestKind::Index));
        assert_eq!(manifest_kind(OCI_MANIFEST), Some(ManifestKind::Image));
        assert_eq!(
            manifest_kind("application/vnd.oci.artifact.manifest.v1+json"),
            None
        );
    }

    #[test]
    fn config_platform_normalises() {
        let config: ImageConfiguration = serde_json::from_str(
            r#"{"architecture":"aarch64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#,
        )
        .unwrap();
        assert_eq!(config_platform(&config).unwrap().to_string(), "linux/arm64");
    }
}
