//! `--tar-path`: one image as a docker-archive tarball (the format of
//! `docker save`, read by `docker load`, `skopeo`, `podman load`).
//!
//! Layers are written as the compressed blobs they are: Docker, podman and
//! skopeo detect and decompress them on load, and recompressing would cost
//! a full pass over every layer.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::descriptor::Blob;
use super::digest::{DigestError, digest_hex};
use super::media::{self, Compression};
use super::store::StoredLayer;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("cannot write the image tarball {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot read layer {digest} from {path} for the image tarball: {source}")]
    ReadLayer {
        digest: String,
        path: PathBuf,
        source: io::Error,
    },
    #[error(
        "{0} names an image by digest, but a docker archive can only carry tags; use a tagged destination"
    )]
    DigestReference(String),
    #[error(transparent)]
    Digest(#[from] DigestError),
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ArchiveManifestEntry<'a> {
    config: &'a str,
    repo_tags: &'a [String],
    layers: &'a [String],
}

/// `registry/app` → `registry/app:latest`; digests are refused because
/// `RepoTags` can hold only tags.
pub fn repo_tag(reference: &str) -> Result<String, ArchiveError> {
    if reference.contains('@') {
        return Err(ArchiveError::DigestReference(reference.to_string()));
    }
    let last = reference.rsplit('/').next().unwrap_or(reference);
    if last.contains(':') {
        Ok(reference.to_string())
    } else {
        Ok(format!("{reference}:latest"))
    }
}

fn layer_file_name(layer: &StoredLayer) -> Result<String, DigestError> {
    let hex = digest_hex(&layer.descriptor.digest)?;
    let ext = match media::layer_compression(&layer.descriptor.media_type) {
        Some(Compression::Gzip) => "tar.gz",
        Some(Compression::Zstd) => "tar.zst",
        Some(Compression::None) | None => "tar",
    };
    Ok(format!("{hex}.{ext}"))
}

/// The `manifest.json` of the archive.
fn archive_manifest(config_name: &str, repo_tags: &[String], layer_names: &[String]) -> Vec<u8> {
    let entries = [ArchiveManifestEntry {
        config: config_name,
        repo_tags,
        layers: layer_names,
    }];
    serde_json::to_vec(&entries).unwrap_or_default()
}

fn entry_header(size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_mode(0o644);
    header.set_size(size);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    header
}

/// Writes `dest` (atomically: a temporary file renamed over it) holding
/// the image `config` with `layers` in order, tagged `references`
/// (destinations; a missing tag means `latest`).
pub fn write_docker_archive(
    dest: &Path,
    config: &Blob,
    layers: &[StoredLayer],
    references: &[String],
) -> Result<(), ArchiveError> {
    let repo_tags = references
        .iter()
        .map(|r| repo_tag(r))
        .collect::<Result<Vec<_>, _>>()?;
    let config_name = format!("{}.json", digest_hex(&config.digest)?);
    let layer_names = layers
        .iter()
        .map(layer_file_name)
        .collect::<Result<Vec<_>, _>>()?;
    let manifest = archive_manifest(&config_name, &repo_tags, &layer_names);

    let write_err = |source| ArchiveError::Write {
        path: dest.to_path_buf(),
        source,
    };
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir).map_err(write_err)?;
    let tmp = tempfile::NamedTempFile::new_in(dir).map_err(write_err)?;
    let mut tar = tar::Builder::new(BufWriter::new(tmp.as_file()));

    let mut append = |name: &str, size: u64, data: &mut dyn io::Read| {
        let mut header = entry_header(size);
        tar.append_data(&mut header, name, data)
    };
    append(
        &config_name,
        config.bytes.len() as u64,
        &mut config.bytes.as_slice(),
    )
    .map_err(write_err)?;
    let mut written: Vec<&str> = Vec::new();
    for (layer, name) in layers.iter().zip(&layer_names) {
        // An image may list the same layer twice; the archive holds it once.
        if written.contains(&name.as_str()) {
            continue;
        }
        let read_err = |source| ArchiveError::ReadLayer {
            digest: layer.descriptor.digest.clone(),
            path: layer.path.clone(),
            source,
        };
        let file = File::open(&layer.path).map_err(read_err)?;
        let size = file.metadata().map_err(read_err)?.len();
        append(name, size, &mut io::Read::take(file, size)).map_err(write_err)?;
        written.push(name);
    }
    append(
        "manifest.json",
        manifest.len() as u64,
        &mut manifest.as_slice(),
    )
    .map_err(write_err)?;
    let mut out = tar.into_inner().map_err(write_err)?;
    out.flush().map_err(write_err)?;
    drop(out);
    tmp.as_file().sync_all().map_err(write_err)?;
    tmp.persist(dest).map_err(|e| write_err(e.error))?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn repo_tags_from_references() {
        let cases = [
            ("app", Some("app:latest")),
            ("localhost:5000/app", Some("localhost:5000/app:latest")),
            ("localhost:5000/app:v1", Some("localhost:5000/app:v1")),
            ("reg.io/org/app:1.0", Some("reg.io/org/app:1.0")),
            ("reg.io/app@sha256:abcd", None),
        ];
        for (reference, want) in cases {
            assert_eq!(repo_tag(reference).ok().as_deref(), want, "{reference}");
        }
    }

    #[test]
    fn archive_manifest_bytes() {
        let got = archive_manifest(
            "aa.json",
            &["app:latest".to_string()],
            &["bb.tar.gz".to_string(), "cc.tar".to_string()],
        );
        assert_eq!(
            String::from_utf8(got).unwrap(),
            r#"[{"Config":"aa.json","RepoTags":["app:latest"],"Layers":["bb.tar.gz","cc.tar"]}]"#
        );
    }
}
