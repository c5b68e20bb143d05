//! Errors: [`SbomError`] fails the whole generation (a layer blob that
//! cannot be read, no scratch space); [`ScanError`] only skips one package
//! file and ends up in [`super::Skipped::reason`].

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SbomError {
    #[error(
        "cannot create the SBOM scratch directory in {dir}: {source}; check that the work directory exists and is writable"
    )]
    Scratch {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write {path} (copy of an image file being scanned): {source}")]
    ScratchWrite {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot open layer {index} ({media_type}) at {path}: {source}")]
    OpenLayer {
        index: usize,
        path: PathBuf,
        media_type: String,
        #[source]
        source: io::Error,
    },
    /// The blob's compression or tar framing is broken: the image itself
    /// is, and an SBOM of part of it would be wrong.
    #[error("cannot read layer {index} ({media_type}) at {path}: {source}")]
    ReadLayer {
        index: usize,
        path: PathBuf,
        media_type: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot serialise the SPDX document of {reference}: {source}")]
    Serialize {
        reference: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Why one package file was skipped.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("file is {size} bytes, more than the {limit} bytes a {what} may have")]
    TooLarge {
        what: &'static str,
        size: u64,
        limit: u64,
    },
    #[error("{0}")]
    Unsupported(&'static str),
    #[error("hard link to {target}, which no layer provides as a package file")]
    DanglingHardlink { target: String },
    #[error("invalid dpkg status file")]
    Dpkg(#[from] super::dpkg::DpkgError),
    #[error("invalid apk database")]
    Apk(#[from] super::apk::ApkError),
    #[error("invalid rpm database")]
    Rpm(#[from] super::rpm::RpmError),
    #[error("invalid Python package metadata")]
    Python(#[from] super::python::PythonError),
    #[error("invalid package.json")]
    Node(#[source] serde_json::Error),
    #[error("invalid Go build information")]
    Go(#[from] super::binary::GoError),
    #[error("invalid cargo auditable dependency list")]
    Auditable(#[from] super::binary::AuditableError),
    #[error("cannot read ELF headers")]
    Elf(#[source] object::read::Error),
}

/// An error with its causes, `outer: inner: innermost`, for a reason line.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
