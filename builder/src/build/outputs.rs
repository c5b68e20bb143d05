//! The finished image leaves the build: pushed to every `--destination`,
//! written as a docker-archive (`--tar-path`) or into an OCI layout
//! (`--oci-layout-path`), and its digest written where kaniko's digest-file
//! flags ask.

use std::path::Path;

use tracing::{info, warn};

use super::BuildError;
use super::state::{BlobSource, Blobs, LayerRecord, StageImage};
use crate::image::{
    Blob, Descriptor, ImageConfig, ManifestFormat, OciLayout, OciMode, manifest_blob,
    media::convert_layer_media_type, write_docker_archive,
};
use crate::options::BuildOptions;
use crate::options::OutputOptions;
use crate::registry::names::{repository, tag_of};
use crate::registry::{Reference, RegistryError, parse_reference};

/// What kiln produced, as reported to the user (and later to a
/// BuildRequest's status).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildOutcome {
    /// Digest of the image manifest, `sha256:…`.
    pub digest: String,
    pub media_type: String,
    /// Size of the manifest in bytes.
    pub size: u64,
    /// Every destination it was pushed to, as `name@digest`.
    pub pushed: Vec<String>,
    /// Instructions taken from the layer cache (`--cache`).
    pub cache_hits: u64,
    /// Cacheable instructions that were not in the cache and ran.
    pub cache_misses: u64,
}

/// How an image is named in the registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushMode {
    /// Under each destination's tag (a single-platform build).
    Tags,
    /// By digest only, in each destination's repository: one platform of a
    /// multi-platform image, which the index will name.
    DigestOnly,
    /// By digest, and also tagged `<tag>-<suffix>` (`--platform-tags`).
    DigestAndSuffixedTag(String),
}

/// Where and how the image goes out.
pub struct OutputPlan<'a> {
    pub destinations: &'a [String],
    pub push: bool,
    pub push_mode: PushMode,
    pub oci_mode: OciMode,
    pub annotations: &'a std::collections::BTreeMap<String, String>,
    pub tar_path: Option<&'a Path>,
    pub oci_layout_path: Option<&'a Path>,
    pub digest_files: DigestFiles<'a>,
    /// `--push-ignore-immutable-tag-errors`.
    pub ignore_immutable_tags: bool,
    /// `--provenance`, with the options the statement records.
    pub provenance: Option<(crate::attest::ProvenanceMode, &'a BuildOptions)>,
    /// `--sbom`.
    pub sbom: bool,
}

impl<'a> OutputPlan<'a> {
    /// Every output the flags ask for.
    pub fn from_options(options: &'a BuildOptions, push_mode: PushMode) -> OutputPlan<'a> {
        let output = &options.output;
        OutputPlan {
            destinations: &output.destinations,
            push: !output.no_push,
            push_mode,
            oci_mode: oci_mode(options),
            annotations: &output.annotations,
            tar_path: output.tar_path.as_deref(),
            oci_layout_path: output.oci_layout_path.as_deref(),
            digest_files: DigestFiles::from_output(output),
            ignore_immutable_tags: output.push_ignore_immutable_tag_errors,
            provenance: output.provenance.map(|mode| (mode, options)),
            sbom: output.sbom,
        }
    }

    /// Only the registry pushes: one platform of a multi-platform build,
    /// whose files and digest files describe the index instead.
    pub fn registry_only(options: &'a BuildOptions, push_mode: PushMode) -> OutputPlan<'a> {
        OutputPlan {
            tar_path: None,
            oci_layout_path: None,
            digest_files: DigestFiles::default(),
            ..OutputPlan::from_options(options, push_mode)
        }
    }
}

/// The media-type family the flags ask for: `--legacy-manifest-list`
/// implies Docker types for the children of the list.
pub fn oci_mode(options: &BuildOptions) -> OciMode {
    if options.multi_platform.legacy_manifest_list {
        return OciMode::Docker;
    }
    options.output.oci_mode
}

/// A manifest ready to be written, in one media-type family.
struct Assembled {
    format: ManifestFormat,
    config: Blob,
    layers: Vec<Descriptor>,
    manifest: Blob,
}

fn assemble(
    config: &ImageConfig,
    layers: &[LayerRecord],
    format: ManifestFormat,
    annotations: &std::collections::BTreeMap<String, String>,
) -> Result<Assembled, BuildError> {
    let config_blob = config.to_blob(format);
    let layer_descriptors = layers
        .iter()
        .map(|layer| {
            let mut descriptor = layer.descriptor.clone();
            descriptor.media_type =
                convert_layer_media_type(&descriptor.media_type, &descriptor.digest, format)?
                    .to_string();
            Ok(descriptor)
        })
        .collect::<Result<Vec<_>, BuildError>>()?;
    let empty = std::collections::BTreeMap::new();
    // Manifest annotations are OCI-only; a Docker manifest goes without.
    let annotations = if format == ManifestFormat::Oci {
        annotations
    } else {
        &empty
    };
    let manifest = manifest_blob(
        format,
        &config_blob.descriptor(),
        &layer_descriptors,
        annotations,
    )?;
    Ok(Assembled {
        format,
        config: config_blob,
        layers: layer_descriptors,
        manifest,
    })
}

/// Sends the image everywhere `plan` says and returns what was made.
pub async fn publish(
    image: &StageImage,
    plan: &OutputPlan<'_>,
    blobs: &Blobs<'_>,
) -> Result<BuildOutcome, BuildError> {
    let first_format = match plan.oci_mode {
        OciMode::Docker => ManifestFormat::Docker,
        OciMode::Oci | OciMode::Auto => ManifestFormat::Oci,
    };
    let mut assembled = assemble(&image.config, &image.layers, first_format, plan.annotations)?;
    let mut pushed = Vec::new();

    if plan.push {
        for name in plan.destinations {
            let target = parse_reference(name)?;
            push_blobs(&assembled, image, &target, blobs).await?;
            let result = push_manifest(&assembled, name, plan, blobs).await;
            let (digest, names) = match result {
                Ok(pushed) => pushed,
                Err(error)
                    if plan.oci_mode == OciMode::Auto
                        && assembled.format == ManifestFormat::Oci
                        && rejects_media_type(&error) =>
                {
                    warn!(
                        destination = %name,
                        "registry doesn't support OCI media types ({error}); falling back to Docker media types"
                    );
                    assembled = assemble(
                        &image.config,
                        &image.layers,
                        ManifestFormat::Docker,
                        plan.annotations,
                    )?;
                    push_blobs(&assembled, image, &target, blobs).await?;
                    push_manifest(&assembled, name, plan, blobs).await?
                }
                Err(error)
                    if rejects_media_type(&error) && assembled.format == ManifestFormat::Oci =>
                {
                    return Err(BuildError::Other(format!(
                        "registry doesn't support OCI media types: {error}; use --oci-mode=docker --legacy-manifest-list=true"
                    )));
                }
                Err(error) => return Err(error.into()),
            };
            if digest != assembled.manifest.digest {
                return Err(BuildError::Other(format!(
                    "{name}: the registry stored the manifest as {digest}, kiln computed {}",
                    assembled.manifest.digest
                )));
            }
            // Only the names the registry now has: a platform of an index
            // is not at the destination's tag.
            for pushed_as in &names {
                if pushed_as.contains('@') {
                    info!("pushed {pushed_as}");
                } else {
                    info!("pushed {pushed_as}@{digest}");
                }
            }
            // A destination whose tag kept its image
            // (--push-ignore-immutable-tag-errors) was not pushed.
            if !names.is_empty() {
                pushed.push(name.clone());
            }
        }
    }

    if let Some(path) = plan.tar_path {
        let stored = blobs
            .stored_layers(&image.layers, &assembled.layers)
            .await?;
        write_docker_archive(path, &assembled.config, &stored, plan.destinations)?;
        info!("wrote docker-archive {}", path.display());
    }
    if let Some(path) = plan.oci_layout_path {
        let stored = blobs
            .stored_layers(&image.layers, &assembled.layers)
            .await?;
        let layout = OciLayout::open_or_create(path)?;
        let tag = plan.destinations.first().and_then(|d| tag_of(d));
        layout.write_image(
            &assembled.manifest,
            &assembled.config,
            &stored,
            tag.as_deref(),
        )?;
        info!("wrote OCI layout {}", path.display());
    }

    let digest = assembled.manifest.digest.clone();
    write_digest_files(plan.destinations, plan.digest_files, &digest)?;
    Ok(BuildOutcome {
        media_type: assembled.manifest.media_type.clone(),
        size: assembled.manifest.bytes.len() as u64,
        pushed: pushed
            .iter()
            .map(|name| format!("{}@{digest}", repository(name)))
            .collect(),
        digest,
        cache_hits: 0,
        cache_misses: 0,
    })
}

/// A registry that refuses a manifest because of its media type answers
/// 400 (MANIFEST_INVALID), 415 or, for some, 404 on the OCI type.
fn rejects_media_type(error: &RegistryError) -> bool {
    matches!(error.status(), Some(400 | 415))
}

/// `registry/repo:tag-<suffix>` for the destination `name` (`latest`
/// when it names no tag): where `--platform-tags` pushes a platform.
pub fn suffixed_tag(name: &str, suffix: &str) -> String {
    let tag = tag_of(name).unwrap_or_else(|| "latest".to_string());
    format!("{}:{tag}-{suffix}", repository(name))
}

/// Pushes the manifest under the names `mode` asks for; returns its digest
/// and the names it now has (`repo:tag`, `repo@digest`), for the log.
async fn push_manifest(
    assembled: &Assembled,
    name: &str,
    plan: &OutputPlan<'_>,
    blobs: &Blobs<'_>,
) -> Result<(String, Vec<String>), RegistryError> {
    let manifest = &assembled.manifest;
    let mut names = Vec::new();
    match &plan.push_mode {
        PushMode::Tags => names.push(name.to_string()),
        PushMode::DigestOnly => names.push(format!("{}@{}", repository(name), manifest.digest)),
        PushMode::DigestAndSuffixedTag(suffix) => {
            names.push(format!("{}@{}", repository(name), manifest.digest));
            names.push(suffixed_tag(name, suffix));
        }
    }
    let mut digest = manifest.digest.clone();
    let mut pushed = Vec::new();
    for name in names {
        let target = parse_reference(&name)?;
        match blobs
            .registry
            .push_manifest_raw(&target, &manifest.bytes, &manifest.media_type)
            .await
        {
            Ok(stored) => digest = stored,
            Err(error)
                if plan.ignore_immutable_tags
                    && target.digest().is_none()
                    && error.refuses_immutable_tag()
                    && blobs
                        .registry
                        .fetch_manifest_raw(&target, crate::registry::Access::Push)
                        .await
                        .is_ok() =>
            {
                warn!(
                    "{name} exists and the registry refused to overwrite it ({error}); it keeps \
                     its image (--push-ignore-immutable-tag-errors)"
                );
                continue;
            }
            Err(error) => return Err(error),
        }
        pushed.push(name);
    }
    Ok((digest, pushed))
}

/// Blobs of one image uploaded at once: enough to keep a registry busy
/// while one upload waits on the network, few enough that a
/// many-layered image does not open dozens of uploads.
const CONCURRENT_BLOB_PUSHES: usize = 4;

/// Blobs of one image whose presence is asked at once: each question is
/// one small request, and in an unchanged rebuild every answer is "there".
const CONCURRENT_BLOB_CHECKS: usize = 16;

/// One blob of an image to make present in the target repository.
#[derive(Clone, Copy)]
enum ImageBlob<'a> {
    Layer(&'a LayerRecord, &'a Descriptor),
    Config,
}

/// Pushes the image's config and layers to `target` (the manifest,
/// pushed after, needs them all there): first asks which are there
/// already, all at once (mounting base layers from their repository where
/// the registry allows), then uploads the rest a few at a time.
async fn push_blobs(
    assembled: &Assembled,
    image: &StageImage,
    target: &Reference,
    blobs: &Blobs<'_>,
) -> Result<(), BuildError> {
    use futures::future::BoxFuture;
    use futures::{StreamExt, TryStreamExt};
    let config_path = blobs.store.path(&assembled.config.digest)?;
    if !config_path.exists() {
        blobs.store.put_blob(&assembled.config)?;
    }
    // An image may list one blob several times (equal layers): each is
    // pushed once (the registry client would make a second push of it wait
    // for the first and find it there, at the cost of a request).
    let mut seen = std::collections::BTreeSet::new();
    let mut wanted = vec![ImageBlob::Config];
    for (layer, descriptor) in image.layers.iter().zip(&assembled.layers) {
        if seen.insert(descriptor.digest.as_str()) {
            wanted.push(ImageBlob::Layer(layer, descriptor));
        }
    }
    let mut checks: Vec<BoxFuture<'_, Result<Option<ImageBlob<'_>>, BuildError>>> =
        Vec::with_capacity(wanted.len());
    for blob in wanted {
        checks.push(Box::pin(missing_blob(blob, assembled, target, blobs)));
    }
    let missing: Vec<Option<ImageBlob<'_>>> = futures::stream::iter(checks)
        .buffered(CONCURRENT_BLOB_CHECKS)
        .try_collect()
        .await?;
    let mut uploads: Vec<BoxFuture<'_, Result<(), BuildError>>> = Vec::new();
    for blob in missing.into_iter().flatten() {
        uploads.push(Box::pin(upload_blob(
            blob,
            assembled,
            &config_path,
            target,
            blobs,
        )));
    }
    futures::stream::iter(uploads)
        .buffer_unordered(CONCURRENT_BLOB_PUSHES)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// `Some(blob)` when `target` neither has it nor could mount it.
async fn missing_blob<'a>(
    blob: ImageBlob<'a>,
    assembled: &Assembled,
    target: &Reference,
    blobs: &Blobs<'_>,
) -> Result<Option<ImageBlob<'a>>, BuildError> {
    let (digest, mount_from) = match blob {
        ImageBlob::Config => (assembled.config.digest.as_str(), None),
        ImageBlob::Layer(layer, descriptor) => (descriptor.digest.as_str(), mount_source(layer)),
    };
    let present = blobs
        .registry
        .blob_present_or_mounted(target, digest, mount_from)
        .await?;
    Ok((!present).then_some(blob))
}

/// Uploads a blob [`missing_blob`] found missing (a base layer kiln never
/// needed on disk is downloaded first). The upload asks once more, under
/// the blob's upload lock: an early upload of the same layer may have
/// landed it meanwhile.
async fn upload_blob(
    blob: ImageBlob<'_>,
    assembled: &Assembled,
    config_path: &Path,
    target: &Reference,
    blobs: &Blobs<'_>,
) -> Result<(), BuildError> {
    match blob {
        ImageBlob::Config => {
            blobs
                .registry
                .push_blob_from_file(
                    target,
                    &assembled.config.digest,
                    assembled.config.bytes.len() as u64,
                    config_path,
                    None,
                )
                .await?
        }
        ImageBlob::Layer(layer, descriptor) => {
            let path = blobs.local_path(layer).await?;
            blobs
                .registry
                .push_blob_from_file(target, &descriptor.digest, descriptor.size, &path, None)
                .await?
        }
    }
    Ok(())
}

/// The repository a layer may be mounted from: its base image's (the
/// registry client mounts only within one registry).
fn mount_source(layer: &LayerRecord) -> Option<&Reference> {
    match &layer.source {
        BlobSource::Remote(source, _) => Some(source),
        _ => None,
    }
}

/// Where kaniko's digest-file flags ask the digest to be written.
#[derive(Clone, Copy, Debug, Default)]
pub struct DigestFiles<'a> {
    /// `--digest-file`: `sha256:…`.
    pub digest: Option<&'a Path>,
    /// `--image-name-with-digest-file`: `repo@sha256:…` per destination.
    pub name: Option<&'a Path>,
    /// `--image-name-tag-with-digest-file`: `repo:tag@sha256:…` per destination.
    pub name_tag: Option<&'a Path>,
}

impl<'a> DigestFiles<'a> {
    pub fn from_output(output: &'a OutputOptions) -> DigestFiles<'a> {
        DigestFiles {
            digest: output.digest_file.as_deref(),
            name: output.image_name_with_digest_file.as_deref(),
            name_tag: output.image_name_tag_with_digest_file.as_deref(),
        }
    }
}

/// Writes `digest` (of an image or an index) into the digest files.
pub fn write_digest_files(
    destinations: &[String],
    files: DigestFiles<'_>,
    digest: &str,
) -> Result<(), BuildError> {
    let write = |path: &Path, text: String| {
        std::fs::write(path, text).map_err(BuildError::io("writing", path))
    };
    if let Some(path) = files.digest {
        write(path, digest.to_string())?;
    }
    if let Some(path) = files.name {
        let lines: String = destinations
            .iter()
            .map(|d| format!("{}@{digest}\n", repository(d)))
            .collect();
        write(path, lines)?;
    }
    if let Some(path) = files.name_tag {
        let lines: String = destinations
            .iter()
            .map(|d| {
                let tag = tag_of(d).unwrap_or_else(|| "latest".to_string());
                format!("{}:{tag}@{digest}\n", repository(d))
            })
            .collect();
        write(path, lines)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_tags() {
        let table = [
            ("127.0.0.1:5000/app:1.0", "127.0.0.1:5000/app", Some("1.0")),
            ("127.0.0.1:5000/app", "127.0.0.1:5000/app", None),
            ("registry/app@sha256:abc", "registry/app", None),
            (
                "registry/team/app:v2@sha256:abc",
                "registry/team/app",
                Some("v2"),
            ),
            ("app", "app", None),
        ];
        for (name, repo, tag) in table {
            assert_eq!(repository(name), repo, "{name}");
            assert_eq!(tag_of(name).as_deref(), tag, "{name}");
        }
    }

    #[test]
    fn digest_files_name_every_destination() {
        const D: &str = "sha256:dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd";
        let dir = tempfile::tempdir().unwrap();
        let (d, n, t) = (
            dir.path().join("d"),
            dir.path().join("n"),
            dir.path().join("t"),
        );
        let destinations = [
            "127.0.0.1:5000/app:sha".to_string(),
            "127.0.0.1:5000/app".to_string(),
        ];
        let files = DigestFiles {
            digest: Some(&d),
            name: Some(&n),
            name_tag: Some(&t),
        };
        write_digest_files(&destinations, files, D).unwrap();
        assert_eq!(std::fs::read_to_string(&d).unwrap(), D);
        assert_eq!(
            std::fs::read_to_string(&n).unwrap(),
            format!("127.0.0.1:5000/app@{D}\n127.0.0.1:5000/app@{D}\n")
        );
        assert_eq!(
            std::fs::read_to_string(&t).unwrap(),
            format!("127.0.0.1:5000/app:sha@{D}\n127.0.0.1:5000/app:latest@{D}\n")
        );
    }
}
