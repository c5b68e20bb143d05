//! Mount points an image lacks, created for one RUN and removed after it.
//!
//! A mount needs something to mount on: `/proc`, `/dev`, `/sys` must be
//! directories and `/etc/resolv.conf`, `/etc/hosts` files in the root. When
//! the image has none, [`Stubs`] creates them (and missing parents), with
//! the parent's times noted first. [`Stubs::remove`] undoes it in reverse
//! order: a stub still empty is removed and its parent's access and
//! modification times are put back, so the snapshot after the RUN does not
//! see kiln's scaffolding. A stub the command filled is kept (it is the
//! command's now).
//!
//! Removal comes after the command ran, and the command may have replaced
//! any directory of the root with a symlink (to `/`, say): every call is
//! made through a [`RootDir`], which refuses to pass a symlink, so what the
//! command did can never turn a removal or a time change into one on the
//! host.

use std::io;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, RawMode, Stat, Timespec, Timestamps};

use super::RunError;
use crate::fs::resolve_in_root;
use crate::fs::root_dir::{RootDir, missing};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum StubKind {
    Directory,
    File,
}

impl StubKind {
    /// The word for error messages.
    pub(super) fn name(self) -> &'static str {
        match self {
            StubKind::Directory => "directory",
            StubKind::File => "file",
        }
    }
}

#[derive(Debug)]
struct Stub {
    image_path: String,
    host: PathBuf,
    kind: StubKind,
    /// The parent's (atime, mtime) before the stub was created.
    parent_times: Option<((i64, i64), (i64, i64))>,
}

/// The stubs created for one RUN, in creation order.
#[derive(Debug, Default)]
pub(super) struct Stubs {
    /// The root they were made in, opened by the first [`Stubs::ensure`].
    root: Option<RootDir>,
    created: Vec<Stub>,
}

/// What [`Stubs::ensure`] found or made at a mount point.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum MountPoint {
    /// The host path to mount on.
    Ready(PathBuf),
    /// Something of the other kind is in the way (a file where a directory
    /// is needed, or the reverse); the host path of the obstacle.
    Blocked(PathBuf),
}

impl Stubs {
    /// Makes sure `image_path` exists in `root` as `kind`, creating it and
    /// its missing parents (directories 0755, files 0644, owned by root).
    /// Symlinks in the image are followed inside the root.
    pub(super) fn ensure(
        &mut self,
        root: &Path,
        image_path: &str,
        kind: StubKind,
    ) -> Result<MountPoint, RunError> {
        let host = resolve_in_root(root, image_path).map_err(|source| RunError::Lookup {
            root: root.to_path_buf(),
            path: image_path.to_string(),
            source,
        })?;
        let rel = host.strip_prefix(root).unwrap_or(&host).to_path_buf();
        // A link to `/` (`/proc -> /`): never mount over the root itself.
        if rel.as_os_str().is_empty() {
            return Ok(MountPoint::Blocked(host));
        }
        if self.root.as_ref().is_none_or(|open| open.path() != root) {
            self.root = Some(RootDir::open(root).map_err(RunError::io("open", root))?);
        }
        let Some(dir) = self.root.as_ref() else {
            unreachable!("opened above")
        };
        let components: Vec<_> = rel.components().collect();
        let mut current = root.to_path_buf();
        for (index, component) in components.iter().enumerate() {
            current.push(component);
            let want = if index + 1 == components.len() {
                kind
            } else {
                StubKind::Directory
            };
            match dir.lstat(&current) {
                Ok(Some(meta))
                    if file_type(&meta) == FileType::Directory && want == StubKind::Directory =>
                {
                    continue;
                }
                Ok(Some(meta))
                    if file_type(&meta) == FileType::RegularFile && want == StubKind::File =>
                {
                    continue;
                }
                Ok(Some(_)) => return Ok(MountPoint::Blocked(current)),
                Ok(None) => {}
                Err(err) => return Err(RunError::io("inspect", &current)(err)),
            }
            let parent_times = current.parent().and_then(|parent| times_of(dir, parent));
            let created = match want {
                StubKind::Directory => dir.mkdir(&current, 0o755),
                StubKind::File => dir.create_file(&current, 0o644).map(drop),
            };
            created.map_err(RunError::io("create mount point", &current))?;
            self.created.push(Stub {
                image_path: format!(
                    "/{}",
                    Path::new(&current)
                        .strip_prefix(root)
                        .unwrap_or(&current)
                        .display()
                ),
                host: current.clone(),
                kind: want,
                parent_times,
            });
            let mode = match want {
                StubKind::Directory => 0o755,
                StubKind::File => 0o644,
            };
            dir.lchown(&current, 0, 0)
                .and_then(|()| dir.chmod(&current, mode))
                .map_err(RunError::io("set owner and mode of mount point", &current))?;
        }
        Ok(MountPoint::Ready(host))
    }

    /// The in-image paths created so far, in creation order.
    pub(super) fn image_paths(&self) -> Vec<String> {
        self.created.iter().map(|s| s.image_path.clone()).collect()
    }

    /// Removes every stub that is still empty, newest first, restoring its
    /// parent's times. Returns the in-image paths of the stubs kept, with
    /// why.
    pub(super) fn remove(self) -> Vec<(String, String)> {
        let mut kept = Vec::new();
        let Some(dir) = self.root else {
            return kept;
        };
        for stub in self.created.into_iter().rev() {
            match remove_if_empty(&dir, &stub) {
                Ok(true) => {
                    if let (Some(parent), Some(times)) = (stub.host.parent(), stub.parent_times)
                        && let Err(err) = restore_times(&dir, parent, times)
                    {
                        kept.push((
                            stub.image_path.clone(),
                            format!("restoring its parent's times: {err}"),
                        ));
                    }
                }
                Ok(false) => kept.push((stub.image_path, "the command wrote into it".to_string())),
                Err(err) => kept.push((stub.image_path, err.to_string())),
            }
        }
        kept
    }
}

/// Removes `stub` when it is still what kiln made: an empty directory or
/// an empty regular file. Gone already counts as removed.
/// Removes `stub` when it is still what kiln made: an empty directory or
/// an empty regular file. Gone already counts as removed; a symlink on the
/// way (the command swapped a directory) is an error, never followed.
fn remove_if_empty(dir: &RootDir, stub: &Stub) -> io::Result<bool> {
    let meta = match dir.lstat(&stub.host) {
        Ok(Some(meta)) => meta,
        Ok(None) => return Ok(true),
        Err(err) if missing(&err) => return Ok(true),
        Err(err) => return Err(err),
    };
    match (stub.kind, file_type(&meta)) {
        (StubKind::Directory, FileType::Directory) => {
            if !dir.read_dir(&stub.host)?.is_empty() {
                return Ok(false);
            }
            dir.remove_dir(&stub.host)?;
            Ok(true)
        }
        (StubKind::File, FileType::RegularFile) if meta.st_size == 0 => {
            dir.remove_file(&stub.host)?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

fn file_type(meta: &Stat) -> FileType {
    FileType::from_raw_mode(meta.st_mode as RawMode)
}

fn times_of(dir: &RootDir, path: &Path) -> Option<((i64, i64), (i64, i64))> {
    let meta = dir.lstat(path).ok()??;
    Some((
        (meta.st_atime, meta.st_atime_nsec as i64),
        (meta.st_mtime, meta.st_mtime_nsec as i64),
    ))
}

fn restore_times(
    dir: &RootDir,
    path: &Path,
    (atime, mtime): ((i64, i64), (i64, i64)),
) -> io::Result<()> {
    let times = Timestamps {
        last_access: Timespec {
            tv_sec: atime.0,
            tv_nsec: atime.1 as _,
        },
        last_modification: Timespec {
            tv_sec: mtime.0,
            tv_nsec: mtime.1 as _,
        },
    };
    dir.set_times(path, &times)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{MetadataExt, symlink};

    #[test]
    fn ensure_creates_and_remove_restores() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let root = dir.path().join("root");
        fs::create_dir_all(root.join("existing"))?;
        let before = times_of(&RootDir::open(&root)?, &root);

        let mut stubs = Stubs::default();
        assert_eq!(
            stubs.ensure(&root, "/existing", StubKind::Directory)?,
            MountPoint::Ready(root.join("existing"))
        );
        assert_eq!(
            stubs.ensure(&root, "/proc", StubKind::Directory)?,
            MountPoint::Ready(root.join("proc"))
        );
        assert_eq!(
            stubs.ensure(&root, "/etc/resolv.conf", StubKind::File)?,
            MountPoint::Ready(root.join("etc/resolv.conf"))
        );
        assert_eq!(stubs.image_paths(), ["/proc", "/etc", "/etc/resolv.conf"]);
        assert_eq!(fs::read(root.join("etc/resolv.conf"))?, b"");

        assert_eq!(stubs.remove(), []);
        let mut left: Vec<String> = fs::read_dir(&root)?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<Result<_, _>>()?;
        left.sort();
        assert_eq!(left, ["existing"]);
        assert_eq!(
            times_of(&RootDir::open(&root)?, &root).map(|t| t.1),
            before.map(|t| t.1)
        );
        Ok(())
    }

    #[test]
    fn ensure_follows_links_inside_root_and_reports_obstacles()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let root = dir.path().join("root");
        fs::create_dir_all(root.join("etc"))?;
        fs::create_dir_all(root.join("run"))?;
        // An absolute link: inside the root, never the host's /run.
        symlink("/run/stub-resolv.conf", root.join("etc/resolv.conf"))?;
        fs::write(root.join("sys"), b"not a directory")?;
        symlink("/", root.join("proc"))?;

        let mut stubs = Stubs::default();
        assert_eq!(
            stubs.ensure(&root, "/etc/resolv.conf", StubKind::File)?,
            MountPoint::Ready(root.join("run/stub-resolv.conf"))
        );
        assert_eq!(
            stubs.ensure(&root, "/sys", StubKind::Directory)?,
            MountPoint::Blocked(root.join("sys"))
        );
        assert_eq!(
            stubs.ensure(&root, "/proc", StubKind::Directory)?,
            MountPoint::Blocked(root.clone())
        );
        assert_eq!(stubs.image_paths(), ["/run/stub-resolv.conf"]);
        assert!(!Path::new("/run/stub-resolv.conf").exists());
        assert_eq!(stubs.remove(), []);
        assert!(!root.join("run/stub-resolv.conf").exists());
        Ok(())
    }

    #[test]
    fn remove_never_follows_a_directory_the_command_swapped_for_a_link()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        fs::create_dir_all(&root)?;
        fs::create_dir_all(outside.join("proc"))?;
        fs::write(outside.join("resolv.conf"), b"")?;
        let outside_mtime = fs::metadata(&outside)?.mtime();
        let mut stubs = Stubs::default();
        stubs.ensure(&root, "/etc/resolv.conf", StubKind::File)?;
        stubs.ensure(&root, "/etc/proc", StubKind::Directory)?;
        // What a RUN step may do: its /etc becomes a link out of the root
        // (a host path, as the builder sees it), holding the same names.
        fs::rename(root.join("etc"), root.join("etc-moved"))?;
        symlink(&outside, root.join("etc"))?;
        let kept = stubs.remove();
        assert_eq!(kept.len(), 3, "{kept:?}");
        assert!(outside.join("resolv.conf").exists());
        assert!(outside.join("proc").is_dir());
        assert_eq!(fs::metadata(&outside)?.mtime(), outside_mtime);
        Ok(())
    }

    #[test]
    fn remove_keeps_what_the_command_filled() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let root = dir.path().join("root");
        fs::create_dir_all(&root)?;
        let mut stubs = Stubs::default();
        stubs.ensure(&root, "/etc/hosts", StubKind::File)?;
        fs::write(root.join("etc/written-by-run"), b"x")?;
        assert_eq!(
            stubs.remove(),
            [("/etc".to_string(), "the command wrote into it".to_string())]
        );
        assert!(!root.join("etc/hosts").exists());
        assert!(root.join("etc/written-by-run").exists());
        Ok(())
    }
}
