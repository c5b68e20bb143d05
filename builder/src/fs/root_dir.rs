//! Filesystem calls inside a root directory, made relative to a descriptor
//! of the root and checked by the kernel.
//!
//! [`super::in_root::resolve`] decides *which* path inside the root an image
//! path names (following the image's symlinks as a chrooted process would);
//! a [`RootDir`] then *does* something there. Every call opens the parent
//! directory with `openat2(2)` relative to the root's descriptor with
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS`, and acts
//! on the last component with an `*at` call that does not follow it. A
//! resolved path has no symlink in it, so this costs nothing on the normal
//! path; but when something swapped a directory for a symlink after the
//! path was resolved (a later entry of the same layer, a RUN step, another
//! writer), the call fails with `ELOOP` instead of acting on whatever the
//! link names — on the host, above all.
//!
//! Paths are given as host paths inside the root (what `resolve` returns),
//! because the unpacker and the snapshotter keep their books in host paths;
//! a path outside the root is refused, never acted on.

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{
    AtFlags, Dir, FileType, Gid, Mode, OFlags, RawMode, ResolveFlags, Stat, Timestamps, Uid,
    XattrFlags,
};

/// The resolution every lookup below the root is made with: never above
/// the root, never through a symlink or a `/proc` magic link.
const BENEATH: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS);

/// How deep [`RootDir::remove_tree`] goes before it gives up: far deeper
/// than any real image, shallow enough that its descriptors stay bounded.
pub const MAX_TREE_DEPTH: usize = 4096;

/// An open root filesystem directory.
#[derive(Debug)]
pub struct RootDir {
    fd: OwnedFd,
    path: PathBuf,
}

impl RootDir {
    /// Opens `path` (a directory, symlinks on the way followed: the root
    /// itself is the builder's choice, not the image's).
    pub fn open(path: &Path) -> io::Result<RootDir> {
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(RootDir {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// The host path the root was opened at (for messages and book-keeping).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `host` relative to the root; an error when it is not below it or has
    /// components other than plain names (a resolved path never has).
    fn relative<'p>(&self, host: &'p Path) -> io::Result<&'p Path> {
        let rel = host.strip_prefix(&self.path).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} is not inside the root {}",
                    host.display(),
                    self.path.display()
                ),
            )
        })?;
        if rel
            .components()
            .any(|component| !matches!(component, Component::Normal(_)))
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a resolved path", host.display()),
            ));
        }
        Ok(rel)
    }

    /// Opens the directory at `host` for `*at` calls (`O_PATH`).
    pub fn open_dir(&self, host: &Path) -> io::Result<OwnedFd> {
        let rel = self.relative(host)?;
        self.open_rel(rel, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC)
    }

    /// Opens `rel` below the root. `RESOLVE_NO_SYMLINKS` covers the last
    /// component too, so a symlink anywhere is `ELOOP`.
    fn open_rel(&self, rel: &Path, flags: OFlags) -> io::Result<OwnedFd> {
        let rel: &Path = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        loop {
            match rustix::fs::openat2(&self.fd, rel, flags, Mode::empty(), BENEATH) {
                // The kernel asks for a retry when a rename raced the walk.
                Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => continue,
                other => return other.map_err(io::Error::from),
            }
        }
    }

    /// The parent directory of `host`, opened, and its last component.
    /// The root itself has no parent here: acting on it is refused.
    pub fn parent<'p>(&self, host: &'p Path) -> io::Result<(OwnedFd, &'p OsStr)> {
        let rel = self.relative(host)?;
        let name = rel.file_name().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is the root itself", host.display()),
            )
        })?;
        let parent = rel.parent().unwrap_or(Path::new(""));
        let fd = self.open_rel(parent, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC)?;
        Ok((fd, name))
    }

    /// `lstat`: None when nothing is there (or a component is not a
    /// directory, as for the kernel's own lookups).
    pub fn lstat(&self, host: &Path) -> io::Result<Option<Stat>> {
        if self.relative(host)?.as_os_str().is_empty() {
            return rustix::fs::fstat(&self.fd).map(Some).map_err(Into::into);
        }
        let (dir, name) = match self.parent(host) {
            Ok(found) => found,
            Err(err) if missing(&err) => return Ok(None),
            Err(err) => return Err(err),
        };
        match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some(stat)),
            Err(errno) if missing(&errno.into()) => Ok(None),
            Err(errno) => Err(errno.into()),
        }
    }

    pub fn mkdir(&self, host: &Path, mode: u32) -> io::Result<()> {
        let (dir, name) = self.parent(host)?;
        rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(mode & 0o7777))?;
        Ok(())
    }

    /// Creates a new regular file for writing; never follows or reuses
    /// anything already at `host` (`O_EXCL | O_NOFOLLOW`).
    pub fn create_file(&self, host: &Path, mode: u32) -> io::Result<File> {
        let (dir, name) = self.parent(host)?;
        let fd = rustix::fs::openat(
            &dir,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode & 0o777),
        )?;
        Ok(File::from(fd))
    }

    /// Opens the regular file at `host` for reading: never through a link
    /// (the last component included), never blocking on a FIFO, and only
    /// when it is a regular file.
    pub fn open_regular(&self, host: &Path) -> io::Result<File> {
        let (dir, name) = self.parent(host)?;
        let fd = rustix::fs::openat(
            &dir,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let file = File::from(fd);
        if !file.metadata()?.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is not a regular file", host.display()),
            ));
        }
        Ok(file)
    }

    /// Hard-links the file at `host` (not followed if a link) as `outside`,
    /// a path outside the root.
    pub fn link_out(&self, host: &Path, outside: &Path) -> io::Result<()> {
        let (dir, name) = self.parent(host)?;
        rustix::fs::linkat(&dir, name, rustix::fs::CWD, outside, AtFlags::empty())?;
        Ok(())
    }

    pub fn symlink(&self, target: &OsStr, host: &Path) -> io::Result<()> {
        let (dir, name) = self.parent(host)?;
        rustix::fs::symlinkat(target, &dir, name)?;
        Ok(())
    }

    /// A hard link at `host` to the existing `target` (never following a
    /// symlink at `target`: the link then names the symlink itself).
    pub fn hard_link(&self, target: &Path, host: &Path) -> io::Result<()> {
        let (target_dir, target_name) = self.parent(target)?;
        let (dir, name) = self.parent(host)?;
        rustix::fs::linkat(&target_dir, target_name, &dir, name, AtFlags::empty())?;
        Ok(())
    }

    pub fn mknod(&self, host: &Path, file_type: FileType, mode: u32, dev: u64) -> io::Result<()> {
        let (dir, name) = self.parent(host)?;
        rustix::fs::mknodat(
            &dir,
            name,
            file_type,
            Mode::from_raw_mode(mode & 0o777),
            dev,
        )?;
        Ok(())
    }

    /// `lchown`: a symlink gets the owner itself.
    pub fn lchown(&self, host: &Path, uid: u32, gid: u32) -> io::Result<()> {
        let (dir, name) = self.parent(host)?;
        let (uid, gid) = (Uid::from_raw(uid), Gid::from_raw(gid));
        rustix::fs::chownat(&dir, name, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW)?;
        Ok(())
    }

    /// `chmod` of something that is not a symlink (a symlink's mode means
    /// nothing on Linux, and `fchmodat` would follow it): refused with
    /// `ELOOP` when a symlink is there.
    pub fn chmod(&self, host: &Path, mode: u32) -> io::Result<()> {
        let (dir, name) = self.parent(host)?;
        let stat = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
        if FileType::from_raw_mode(stat.st_mode as RawMode) == FileType::Symlink {
            return Err(rustix::io::Errno::LOOP.into());
        }
        rustix::fs::chmodat(
            &dir,
            name,
            Mode::from_raw_mode(mode & 0o7777),
            AtFlags::empty(),
        )?;
        Ok(())
    }

    /// Access and modification time of `host` itself (a symlink's own).
    pub fn set_times(&self, host: &Path, times: &Timestamps) -> io::Result<()> {
        if self.relative(host)?.as_os_str().is_empty() {
            // `O_PATH` descriptors cannot take times: the root reopened.
            let fd = self.open_rel(
                Path::new(""),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            )?;
            rustix::fs::futimens(&fd, times)?;
            return Ok(());
        }
        let (dir, name) = self.parent(host)?;
        rustix::fs::utimensat(&dir, name, times, AtFlags::SYMLINK_NOFOLLOW)?;
        Ok(())
    }

    /// `lsetxattr` of `host` itself. Linux has no `*at` form before 6.13,
    /// so the call names the entry through `/proc/self/fd/<parent>/<name>`:
    /// the kernel resolves the magic link to the exact directory opened, and
    /// the last component is not followed.
    pub fn lsetxattr(&self, host: &Path, key: &OsStr, value: &[u8]) -> io::Result<()> {
        let (dir, name) = self.parent(host)?;
        let mut through_proc = OsString::from(format!("/proc/self/fd/{}/", dir.as_raw_fd()));
        through_proc.push(name);
        rustix::fs::lsetxattr(Path::new(&through_proc), key, value, XattrFlags::empty())?;
        Ok(())
    }

    /// Removes a non-directory.
    pub fn remove_file(&self, host: &Path) -> io::Result<()> {
        let (dir, name) = self.parent(host)?;
        rustix::fs::unlinkat(&dir, name, AtFlags::empty())?;
        Ok(())
    }

    /// Removes an empty directory.
    pub fn remove_dir(&self, host: &Path) -> io::Result<()> {
        let (dir, name) = self.parent(host)?;
        rustix::fs::unlinkat(&dir, name, AtFlags::REMOVEDIR)?;
        Ok(())
    }

    /// The names in the directory at `host` (without `.` and `..`).
    pub fn read_dir(&self, host: &Path) -> io::Result<Vec<OsString>> {
        let rel = self.relative(host)?;
        let fd = self.open_rel(rel, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC)?;
        names_in(fd)
    }

    /// Removes whatever is at `host`, a directory with everything in it,
    /// never following a symlink. Iterative, so a tree of any depth up to
    /// [`MAX_TREE_DEPTH`] is removed without growing the stack.
    pub fn remove_tree(&self, host: &Path) -> io::Result<()> {
        let (parent, name) = self.parent(host)?;
        remove_tree_at(parent, name)
    }
}

/// The names in an open directory, `.` and `..` left out.
fn names_in(fd: OwnedFd) -> io::Result<Vec<OsString>> {
    let mut dir = Dir::new(fd)?;
    let mut names = Vec::new();
    while let Some(entry) = dir.read() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(OsStr::from_bytes(name).to_os_string());
        }
    }
    Ok(names)
}

/// Removes `name` in the directory `parent` and, when it is a directory,
/// everything below it, depth first with an explicit stack of open
/// directories.
pub fn remove_tree_at(parent: OwnedFd, name: &OsStr) -> io::Result<()> {
    match rustix::fs::unlinkat(&parent, name, AtFlags::empty()) {
        Ok(()) => return Ok(()),
        Err(rustix::io::Errno::ISDIR) => {}
        Err(errno) => return Err(errno.into()),
    }
    // (directory, its name in the one below it on the stack, names left)
    struct Level {
        fd: OwnedFd,
        name: CString,
        pending: Vec<OsString>,
    }
    let open = |dir: &OwnedFd, name: &OsStr| -> io::Result<Level> {
        let fd = rustix::fs::openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let listing = rustix::io::dup(&fd)?;
        Ok(Level {
            fd,
            name: CString::new(name.as_bytes()).map_err(io::Error::other)?,
            pending: names_in(listing)?,
        })
    };
    let mut stack = vec![open(&parent, name)?];
    loop {
        let depth = stack.len();
        let Some(level) = stack.last_mut() else { break };
        let Some(child) = level.pending.pop() else {
            let done = stack
                .pop()
                .unwrap_or_else(|| unreachable!("the stack is not empty"));
            let above = stack
                .last()
                .map_or(parent.as_fd(), |level| level.fd.as_fd());
            rustix::fs::unlinkat(above, done.name.as_c_str(), AtFlags::REMOVEDIR)?;
            continue;
        };
        match rustix::fs::unlinkat(&level.fd, child.as_os_str(), AtFlags::empty()) {
            Ok(()) => {}
            Err(rustix::io::Errno::NOENT) => {}
            Err(rustix::io::Errno::ISDIR) => {
                if depth >= MAX_TREE_DEPTH {
                    return Err(io::Error::other(format!(
                        "directory tree deeper than {MAX_TREE_DEPTH} levels"
                    )));
                }
                let next = open(&level.fd, &child)?;
                stack.push(next);
            }
            Err(errno) => return Err(errno.into()),
        }
    }
    Ok(())
}

/// Not there, as lookups count it: `ENOENT`, or `ENOTDIR` for a file where
/// a directory was expected.
pub(crate) fn missing(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// A symlink where the resolved path had none: the tree changed under us.
pub fn swapped(err: &io::Error) -> bool {
    err.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn relative_refuses_paths_outside_or_unresolved() {
        let dir = tempfile::tempdir().unwrap();
        let root = RootDir::open(dir.path()).unwrap();
        assert!(root.relative(&dir.path().join("a/b")).is_ok());
        assert!(root.relative(Path::new("/etc")).is_err());
        assert!(root.relative(&dir.path().join("a/../../x")).is_err());
    }

    #[test]
    fn a_swapped_parent_is_refused_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let root_path = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(root_path.join("a")).unwrap();
        std::fs::create_dir_all(outside.join("etc")).unwrap();
        let root = RootDir::open(&root_path).unwrap();
        std::fs::remove_dir(root_path.join("a")).unwrap();
        std::os::unix::fs::symlink(&outside, root_path.join("a")).unwrap();
        let err = root.chmod(&root_path.join("a/etc"), 0o700).unwrap_err();
        assert!(swapped(&err), "{err}");
        let err = root.remove_tree(&root_path.join("a/etc")).unwrap_err();
        assert!(swapped(&err), "{err}");
        assert!(outside.join("etc").is_dir());
    }

    #[test]
    fn remove_tree_removes_a_tree_deeper_than_path_max() {
        let dir = tempfile::tempdir().unwrap();
        let root = RootDir::open(dir.path()).unwrap();
        // Deeper than PATH_MAX allows in one path: built with *at calls.
        let mut fd = rustix::fs::openat(
            rustix::fs::CWD,
            dir.path(),
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .unwrap();
        for _ in 0..2000 {
            rustix::fs::mkdirat(&fd, "d", Mode::from_raw_mode(0o755)).unwrap();
            fd = rustix::fs::openat(&fd, "d", OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())
                .unwrap();
        }
        std::fs::write(format!("/proc/self/fd/{}/leaf", fd.as_raw_fd()), "x").unwrap();
        drop(fd);
        root.remove_tree(&dir.path().join("d")).unwrap();
        assert!(!dir.path().join("d").exists());
    }
}
