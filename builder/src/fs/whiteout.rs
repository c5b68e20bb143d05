//! Whiteouts: how a layer deletes what lower layers put in the root.
//!
//! The OCI image spec's changeset rules: `.wh.<name>` removes `<name>`, the
//! opaque marker `.wh..wh..opq` hides everything the lower layers put in
//! its directory, and neither ever hides what the *same* layer brings, in
//! whatever order the entries come. [`LayerPaths`] remembers what the
//! current layer has written so removals can spare it.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, RawMode};

use super::FsError;
use super::root_dir::{RootDir, missing};

/// Prefix of every whiteout file name.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// The opaque-directory marker's full name.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// Prefix of AUFS bookkeeping names (`.wh..wh.plnk`, …), ignored.
const META_PREFIX: &str = ".wh..wh.";

/// What a tar entry's file name means for whiteout processing.
#[derive(Debug, PartialEq, Eq)]
pub enum Whiteout<'a> {
    /// Not a whiteout: an ordinary entry.
    None,
    /// `.wh..wh..opq`: the containing directory is opaque.
    Opaque,
    /// `.wh.<name>`: remove `<name>` from the containing directory.
    Remove(&'a OsStr),
    /// Other `.wh..wh.` names: AUFS metadata, neither written nor acted on.
    Meta,
}

/// Classifies a file name (the last component of an entry's path).
pub fn classify(file_name: &OsStr) -> Whiteout<'_> {
    let bytes = file_name.as_bytes();
    if bytes == OPAQUE_MARKER.as_bytes() {
        Whiteout::Opaque
    } else if bytes.starts_with(META_PREFIX.as_bytes()) {
        Whiteout::Meta
    } else if let Some(name) = bytes.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
        match name {
            // `.wh.`, `.wh..` and `.wh...` would name the directory itself
            // or its parent; no valid layer has them.
            b"" | b"." | b".." => Whiteout::Meta,
            name => Whiteout::Remove(OsStr::from_bytes(name)),
        }
    } else {
        Whiteout::None
    }
}

/// The host paths the layer being applied has written, with all their
/// ancestors below the root, plus the paths no layer may touch.
#[derive(Debug)]
pub(crate) struct LayerPaths {
    root: PathBuf,
    written: HashSet<PathBuf>,
    protected: Vec<PathBuf>,
}

impl LayerPaths {
    pub(crate) fn new(root: &Path, protected: Vec<PathBuf>) -> LayerPaths {
        LayerPaths {
            root: root.to_path_buf(),
            written: HashSet::new(),
            protected,
        }
    }

    /// Records that the layer wrote `host` (a resolved path inside the root).
    pub(crate) fn record(&mut self, host: &Path) {
        for ancestor in host.ancestors() {
            if ancestor == self.root || !ancestor.starts_with(&self.root) {
                break;
            }
            if !self.written.insert(ancestor.to_path_buf()) {
                // Its ancestors were recorded with it.
                break;
            }
        }
    }

    /// Whether `host` is at or below a protected path.
    pub(crate) fn is_protected(&self, host: &Path) -> bool {
        self.protected.iter().any(|p| host.starts_with(p))
    }

    /// Removes what lower layers put at `host`, sparing this layer's entries
    /// and protected paths: untouched entries go whole (never following a
    /// symlink), directories this layer wrote into are pruned recursively.
    pub(crate) fn remove_lower(&self, dir: &RootDir, host: &Path) -> Result<u64, FsError> {
        if self.is_protected(host) {
            return Ok(0);
        }
        let is_dir = match dir.lstat(host) {
            Ok(Some(meta)) => {
                FileType::from_raw_mode(meta.st_mode as RawMode) == FileType::Directory
            }
            Ok(None) => return Ok(0),
            Err(err) if missing(&err) => return Ok(0),
            Err(err) => return Err(FsError::io("inspect", host)(err)),
        };
        let written = self.written.contains(host);
        let holds_protected = self
            .protected
            .iter()
            .any(|p| p.starts_with(host) && p != host);
        if written && !is_dir {
            return Ok(0);
        }
        let descend = written || (is_dir && holds_protected);
        if !descend {
            // Never follows a symlink, at `host` or inside the tree.
            dir.remove_tree(host).map_err(FsError::io("remove", host))?;
            return Ok(1);
        }
        self.remove_lower_children(dir, host)
    }

    /// The opaque marker: what lower layers put inside `dir` goes.
    pub(crate) fn remove_lower_children(&self, root: &RootDir, dir: &Path) -> Result<u64, FsError> {
        let names = match root.read_dir(dir) {
            Ok(names) => names,
            Err(err) if missing(&err) => return Ok(0),
            Err(err) => return Err(FsError::io("read directory", dir)(err)),
        };
        let mut removed = 0;
        for name in names {
            removed += self.remove_lower(root, &dir.join(name))?;
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_names() {
        let cases: [(&str, Whiteout<'_>); 9] = [
            ("file", Whiteout::None),
            (".whatever", Whiteout::None),
            (".wh.file", Whiteout::Remove(OsStr::new("file"))),
            (".wh..hidden", Whiteout::Remove(OsStr::new(".hidden"))),
            (".wh..wh..opq", Whiteout::Opaque),
            (".wh..wh.plnk", Whiteout::Meta),
            (".wh..wh.aufs", Whiteout::Meta),
            (".wh.", Whiteout::Meta),
            (".wh..", Whiteout::Meta),
        ];
        for (name, want) in cases {
            assert_eq!(classify(OsStr::new(name)), want, "name {name:?}");
        }
    }

    #[test]
    fn record_marks_ancestors_below_root_only() {
        let mut paths = LayerPaths::new(Path::new("/r"), Vec::new());
        paths.record(Path::new("/r/a/b/c"));
        let mut got: Vec<_> = paths.written.iter().cloned().collect();
        got.sort();
        assert_eq!(
            got,
            [
                PathBuf::from("/r/a"),
                PathBuf::from("/r/a/b"),
                PathBuf::from("/r/a/b/c")
            ]
        );
    }
}
