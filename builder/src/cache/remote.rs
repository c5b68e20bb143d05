//! Cache images in a registry: one image per cached instruction, tagged by
//! its key. The manifest's one layer is the instruction's layer (none when
//! it changed no files); the config records the platform, the history
//! entry the instruction adds and, in `created`, when the image was made,
//! so `--cache-ttl` can be judged.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::CacheError;
use super::key::key_tag;
use super::ttl::is_expired;
use crate::image::config::format_rfc3339;
use crate::image::{
    Blob, BlobStore, Descriptor, ImageConfig, ManifestFormat, manifest_blob, parse_config,
    parse_manifest,
};
use crate::platform::Platform;
use crate::registry::{Access, Reference, Registry, parse_reference};

/// The manifest annotation holding the key an image was stored under.
pub const KEY_ANNOTATION: &str = "dev.kiln.cache.key";
/// The manifest annotation holding the creation time (also the config's
/// `created`).
pub const CREATED_ANNOTATION: &str = "org.opencontainers.image.created";
/// What the config says besides `created`, copied into manifest
/// annotations so that a lookup decides from the manifest alone (one
/// registry round trip per cached step instead of two). Cache images
/// without them (written before) are read through their config.
const PLATFORM_ANNOTATION: &str = "dev.kiln.cache.platform";
const CREATED_BY_ANNOTATION: &str = "dev.kiln.cache.created-by";
const DIFF_ID_ANNOTATION: &str = "dev.kiln.cache.diff-id";

/// A cache image found for a key and still within its TTL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedStep {
    /// `repo@sha256:…` of the cache image: its layer is fetched from here.
    pub source: Reference,
    /// The layer and its diffID; `None` when the instruction changed no
    /// files.
    pub layer: Option<(Descriptor, String)>,
    /// The history entry the instruction added.
    pub created_by: String,
    pub comment: Option<String>,
}

/// What a lookup found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    Hit(Box<CachedStep>),
    Miss,
    /// There, but older than `--cache-ttl`: a miss that is pushed again.
    Expired {
        created: Option<String>,
    },
}

/// The reference of `key`'s cache image in `repository`.
pub fn cache_reference(repository: &str, key: &str) -> Result<Reference, CacheError> {
    let text = format!("{repository}:{}", key_tag(key));
    parse_reference(&text).map_err(|source| CacheError::Repository {
        repository: repository.to_string(),
        source: Box::new(source),
    })
}

/// Looks `key` up in `repository` for `platform`.
pub async fn lookup(
    registry: &Registry,
    repository: &str,
    key: &str,
    platform: &Platform,
    ttl: Duration,
    now: u64,
) -> Result<Lookup, CacheError> {
    let tagged = cache_reference(repository, key)?;
    let (bytes, media_type, digest) = match registry.fetch_manifest_raw(&tagged, Access::Push).await
    {
        Ok(found) => found,
        Err(error) if error.is_not_found() => return Ok(Lookup::Miss),
        Err(error) => {
            return Err(CacheError::Lookup {
                key: key.to_string(),
                source: Box::new(error),
            });
        }
    };
    let invalid = |message: String| CacheError::Invalid {
        reference: tagged.whole(),
        message,
    };
    let manifest = parse_manifest(&bytes, Some(&media_type)).map_err(|e| invalid(e.to_string()))?;
    let source = tagged.clone_with_digest(digest);
    let config = match config_from_annotations(&manifest.annotations) {
        Some(config) => config,
        None => {
            let config_descriptor = crate::image::descriptor::to_oci(&manifest.config)
                .map_err(|e| invalid(e.to_string()))?;
            let config_bytes = registry
                .fetch_blob_bytes(&source, &config_descriptor, Access::Push)
                .await
                .map_err(|source| CacheError::Lookup {
                    key: key.to_string(),
                    source: Box::new(source),
                })?;
            parse_config(&config_bytes).map_err(|e| invalid(e.to_string()))?
        }
    };
    decide(&manifest.layers, &config, platform, ttl, now)
        .map(|found| match found {
            Decision::Hit {
                layer,
                created_by,
                comment,
            } => Lookup::Hit(Box::new(CachedStep {
                source,
                layer,
                created_by,
                comment,
            })),
            Decision::Expired { created } => Lookup::Expired { created },
        })
        .map_err(invalid)
}

/// The part of a cache image's config a lookup reads, from the manifest's
/// annotations; `None` when they are not all there.
fn config_from_annotations(annotations: &BTreeMap<String, String>) -> Option<ImageConfig> {
    let platform = annotations.get(PLATFORM_ANNOTATION)?;
    let created = annotations.get(CREATED_ANNOTATION)?;
    let created_by = annotations.get(CREATED_BY_ANNOTATION)?;
    let mut parts = platform.splitn(3, '/');
    let mut config = ImageConfig::default();
    config.os = parts.next()?.to_string();
    config.architecture = parts.next()?.to_string();
    config.variant = parts.next().map(str::to_string);
    config.created = Some(created.clone());
    let diff_id = annotations.get(DIFF_ID_ANNOTATION);
    if let Some(diff_id) = diff_id {
        config.rootfs.diff_ids.push(diff_id.clone());
    }
    config.history.push(crate::image::config::History {
        created: Some(created.clone()),
        created_by: Some(created_by.clone()),
        author: None,
        comment: None,
        empty_layer: diff_id.is_none(),
    });
    Some(config)
}

/// What a cache image's manifest layers and config say, decided without
/// I/O.
// Short-lived and returned once per lookup: boxing the hit buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
enum Decision {
    Hit {
        layer: Option<(Descriptor, String)>,
        created_by: String,
        comment: Option<String>,
    },
    Expired {
        created: Option<String>,
    },
}

fn decide(
    layers: &[Descriptor],
    config: &ImageConfig,
    platform: &Platform,
    ttl: Duration,
    now: u64,
) -> Result<Decision, String> {
    let found = Platform {
        os: config.os.clone(),
        architecture: config.architecture.clone(),
        variant: config.variant.clone(),
    };
    // The key holds the platform already; this guards against a cache
    // image written by something else under the same tag.
    if !found.same_as(platform) {
        return Err(format!(
            "it was built for {found}, not {platform}; delete the tag from the cache repository"
        ));
    }
    if is_expired(config.created.as_deref(), now, ttl) {
        return Ok(Decision::Expired {
            created: config.created.clone(),
        });
    }
    let [history] = config.history.as_slice() else {
        return Err(format!(
            "its config has {} history entries instead of 1",
            config.history.len()
        ));
    };
    let layer = match (layers, config.rootfs.diff_ids.as_slice()) {
        ([], []) => None,
        ([layer], [diff_id]) => Some((layer.clone(), diff_id.clone())),
        _ => {
            return Err(format!(
                "it has {} layers and {} diff_ids instead of at most one of each",
                layers.len(),
                config.rootfs.diff_ids.len()
            ));
        }
    };
    Ok(Decision::Hit {
        layer,
        created_by: history.created_by.clone().unwrap_or_default(),
        comment: history.comment.clone(),
    })
}

/// One instruction's result, ready to be stored under its key.
#[derive(Clone, Debug)]
pub struct StepToStore {
    pub key: String,
    pub platform: Platform,
    /// The layer file, its descriptor and its diffID.
    pub layer: Option<(std::path::PathBuf, Descriptor, String)>,
    pub created_by: String,
    /// When the cache image is made (seconds since 1970, wall clock: the
    /// TTL is judged from it, so `--reproducible` does not apply).
    pub now: u64,
}

/// The config and manifest of a cache image: a pure function of `step`.
pub fn cache_image(step: &StepToStore) -> Result<(Blob, Blob), CacheError> {
    let mut config = ImageConfig::scratch(&step.platform);
    config.set_created(step.now);
    config.add_history(
        step.now,
        &step.created_by,
        None,
        step.layer.as_ref().map(|(_, _, diff_id)| diff_id.as_str()),
    );
    let config_blob = config.to_blob(ManifestFormat::Oci);
    let layers: Vec<Descriptor> = step
        .layer
        .iter()
        .map(|(_, descriptor, _)| descriptor.clone())
        .collect();
    let mut platform = format!("{}/{}", config.os, config.architecture);
    if let Some(variant) = &config.variant {
        platform = format!("{platform}/{variant}");
    }
    let mut annotations = BTreeMap::from([
        (CREATED_ANNOTATION.to_string(), format_rfc3339(step.now)),
        (KEY_ANNOTATION.to_string(), step.key.clone()),
        (PLATFORM_ANNOTATION.to_string(), platform),
        (CREATED_BY_ANNOTATION.to_string(), step.created_by.clone()),
    ]);
    if let Some((_, _, diff_id)) = &step.layer {
        annotations.insert(DIFF_ID_ANNOTATION.to_string(), diff_id.clone());
    }
    let manifest = manifest_blob(
        ManifestFormat::Oci,
        &config_blob.descriptor(),
        &layers,
        &annotations,
    )
    .map_err(|e| CacheError::Other(e.to_string()))?;
    Ok((config_blob, manifest))
}

/// Pushes `step` as a cache image into `repository`, tagged by its key.
pub async fn store(
    registry: &Registry,
    blobs: &BlobStore,
    repository: &str,
    step: &StepToStore,
) -> Result<(), CacheError> {
    let target = cache_reference(repository, &step.key)?;
    let push_err = |source| CacheError::Push {
        repository: repository.to_string(),
        source: Box::new(source),
    };
    let (config, manifest) = cache_image(step)?;
    if let Some((path, descriptor, _)) = &step.layer {
        registry
            .push_blob_from_file(&target, &descriptor.digest, descriptor.size, path, None)
            .await
            .map_err(push_err)?;
    }
    blobs
        .put_blob(&config)
        .map_err(|e| CacheError::Other(e.to_string()))?;
    let config_path = blobs
        .path(&config.digest)
        .map_err(|e| CacheError::Other(e.to_string()))?;
    push_small(registry, &target, &config, &config_path)
        .await
        .map_err(push_err)?;
    registry
        .push_manifest_raw(&target, &manifest.bytes, &manifest.media_type)
        .await
        .map_err(push_err)?;
    Ok(())
}

async fn push_small(
    registry: &Registry,
    target: &Reference,
    blob: &Blob,
    path: &Path,
) -> Result<(), crate::registry::RegistryError> {
    registry
        .push_blob_from_file(target, &blob.digest, blob.bytes.len() as u64, path, None)
        .await
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const DIFF_ID: &str = "sha256:dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd";
    const LAYER: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const HOUR: Duration = Duration::from_secs(3600);
    const NOW: u64 = 1_700_000_000;

    fn step(layer: bool) -> StepToStore {
        StepToStore {
            key: "sha256:abcd".to_string(),
            platform: "linux/arm64".parse().unwrap(),
            layer: layer.then(|| {
                (
                    std::path::PathBuf::from("/unused"),
                    Descriptor::new("application/vnd.oci.image.layer.v1.tar+gzip", LAYER, 42),
                    DIFF_ID.to_string(),
                )
            }),
            created_by: "RUN make".to_string(),
            now: NOW,
        }
    }

    /// What a lookup decides about the image [`cache_image`] wrote.
    fn round_trip(step: &StepToStore, platform: &str, now: u64) -> Result<Decision, String> {
        let (config, manifest) = cache_image(step).unwrap();
        let manifest = parse_manifest(&manifest.bytes, None).unwrap();
        let config = parse_config(&config.bytes).unwrap();
        decide(
            &manifest.layers,
            &config,
            &platform.parse().unwrap(),
            HOUR,
            now,
        )
    }

    #[test]
    fn cache_image_bytes() {
        let (config, manifest) = cache_image(&step(true)).unwrap();
        let config: serde_json::Value = serde_json::from_slice(&config.bytes).unwrap();
        assert_eq!(config["created"], "2023-11-14T22:13:20Z");
        assert_eq!(config["architecture"], "arm64");
        // arm64's baseline variant is written nowhere, as in BuildKit.
        assert_eq!(config.get("variant"), None);
        assert_eq!(config["rootfs"]["diff_ids"], serde_json::json!([DIFF_ID]));
        assert_eq!(config["history"][0]["created_by"], "RUN make");
        let manifest: serde_json::Value = serde_json::from_slice(&manifest.bytes).unwrap();
        assert_eq!(manifest["layers"][0]["digest"], LAYER);
        assert_eq!(
            manifest["annotations"],
            serde_json::json!({
                "dev.kiln.cache.key": "sha256:abcd",
                "dev.kiln.cache.platform": "linux/arm64",
                "dev.kiln.cache.created-by": "RUN make",
                "dev.kiln.cache.diff-id": DIFF_ID,
                "org.opencontainers.image.created": "2023-11-14T22:13:20Z",
            })
        );
    }

    /// A lookup that reads the manifest's annotations decides as one that
    /// reads the config, for every case `decisions` covers; a manifest
    /// without them (an older cache image) is read through its config.
    #[test]
    fn the_annotations_decide_as_the_config_does() {
        for (step, platform, now) in [
            (step(true), "linux/arm64", NOW + 60),
            (step(false), "linux/arm64", NOW),
            (step(true), "linux/arm64", NOW + 3601),
            (step(true), "linux/amd64", NOW),
            (step(true), "linux/arm64/v8", NOW),
        ] {
            let (_, manifest) = cache_image(&step).unwrap();
            let manifest = parse_manifest(&manifest.bytes, None).unwrap();
            let from_annotations = config_from_annotations(&manifest.annotations).unwrap();
            let by_annotations = decide(
                &manifest.layers,
                &from_annotations,
                &platform.parse().unwrap(),
                HOUR,
                now,
            );
            assert_eq!(
                by_annotations,
                round_trip(&step, platform, now),
                "{platform} at {now}"
            );
        }
        let older = BTreeMap::from([(
            CREATED_ANNOTATION.to_string(),
            "2023-11-14T22:13:20Z".to_string(),
        )]);
        assert!(config_from_annotations(&older).is_none());
    }

    #[test]
    fn decisions() {
        let with_layer = step(true);
        let Decision::Hit {
            layer, created_by, ..
        } = round_trip(&with_layer, "linux/arm64", NOW + 60).unwrap()
        else {
            panic!("expected a hit");
        };
        assert_eq!(layer.unwrap().1, DIFF_ID);
        assert_eq!(created_by, "RUN make");

        assert_eq!(
            round_trip(&step(false), "linux/arm64", NOW).unwrap(),
            Decision::Hit {
                layer: None,
                created_by: "RUN make".to_string(),
                comment: None
            }
        );
        assert_eq!(
            round_trip(&with_layer, "linux/arm64", NOW + 3601).unwrap(),
            Decision::Expired {
                created: Some("2023-11-14T22:13:20Z".to_string())
            }
        );
        assert_eq!(
            round_trip(&with_layer, "linux/amd64", NOW).unwrap_err(),
            "it was built for linux/arm64, not linux/amd64; delete the tag from the cache repository"
        );
    }

    #[test]
    fn references() {
        assert_eq!(
            cache_reference("127.0.0.1:5000/app/cache", "sha256:0a1b")
                .unwrap()
                .whole(),
            "127.0.0.1:5000/app/cache:0a1b"
        );
        assert!(cache_reference("Not A Repo", "sha256:0a1b").is_err());
    }
}
