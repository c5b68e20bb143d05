//! Image assembly: layers (tar → compress, digest and diffID in one pass),
//! the image config, manifests and indexes in OCI or Docker media types,
//! a local blob store, and the file outputs (`--tar-path` docker-archive,
//! `--oci-layout-path` OCI layout).
//!
//! Everything that produces bytes that get digested (config, manifest,
//! index) is a pure function of its inputs and serialises with a fixed key
//! order, so the same build gives the same digests.

pub mod digest;
pub mod media;

pub use digest::{DigestError, HashingWriter, digest_hex, sha256_digest};
pub use media::{Compression, ManifestFormat, MediaError, OciMode};
