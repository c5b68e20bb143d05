//! A local build context (`dir://`, a plain path, `tar://`) as an OCI
//! artifact in the registry, so builder pods anywhere in the cluster can
//! fetch it as `oci://repository@sha256:…`: one gzip layer holding the
//! context tarball, an empty config, an OCI manifest pushed by digest.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use flate2::Compression as Level;
use flate2::write::GzEncoder;

use crate::context::ContextSource;
use crate::image::media;
use crate::image::{HashingWriter, sha256_digest};
use crate::registry::{Reference, Registry, RegistryError, parse_reference};

/// Media type of the artifact's config: the OCI empty descriptor.
pub const EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";
/// Artifact type of a kiln context.
pub const CONTEXT_ARTIFACT: &str = "application/vnd.kiln.context.v1";

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("packing the build context {path}: {source}")]
    Pack {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("uploading the build context to {repository}: {source}")]
    Push {
        repository: String,
        source: RegistryError,
    },
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    WorkRoot(#[from] crate::work_root::WorkRootError),
}

/// A context on this machine, which the cluster cannot read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalContext<'a> {
    Dir(&'a Path),
    Tar(&'a Path),
}

/// The local part of `source`, if any (git, https and oci contexts are
/// reachable from the cluster and passed through).
pub fn local_context(source: &ContextSource) -> Option<LocalContext<'_>> {
    match source {
        ContextSource::Dir { path } => Some(LocalContext::Dir(path)),
        ContextSource::Tar { path } => Some(LocalContext::Tar(path)),
        _ => None,
    }
}

/// Writes `dir` as a gzip tarball to `out`; returns its `sha256:` digest
/// and size. Symlinks stay links; `.dockerignore` is applied by the
/// builder that unpacks it, as for any archive context.
fn pack_dir(dir: &Path, out: &Path) -> std::io::Result<(String, u64)> {
    let file = BufWriter::new(File::create(out)?);
    let hashing = HashingWriter::new(file);
    let mut tar = tar::Builder::new(GzEncoder::new(hashing, Level::fast()));
    tar.follow_symlinks(false);
    // Modes and times as on disk: COPY keeps a context file's mode.
    tar.mode(tar::HeaderMode::Complete);
    tar.append_dir_all(".", dir)?;
    let mut hashing = tar.into_inner()?.finish()?;
    hashing.flush()?;
    let (_, digest, size) = hashing.finish();
    Ok((digest, size))
}

fn file_digest(path: &Path) -> std::io::Result<(String, u64)> {
    let mut hashing = HashingWriter::new(std::io::sink());
    std::io::copy(&mut File::open(path)?, &mut hashing)?;
    let (_, digest, size) = hashing.finish();
    Ok((digest, size))
}

/// The artifact manifest naming `layer` (digest, size, media type).
pub fn manifest_bytes(layer: (&str, u64, &str)) -> Vec<u8> {
    let empty = sha256_digest(b"{}");
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "artifactType": CONTEXT_ARTIFACT,
        "config": {"mediaType": EMPTY_CONFIG, "digest": empty, "size": 2, "data": "e30="},
        "layers": [{"mediaType": layer.2, "digest": layer.0, "size": layer.1}],
    });
    serde_json::to_vec(&manifest).unwrap_or_default()
}

/// Uploads `local` into `repository` and returns the `oci://` context.
pub async fn upload_context(
    registry: &Registry,
    repository: &str,
    local: LocalContext<'_>,
) -> Result<String, UploadError> {
    let scratch = crate::work_root::temp_dir("kiln-upload-", None)?;
    let (path, media_type) = match local {
        LocalContext::Dir(_) => (scratch.path().join("context.tar.gz"), media::OCI_LAYER_GZIP),
        LocalContext::Tar(tar) => (tar.to_path_buf(), media::OCI_LAYER_TAR),
    };
    let packed = match local {
        LocalContext::Dir(dir) => pack_dir(dir, &path),
        LocalContext::Tar(_) => file_digest(&path),
    };
    let context_path = match local {
        LocalContext::Dir(p) | LocalContext::Tar(p) => p.to_path_buf(),
    };
    let (digest, size) = packed.map_err(|source| UploadError::Pack {
        path: context_path,
        source,
    })?;
    let target: Reference = parse_reference(repository)?;
    let push_error = |source| UploadError::Push {
        repository: repository.to_owned(),
        source,
    };
    registry
        .push_blob_from_file(&target, &digest, size, &path, None)
        .await
        .map_err(push_error)?;
    let empty = scratch.path().join("config.json");
    std::fs::write(&empty, b"{}").map_err(|source| UploadError::Pack {
        path: empty.clone(),
        source,
    })?;
    registry
        .push_blob_from_file(&target, &sha256_digest(b"{}"), 2, &empty, None)
        .await
        .map_err(push_error)?;
    let manifest = manifest_bytes((&digest, size, media_type));
    let manifest_digest = sha256_digest(&manifest);
    let by_digest = target.clone_with_digest(manifest_digest.clone());
    registry
        .push_manifest_raw(&by_digest, &manifest, media::OCI_MANIFEST)
        .await
        .map_err(push_error)?;
    let name = repository.split('@').next().unwrap_or(repository);
    Ok(format!("oci://{name}@{manifest_digest}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn manifest_shape() {
        let bytes = manifest_bytes(("sha256:ab", 10, media::OCI_LAYER_GZIP));
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(value["artifactType"], CONTEXT_ARTIFACT);
        assert_eq!(
            value["config"]["digest"],
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert_eq!(value["layers"][0]["size"], 10);
    }

    #[test]
    fn packing_is_deterministic_and_readable() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::create_dir(dir.path().join("src")).unwrap();
        std::fs::write(dir.path().join("src/a.txt"), "a").unwrap();
        std::os::unix::fs::symlink("a.txt", dir.path().join("src/link")).unwrap();
        let out = tempfile::tempdir().unwrap();
        let one = pack_dir(dir.path(), &out.path().join("1.tgz")).unwrap();
        let two = pack_dir(dir.path(), &out.path().join("2.tgz")).unwrap();
        assert_eq!(one, two);
        assert_eq!(one, file_digest(&out.path().join("1.tgz")).unwrap());
        let file = File::open(out.path().join("1.tgz")).unwrap();
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
        let mut names: Vec<(String, bool)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().display().to_string(),
                    e.header().entry_type().is_symlink(),
                )
            })
            .collect();
        names.sort();
        assert!(names.contains(&("src/link".to_owned(), true)), "{names:?}");
        assert!(names.iter().any(|(n, _)| n == "Dockerfile"), "{names:?}");
    }
}
