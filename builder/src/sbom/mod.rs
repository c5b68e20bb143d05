//! SBOM of one platform image, computed from its layer blobs in one
//! streaming pass.
//!
//! ```text
//! let sbom = sbom::generate(&layers, &subject, &SbomOptions::new(work_dir, created))?;
//! // sbom.document: SPDX 2.3 JSON bytes, sbom.media_type: "application/spdx+json",
//! // sbom.skipped: package files that could not be read, and why.
//! ```
//!
//! [`generate`] is synchronous, like the rest of `image` (layer writing and
//! unpacking are blocking I/O); an async caller runs it in
//! `spawn_blocking`.
//!
//! # Format: SPDX 2.3 JSON
//! BuildKit (`docker buildx build --sbom`, through its syft scanner)
//! attaches SPDX 2.3 JSON, predicate type `https://spdx.dev/Document`, and
//! that is what Docker Hub, Docker Scout and `docker buildx imagetools
//! inspect --format '{{json .SBOM}}'` read; `cosign attest --type
//! spdxjson` and `cosign verify-attestation --type spdxjson` take it as
//! well (cosign takes CycloneDX too, so it decides nothing). A kiln image
//! then looks like a BuildKit image to the tools users already point at
//! BuildKit's, which is the point of a drop-in.
//!
//! The document model is our own serde structs ([`spdx`]) and not
//! `spdx-rs`: its last release (0.5.5, 2023) models SPDX 2.2, requires
//! licenses to parse as SPDX expressions (package databases are full of
//! `GPLv2+` and `BSD License`) and brings thiserror 1, strum and nom 7 for
//! a document whose few fields we write. The structs follow the SPDX 2.3
//! JSON schema field for field; licenses are checked with the `spdx` crate.
//!
//! # What is read
//! Only files that describe packages (see [`paths`]) are read into memory,
//! each with a size limit, parsed and dropped; executables that start with
//! the ELF magic are copied to one scratch file in a temporary directory
//! (never to memory) and only their headers and the two sections we want
//! are read back. Everything else is skipped over in the tar stream.
//! [`SbomStats::peak_buffered_bytes`] reports the most file content ever
//! held at once.
//!
//! | source | file |
//! | --- | --- |
//! | dpkg | `var/lib/dpkg/status`, `var/lib/dpkg/status.d/*` (distroless) |
//! | apk | `lib/apk/db/installed` |
//! | rpm | `rpmdb.sqlite` in `var/lib/rpm/` or `usr/lib/sysimage/rpm/` |
//! | Python | `*.dist-info/METADATA`, `*.egg-info[/PKG-INFO]` in site-/dist-packages |
//! | npm | `node_modules/[@scope/]<name>/package.json` |
//! | Go | `.go.buildinfo` of executables (Go >= 1.18 format) |
//! | Rust | `.dep-v0` of executables built with `cargo auditable` |
//!
//! Whiteouts and opaque directories of a later layer remove what earlier
//! layers' files contributed, and a file replaced by a later layer is
//! scanned again, so the SBOM describes the image's final root filesystem.
//! Paths are taken from the tar entry names as they are (cleaned
//! lexically); a symlink is never followed, so nothing outside the layers
//! is ever read. A package file whose parent directory the image reaches
//! only through a symlink is therefore not found (layers do not write
//! through symlinks in practice).
//!
//! A package file that cannot be read (corrupt, too large, a format we do
//! not read such as rpm's Berkeley DB) is listed in [`Sbom::skipped`] with
//! the reason and the rest of the SBOM is still produced; only an
//! unreadable layer blob fails [`generate`].

// The scanners are public for the fuzz targets (fuzz/fuzz_targets/sbom_*).
pub mod apk;
pub mod binary;
mod control;
pub mod dpkg;
mod error;
mod layers;
pub mod node;
pub mod os_release;
mod package;
pub mod paths;
pub mod python;
pub mod rpm;
pub mod spdx;

use std::path::PathBuf;

pub use error::{SbomError, ScanError};
pub use package::{Ecosystem, Package};

use crate::platform::Platform;

/// Media type of the document [`generate`] returns.
pub const SPDX_JSON_MEDIA_TYPE: &str = "application/spdx+json";

/// One layer blob of the image, in manifest order (base first).
#[derive(Clone, Debug)]
pub struct LayerFile {
    /// The blob on disk: gzip, zstd or plain tar (told by its first bytes).
    pub path: PathBuf,
    /// The layer's media type as the manifest gives it; used in messages.
    pub media_type: String,
}

/// The image the SBOM describes.
#[derive(Clone, Debug)]
pub struct Subject {
    /// Where the image is pushed, e.g. `registry.example/app:1.0`.
    pub reference: String,
    pub platform: Platform,
    /// Digest of the platform manifest, `sha256:<hex>`.
    pub manifest_digest: String,
}

/// How to generate.
#[derive(Clone, Debug)]
pub struct SbomOptions {
    /// Where the scratch directory (an executable or rpm database being
    /// read) is created; kiln's work root. Removed when done.
    pub work_dir: PathBuf,
    /// The document's creation time, seconds since 1970: the build's
    /// SOURCE_DATE_EPOCH (or 0 under `--reproducible`) so the same image
    /// gives the same SBOM bytes.
    pub created: u64,
    /// Name and version of the tool recorded as the document's creator.
    pub creator: String,
}

impl SbomOptions {
    pub fn new(work_dir: impl Into<PathBuf>, created: u64) -> SbomOptions {
        SbomOptions {
            work_dir: work_dir.into(),
            created,
            creator: format!("kiln-{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// A package file that was found but could not be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// Path inside the image, without the leading `/`.
    pub path: String,
    /// Index in the layer list of the layer the file came from.
    pub layer: usize,
    pub reason: String,
}

/// Counters of one generation, for logs and for tests of the memory bound.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SbomStats {
    pub layers: usize,
    /// Tar entries read, all layers together.
    pub entries: u64,
    /// Package files parsed (before whiteouts of later layers).
    pub package_files: u64,
    /// ELF executables whose sections were looked at.
    pub binaries: u64,
    /// The most file content held in memory at once, in bytes.
    pub peak_buffered_bytes: u64,
}

/// The result of [`generate`].
#[derive(Clone, Debug)]
pub struct Sbom {
    /// The SPDX 2.3 JSON document.
    pub document: Vec<u8>,
    /// [`SPDX_JSON_MEDIA_TYPE`].
    pub media_type: &'static str,
    /// The packages listed in the document, in document order.
    pub packages: Vec<Package>,
    pub skipped: Vec<Skipped>,
    pub stats: SbomStats,
}

/// Computes the SBOM of the image made of `layers` (base layer first).
pub fn generate(
    layers: &[LayerFile],
    subject: &Subject,
    options: &SbomOptions,
) -> Result<Sbom, SbomError> {
    let scan = layers::scan_layers(layers, &options.work_dir)?;
    let packages = package::finish(scan.packages, scan.os_release.as_ref());
    let document = spdx::document(&packages, &scan.skipped, subject, options)?;
    Ok(Sbom {
        document,
        media_type: SPDX_JSON_MEDIA_TYPE,
        packages,
        skipped: scan.skipped,
        stats: scan.stats,
    })
}

/// Image path as it appears in messages: `/var/lib/dpkg/status`.
pub(crate) fn display_path(path: &str) -> String {
    format!("/{path}")
}

#[cfg(test)]
mod tests;
