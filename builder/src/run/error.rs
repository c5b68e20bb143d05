//! The one error type of `run`. A command that runs and exits non-zero is
//! not an error ([`super::RunOutput::status`]); these are the cases where
//! it could not be started, each naming what it failed on.

use std::io;
use std::path::PathBuf;

use crate::fs::FsError;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("RUN has no command")]
    EmptyCommand,
    #[error(transparent)]
    WorkRoot(#[from] crate::work_root::WorkRootError),
    #[error(
        "invalid environment variable {name:?} for RUN: a name must be non-empty and without '=', \
         and neither name nor value may contain a NUL byte"
    )]
    InvalidEnv { name: String },
    #[error("invalid argument {arg:?} for RUN: it contains a NUL byte")]
    InvalidArg { arg: String },
    /// `argv[0]` with a `/` names nothing in the image.
    #[error("exec {name}: no such file or directory in the image")]
    ExecutableNotFound { name: String },
    /// A bare `argv[0]` is in no directory of the step's `PATH`.
    #[error("exec {name}: executable file not found in $PATH ({path}) in the image")]
    NotInPath { name: String, path: String },
    #[error("exec {name}: {path} is not an executable file in the image")]
    NotExecutable { name: String, path: String },
    #[error("USER {user}: {source}")]
    User {
        user: String,
        #[source]
        source: FsError,
    },
    #[error("WORKDIR {workdir}: {source}")]
    Workdir {
        workdir: String,
        #[source]
        source: FsError,
    },
    #[error("WORKDIR {workdir} exists in the image and is not a directory")]
    WorkdirNotDirectory { workdir: String },
    /// Looking up a path in the root failed (a symlink loop, an
    /// unreadable directory).
    #[error("looking up {path} in {root}: {source}")]
    Lookup {
        root: PathBuf,
        path: String,
        #[source]
        source: FsError,
    },
    /// A filesystem or mount operation of the set-up or clean-up failed;
    /// `op` says which ("mount tmpfs on", "create mount point", …).
    #[error("cannot {op} {path} for RUN: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "--isolation=sandbox needs a new {namespace} namespace and the kernel refused it \
         (unshare: {source}): kiln needs to run as root or with CAP_SYS_ADMIN for \
         --isolation=sandbox; inside a container, use --isolation=inplace"
    )]
    NamespacesRefused {
        namespace: &'static str,
        #[source]
        source: io::Error,
    },
    /// A step of the child's set-up failed after the fork (mounting
    /// `/proc`, `chroot`, `chdir`, dropping to the user).
    #[error("cannot {step} for RUN in {root}: {source}")]
    ChildSetup {
        root: PathBuf,
        step: String,
        #[source]
        source: io::Error,
    },
    /// `execve` itself failed inside the root.
    #[error("exec {name} in the image: {source}{hint}")]
    Exec {
        name: String,
        #[source]
        source: io::Error,
        hint: &'static str,
    },
    /// Reading the command's output or waiting for it failed.
    #[error("RUN {name}: cannot {op}: {source}")]
    Supervise {
        name: String,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("cannot mount {mount} for RUN: {existing} exists in the image and is not a {kind}")]
    MountPointBlocked {
        mount: &'static str,
        existing: PathBuf,
        kind: &'static str,
    },
    #[error(
        "cannot mount RUN --mount target {target}: {existing} exists in the image and is not a \
         {kind}; choose another target"
    )]
    MountTargetBlocked {
        target: String,
        existing: PathBuf,
        kind: &'static str,
    },
    #[error(
        "RUN --network=none needs a network namespace of its own, which --isolation=inplace \
         does not create (it needs no privilege); use --isolation=sandbox for this build"
    )]
    NetworkNoneInPlace,
    #[error("RUN set-up thread for {name} could not start or panicked: {detail}")]
    Thread { name: String, detail: String },
}

impl RunError {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> RunError {
        let path = path.into();
        move |source| RunError::Io { op, path, source }
    }
}
