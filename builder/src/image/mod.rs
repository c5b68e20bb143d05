//! Image assembly: layers (tar → compress, digest and diffID in one pass),
//! the image config, manifests and indexes in OCI or Docker media types,
//! a local blob store, and the file outputs (`--tar-path` docker-archive,
//! `--oci-layout-path` OCI layout).
//!
//! Everything that produces bytes that get digested (config, manifest,
//! index) is a pure function of its inputs and serialises with a fixed key
//! order, so the same build gives the same digests.

pub mod archive;
pub mod config;
pub mod descriptor;
pub mod digest;
pub mod index;
pub mod layer;
pub mod layout;
pub mod manifest;
pub mod media;
pub mod pgzip;
pub mod store;

pub use archive::{ArchiveError, write_docker_archive};
pub use config::{ConfigError, ImageConfig, parse_config};
pub use descriptor::{Blob, Descriptor, DescriptorPlatform};
pub use digest::{DigestError, HashingWriter, digest_hex, sha256_digest};
pub use index::{
    IndexError, index_blob, index_blob_with_attestations, index_bytes,
    index_bytes_with_attestations, parse_index,
};
pub use layer::{
    Device, EntryKind, EntryMeta, Layer, LayerError, LayerPlan, LayerWriter, Timestamps,
};
pub use layout::{LayoutError, OciLayout};
pub use manifest::{ManifestError, ParsedManifest, manifest_blob, manifest_bytes, parse_manifest};
pub use media::{Compression, ManifestFormat, MediaError, OciMode};
pub use store::{BlobStore, StoreError, StoredLayer};
