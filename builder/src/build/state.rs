//! What a stage is while it is being built: its config, its layers (where
//! each blob can be found), and — only when some instruction needs to look
//! at files — its root filesystem on disk.

use std::fs::File;
use std::path::{Path, PathBuf};

use tracing::{debug, info, warn};

use super::BuildError;
use super::inplace::InPlaceRoot;
use crate::fs::{UnpackOptions, unpack_layer_file};
use crate::image::{BlobStore, Descriptor, HashingWriter, ImageConfig, StoredLayer};
use crate::registry::{Access, Reference, Registry};
use crate::snapshot::Snapshotter;

/// Where a layer's blob is.
#[derive(Clone, Debug)]
pub enum BlobSource {
    /// Written by this build, or already downloaded: in the blob store.
    Local,
    /// Still only in the registry, in this repository, read with the
    /// registry flags of `Access` (a base image is pulled, a cache
    /// repository is one kiln pushes to, as in kaniko).
    Remote(Reference, Access),
}

/// One layer of an image being built.
#[derive(Clone, Debug)]
pub struct LayerRecord {
    /// Media type as the base image or the layer writer gave it; converted
    /// to the output's family when the manifest is written.
    pub descriptor: Descriptor,
    pub source: BlobSource,
}

/// A stage's image so far.
#[derive(Debug)]
pub struct StageImage {
    pub config: ImageConfig,
    pub layers: Vec<LayerRecord>,
    /// The unpacked filesystem, once something needed it.
    pub rootfs: Option<RootFs>,
    /// What the root filesystem looked like after the last snapshot; `None`
    /// when something changed it since (a COPY) or it was never taken.
    pub snapshotter: Option<Snapshotter>,
    /// The layer cache's key of the last instruction applied, or what the
    /// stage started from: the parent of the next instruction's key.
    pub cache_key: String,
    /// The ARGs the stage declared, with their values: a stage `FROM` it
    /// starts with them, as in BuildKit. None for an image or scratch.
    pub args: Vec<(String, Option<String>)>,
    /// Whether the layers this stage writes may leave the build (pushed,
    /// written to a file output, or stored in the cache) and so are
    /// compressed; a stage only copied from keeps them as plain tar.
    pub layers_leave_build: bool,
}

impl StageImage {
    /// The same image without its root filesystem or snapshot (unpacked
    /// again from its layers by whoever reads its files): what a stage
    /// built for one platform gives the others.
    pub fn detached(&self) -> StageImage {
        StageImage {
            config: self.config.clone(),
            layers: self.layers.clone(),
            rootfs: None,
            snapshotter: None,
            cache_key: self.cache_key.clone(),
            args: self.args.clone(),
            layers_leave_build: self.layers_leave_build,
        }
    }

    /// A copy that shares no root filesystem: a stage built `FROM` another
    /// stage unpacks its own when it needs one.
    pub fn fork(&self) -> StageImage {
        StageImage {
            config: self.config.clone(),
            layers: self.layers.clone(),
            rootfs: None,
            snapshotter: None,
            layers_leave_build: true,
            cache_key: crate::cache::base_key(crate::cache::BaseOf::Stage {
                last_key: &self.cache_key,
            }),
            args: self.args.clone(),
        }
    }
}

/// Where a stage's files are unpacked.
#[derive(Debug)]
pub enum RootFs {
    /// A work directory of its own.
    Dir(tempfile::TempDir),
    /// The container's own `/` (`--isolation=inplace`), as long as it holds
    /// this claim (see [`super::inplace`]).
    InPlace { claim: u64 },
}

/// Everything layers and root filesystems need from the outside world.
pub struct Blobs<'a> {
    pub registry: &'a Registry,
    pub store: &'a BlobStore,
    /// Where root filesystems of stages are unpacked.
    pub work_dir: &'a Path,
    /// `--cache-dir`: blobs kept between builds, by digest. Consulted
    /// before the registry and filled with what is downloaded.
    pub cache_dir: Option<&'a BlobStore>,
    /// With `--isolation=inplace`: the container's `/`, the root of the
    /// stage being built.
    pub inplace: Option<&'a InPlaceRoot>,
}

impl Blobs<'_> {
    /// The path of `layer`'s blob in the store, downloading it first when
    /// it is only in the registry.
    pub async fn local_path(&self, layer: &LayerRecord) -> Result<PathBuf, BuildError> {
        let digest = &layer.descriptor.digest;
        let path = self.store.path(digest)?;
        if path.exists() {
            return Ok(path);
        }
        if let Some(kept) = self.cache_dir
            && let Some(found) = verified_in_cache_dir(kept, digest)?
        {
            debug!(%digest, "layer from --cache-dir");
            return Ok(found);
        }
        let BlobSource::Remote(source, access) = &layer.source else {
            return Err(BuildError::Other(format!(
                "layer {digest} is missing from the local blob store {}",
                self.store.root().display()
            )));
        };
        let tmp_dir = self.store.tmp_dir_created()?;
        // Unique per download: platforms built concurrently may fetch the
        // same base layer at the same time.
        let tmp = tempfile::Builder::new()
            .prefix("download-")
            .tempfile_in(&tmp_dir)
            .map_err(BuildError::io("creating a file in", &tmp_dir))?
            .into_temp_path()
            .keep()
            .map_err(|e| BuildError::Io {
                what: "keeping the temporary file",
                path: e.path.to_path_buf(),
                source: e.error,
            })?;
        let descriptor = to_oci_descriptor(&layer.descriptor)?;
        debug!(%digest, from = %source, "downloading layer");
        self.registry
            .fetch_blob_to_file(source, &descriptor, &tmp, *access)
            .await?;
        let stored = self.store.put_file(&tmp, digest)?;
        if let Some(kept) = self.cache_dir {
            keep_in_cache_dir(kept, &stored, digest);
        }
        Ok(stored)
    }

    /// Every layer as a file on disk (for `--tar-path` and
    /// `--oci-layout-path`, which carry all blobs).
    pub async fn stored_layers(
        &self,
        layers: &[LayerRecord],
        descriptors: &[Descriptor],
    ) -> Result<Vec<StoredLayer>, BuildError> {
        let mut stored = Vec::with_capacity(layers.len());
        for (layer, descriptor) in layers.iter().zip(descriptors) {
            stored.push(StoredLayer {
                descriptor: descriptor.clone(),
                path: self.local_path(layer).await?,
            });
        }
        Ok(stored)
    }

    /// `image`'s files in a work directory of their own, unpacked once:
    /// the sources of `COPY --from`, and every stage's root with
    /// `--isolation=chroot`. An image whose files are in `/` (in place)
    /// gets a work directory too.
    pub async fn rootfs<'i>(&self, image: &'i mut StageImage) -> Result<&'i Path, BuildError> {
        if !matches!(image.rootfs, Some(RootFs::Dir(_))) {
            let dir = tempfile::Builder::new()
                .prefix("rootfs-")
                .tempdir_in(self.work_dir)
                .map_err(BuildError::io(
                    "creating a root filesystem in",
                    self.work_dir,
                ))?;
            info!(
                "unpacking {} layers into a root filesystem",
                image.layers.len()
            );
            for layer in &image.layers {
                let path = self.local_path(layer).await?;
                apply_layer(&path, dir.path())?;
            }
            image.rootfs = Some(RootFs::Dir(dir));
        }
        match &image.rootfs {
            Some(RootFs::Dir(dir)) => Ok(dir.path()),
            _ => Err(BuildError::Other("root filesystem vanished".to_string())),
        }
    }

    /// The root filesystem of the stage being built, holding `image`'s
    /// files: its work directory ([`Blobs::rootfs`]), or with
    /// `--isolation=inplace` the container's `/`, emptied and unpacked
    /// again when it holds anything else.
    pub async fn stage_root(&self, image: &mut StageImage) -> Result<PathBuf, BuildError> {
        let Some(inplace) = self.inplace else {
            return Ok(self.rootfs(image).await?.to_path_buf());
        };
        if let Some(RootFs::InPlace { claim }) = image.rootfs
            && inplace.holds(claim)
        {
            return Ok(inplace.root().to_path_buf());
        }
        // A snapshot baseline of another state of `/` is meaningless now.
        image.snapshotter = None;
        image.rootfs = None;
        let claim = inplace.take()?;
        info!(
            "unpacking {} layers over / (--isolation=inplace)",
            image.layers.len()
        );
        for layer in &image.layers {
            let path = self.local_path(layer).await?;
            self.apply(&path, inplace.root())?;
        }
        inplace.confirm(claim);
        image.rootfs = Some(RootFs::InPlace { claim });
        Ok(inplace.root().to_path_buf())
    }

    /// Where `image`'s files are now, if they are unpacked and current:
    /// an in-place root that another stage has taken since is forgotten.
    pub fn current_root(&self, image: &mut StageImage) -> Option<PathBuf> {
        match &image.rootfs {
            Some(RootFs::Dir(dir)) => Some(dir.path().to_path_buf()),
            Some(RootFs::InPlace { claim }) => match self.inplace {
                Some(inplace) if inplace.holds(*claim) => Some(inplace.root().to_path_buf()),
                _ => {
                    image.rootfs = None;
                    None
                }
            },
            None => None,
        }
    }

    /// Applies a layer blob onto `root`; onto the in-place root, the
    /// protected paths are skipped.
    pub fn apply(&self, blob: &Path, root: &Path) -> Result<(), BuildError> {
        match self.inplace {
            Some(inplace) if root == inplace.root() => {
                apply_layer_with(blob, root, inplace.protected().to_vec())
            }
            _ => apply_layer(blob, root),
        }
    }
}

/// The blob `digest` from the `--cache-dir` store, if it is there and its
/// content still hashes to its name. A blob that does not is removed (and
/// fetched again by the caller), never used.
fn verified_in_cache_dir(kept: &BlobStore, digest: &str) -> Result<Option<PathBuf>, BuildError> {
    let path = kept.path(digest)?;
    let Ok(mut file) = File::open(&path) else {
        return Ok(None);
    };
    let mut hasher = HashingWriter::new(std::io::sink());
    std::io::copy(&mut file, &mut hasher).map_err(BuildError::io("reading", &path))?;
    let (_, actual, _) = hasher.finish();
    if actual == digest {
        return Ok(Some(path));
    }
    warn!(
        "--cache-dir blob {} hashes to {actual}, not {digest}: removed, fetching it again",
        path.display()
    );
    std::fs::remove_file(&path).map_err(BuildError::io("removing", &path))?;
    Ok(None)
}

/// Copies a downloaded blob into the `--cache-dir` store. The cache is an
/// optimisation: failing to fill it is a warning, not a failed build.
fn keep_in_cache_dir(kept: &BlobStore, stored: &Path, digest: &str) {
    let copy = || -> Result<(), BuildError> {
        if kept.contains(digest)? {
            return Ok(());
        }
        let tmp_dir = kept.tmp_dir_created()?;
        let tmp = tempfile::Builder::new()
            .prefix("keep-")
            .tempfile_in(&tmp_dir)
            .map_err(BuildError::io("creating a file in", &tmp_dir))?
            .into_temp_path();
        std::fs::copy(stored, &tmp).map_err(BuildError::io("copying into", &tmp))?;
        let tmp = tmp.keep().map_err(|e| BuildError::Io {
            what: "keeping the temporary file",
            path: e.path.to_path_buf(),
            source: e.error,
        })?;
        kept.put_file(&tmp, digest)?;
        Ok(())
    };
    if let Err(error) = copy() {
        warn!(
            "could not keep blob {digest} in --cache-dir {}: {error}",
            kept.root().display()
        );
    }
}

/// Applies one layer blob (any compression) onto `root`.
pub fn apply_layer(blob: &Path, root: &Path) -> Result<(), BuildError> {
    apply_layer_with(blob, root, Vec::new())
}

/// [`apply_layer`] never writing nor removing at or below the image paths
/// `protected`.
fn apply_layer_with(blob: &Path, root: &Path, protected: Vec<PathBuf>) -> Result<(), BuildError> {
    let file = File::open(blob).map_err(BuildError::io("opening layer", blob))?;
    let options = UnpackOptions {
        protected_paths: protected,
        ..UnpackOptions::default()
    };
    unpack_layer_file(file, root, &options)?;
    Ok(())
}

/// kiln's descriptor as the registry client's type.
pub fn to_oci_descriptor(
    descriptor: &Descriptor,
) -> Result<oci_spec::image::Descriptor, BuildError> {
    Ok(crate::image::descriptor::to_oci(descriptor)?)
}

/// The registry client's descriptor as kiln's type.
pub fn from_oci_descriptor(
    descriptor: &oci_spec::image::Descriptor,
) -> Result<Descriptor, BuildError> {
    Ok(crate::image::descriptor::from_oci(descriptor)?)
}
