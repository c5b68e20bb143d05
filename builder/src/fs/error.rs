//! The one error type of `fs`: every variant names the path, tar entry or
//! user spec it failed on.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// A filesystem call failed; `op` is what we were doing ("create
    /// directory", "remove", …) and `path` the host path it was done on.
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The layer blob itself is unreadable: bad compression or tar framing.
    #[error("reading layer: {source}")]
    Layer {
        #[source]
        source: io::Error,
    },
    /// One tar entry is malformed (bad number field, missing link target,
    /// truncated data).
    #[error("invalid layer entry {entry}: {source}")]
    BadEntry {
        entry: String,
        #[source]
        source: io::Error,
    },
    #[error("too many levels of symbolic links resolving {path} inside {root}")]
    SymlinkLoop { root: PathBuf, path: String },
    #[error("cannot create {path}: {existing} exists and is not a directory")]
    NotADirectory { path: String, existing: PathBuf },
    #[error("hardlink {entry} points to {target}, which does not exist in the image")]
    HardlinkTargetMissing { entry: String, target: String },
    #[error("hardlink {entry} points to {target}, which is a directory")]
    HardlinkToDirectory { entry: String, target: String },
    /// Runc's wording, which Docker users already know.
    #[error("unable to find user {user}: no matching entries in passwd file")]
    UserNotFound { user: String },
    #[error("unable to find group {group}: no matching entries in group file")]
    GroupNotFound { group: String },
    #[error("invalid user spec {spec:?}: expected user, user:group, uid or uid:gid")]
    InvalidUserSpec { spec: String },
}

impl FsError {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> FsError {
        let path = path.into();
        move |source| FsError::Io { op, path, source }
    }
}
