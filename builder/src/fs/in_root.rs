//! Path resolution inside a root filesystem, as if chrooted into it.
//!
//! An image's symlinks are written for the image's own `/`: `/etc` in a link
//! target means `<root>/etc`, and `..` above the root stays at the root, as
//! the kernel does for `..` at `/`. Every path the builder touches in a root
//! goes through [`resolve`], which walks the path one component at a time
//! with `symlink_metadata`/`read_link`, so a host path is never followed.
//!
//! The result is only as good as the moment it was computed: a concurrent
//! writer could swap a directory for a symlink afterwards. Callers must be
//! the only writer of the root while they resolve and write (the builder
//! unpacks and copies between RUN steps, never during one).

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{FileType, RawMode};

use super::FsError;
use super::root_dir::RootDir;

/// Linux's MAXSYMLINKS: how many links one lookup may follow.
const MAX_SYMLINKS: u32 = 40;

/// What sits at a path, as COPY's destination rules need to know it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    Directory,
    File,
    Symlink,
    /// Device node, FIFO or socket.
    Other,
}

impl EntryKind {
    fn of(file_type: fs::FileType) -> EntryKind {
        if file_type.is_dir() {
            EntryKind::Directory
        } else if file_type.is_file() {
            EntryKind::File
        } else if file_type.is_symlink() {
            EntryKind::Symlink
        } else {
            EntryKind::Other
        }
    }
}

/// Lexically cleans an image path into a path relative to the root: leading
/// `/` and `.` components dropped, `..` removes the previous component and
/// is clamped at the root (`/../../etc` is `etc`). The result has only
/// normal components; empty means the root itself.
pub fn clean_image_path(path: &Path) -> PathBuf {
    let mut clean = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => clean.push(name),
            Component::ParentDir => {
                clean.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    clean
}

/// Resolves `path` (an image path, absolute or relative to the image's `/`)
/// to a host path inside `root`, following every symlink, the last
/// component's included, inside the root. Missing components are kept as
/// they are; the result always lies lexically inside `root`.
pub fn resolve_in_root(root: &Path, path: &str) -> Result<PathBuf, FsError> {
    resolve(root, Path::new(path), true)
}

/// Like [`resolve_in_root`] but a symlink at the last component is not
/// followed: the result names the link itself (`lstat` semantics).
pub fn resolve_in_root_nofollow(root: &Path, path: &str) -> Result<PathBuf, FsError> {
    resolve(root, Path::new(path), false)
}

/// What `path` is in the image, following symlinks inside the root;
/// `None` when nothing is there (a dangling link included).
pub fn entry_kind(root: &Path, path: &str) -> Result<Option<EntryKind>, FsError> {
    kind_at(&resolve(root, Path::new(path), true)?)
}

/// What `path` is in the image without following a symlink at its last
/// component (which is then reported as [`EntryKind::Symlink`]).
pub fn entry_kind_nofollow(root: &Path, path: &str) -> Result<Option<EntryKind>, FsError> {
    kind_at(&resolve(root, Path::new(path), false)?)
}

fn kind_at(host: &Path) -> Result<Option<EntryKind>, FsError> {
    match fs::symlink_metadata(host) {
        Ok(meta) => Ok(Some(EntryKind::of(meta.file_type()))),
        Err(err) if is_missing(&err) => Ok(None),
        Err(err) => Err(FsError::io("inspect", host)(err)),
    }
}

/// Creates `path` and its missing parents inside `root` (WORKDIR, COPY
/// destinations). Only directories created here get `mode` and `uid:gid`;
/// existing ones are left as they are, like Docker's MkdirAllAndChown.
/// Ownership is best effort: without the privilege to chown, the
/// directories keep the builder's own ids. Returns the host path.
pub fn create_dir_all_in_root(
    root: &Path,
    path: &str,
    mode: u32,
    uid: u32,
    gid: u32,
) -> Result<PathBuf, FsError> {
    let host = resolve(root, Path::new(path), true)?;
    let dir = RootDir::open(root).map_err(FsError::io("open", root))?;
    ensure_dirs(&dir, &host, path, mode, Some((uid, gid)))?;
    Ok(host)
}

/// The in-image paths of the directories [`create_dir_all_in_root`] would
/// create for `path`, parents first, with symlinks on the way resolved so
/// they name where the directories would really be. Empty when `path` is
/// a directory; an error when a component exists and is not one.
pub fn missing_dirs_in_root(root: &Path, path: &str) -> Result<Vec<PathBuf>, FsError> {
    let host = resolve(root, Path::new(path), true)?;
    let rel = host.strip_prefix(root).unwrap_or(&host);
    let mut missing = Vec::new();
    let mut current = root.to_path_buf();
    for component in rel.components() {
        current.push(component);
        if missing.is_empty() {
            match fs::symlink_metadata(&current) {
                Ok(meta) if meta.is_dir() => continue,
                Ok(_) => {
                    return Err(FsError::NotADirectory {
                        path: path.to_string(),
                        existing: current,
                    });
                }
                Err(err) if is_missing(&err) => {}
                Err(err) => return Err(FsError::io("inspect", &current)(err)),
            }
        }
        let in_image = current.strip_prefix(root).unwrap_or(&current);
        missing.push(Path::new("/").join(in_image));
    }
    Ok(missing)
}

/// Makes every component of `host` (a resolved path inside the root, as
/// returned by [`resolve`]) below the root a directory, creating missing
/// ones with `mode` and, when given, the owner. Every call goes through
/// `root`, so a component swapped for a symlink since `host` was resolved
/// stops the walk. `image_path` is only for the error message.
pub(crate) fn ensure_dirs(
    root: &RootDir,
    host: &Path,
    image_path: &str,
    mode: u32,
    owner: Option<(u32, u32)>,
) -> Result<(), FsError> {
    let rel = host.strip_prefix(root.path()).unwrap_or(host);
    let mut current = root.path().to_path_buf();
    for component in rel.components() {
        current.push(component);
        match root.lstat(&current) {
            Ok(Some(meta))
                if FileType::from_raw_mode(meta.st_mode as RawMode) == FileType::Directory =>
            {
                continue;
            }
            Ok(Some(_)) => {
                return Err(FsError::NotADirectory {
                    path: image_path.to_string(),
                    existing: current,
                });
            }
            Ok(None) => {}
            Err(err) => return Err(FsError::io("inspect", &current)(err)),
        }
        root.mkdir(&current, mode)
            .map_err(FsError::io("create directory", &current))?;
        if let Some((uid, gid)) = owner
            && let Err(err) = root.lchown(&current, uid, gid)
        {
            tracing::debug!(path = %current.display(), %err, "cannot chown directory, keeping the builder's ids");
        }
        // Explicitly, because mkdir's mode is filtered by the umask.
        root.chmod(&current, mode & 0o7777)
            .map_err(FsError::io("set mode of", &current))?;
    }
    Ok(())
}

/// The heart of the module: walks `path` below `root` as a chrooted kernel
/// would. `follow_final` decides whether a symlink at the last component is
/// followed. Components that do not exist are appended as they are.
pub(crate) fn resolve(root: &Path, path: &Path, follow_final: bool) -> Result<PathBuf, FsError> {
    // Only normal components are ever pushed, so `resolved` cannot leave
    // the root however the walk goes.
    let mut resolved = PathBuf::new();
    let mut pending: Vec<OsString> = Vec::new();
    push_components(&mut pending, path);
    let mut links = 0;
    while let Some(name) = pending.pop() {
        if name == OsStr::new("..") {
            resolved.pop();
            continue;
        }
        let host = root.join(&resolved).join(&name);
        let is_final = pending.is_empty();
        // Every existing component is looked at, even after a missing one:
        // a `..` in a link target can climb back into existing directories,
        // whose symlinks must still be followed.
        match fs::symlink_metadata(&host) {
            Ok(meta) if meta.file_type().is_symlink() && (follow_final || !is_final) => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(FsError::SymlinkLoop {
                        root: root.to_path_buf(),
                        path: path.display().to_string(),
                    });
                }
                let target = fs::read_link(&host).map_err(FsError::io("read link", &host))?;
                if target.has_root() {
                    resolved.clear();
                }
                push_components(&mut pending, &target);
            }
            Ok(_) => resolved.push(&name),
            Err(err) if is_missing(&err) => resolved.push(&name),
            Err(err) => return Err(FsError::io("inspect", &host)(err)),
        }
    }
    Ok(root.join(resolved))
}

/// Pushes `path`'s components onto the stack so the first is popped first;
/// only normal names and `..` matter for the walk.
fn push_components(pending: &mut Vec<OsString>, path: &Path) {
    let start = pending.len();
    for component in path.components() {
        match component {
            Component::Normal(name) => pending.push(name.to_os_string()),
            Component::ParentDir => pending.push(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    pending[start..].reverse();
}

/// ENOTDIR means a file sits where a directory was expected: for lookups
/// that is "not there", as for the kernel's `stat`.
pub(crate) fn is_missing(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_image_path_clamps_and_strips() {
        let cases = [
            ("", ""),
            ("/", ""),
            (".", ""),
            ("./", ""),
            ("etc/passwd", "etc/passwd"),
            ("/etc/passwd", "etc/passwd"),
            ("./etc//passwd", "etc/passwd"),
            ("../etc/passwd", "etc/passwd"),
            ("/../../etc", "etc"),
            ("a/b/../../../c", "c"),
            ("a/./b/.", "a/b"),
            ("a/b/..", "a"),
            ("..", ""),
        ];
        for (input, want) in cases {
            assert_eq!(
                clean_image_path(Path::new(input)),
                PathBuf::from(want),
                "input {input:?}"
            );
        }
    }

    #[test]
    fn push_components_orders_for_popping() {
        let mut pending = vec![OsString::from("rest")];
        push_components(&mut pending, Path::new("/a/../b/./c"));
        let got: Vec<&str> = pending.iter().filter_map(|s| s.to_str()).collect();
        assert_eq!(got, ["rest", "c", "b", "..", "a"]);
    }
}
