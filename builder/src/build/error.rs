//! What can stop a build, with the input that caused it.

use std::path::PathBuf;

use crate::context::ContextError;
use crate::dockerfile::{DockerfileError, ExpandError};
use crate::fs::FsError;
use crate::image::{
    ArchiveError, ConfigError, LayerError, LayoutError, ManifestError, MediaError, StoreError,
};
use crate::registry::RegistryError;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Context(#[from] ContextError),
    #[error("reading Dockerfile {path}: {source}")]
    ReadDockerfile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Dockerfile(#[from] DockerfileError),
    /// An instruction failed; `line` is its line in the Dockerfile.
    #[error("Dockerfile:{line}: {instruction}: {message}")]
    Instruction {
        line: usize,
        instruction: String,
        message: String,
    },
    /// A RUN's command exited with `code` (128 + N for signal N). Its
    /// output was streamed to the log as it ran, so it is not repeated.
    #[error(
        "Dockerfile:{line}: {instruction}: RUN failed (exit {code}): {}",
        instruction.trim_start_matches("RUN").trim()
    )]
    RunFailed {
        line: usize,
        instruction: String,
        code: i32,
    },
    /// Some platforms of a multi-platform build failed; `code` is the exit
    /// code they agree on (every failure a RUN exiting with it), if any.
    #[error("{message}")]
    Platforms { message: String, code: Option<i32> },
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error(transparent)]
    Layer(#[from] LayerError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Media(#[from] MediaError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error(transparent)]
    WorkRoot(#[from] crate::work_root::WorkRootError),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// `--isolation=inplace` where no container was detected, without
    /// `--force`.
    #[error(
        "--isolation=inplace unpacks the image over this machine's own / and removes what else \
         is there, and no container was detected (no /.dockerenv, /run/.containerenv, \
         $container, $KUBERNETES_SERVICE_HOST, KILN_BUILDER_IMAGE=1 or container cgroup); run \
         it in a container (kiln's builder image) or pass --force"
    )]
    NotInContainer,
    #[error("{0}")]
    Other(String),
}

impl BuildError {
    /// The exit code kiln should end with for this error: the failed RUN
    /// command's, as a shell would (`None`: kiln's own failure, 1).
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            BuildError::RunFailed { code, .. } => Some(*code),
            BuildError::Platforms { code, .. } => *code,
            _ => None,
        }
    }

    pub(crate) fn io(
        what: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> BuildError {
        let path = path.into();
        move |source| BuildError::Io { what, path, source }
    }
}

impl From<ExpandError> for BuildError {
    fn from(error: ExpandError) -> BuildError {
        BuildError::Other(error.to_string())
    }
}
