//! What the set-up thread mounts inside the root, once it is in its own
//! mount namespace: `/dev`, `/sys`, the host's name-resolution files and
//! the step's `RUN --mount`s.
//! (`/proc` is mounted by the child itself, from inside the new PID
//! namespace; see `sys::install_child_setup`.)

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use rustix::fs::{CWD, FileType, Mode};
use rustix::mount::MountFlags;

use super::sys;
use super::{MountSource, RunError};

/// Host paths (inside the root) to mount on, all existing.
#[derive(Debug)]
pub(super) struct MountPlan {
    /// The root filesystem, bound on itself first so that `pivot_root`
    /// can take it and every mount below lands on that bind.
    pub(super) root: PathBuf,
    pub(super) dev: PathBuf,
    /// `None` when the image has something else than a directory there.
    pub(super) sys: Option<PathBuf>,
    /// (private copy of a host file, file in the root to bind it over).
    pub(super) files: Vec<(PathBuf, PathBuf)>,
    /// `RUN --mount`s, parents before children.
    pub(super) run_mounts: Vec<PlannedMount>,
}

/// A `RUN --mount` with its mount point in the root (existing).
#[derive(Debug)]
pub(super) struct PlannedMount {
    pub(super) source: MountSource,
    pub(super) target: PathBuf,
    pub(super) read_only: bool,
}

/// The device nodes a RUN gets: name, major, minor (the kernel's fixed
/// numbers for these character devices).
const DEV_NODES: [(&str, u32, u32); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// Links in `/dev`, as Docker and runc make them.
const DEV_LINKS: [(&str, &str); 5] = [
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
];

/// Mounts everything in `plan`. Must run in the thread's own mount
/// namespace with private propagation: these mounts vanish with it.
pub(super) fn mount_all(plan: &MountPlan) -> Result<(), RunError> {
    sys::bind_root_on_itself(&plan.root).map_err(RunError::io(
        "bind-mount the root filesystem on itself at",
        &plan.root,
    ))?;
    set_up_dev(&plan.dev)?;
    if let Some(target) = &plan.sys {
        match sys::mount_sysfs(target) {
            Ok(()) => mask_sys(target),
            Err(err) => {
                tracing::warn!(path = %target.display(), %err, "RUN: cannot mount /sys; the step runs without it")
            }
        }
    }
    for (copy, target) in &plan.files {
        sys::bind(copy, target).map_err(RunError::io(
            "bind-mount a copy of the host's file on",
            target,
        ))?;
    }
    for mount in &plan.run_mounts {
        mount_one(mount)?;
    }
    Ok(())
}

/// Parts of `/sys` a step does not see, as runc's default spec has them.
const SYS_MASKED: [&str; 2] = ["firmware", "devices/virtual/powercap"];

/// Hides [`SYS_MASKED`] under empty read-only tmpfs mounts; a missing one
/// is skipped, a failure is a warning (the whole of `/sys` is read-only).
fn mask_sys(sys_dir: &Path) {
    for name in SYS_MASKED {
        let target = sys_dir.join(name);
        if !target.is_dir() {
            continue;
        }
        if let Err(err) = sys::mask_directory(&target) {
            tracing::warn!(path = %target.display(), %err, "RUN: cannot mask a part of /sys");
        }
    }
}

/// A bind of the source (not recursive: a read-only bind must not leave
/// writable submounts below it) or a new tmpfs, then for read-only ones a
/// remount that makes the kernel refuse every write through it.
fn mount_one(mount: &PlannedMount) -> Result<(), RunError> {
    let target = &mount.target;
    match &mount.source {
        MountSource::Directory(source) | MountSource::File(source) => sys::bind(source, target)
            .map_err(RunError::io("bind-mount RUN --mount source on", target))?,
        MountSource::Tmpfs { size } => {
            let data = match size {
                Some(bytes) => format!("mode=755,size={bytes}"),
                None => "mode=755".to_string(),
            };
            sys::mount_tmpfs(target, MountFlags::NOSUID | MountFlags::NODEV, &data)
                .map_err(RunError::io("mount a RUN --mount tmpfs on", target))?
        }
    }
    if mount.read_only {
        sys::remount_read_only(target)
            .map_err(RunError::io("make the RUN --mount read-only at", target))?;
    }
    Ok(())
}

/// A tmpfs on `dev` with the usual nodes, links, `pts` and `shm`, as
/// runc lays it out. The nodes are made in the tmpfs (`mknod`), so a RUN
/// that changes one (`chmod`, `rm`) changes only its own; where `mknod`
/// is refused the host's node is bind-mounted instead. The nodes, `pts`
/// and `shm` are best effort (warnings); the tmpfs is not.
fn set_up_dev(dev: &Path) -> Result<(), RunError> {
    sys::mount_tmpfs(
        dev,
        MountFlags::NOSUID | MountFlags::STRICTATIME,
        "mode=755,size=65536k",
    )
    .map_err(RunError::io("mount a tmpfs on", dev))?;
    for (name, major, minor) in DEV_NODES {
        let target = dev.join(name);
        if let Err(err) = make_node(&target, major, minor) {
            let source = Path::new("/dev").join(name);
            let bound = fs::File::create(&target).and_then(|_| sys::bind(&source, &target));
            if let Err(bind_err) = bound {
                tracing::warn!(node = %source.display(), mknod = %err, bind = %bind_err, "RUN: device node not available in /dev");
                let _ = fs::remove_file(&target);
            }
        }
    }
    for (name, target) in DEV_LINKS {
        let link = dev.join(name);
        symlink(target, &link).map_err(RunError::io("create link", &link))?;
    }
    let pts = dev.join("pts");
    if let Err(err) = fs::create_dir(&pts).and_then(|()| sys::mount_devpts(&pts)) {
        tracing::warn!(%err, "RUN: cannot mount devpts on /dev/pts");
    }
    let shm = dev.join("shm");
    let shm_flags = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    if let Err(err) = fs::create_dir(&shm)
        .and_then(|()| sys::mount_tmpfs(&shm, shm_flags, "mode=1777,size=65536k"))
    {
        tracing::warn!(%err, "RUN: cannot mount a tmpfs on /dev/shm");
    }
    Ok(())
}

/// A character device node, mode 0666 whatever the umask.
fn make_node(path: &Path, major: u32, minor: u32) -> std::io::Result<()> {
    rustix::fs::mknodat(
        CWD,
        path,
        FileType::CharacterDevice,
        Mode::from_raw_mode(0o666),
        rustix::fs::makedev(major, minor),
    )?;
    rustix::fs::chmodat(
        CWD,
        path,
        Mode::from_raw_mode(0o666),
        rustix::fs::AtFlags::empty(),
    )?;
    Ok(())
}
