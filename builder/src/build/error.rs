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
    /// An instruction failed; `line` is its line in the Dockerfile. The
    /// cause is kept as it is (its own source chain included), not as text.
    #[error("Dockerfile:{line}: {instruction}: {source}")]
    Instruction {
        line: usize,
        instruction: String,
        #[source]
        source: Box<BuildError>,
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
    /// `--sign-key`: the key, or a signature kiln could not push.
    #[error(transparent)]
    Sign(#[from] crate::attest::sign::SignError),
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
    #[error(transparent)]
    Platform(#[from] crate::platform::PlatformError),
    #[error(transparent)]
    Expand(#[from] ExpandError),
    /// A `--from` (COPY, RUN --mount) that names no stage or image.
    #[error(transparent)]
    From(#[from] crate::dockerfile::Problem),
    #[error(transparent)]
    Snapshot(#[from] crate::snapshot::SnapshotError),
    #[error(transparent)]
    Run(#[from] crate::run::RunError),
    #[error(transparent)]
    MountSpec(#[from] crate::run::mount_spec::MountSpecError),
    #[error(transparent)]
    Secret(#[from] crate::run::secret::SecretError),
    #[error(transparent)]
    Destination(#[from] super::copy_dest::DestError),
    #[error(transparent)]
    Chmod(#[from] super::chmod::ChmodError),
    #[error(transparent)]
    CacheRepository(#[from] crate::cache::RepoError),
    #[error(transparent)]
    Descriptor(#[from] crate::image::descriptor::ConversionError),
    /// A task of the build (a RUN, a cache lock) ended without an answer:
    /// it panicked or was cancelled.
    #[error("{what} failed: {source}")]
    Task {
        what: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
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
            BuildError::Instruction { source, .. } => source.exit_code(),
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::error::Error as _;

    use super::*;

    fn denied() -> BuildError {
        BuildError::Io {
            what: "reading",
            path: PathBuf::from("/ctx/a"),
            source: std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied"),
        }
    }

    #[test]
    fn an_instructions_error_keeps_its_cause() {
        let error = BuildError::Instruction {
            line: 3,
            instruction: "COPY a /b".into(),
            source: Box::new(denied()),
        };
        assert_eq!(
            error.to_string(),
            "Dockerfile:3: COPY a /b: reading /ctx/a: denied"
        );
        // The chain goes down to the io::Error, which a caller can inspect
        // (its kind), instead of ending in text.
        let cause = error.source().expect("the instruction's cause");
        let inner = cause
            .downcast_ref::<Box<BuildError>>()
            .expect("the cause, boxed");
        assert!(matches!(**inner, BuildError::Io { .. }));
        let io = cause.source().expect("the io error");
        assert_eq!(
            io.downcast_ref::<std::io::Error>()
                .map(std::io::Error::kind),
            Some(std::io::ErrorKind::PermissionDenied)
        );
    }

    #[test]
    fn a_wrapped_run_failure_keeps_its_exit_code() {
        let error = BuildError::Instruction {
            line: 7,
            instruction: "RUN make".into(),
            source: Box::new(BuildError::RunFailed {
                line: 7,
                instruction: "RUN make".into(),
                code: 42,
            }),
        };
        assert_eq!(error.exit_code(), Some(42));
        assert_eq!(
            BuildError::Instruction {
                line: 1,
                instruction: "COPY a b".into(),
                source: Box::new(denied()),
            }
            .exit_code(),
            None
        );
    }
}
