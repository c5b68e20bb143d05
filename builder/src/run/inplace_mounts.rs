//! `RUN --mount` without mounts (`--isolation=inplace`): each mount's
//! source is *materialised* at its target in `/` for the step, and taken
//! away again before the snapshot, whether the step succeeded or not.
//!
//! - A target the image lacks is created as a stub with its missing parents
//!   (`super::stubs`, as chroot does for its mount points) and removed
//!   afterwards with their parents' times restored; a target the image has
//!   is moved aside (renamed, never copied) and moved back afterwards.
//! - A writable directory (`type=cache`, a `bind` with `rw`, whose source
//!   is already a private copy) is *moved* to the target when both are on
//!   one filesystem, and copied otherwise; afterwards it goes back where it
//!   came from (moved, or copied back over the source), so a cache keeps
//!   what the step wrote and an `rw` copy is thrown away by its owner.
//! - A read-only directory or file (`bind`, a `secret`'s file) is copied,
//!   with modes and owners, and removed afterwards. Without a read-only
//!   mount nothing stops a step from writing to the copy; what it writes
//!   is removed with it and never reaches the source or a layer.
//! - `tmpfs` is an empty directory (mode 1777), removed afterwards.
//!
//! A secret's copy is removed even when the step fails or the removal of
//! another mount fails (`Drop` finishes what [`Materialized::restore`] did
//! not).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::RunError;
use super::stubs::{MountPoint, StubKind, Stubs};
use super::{MountSource, RunMount};
use crate::fs::in_root::is_missing;
use crate::fs::resolve_in_root;

/// One materialised mount.
#[derive(Debug)]
struct Placed {
    /// Host path of the target (inside the root).
    target: PathBuf,
    /// Where the image's own entry at the target waits, when it had one.
    stash: Option<PathBuf>,
    /// The directory that was moved here, to move back.
    moved_from: Option<PathBuf>,
    /// The source to copy the target's content back over (a writable
    /// directory on another filesystem).
    copy_back: Option<PathBuf>,
    /// For a copy (a file, a read-only directory): removed on SIGTERM or
    /// SIGINT of kiln, which ends without `restore` (a secret's copy must
    /// not stay in `/`).
    _interruptible: Option<super::interrupt::Registered>,
}

/// The mounts of one step, materialised in `/`.
#[derive(Debug)]
pub(super) struct Materialized {
    placed: Vec<Placed>,
    stubs: Option<Stubs>,
    /// The parent directory of every target, with its (atime, mtime)
    /// before anything was placed.
    parent_times: Vec<(PathBuf, (i64, i64, i64, i64))>,
    stash_dir: PathBuf,
}

impl Materialized {
    /// Places every mount of `mounts` (parents first) in `root`; on error
    /// what was placed is taken away again.
    pub(super) fn place(
        root: &Path,
        mounts: &[RunMount],
        stash_dir: &Path,
    ) -> Result<Materialized, RunError> {
        let mut done = Materialized {
            placed: Vec::new(),
            stubs: Some(Stubs::default()),
            parent_times: Vec::new(),
            stash_dir: stash_dir.to_path_buf(),
        };
        let mut ordered: Vec<&RunMount> = mounts.iter().collect();
        ordered.sort_by_key(|mount| mount.target.matches('/').count());
        for (index, mount) in ordered.into_iter().enumerate() {
            done.place_one(root, mount, index)?;
        }
        Ok(done)
    }

    fn place_one(&mut self, root: &Path, mount: &RunMount, index: usize) -> Result<(), RunError> {
        let kind = match mount.source {
            MountSource::File(_) => StubKind::File,
            MountSource::Directory(_) | MountSource::Tmpfs { .. } => StubKind::Directory,
        };
        let host = resolve_in_root(root, &mount.target).map_err(|source| RunError::Lookup {
            root: root.to_path_buf(),
            path: mount.target.clone(),
            source,
        })?;
        if host == root {
            return Err(RunError::MountTargetBlocked {
                target: mount.target.clone(),
                existing: host,
                kind: "directory other than /",
            });
        }
        if let Some(parent) = host.parent()
            && !self.parent_times.iter().any(|(p, _)| p == parent)
            && let Ok(meta) = fs::symlink_metadata(parent)
        {
            let times = (
                meta.atime(),
                meta.atime_nsec(),
                meta.mtime(),
                meta.mtime_nsec(),
            );
            self.parent_times.push((parent.to_path_buf(), times));
        }
        let existed = match fs::symlink_metadata(&host) {
            Ok(_) => true,
            Err(err) if is_missing(&err) => false,
            Err(err) => return Err(RunError::io("inspect", &host)(err)),
        };
        let is_copy = matches!(mount.source, MountSource::File(_))
            || matches!(mount.source, MountSource::Directory(_) if mount.read_only);
        let mut placed = Placed {
            target: host.clone(),
            stash: None,
            moved_from: None,
            copy_back: None,
            _interruptible: is_copy.then(|| super::interrupt::entry_in_root(root, &host)),
        };
        if existed {
            let stash = self.stash_dir.join(format!("stash-{index}"));
            fs::create_dir_all(&self.stash_dir).map_err(RunError::io("create", &self.stash_dir))?;
            rename_or_copy(&host, &stash)?;
            placed.stash = Some(stash);
        } else {
            let stubs = self.stubs.get_or_insert_with(Stubs::default);
            match stubs.ensure(root, &mount.target, kind)? {
                MountPoint::Ready(_) => {}
                MountPoint::Blocked(existing) => {
                    return Err(RunError::MountTargetBlocked {
                        target: mount.target.clone(),
                        existing,
                        kind: kind.name(),
                    });
                }
            }
        }
        // Recorded before filling, so a failure half-way is undone too.
        let filled = fill(&host, mount, existed, &mut placed);
        self.placed.push(placed);
        filled
    }

    /// Takes every mount away (children first): what was moved goes back,
    /// copies and stubs are removed, the image's own entries come back and
    /// the parents' times are restored. Every step is tried; the first
    /// error is returned.
    pub(super) fn restore(mut self) -> Result<(), RunError> {
        self.restore_all()
    }

    fn restore_all(&mut self) -> Result<(), RunError> {
        let mut first: Option<RunError> = None;
        for placed in self.placed.drain(..).rev() {
            if let Err(err) = take_away(&placed) {
                first.get_or_insert(err);
            }
        }
        if let Some(stubs) = self.stubs.take() {
            for (path, why) in stubs.remove() {
                tracing::warn!(%path, %why, "RUN --mount: mount point kept in /");
            }
        }
        for (parent, (atime, atime_ns, mtime, mtime_ns)) in self.parent_times.drain(..) {
            let times = rustix::fs::Timestamps {
                last_access: rustix::fs::Timespec {
                    tv_sec: atime,
                    tv_nsec: atime_ns as _,
                },
                last_modification: rustix::fs::Timespec {
                    tv_sec: mtime,
                    tv_nsec: mtime_ns as _,
                },
            };
            if let Err(errno) = rustix::fs::utimensat(
                rustix::fs::CWD,
                &parent,
                &times,
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            ) {
                first.get_or_insert(RunError::io("restore the times of", &parent)(errno.into()));
            }
        }
        match first {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }
}

impl Drop for Materialized {
    fn drop(&mut self) {
        if (!self.placed.is_empty() || self.stubs.is_some())
            && let Err(err) = self.restore_all()
        {
            tracing::warn!(%err, "RUN --mount: could not take every mount away");
        }
    }
}

/// Puts `mount`'s content at `host`: a stub is there when the image had
/// nothing (`existed` false), nothing when the image's entry was moved
/// aside.
fn fill(host: &Path, mount: &RunMount, existed: bool, placed: &mut Placed) -> Result<(), RunError> {
    match &mount.source {
        MountSource::Tmpfs { .. } => {
            if existed {
                fs::create_dir(host).map_err(RunError::io("create", host))?;
            }
            fs::set_permissions(host, fs::Permissions::from_mode(0o1777))
                .map_err(RunError::io("set mode of", host))?;
        }
        MountSource::File(source) => {
            if !existed {
                fs::remove_file(host).map_err(RunError::io("remove", host))?;
            }
            copy_entry(source, host)?;
        }
        MountSource::Directory(source) => {
            // The stub (or nothing) is where the directory goes.
            if !existed {
                fs::remove_dir(host).map_err(RunError::io("remove", host))?;
            }
            if mount.read_only {
                return copy_entry(source, host);
            }
            match fs::rename(source, host) {
                Ok(()) => placed.moved_from = Some(source.clone()),
                Err(err) if err.raw_os_error() == Some(rustix::io::Errno::XDEV.raw_os_error()) => {
                    copy_entry(source, host)?;
                    placed.copy_back = Some(source.clone());
                }
                Err(err) => {
                    return Err(RunError::io("move a cache or rw directory to", host)(err));
                }
            }
        }
    }
    Ok(())
}

/// Undoes one [`Placed`].
fn take_away(placed: &Placed) -> Result<(), RunError> {
    let target = &placed.target;
    if let Some(source) = &placed.moved_from {
        fs::rename(target, source).map_err(RunError::io("move back the directory at", target))?;
    } else {
        if let Some(source) = &placed.copy_back {
            remove_entry(source)?;
            copy_entry(target, source)?;
        }
        remove_entry(target)?;
    }
    // A stub made for the target is gone with it: `Stubs::remove` counts
    // that as removed and restores its parent's times.
    if let Some(stash) = &placed.stash {
        rename_or_copy(stash, target)?;
    }
    Ok(())
}

/// Removes whatever is at `path`, a whole tree for a directory, never
/// following a symlink; nothing there is fine.
fn remove_entry(path: &Path) -> Result<(), RunError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path).map_err(RunError::io("remove", path)),
        Ok(_) => fs::remove_file(path).map_err(RunError::io("remove", path)),
        Err(err) if is_missing(&err) => Ok(()),
        Err(err) => Err(RunError::io("inspect", path)(err)),
    }
}

/// Moves `from` to `to` (which must not exist), copying across
/// filesystems.
fn rename_or_copy(from: &Path, to: &Path) -> Result<(), RunError> {
    match fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(err) if err.raw_os_error() == Some(rustix::io::Errno::XDEV.raw_os_error()) => {
            copy_entry(from, to)?;
            remove_entry(from)
        }
        Err(err) => Err(RunError::io("move aside", from)(err)),
    }
}

/// Copies `from` to `to` (which must not exist): directories recursively,
/// files, symlinks as links, each with its mode and owner; other kinds
/// (sockets, devices) are skipped.
fn copy_entry(from: &Path, to: &Path) -> Result<(), RunError> {
    let meta = fs::symlink_metadata(from).map_err(RunError::io("inspect", from))?;
    let kind = meta.file_type();
    if kind.is_symlink() {
        let target = fs::read_link(from).map_err(RunError::io("read link", from))?;
        std::os::unix::fs::symlink(target, to).map_err(RunError::io("create link", to))?;
    } else if kind.is_dir() {
        fs::create_dir(to).map_err(RunError::io("create directory", to))?;
        for entry in fs::read_dir(from).map_err(RunError::io("read directory", from))? {
            let entry = entry.map_err(RunError::io("read directory", from))?;
            copy_entry(&entry.path(), &to.join(entry.file_name()))?;
        }
    } else if kind.is_file() {
        fs::copy(from, to).map_err(RunError::io("copy a mount source to", to))?;
    } else {
        tracing::warn!(path = %from.display(), "RUN --mount: not a file, directory or link; not copied");
        return Ok(());
    }
    std::os::unix::fs::lchown(to, Some(meta.uid()), Some(meta.gid()))
        .map_err(RunError::io("set the owner of", to))?;
    if !kind.is_symlink() {
        // After chown, which clears setuid bits.
        fs::set_permissions(to, fs::Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(RunError::io("set the mode of", to))?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn mount(target: &str, source: MountSource, read_only: bool) -> RunMount {
        RunMount {
            target: target.to_string(),
            source,
            read_only,
        }
    }

    fn tree(root: &Path) -> Vec<String> {
        fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
            let mut entries: Vec<_> = fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            entries.sort();
            for path in entries {
                let rel = path.strip_prefix(root).unwrap().display().to_string();
                let meta = fs::symlink_metadata(&path).unwrap();
                if meta.is_dir() {
                    out.push(format!("{rel}/ {:o}", meta.mode() & 0o7777));
                    walk(root, &path, out);
                } else {
                    out.push(format!(
                        "{rel} {:?}",
                        fs::read_to_string(&path).unwrap_or_default()
                    ));
                }
            }
        }
        let mut out = Vec::new();
        walk(root, root, &mut out);
        out
    }

    #[test]
    fn mounts_are_placed_and_taken_away() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let sources = dir.path().join("sources");
        let stash = dir.path().join("stash");
        for d in [
            "root/etc",
            "root/var/cache/apt",
            "root/run",
            "sources/cache",
            "sources/ctx/sub",
        ] {
            fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        fs::write(root.join("var/cache/apt/image-file"), "image").unwrap();
        fs::write(root.join("etc/passwd"), "root").unwrap();
        fs::write(sources.join("cache/old"), "cached").unwrap();
        fs::write(sources.join("ctx/sub/a"), "a").unwrap();
        fs::write(sources.join("secret"), "s3cr3t").unwrap();
        fs::set_permissions(sources.join("secret"), fs::Permissions::from_mode(0o400)).unwrap();
        let before = tree(&root);
        let etc_mtime = fs::metadata(root.join("etc")).unwrap().mtime_nsec();

        let mounts = [
            mount(
                "/var/cache/apt",
                MountSource::Directory(sources.join("cache")),
                false,
            ),
            mount("/src", MountSource::Directory(sources.join("ctx")), true),
            mount(
                "/run/secrets/token",
                MountSource::File(sources.join("secret")),
                true,
            ),
            mount("/etc/tmp", MountSource::Tmpfs { size: None }, false),
        ];
        let placed = Materialized::place(&root, &mounts, &stash).unwrap();
        assert_eq!(
            fs::read_to_string(root.join("var/cache/apt/old")).unwrap(),
            "cached"
        );
        assert!(
            !root.join("var/cache/apt/image-file").exists(),
            "the image's entry is hidden"
        );
        assert_eq!(fs::read_to_string(root.join("src/sub/a")).unwrap(), "a");
        assert_eq!(
            fs::read_to_string(root.join("run/secrets/token")).unwrap(),
            "s3cr3t"
        );
        assert_eq!(
            fs::metadata(root.join("run/secrets/token")).unwrap().mode() & 0o777,
            0o400
        );
        assert_eq!(
            fs::metadata(root.join("etc/tmp")).unwrap().mode() & 0o7777,
            0o1777
        );
        // What the step writes.
        fs::write(root.join("var/cache/apt/new"), "written").unwrap();
        fs::write(root.join("src/sub/b"), "discarded").unwrap();
        placed.restore().unwrap();

        assert_eq!(tree(&root), before);
        assert_eq!(
            fs::metadata(root.join("etc")).unwrap().mtime_nsec(),
            etc_mtime
        );
        assert_eq!(
            fs::read_to_string(sources.join("cache/new")).unwrap(),
            "written",
            "the cache keeps what the step wrote"
        );
        assert!(
            !sources.join("ctx/sub/b").exists(),
            "a read-only source is never written"
        );
    }

    #[test]
    fn a_failure_half_way_takes_away_what_was_placed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(dir.path().join("secret"), "s3cr3t").unwrap();
        fs::write(root.join("etc/file"), "not a directory").unwrap();
        let mounts = [
            mount(
                "/run/secret",
                MountSource::File(dir.path().join("secret")),
                true,
            ),
            mount("/etc/file/below", MountSource::Tmpfs { size: None }, false),
        ];
        let before = tree(&root);
        let err = Materialized::place(&root, &mounts, &dir.path().join("stash")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot mount RUN --mount target /etc/file/below:"),
            "{err}"
        );
        assert_eq!(tree(&root), before, "the secret is gone again");
    }
}
