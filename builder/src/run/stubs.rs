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

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, CWD, Timespec, Timestamps};

use super::RunError;
use crate::fs::in_root::is_missing;
use crate::fs::resolve_in_root;

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
        let components: Vec<_> = rel.components().collect();
        let mut current = root.to_path_buf();
        for (index, component) in components.iter().enumerate() {
            current.push(component);
            let want = if index + 1 == components.len() {
                kind
            } else {
                StubKind::Directory
            };
            match fs::symlink_metadata(&current) {
                Ok(meta) if meta.is_dir() && want == StubKind::Directory => continue,
                Ok(meta) if meta.is_file() && want == StubKind::File => continue,
                Ok(_) => return Ok(MountPoint::Blocked(current)),
                Err(err) if is_missing(&err) => {}
                Err(err) => return Err(RunError::io("inspect", &current)(err)),
            }
            let parent_times = current.parent().and_then(times_of);
            let created = match want {
                StubKind::Directory => fs::create_dir(&current),
                StubKind::File => fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&current)
                    .map(drop),
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
            std::os::unix::fs::chown(&current, Some(0), Some(0))
                .and_then(|()| {
                    fs::set_permissions(
                        &current,
                        std::os::unix::fs::PermissionsExt::from_mode(mode),
                    )
                })
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
        for stub in self.created.into_iter().rev() {
            match remove_if_empty(&stub) {
                Ok(true) => {
                    if let (Some(parent), Some(times)) = (stub.host.parent(), stub.parent_times)
                        && let Err(err) = restore_times(parent, times)
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
fn remove_if_empty(stub: &Stub) -> io::Result<bool> {
    let meta = match fs::symlink_metadata(&stub.host) {
        Ok(meta) => meta,
        Err(err) if is_missing(&err) => return Ok(true),
        Err(err) => return Err(err),
    };
    match stub.kind {
        StubKind::Directory if meta.is_dir() => {
            if fs::read_dir(&stub.host)?.next().is_some() {
                return Ok(false);
            }
            fs::remove_dir(&stub.host)?;
            Ok(true)
        }
        StubKind::File if meta.is_file() && meta.len() == 0 => {
            fs::remove_file(&stub.host)?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

fn times_of(path: &Path) -> Option<((i64, i64), (i64, i64))> {
    let meta = fs::symlink_metadata(path).ok()?;
    Some((
        (meta.atime(), meta.atime_nsec()),
        (meta.mtime(), meta.mtime_nsec()),
    ))
}

fn restore_times(path: &Path, (atime, mtime): ((i64, i64), (i64, i64))) -> io::Result<()> {
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
    rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn ensure_creates_and_remove_restores() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let root = dir.path().join("root");
        fs::create_dir_all(root.join("existing"))?;
        let before = times_of(&root);

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
        assert_eq!(times_of(&root).map(|t| t.1), before.map(|t| t.1));
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
