//! Snapshots: what an instruction changed in a root filesystem, as the
//! entries of a layer.
//!
//! A [`Snapshotter`] records the state of a root (after the base image is
//! unpacked, then after every snapshot) and [`Snapshotter::take`] compares
//! the root with it, returning a [`LayerPlan`] that, applied with
//! [`crate::fs::unpack_layer`] on top of the recorded state, reproduces the
//! current one: types, modes (setuid, setgid, sticky), owners, contents,
//! symlink targets, hard-link groups, captured extended attributes
//! (`security.capability`, `user.*`) and mtimes to the second.
//!
//! # Recording
//!
//! A parallel walk (rayon: the children of each directory are inspected
//! and descended into by several threads, relative to the directory's
//! descriptor, never following a symlink) records one 80-byte record per
//! entry — type and mode, uid, gid, size, mtime and ctime to the
//! nanosecond, device and inode, link count, symlink target — in a
//! pre-order `Vec` sorted as layers are, with names in one byte arena.
//! Comparing two recordings is a merge of sorted sibling lists: no path
//! is built or hashed for an unchanged entry.
//!
//! Sockets and device nodes are not recorded (a layer carries neither
//! here, and devices belong to `/dev`). The root directory itself is never
//! written: its metadata is the builder's business, as in the unpacker.
//!
//! # When an entry changed ([`SnapshotMode`])
//!
//! A path that appears, or whose type changed, is always a change.
//! Otherwise:
//! - `Time`: the mtime differs (kaniko's `time`: cheap, blind to chmod,
//!   chown and content rewritten with the mtime kept).
//! - `Redo`: any of mode, uid, gid, size, mtime, ctime, device and inode
//!   or the symlink target differs (kaniko's `redo`).
//! - `Full` (the default): mode, uid, gid, size, mtime or symlink target
//!   differ → changed, no hashing. A path whose inode changed while the
//!   old or new entry has other hard links → changed (link groups are
//!   part of the state). When only ctime or inode differ (chmod to the
//!   same mode, a new hard link, setcap, a rename over it, content
//!   rewritten with its mtime restored), or when nothing differs but the
//!   recorded entry was *racily clean*, metadata cannot decide: the
//!   content and the captured extended attributes are fingerprinted now
//!   and compared with the fingerprint recorded for the old entry. Where
//!   none was recorded the old content is gone, so the entry counts as
//!   changed.
//!
//! Content is hashed (SHA-256) exactly in two places, both lazily:
//! when recording, for *racily clean* entries only — those whose ctime
//! falls within 50 ms (2 s on filesystems with whole-second timestamps)
//! before the walk started, so a change in the same timestamp tick could
//! leave all their metadata equal (git's "racy clean" problem); and when
//! taking a `Full` snapshot, for the ambiguous entries above that have a
//! recorded fingerprint. Fingerprints of entries whose inode and ctime
//! stay the same are carried over to the next recording.
//!
//! # What the layer holds
//!
//! - A changed or new file, directory, symlink or FIFO: an entry with its
//!   current metadata. A new directory brings its whole subtree.
//! - Every directory above an entry, whiteout or opaque marker: a
//!   directory entry with its current metadata, up to the root. Docker
//!   adds only the parent of an added or deleted path; kaniko adds every
//!   parent, and overlayfs-based builders (buildah) do the same since the
//!   upper directory holds every ancestor of a copied-up file. With them
//!   all, extraction recreates missing parents with their own mode and
//!   owner and gives every touched directory its mtime back.
//! - A deleted path: a whiteout `.wh.<name>`, only for the topmost path
//!   of a deleted tree.
//! - A type change (file ↔ directory ↔ symlink ↔ FIFO) needs no whiteout:
//!   the unpacker (like other extractors) removes whatever sits at an
//!   entry's path, a whole directory included, unless both are
//!   directories. So a directory replaced by a file is one file entry, and
//!   a file replaced by a directory is the directory and its subtree.
//! - Opaque directories: a directory present in both states whose subtree
//!   needs two or more whiteouts (or nested opaque markers) gets one
//!   opaque marker instead when that makes a smaller tar: the marker
//!   costs one 512-byte block plus every entry of the directory's subtree
//!   not already in the layer (header block plus content rounded up to
//!   blocks), since an opaque directory keeps only what its layer brings;
//!   each replaced marker costs one block. Typical wins: `rm -rf dir/*`,
//!   a directory deleted and recreated with a few files. Never for the
//!   root, nor for a directory that holds an ignored path or mount point.
//! - Hard links: paths sharing an inode in the new state form a group.
//!   When one of them is in the layer, the group's *anchor* is its first
//!   path in layer order that is not in the layer (it is in the lower
//!   layers with this very inode), or else its first path, written in
//!   full; every other path of the group in the layer is a hard-link
//!   entry to the anchor.
//! - Whiteouts and opaque markers have mode 0, owner 0:0 and mtime 0.
//! - Not expressible in a layer: removing an extended attribute from a
//!   directory that stays a directory (extraction merges a directory entry
//!   into the directory already there, and whiteouts and opaque markers
//!   only remove children), and the root directory's own metadata.
//!
//! # Ignored paths
//!
//! Ignored paths — those given to [`Snapshotter::new`] (`/proc`, `/sys`,
//! `/dev`, `/kiln`, `/var/run`, `--ignore-path`s; see
//! [`DEFAULT_IGNORE_PATHS`]), what they lead to when they are symlinks
//! inside the root, and every mount point below the root listed in
//! `/proc/self/mountinfo` (re-read at each snapshot) — are never walked,
//! captured or whited out. A deleted directory that held an ignored path
//! is whited out child by child around it.
//!
//! Like unpacking, a snapshot needs to be the only writer of the root
//! while it runs and until its layer is written.

mod diff;
mod ignore;
mod probe;
mod tree;
/// The extended attributes layers carry, as snapshots read them: COPY
/// --from reads the same ones from the stage or image it copies.
pub(crate) use probe::read_xattrs;
pub use tree::MAX_DEPTH;

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use crate::fs::FsError;
use crate::image::{LayerError, LayerPlan};

/// The image paths a build never snapshots: the kernel's filesystems, the
/// builder's own directory and `/var/run` (kaniko's `--ignore-var-run`,
/// on by default). The build adds its `--ignore-path`s.
pub const DEFAULT_IGNORE_PATHS: [&str; 6] =
    ["/proc", "/sys", "/dev", "/kiln", "/kaniko", "/var/run"];

/// How a snapshot decides that an entry changed (`--snapshot-mode`); see
/// the module documentation for the exact rules.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub enum SnapshotMode {
    /// Metadata, plus a content fingerprint where metadata cannot decide.
    #[default]
    Full,
    /// Metadata only: mode, uid, gid, size, mtime, ctime, inode.
    Redo,
    /// Modification time only.
    Time,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A filesystem call failed on `path` (a host path inside the root).
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read the mount table {path}: {source}")]
    MountTable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot resolve ignore path {path} inside {root}: {source}")]
    IgnorePath {
        path: PathBuf,
        root: PathBuf,
        #[source]
        source: FsError,
    },
    #[error("cannot add {path} to the snapshot layer: {source}")]
    Plan {
        path: String,
        #[source]
        source: LayerError,
    },
    #[error(
        "the tree under {root} is too large to snapshot (more than 4 GiB of names or 2^32 entries)"
    )]
    TooLarge { root: PathBuf },
    /// Deeper than any real image: refused with a message rather than
    /// walked until the stack runs out.
    #[error(
        "the tree under {root} is more than {max} directories deep (at {path}); \
         no real image nests that deep"
    )]
    TooDeep {
        root: PathBuf,
        path: PathBuf,
        max: usize,
    },
}

/// The recorded state of a root filesystem, and the snapshots taken
/// against it.
#[derive(Debug)]
pub struct Snapshotter {
    /// Canonical host path of the root.
    root: PathBuf,
    /// Image paths never captured, as given.
    ignore: Vec<PathBuf>,
    mount_table: PathBuf,
    baseline: tree::Tree,
}

impl Snapshotter {
    /// Records the state of `root` (after the base image was unpacked or
    /// after the previous snapshot). `ignore` holds image paths (`/proc`,
    /// `/var/run`, …) that are never captured nor whited out, nor anything
    /// below them; mount points below the root are always ignored.
    pub fn new(root: &Path, ignore: &[PathBuf]) -> Result<Snapshotter, SnapshotError> {
        let root = std::fs::canonicalize(root).map_err(|source| SnapshotError::Io {
            op: "resolve",
            path: root.to_path_buf(),
            source,
        })?;
        let mut snapshotter = Snapshotter {
            root,
            ignore: ignore.to_vec(),
            mount_table: PathBuf::from(ignore::MOUNT_TABLE),
            baseline: tree::Tree::default(),
        };
        let ignored = snapshotter.ignore_set()?;
        let mut baseline = tree::walk(&snapshotter.root, &ignored)?;
        diff::record_fingerprints(&mut baseline, &snapshotter.root, HashMap::new())?;
        snapshotter.baseline = baseline;
        Ok(snapshotter)
    }

    /// Compares the root with the recorded state and returns the changes
    /// as a layer plan (None when nothing changed: no empty layers), then
    /// makes the current state the recorded one. On error the recorded
    /// state is kept.
    pub fn take(&mut self, mode: SnapshotMode) -> Result<Option<LayerPlan>, SnapshotError> {
        let ignored = self.ignore_set()?;
        let mut current = tree::walk(&self.root, &ignored)?;
        let changes = diff::diff(&self.baseline, &current, &ignored, mode, &self.root)?;
        let plan = changes.to_plan(&current, &self.root)?;
        let kept = changes.kept_fingerprints(&self.baseline, &current);
        diff::record_fingerprints(&mut current, &self.root, kept)?;
        tracing::debug!(
            root = %self.root.display(),
            entries = current.records.len(),
            changes = changes.items.len(),
            ?mode,
            "snapshot taken"
        );
        self.baseline = current;
        Ok(plan)
    }

    /// The root, as a canonical host path (what layer file sources are
    /// below).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Entries recorded, the root excluded.
    pub fn entries(&self) -> usize {
        self.baseline.records.len().saturating_sub(1)
    }

    /// Heap bytes held by the recorded state.
    pub fn recorded_bytes(&self) -> usize {
        self.baseline.heap_bytes()
    }

    fn ignore_set(&self) -> Result<ignore::IgnoreSet, SnapshotError> {
        let table = ignore::read_mount_table(&self.mount_table)?;
        ignore::ignore_set(&self.root, &self.ignore, table.as_deref())
    }
}
