//! `--oci-layout-path`: an OCI image layout directory (`oci-layout`,
//! `index.json`, `blobs/sha256/…`), created or extended.
//!
//! Hand-written rather than with `ocidir`: kiln needs only blob copy and an
//! `index.json` update, and must keep its own deterministic JSON.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::descriptor::{Blob, Descriptor};
use super::digest::{DigestError, digest_hex};
use super::media;
use super::store::StoredLayer;

/// The annotation naming a manifest in `index.json` (`oci:<dir>:<tag>`).
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
const LAYOUT_FILE: &str = "oci-layout";
const LAYOUT_CONTENT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("cannot write the OCI layout {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} is not an OCI image layout kiln can extend: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error(transparent)]
    Digest(#[from] DigestError),
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LayoutIndex {
    schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
}

/// The `index.json` after adding `entry`: an entry with the same
/// `ref.name` is replaced (the tag moves), an untagged entry for the same
/// digest is not duplicated, everything else is kept in order.
fn updated_index(existing: Option<LayoutIndex>, entry: Descriptor) -> LayoutIndex {
    let mut index = existing.unwrap_or(LayoutIndex {
        schema_version: 2,
        media_type: None,
        manifests: Vec::new(),
        annotations: BTreeMap::new(),
    });
    index.media_type = Some(media::OCI_INDEX.to_string());
    let name = entry.annotations.get(REF_NAME).cloned();
    index.manifests.retain(|m| match &name {
        Some(name) => m.annotations.get(REF_NAME) != Some(name),
        None => m.digest != entry.digest || m.annotations.contains_key(REF_NAME),
    });
    index.manifests.push(entry);
    index
}

pub struct OciLayout {
    root: PathBuf,
}

impl OciLayout {
    /// Opens the layout at `root`, creating the directory and its
    /// `oci-layout` file if missing.
    pub fn open_or_create(root: &Path) -> Result<OciLayout, LayoutError> {
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| LayoutError::Io { path, source }
        };
        let blobs = root.join("blobs").join("sha256");
        fs::create_dir_all(&blobs).map_err(io_err(&blobs))?;
        let marker = root.join(LAYOUT_FILE);
        match fs::read(&marker) {
            Ok(content) => {
                let parsed: serde_json::Value =
                    serde_json::from_slice(&content).map_err(|e| LayoutError::Invalid {
                        path: root.to_path_buf(),
                        reason: format!("{LAYOUT_FILE}: {e}"),
                    })?;
                if parsed.get("imageLayoutVersion").and_then(|v| v.as_str()) != Some("1.0.0") {
                    return Err(LayoutError::Invalid {
                        path: root.to_path_buf(),
                        reason: format!("{LAYOUT_FILE} does not declare imageLayoutVersion 1.0.0"),
                    });
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                write_atomic(&marker, LAYOUT_CONTENT)?;
            }
            Err(e) => return Err(io_err(&marker)(e)),
        }
        Ok(OciLayout {
            root: root.to_path_buf(),
        })
    }

    fn blob_path(&self, digest: &str) -> Result<PathBuf, LayoutError> {
        Ok(self
            .root
            .join("blobs")
            .join("sha256")
            .join(digest_hex(digest)?))
    }

    /// Adds a blob from a file: a hard link where the filesystem allows
    /// (blobs never change), a copy otherwise.
    pub fn put_file(&self, digest: &str, source: &Path) -> Result<(), LayoutError> {
        let dest = self.blob_path(digest)?;
        if dest.is_file() {
            return Ok(());
        }
        if fs::hard_link(source, &dest).is_ok() {
            return Ok(());
        }
        let tmp = self
            .root
            .join("blobs")
            .join(format!(".tmp-{}", digest_hex(digest)?));
        let io_err = |source| LayoutError::Io {
            path: dest.clone(),
            source,
        };
        fs::copy(source, &tmp).map_err(io_err)?;
        fs::rename(&tmp, &dest).map_err(io_err)
    }

    pub fn put_blob(&self, blob: &Blob) -> Result<(), LayoutError> {
        let dest = self.blob_path(&blob.digest)?;
        if dest.is_file() {
            return Ok(());
        }
        write_atomic(&dest, &blob.bytes)
    }

    /// Lists `manifest` in `index.json`, named `tag` if given.
    pub fn add_to_index(&self, manifest: &Blob, tag: Option<&str>) -> Result<(), LayoutError> {
        let path = self.root.join("index.json");
        let existing = match fs::read(&path) {
            Ok(bytes) => Some(serde_json::from_slice::<LayoutIndex>(&bytes).map_err(|e| {
                LayoutError::Invalid {
                    path: self.root.clone(),
                    reason: format!("index.json: {e}"),
                }
            })?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(source) => return Err(LayoutError::Io { path, source }),
        };
        let mut entry = manifest.descriptor();
        if let Some(tag) = tag {
            entry
                .annotations
                .insert(REF_NAME.to_string(), tag.to_string());
        }
        let index = updated_index(existing, entry);
        let bytes = serde_json::to_vec(&index).unwrap_or_default();
        write_atomic(&path, &bytes)
    }

    /// Writes one image: its layers, config and manifest, then lists it.
    pub fn write_image(
        &self,
        manifest: &Blob,
        config: &Blob,
        layers: &[StoredLayer],
        tag: Option<&str>,
    ) -> Result<(), LayoutError> {
        for layer in layers {
            self.put_file(&layer.descriptor.digest, &layer.path)?;
        }
        self.put_blob(config)?;
        self.put_blob(manifest)?;
        self.add_to_index(manifest, tag)
    }
}

/// Writes through a temporary file and a rename, so readers never see a
/// half-written `index.json` or blob.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), LayoutError> {
    let io_err = |source| LayoutError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_err)?;
    tmp.write_all(bytes).map_err(io_err)?;
    tmp.persist(path).map_err(|e| io_err(e.error))?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn entry(digest: &str, tag: Option<&str>) -> Descriptor {
        let mut d = Descriptor::new(media::OCI_MANIFEST, digest, 1);
        if let Some(tag) = tag {
            d.annotations.insert(REF_NAME.to_string(), tag.to_string());
        }
        d
    }

    fn listed(index: &LayoutIndex) -> Vec<(String, Option<String>)> {
        index
            .manifests
            .iter()
            .map(|m| (m.digest.clone(), m.annotations.get(REF_NAME).cloned()))
            .collect()
    }

    #[test]
    fn index_updates() {
        let i = updated_index(None, entry("sha256:a", Some("v1")));
        let i = updated_index(Some(i), entry("sha256:b", Some("v2")));
        let i = updated_index(Some(i), entry("sha256:c", Some("v1")));
        let i = updated_index(Some(i), entry("sha256:d", None));
        let i = updated_index(Some(i), entry("sha256:d", None));
        let s = |x: &str| x.to_string();
        assert_eq!(
            listed(&i),
            vec![
                (s("sha256:b"), Some(s("v2"))),
                (s("sha256:c"), Some(s("v1"))),
                (s("sha256:d"), None),
            ]
        );
        assert_eq!(
            String::from_utf8(
                serde_json::to_vec(&updated_index(None, entry("sha256:a", Some("t")))).unwrap()
            )
            .unwrap(),
            r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:a","size":1,"annotations":{"org.opencontainers.image.ref.name":"t"}}]}"#
        );
    }

    #[test]
    fn foreign_layout_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("oci-layout"),
            br#"{"imageLayoutVersion":"2.0.0"}"#,
        )
        .unwrap();
        let err = OciLayout::open_or_create(dir.path()).err().unwrap();
        assert_eq!(
            err.to_string(),
            format!(
                "{} is not an OCI image layout kiln can extend: oci-layout does not declare imageLayoutVersion 1.0.0",
                dir.path().display()
            )
        );
    }
}
