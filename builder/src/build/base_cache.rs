//! `--cache-dir` keeps base images, not only their layers: each base pulled
//! for a platform leaves its manifest and config in the store, and a record
//! of what its reference resolved to under `bases/`. Then
//!
//! - a base named by digest (`image@sha256:…`) comes from the cache
//!   directory without asking the registry: the digest names the content;
//! - a base named by tag is still resolved at the registry (the tag may have
//!   moved), but when the registry cannot be reached the kept copy is used,
//!   with a warning naming the digest it had. Rate-limited or flaky upstream
//!   registries (Docker Hub) then do not fail rebuilds.
//!
//! Every blob read back is checked against its digest (`read_verified`); a
//! record whose blobs are gone or damaged counts as absent.

use std::path::PathBuf;

use oci_spec::image::{ImageConfiguration, ImageManifest};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::BuildError;
use crate::image::{BlobStore, sha256_digest};
use crate::platform::Platform;
use crate::registry::{PulledImage, Registry, RegistryError, parse_reference};

/// The folder of `--cache-dir` with one record per base and platform.
const BASES_DIR: &str = "bases";

/// What a base reference resolved to for one platform.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct BaseRecord {
    reference: String,
    source: String,
    platform: String,
    manifest_digest: String,
    index_digest: Option<String>,
    manifest_media_type: String,
    config_digest: String,
}

/// Pulls `reference` for `platform` through the `--cache-dir` store `kept`
/// (see the module documentation); without one, straight from the registry.
pub async fn pull_base_image(
    registry: &Registry,
    kept: Option<&BlobStore>,
    reference: &str,
    platform: &Platform,
) -> Result<PulledImage, BuildError> {
    let Some(kept) = kept else {
        return Ok(registry.pull_image(reference, platform).await?);
    };
    let canonical = parse_reference(reference)?;
    if canonical.digest().is_some()
        && let Some(found) = kept_base(kept, &canonical.whole(), platform)
    {
        info!(
            "base image {reference} for {platform} from --cache-dir {}",
            kept.root().display()
        );
        return Ok(found);
    }
    match registry.pull_image(reference, platform).await {
        Ok(pulled) => {
            keep_base(kept, &pulled, platform);
            Ok(pulled)
        }
        Err(error @ RegistryError::Connection { .. }) => {
            match kept_base(kept, &canonical.whole(), platform) {
                Some(found) => {
                    warn!(
                        "{error}; using base image {reference} for {platform} as kept in --cache-dir {} ({})",
                        kept.root().display(),
                        found.manifest_digest
                    );
                    Ok(found)
                }
                None => Err(error.into()),
            }
        }
        Err(error) => Err(error.into()),
    }
}

fn record_path(kept: &BlobStore, reference: &str, platform: &Platform) -> PathBuf {
    let key = sha256_digest(format!("{reference}\n{platform}").as_bytes());
    let name = key.trim_start_matches("sha256:");
    kept.root().join(BASES_DIR).join(format!("{name}.json"))
}

/// Keeps `pulled`'s manifest, config and record. Best effort, like every
/// write to the cache directory: a failure is a warning.
fn keep_base(kept: &BlobStore, pulled: &PulledImage, platform: &Platform) {
    let keep = || -> Result<(), BuildError> {
        kept.put_bytes(&pulled.manifest_bytes)?;
        let config_digest = kept.put_bytes(&pulled.config_bytes)?;
        let record = BaseRecord {
            reference: pulled.reference.whole(),
            source: pulled.source.whole(),
            platform: platform.to_string(),
            manifest_digest: pulled.manifest_digest.clone(),
            index_digest: pulled.index_digest.clone(),
            manifest_media_type: pulled.manifest_media_type.clone(),
            config_digest,
        };
        let path = record_path(kept, &record.reference, platform);
        let dir = kept.root().join(BASES_DIR);
        std::fs::create_dir_all(&dir).map_err(BuildError::io("creating", &dir))?;
        let json = serde_json::to_vec_pretty(&record)
            .map_err(|e| BuildError::Other(format!("encoding a base image record: {e}")))?;
        let mut tmp = tempfile::NamedTempFile::new_in(&dir)
            .map_err(BuildError::io("creating a file in", &dir))?;
        std::io::Write::write_all(&mut tmp, &json).map_err(BuildError::io("writing", &path))?;
        tmp.persist(&path)
            .map_err(|e| BuildError::io("writing", &path)(e.error))?;
        Ok(())
    };
    if let Err(error) = keep() {
        warn!(
            "could not keep base image {} in --cache-dir {}: {error}",
            pulled.reference.whole(),
            kept.root().display()
        );
    }
}

/// The kept copy of `reference` (canonical) for `platform`, when its record
/// and blobs are there and intact.
fn kept_base(kept: &BlobStore, reference: &str, platform: &Platform) -> Option<PulledImage> {
    let path = record_path(kept, reference, platform);
    let text = std::fs::read(&path).ok()?;
    let record: BaseRecord = match serde_json::from_slice(&text) {
        Ok(record) => record,
        Err(error) => {
            warn!("ignoring {}: {error}", path.display());
            return None;
        }
    };
    let manifest_bytes = read_verified(kept, &record.manifest_digest)?;
    let config_bytes = read_verified(kept, &record.config_digest)?;
    let manifest: ImageManifest = serde_json::from_slice(&manifest_bytes).ok()?;
    let config: ImageConfiguration = serde_json::from_slice(&config_bytes).ok()?;
    Some(PulledImage {
        reference: parse_reference(&record.reference).ok()?,
        source: parse_reference(&record.source).ok()?,
        manifest_digest: record.manifest_digest,
        index_digest: record.index_digest,
        manifest_bytes,
        manifest_media_type: record.manifest_media_type,
        manifest,
        config_bytes,
        config,
    })
}

/// A small blob of the store, only if it still hashes to its digest.
fn read_verified(kept: &BlobStore, digest: &str) -> Option<Vec<u8>> {
    let bytes = kept.read(digest).ok()?;
    if sha256_digest(&bytes) == digest {
        Some(bytes)
    } else {
        warn!("--cache-dir blob {digest} no longer matches its digest; not using it");
        None
    }
}
