//! The build context: where the files a Dockerfile may COPY come from.
//!
//! - [`source`]: kaniko's `--context` values (`dir://`, `tar://`, `git://`,
//!   `https://`, `oci://`, a plain path) and fetching them into a directory.
//! - [`dockerignore`]: `.dockerignore` rules with moby's semantics.
//! - [`select`]: expanding COPY/ADD sources and walking what they name,
//!   honouring those rules; also used for `COPY --from=<stage>`.
//! - [`file`]: reading the Dockerfile and `.dockerignore` inside the
//!   context (its symlinks never reach the host), bounded.
//! - [`archive`]: unpacking a context tarball without ever writing outside
//!   its destination.

pub mod archive;
pub mod dockerignore;
mod file;
mod git;
mod http;
pub mod pattern;
pub mod select;
pub mod source;

use std::path::PathBuf;

pub use archive::unpack_context_archive;
pub use dockerignore::{IgnoreRules, load_ignore_rules};
pub use file::{MAX_CONTEXT_FILE, excerpt, read_build_file};
pub(crate) use http::download;
pub use select::{
    EntryKind, SourceMatch, Walk, WalkEntry, resolve_sources, resolve_sources_counted, walk,
};
pub use source::{
    BuildContext, ContextSource, FetchOptions, GitCredentials, GitSource, redact_url,
};

/// Everything that can go wrong while fetching a context or choosing files
/// from it. Each variant names the input that failed; URLs are always
/// shown with credentials redacted.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("invalid .dockerignore pattern {pattern:?} on line {line}: {reason}")]
    IgnorePattern {
        line: usize,
        pattern: String,
        reason: String,
    },
    #[error("{path}: {source}")]
    IgnoreFile {
        path: PathBuf,
        #[source]
        source: Box<ContextError>,
    },
    #[error(transparent)]
    WorkRoot(#[from] crate::work_root::WorkRootError),
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "--context is empty: give a directory, dir://, tar://, git://, https:// or oci:// location"
    )]
    EmptyContext,
    #[error(
        "unknown build context prefix in {value:?}: use a local path or one of dir://, tar://, git://, https://, oci://"
    )]
    UnknownPrefix { value: String },
    #[error("invalid context {kind} {value:?}: {reason}")]
    InvalidSource {
        kind: &'static str,
        value: String,
        reason: String,
    },
    #[error(
        "refusing plain http context {url}: only https is allowed except for localhost and 127.0.0.1"
    )]
    InsecureHttp { url: String },
    #[error("context directory {path} does not exist or is not a directory")]
    MissingContextDir { path: PathBuf },
    #[error("--context-sub-path {sub_path:?} escapes the build context")]
    SubPathEscapes { sub_path: String },
    #[error(
        "--context-sub-path {sub_path:?} does not exist in the build context (looked for {path})"
    )]
    SubPathMissing { sub_path: String, path: PathBuf },
    #[error(
        "context {reference} is an OCI artifact: pull its layer blob from the registry and pass it to unpack_context_archive"
    )]
    OciNotFetchedHere { reference: String },
    #[error("git {operation} of {url} failed: {stderr}")]
    Git {
        operation: String,
        url: String,
        stderr: String,
    },
    #[error("downloading context {url}: HTTP status {status}")]
    HttpStatus { url: String, status: u16 },
    #[error("downloading context {url}: {message}")]
    Http { url: String, message: String },
    #[error("unsafe entry {entry:?} in context archive: {reason}")]
    UnsafeArchiveEntry { entry: String, reason: &'static str },
    #[error("reading context archive: {source}")]
    Archive {
        #[source]
        source: std::io::Error,
    },
    /// Docker's wording, kept verbatim: users grep for it.
    #[error("COPY failed: no source files were specified")]
    NoSourceFiles { pattern: String },
    /// Docker's wording, kept verbatim: users grep for it.
    #[error(
        "COPY failed: file not found in build context or excluded by .dockerignore: stat {path}: file does not exist"
    )]
    SourceNotFound { path: String },
    #[error("too many levels of symbolic links resolving {path} in the build context")]
    SymlinkLoop { path: String },
    #[error("{path} is not a directory")]
    NotADirectory { path: String },
}

impl ContextError {
    fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ContextError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
