//! Paths a snapshot never captures and never whites out: the configured
//! ignore paths (as given and, when they are symlinks inside the root,
//! what they lead to, as the unpacker protects them) and every mount point
//! below the root, read from the mount table at each walk.

use std::collections::HashSet;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::SnapshotError;
use crate::fs::clean_image_path;
use crate::fs::mounts::mount_points_below;

/// Where the kernel lists this process's mounts.
pub(super) const MOUNT_TABLE: &str = "/proc/self/mountinfo";

/// Ignored paths relative to the root (`/`-separated, no leading `/`).
#[derive(Debug, Default)]
pub(super) struct IgnoreSet {
    paths: HashSet<Vec<u8>>,
    /// Every proper ancestor of an ignored path, the root (`""`) included.
    ancestors: HashSet<Vec<u8>>,
}

impl IgnoreSet {
    pub(super) fn new(paths: impl IntoIterator<Item = Vec<u8>>) -> IgnoreSet {
        let mut set = IgnoreSet::default();
        for path in paths {
            if path.is_empty() {
                continue;
            }
            let mut end = 0;
            set.ancestors.insert(Vec::new());
            while let Some(slash) = path[end..].iter().position(|&b| b == b'/') {
                end += slash;
                set.ancestors.insert(path[..end].to_vec());
                end += 1;
            }
            set.paths.insert(path);
        }
        set
    }

    /// Whether `rel` itself is ignored. The walk never enters an ignored
    /// directory, so a path below one is never asked about.
    pub(super) fn is_ignored(&self, rel: &[u8]) -> bool {
        self.paths.contains(rel)
    }

    /// Whether some ignored path lies strictly below directory `rel`.
    pub(super) fn holds_ignored(&self, rel: &[u8]) -> bool {
        self.ancestors.contains(rel)
    }
}

/// Builds the set for `root` (a canonical host path) from the configured
/// image paths and the mount table's text, when there is one.
pub(super) fn ignore_set(
    root: &Path,
    configured: &[PathBuf],
    mount_table: Option<&str>,
) -> Result<IgnoreSet, SnapshotError> {
    let mut paths = Vec::new();
    for path in configured {
        let clean = clean_image_path(path);
        if clean.as_os_str().is_empty() {
            tracing::warn!(path = %path.display(), "ignoring the whole root is not possible; ignore path skipped");
            continue;
        }
        paths.push(clean.as_os_str().as_bytes().to_vec());
        // `/var/run -> /run`: what the link leads to is ignored too, but a
        // link to `/` does not ignore the whole root.
        let resolved = crate::fs::in_root::resolve(root, &clean, true).map_err(|source| {
            SnapshotError::IgnorePath {
                path: path.clone(),
                root: root.to_path_buf(),
                source,
            }
        })?;
        if let Ok(rel) = resolved.strip_prefix(root)
            && !rel.as_os_str().is_empty()
        {
            paths.push(rel.as_os_str().as_bytes().to_vec());
        }
    }
    if let Some(table) = mount_table {
        paths.extend(mount_points_below(table, root));
    }
    Ok(IgnoreSet::new(paths))
}

/// Reads the mount table; None where there is none (no `/proc`).
pub(super) fn read_mount_table(path: &Path) -> Result<Option<String>, SnapshotError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            tracing::debug!(path = %path.display(), "no mount table; mount points are not detected");
            Ok(None)
        }
        Err(source) => Err(SnapshotError::MountTable {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignore_set_knows_paths_and_their_ancestors() {
        let set = IgnoreSet::new([b"var/run".to_vec(), b"proc".to_vec(), Vec::new()]);
        let cases: [(&[u8], bool, bool); 7] = [
            (b"", false, true),
            (b"var", false, true),
            (b"var/run", true, false),
            (b"proc", true, false),
            (b"var/r", false, false),
            (b"va", false, false),
            (b"etc", false, false),
        ];
        for (rel, ignored, holds) in cases {
            let name = String::from_utf8_lossy(rel);
            assert_eq!(set.is_ignored(rel), ignored, "is_ignored {name}");
            assert_eq!(set.holds_ignored(rel), holds, "holds_ignored {name}");
        }
        assert_eq!(set.paths.len(), 2);
    }
}
