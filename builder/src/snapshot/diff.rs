//! Deciding what changed between two recorded trees, and which layer
//! entries say it. The rules are listed in the parent module's
//! documentation; this file implements them in passes:
//!
//! 1. match the trees by path (a merge of sorted sibling lists), noting
//!    deleted entries;
//! 2. compare each matched pair by metadata ([`compare`]), collecting the
//!    ambiguous ones;
//! 3. fingerprint the ambiguous ones (in parallel) and settle them;
//! 4. walk the new tree choosing entries, whiteouts, opaque markers and
//!    parent directories;
//! 5. turn hard-link groups into hard-link entries.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::ignore::IgnoreSet;
use super::probe::{self, Fingerprint};
use super::tree::{Kind, NONE, Tree, host_path, join};
use super::{SnapshotError, SnapshotMode};
use crate::image::{Device, EntryKind, EntryMeta, LayerPlan};

/// A tar block: every entry costs one header block, a file's content is
/// rounded up to whole blocks.
const BLOCK: u64 = 512;

/// One thing the layer says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Item {
    /// New record `index` in its current state.
    Entry(u32),
    /// The path (relative to the root) was deleted.
    Whiteout(Vec<u8>),
    /// New directory `index` hides everything lower layers hold in it.
    Opaque(u32),
}

/// What [`diff`] found.
#[derive(Debug)]
pub(super) struct Changes {
    pub(super) items: Vec<Item>,
    /// Entries written as hard links: new index → index of the path
    /// they link to.
    pub(super) links: HashMap<u32, u32>,
    /// Fingerprints computed to settle ambiguous entries, by new index.
    computed: Vec<(u32, Fingerprint)>,
    /// Matching old index of every new record ([`NONE`] when added).
    pair: Vec<u32>,
    changed: Vec<bool>,
    parents: Vec<u32>,
}

/// Compares `old` with `new` (both recorded with the same `ignore` rules,
/// `new` from `root` as it is now).
pub(super) fn diff(
    old: &Tree,
    new: &Tree,
    ignore: &IgnoreSet,
    mode: SnapshotMode,
    root: &Path,
) -> Result<Changes, SnapshotError> {
    let count = new.records.len();
    let parents = new.parents();

    let mut matcher = Matcher {
        old,
        new,
        ignore,
        pair: vec![NONE; count],
        deleted: Vec::new(),
        path: Vec::new(),
    };
    if !old.records.is_empty() && !new.records.is_empty() {
        matcher.pair[0] = 0;
        matcher.match_dir(0, 0);
    }
    let Matcher {
        pair, mut deleted, ..
    } = matcher;
    deleted.sort_unstable();

    let mut changed = vec![false; count];
    let mut check = Vec::new();
    for index in 1..count {
        let old_index = pair[index];
        if old_index == NONE {
            changed[index] = true;
            continue;
        }
        match compare(mode, old, old_index as usize, new, index) {
            Verdict::Same => {}
            Verdict::Differs => changed[index] = true,
            Verdict::CheckContent => check.push(index as u32),
        }
    }

    let computed: Vec<(u32, Fingerprint)> = check
        .par_iter()
        .map(|&index| {
            let path = new.path(&parents, index as usize);
            probe::fingerprint(&host_path(root, &path), new.kind(index as usize))
                .map(|fingerprint| (index, fingerprint))
        })
        .collect::<Result<_, _>>()?;
    for (index, fingerprint) in &computed {
        let old_index = pair[*index as usize] as usize;
        if old.fingerprint(old_index) != Some(fingerprint) {
            changed[*index as usize] = true;
        }
    }

    let mut emitter = Emitter {
        old,
        new,
        ignore,
        pair: &pair,
        changed: &changed,
        deleted: &deleted,
        planned: vec![false; count],
        items: Vec::new(),
        path: Vec::new(),
    };
    if count > 0 {
        emitter.emit_dir(0);
    }
    let links = hardlinks(new, &emitter.planned);
    let items = emitter.items;
    Ok(Changes {
        items,
        links,
        computed,
        pair,
        changed,
        parents,
    })
}

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Same,
    Differs,
    /// Metadata cannot decide; the fingerprint recorded for the old entry
    /// is compared with one computed now.
    CheckContent,
}

/// The metadata rules of each mode for a path present in both trees.
fn compare(mode: SnapshotMode, old: &Tree, o: usize, new: &Tree, n: usize) -> Verdict {
    let (a, b) = (&old.records[o], &new.records[n]);
    if a.kind() != b.kind() {
        return Verdict::Differs;
    }
    if mode == SnapshotMode::Time {
        return if a.mtime == b.mtime {
            Verdict::Same
        } else {
            Verdict::Differs
        };
    }
    let visible = a.mode != b.mode
        || a.uid != b.uid
        || a.gid != b.gid
        || a.size != b.size
        || a.mtime != b.mtime
        || old.target(o) != new.target(n);
    if visible {
        return Verdict::Differs;
    }
    let same_inode = a.ino == b.ino && a.dev == b.dev;
    let same_stamp = same_inode && a.ctime == b.ctime;
    match mode {
        SnapshotMode::Redo | SnapshotMode::Time => {
            if same_stamp {
                Verdict::Same
            } else {
                Verdict::Differs
            }
        }
        SnapshotMode::Full => {
            // Which paths share an inode is part of the state: equal
            // content in another inode still changes the link groups.
            if !same_inode && a.kind() != Kind::Dir && (a.nlink > 1 || b.nlink > 1) {
                Verdict::Differs
            } else if same_stamp && !a.is_racy(old.recorded_at) {
                Verdict::Same
            } else if a.fingerprint != NONE {
                Verdict::CheckContent
            } else {
                // The old content was never read and is gone now.
                Verdict::Differs
            }
        }
    }
}

struct Matcher<'a> {
    old: &'a Tree,
    new: &'a Tree,
    ignore: &'a IgnoreSet,
    pair: Vec<u32>,
    /// (new parent directory, old child) of every deleted entry.
    deleted: Vec<(u32, u32)>,
    /// Path of the directory being matched.
    path: Vec<u8>,
}

impl Matcher<'_> {
    /// Matches the children of old directory `o` and new directory `n`,
    /// which have the same path (`self.path`), and of every directory
    /// below them present in both, depth first with a stack of its own.
    fn match_dir(&mut self, o: usize, n: usize) {
        let (old, new) = (self.old, self.new);
        /// A pair of directories being matched: the next child of each,
        /// where their children end, and the length of `self.path`
        /// before the pair's name was added to it.
        struct Frame {
            n: usize,
            oc: usize,
            o_end: usize,
            nc: usize,
            n_end: usize,
            path_len: usize,
            check_ignored: bool,
        }
        let frame = |matcher: &Matcher<'_>, o: usize, n: usize, path_len: usize| Frame {
            n,
            oc: o + 1,
            o_end: old.end(o),
            nc: n + 1,
            n_end: new.end(n),
            path_len,
            check_ignored: matcher.ignore.holds_ignored(&matcher.path),
        };
        let mut stack = vec![frame(self, o, n, self.path.len())];
        while let Some(top) = stack.last_mut() {
            if top.oc >= top.o_end && top.nc >= top.n_end {
                self.path.truncate(top.path_len);
                stack.pop();
                continue;
            }
            let order = if top.oc >= top.o_end {
                Ordering::Greater
            } else if top.nc >= top.n_end {
                Ordering::Less
            } else {
                old.name(top.oc).cmp(new.name(top.nc))
            };
            match order {
                Ordering::Less => {
                    // Paths ignored now (a new mount point) are not deleted.
                    if !(top.check_ignored
                        && self.ignore.is_ignored(&join(&self.path, old.name(top.oc))))
                    {
                        self.deleted.push((top.n as u32, top.oc as u32));
                    }
                    top.oc = old.end(top.oc);
                }
                Ordering::Greater => top.nc = new.end(top.nc),
                Ordering::Equal => {
                    let (oc, nc) = (top.oc, top.nc);
                    top.oc = old.end(oc);
                    top.nc = new.end(nc);
                    self.pair[nc] = oc as u32;
                    if old.kind(oc) == Kind::Dir && new.kind(nc) == Kind::Dir {
                        let len = self.path.len();
                        if len > 0 {
                            self.path.push(b'/');
                        }
                        self.path.extend_from_slice(new.name(nc));
                        let next = frame(self, oc, nc, len);
                        stack.push(next);
                    }
                }
            }
        }
    }
}

struct Emitter<'a> {
    old: &'a Tree,
    new: &'a Tree,
    ignore: &'a IgnoreSet,
    pair: &'a [u32],
    changed: &'a [bool],
    deleted: &'a [(u32, u32)],
    planned: Vec<bool>,
    items: Vec<Item>,
    path: Vec<u8>,
}

impl Emitter<'_> {
    fn plan(&mut self, index: usize) {
        if !self.planned[index] {
            self.planned[index] = true;
            self.items.push(Item::Entry(index as u32));
        }
    }

    fn plan_range(&mut self, from: usize, to: usize) {
        for index in from..to {
            self.plan(index);
        }
    }

    /// `dir` is the root or a directory in both trees; `self.path` is its
    /// path. Plans its changed entries and those of every directory below
    /// it present in both, depth first with a stack of its own; a
    /// directory's own entry (and opaque marker) is planned after its
    /// children.
    fn emit_dir(&mut self, dir: usize) {
        let (old, new) = (self.old, self.new);
        /// A directory being emitted: its next child, where its children
        /// end, where its items start, and the length of `self.path`
        /// before its name was added.
        struct Frame {
            dir: usize,
            child: usize,
            end: usize,
            start: usize,
            path_len: usize,
        }
        let mut stack = vec![Frame {
            dir,
            child: dir + 1,
            end: new.end(dir),
            start: self.items.len(),
            path_len: self.path.len(),
        }];
        while let Some(top) = stack.last_mut() {
            if top.child < top.end {
                let child = top.child;
                top.child = new.end(child);
                let old_index = self.pair[child];
                let same_kind =
                    old_index != NONE && old.kind(old_index as usize) == new.kind(child);
                if same_kind && new.kind(child) == Kind::Dir {
                    let len = self.path.len();
                    if len > 0 {
                        self.path.push(b'/');
                    }
                    self.path.extend_from_slice(new.name(child));
                    stack.push(Frame {
                        dir: child,
                        child: child + 1,
                        end: new.end(child),
                        start: self.items.len(),
                        path_len: len,
                    });
                } else if !same_kind {
                    // Added, or replacing another kind: extraction removes
                    // what was there (a whole directory included), so no
                    // whiteout is needed, and everything below is new.
                    self.plan_range(child, new.end(child));
                } else if self.changed[child] {
                    self.plan(child);
                }
                continue;
            }
            let Frame {
                dir,
                start,
                path_len,
                ..
            } = *top;
            stack.pop();
            let first = self
                .deleted
                .partition_point(|&(parent, _)| (parent as usize) < dir);
            for &(parent, old_index) in &self.deleted[first..] {
                if parent as usize != dir {
                    break;
                }
                let path = join(&self.path, old.name(old_index as usize));
                self.whiteout_tree(old_index as usize, path);
            }
            if dir != 0 {
                self.consider_opaque(dir, start);
                // A changed directory, and every directory above a change,
                // so extraction recreates them with their own metadata.
                if self.changed[dir] || self.items.len() > start {
                    self.plan(dir);
                }
            }
            self.path.truncate(path_len);
        }
    }

    /// Whites out deleted old entry `index`; a deleted directory holding
    /// an ignored path is whited out child by child around it instead
    /// (in path order, with a stack of its own).
    fn whiteout_tree(&mut self, index: usize, path: Vec<u8>) {
        let old = self.old;
        let mut pending = vec![(index, path)];
        while let Some((index, path)) = pending.pop() {
            if old.kind(index) == Kind::Dir && self.ignore.holds_ignored(&path) {
                let mut children = Vec::new();
                let (mut child, end) = (index + 1, old.end(index));
                while child < end {
                    let child_path = join(&path, old.name(child));
                    if !self.ignore.is_ignored(&child_path) {
                        children.push((child, child_path));
                    }
                    child = old.end(child);
                }
                pending.extend(children.into_iter().rev());
            } else {
                self.items.push(Item::Whiteout(path));
            }
        }
    }

    /// Replaces the whiteouts and opaque markers planned below `dir`
    /// (since `items[start]`) by one opaque marker when that makes a
    /// smaller layer: the marker costs one block plus every entry of the
    /// directory's subtree not already in the layer (an opaque directory
    /// keeps only what the layer itself brings); the markers it replaces
    /// cost one block each.
    fn consider_opaque(&mut self, dir: usize, start: usize) {
        let markers = self.items[start..]
            .iter()
            .filter(|item| !matches!(item, Item::Entry(_)))
            .count() as u64;
        if markers < 2 || self.ignore.holds_ignored(&self.path) {
            return;
        }
        let budget = (markers - 1) * BLOCK;
        let new = self.new;
        let mut extra = 0;
        for index in dir + 1..new.end(dir) {
            if !self.planned[index] {
                extra += entry_cost(new, index);
                if extra >= budget {
                    return;
                }
            }
        }
        let mut below = self.items.split_off(start);
        below.retain(|item| matches!(item, Item::Entry(_)));
        self.items.extend(below);
        self.plan_range(dir + 1, new.end(dir));
        self.items.push(Item::Opaque(dir as u32));
    }
}

fn entry_cost(tree: &Tree, index: usize) -> u64 {
    let record = &tree.records[index];
    if record.kind() == Kind::File {
        BLOCK + record.size.div_ceil(BLOCK) * BLOCK
    } else {
        BLOCK
    }
}

/// Hard-link groups (paths sharing an inode in the new tree) with a
/// planned member: planned members become links to the group's anchor,
/// its first member in layer order that is not planned (it is in the
/// lower layers with this very inode), or else its first member, written
/// in full.
fn hardlinks(new: &Tree, planned: &[bool]) -> HashMap<u32, u32> {
    let linked = |index: usize| {
        let record = &new.records[index];
        record.nlink > 1 && record.kind() != Kind::Dir
    };
    let mut links = HashMap::new();
    if !(1..planned.len()).any(|index| planned[index] && linked(index)) {
        return links;
    }
    let mut groups: HashMap<(u64, u64), Vec<u32>> = HashMap::new();
    for index in 1..new.records.len() {
        if linked(index) {
            let record = &new.records[index];
            groups
                .entry((record.dev, record.ino))
                .or_default()
                .push(index as u32);
        }
    }
    for members in groups.values() {
        if members.len() < 2 || !members.iter().any(|&m| planned[m as usize]) {
            continue;
        }
        let anchor = members
            .iter()
            .copied()
            .find(|&m| !planned[m as usize])
            .unwrap_or(members[0]);
        for &member in members {
            if member != anchor && planned[member as usize] {
                links.insert(member, anchor);
            }
        }
    }
    links
}

impl Changes {
    /// The layer entries, with current metadata and extended attributes;
    /// None when nothing changed.
    pub(super) fn to_plan(
        &self,
        new: &Tree,
        root: &Path,
    ) -> Result<Option<LayerPlan>, SnapshotError> {
        if self.items.is_empty() {
            return Ok(None);
        }
        let described: Vec<(Vec<u8>, EntryKind, EntryMeta)> = self
            .items
            .par_iter()
            .with_min_len(64)
            .map(|item| self.describe(item, new, root))
            .collect::<Result<_, _>>()?;
        // File contents are read through the root's descriptor.
        let mut plan = match crate::fs::root_dir::RootDir::open(root) {
            Ok(dir) => LayerPlan::within(dir),
            Err(source) => {
                return Err(SnapshotError::Io {
                    op: "open directory",
                    path: root.to_path_buf(),
                    source,
                });
            }
        };
        for (path, kind, meta) in described {
            plan.push(Path::new(OsStr::from_bytes(&path)), kind, meta)
                .map_err(|source| SnapshotError::Plan {
                    path: String::from_utf8_lossy(&path).into_owned(),
                    source,
                })?;
        }
        Ok(Some(plan))
    }

    fn describe(
        &self,
        item: &Item,
        new: &Tree,
        root: &Path,
    ) -> Result<(Vec<u8>, EntryKind, EntryMeta), SnapshotError> {
        let index = match item {
            Item::Whiteout(path) => {
                return Ok((path.clone(), EntryKind::Whiteout, EntryMeta::default()));
            }
            Item::Opaque(index) => {
                let path = new.path(&self.parents, *index as usize);
                return Ok((path, EntryKind::Opaque, EntryMeta::default()));
            }
            Item::Entry(index) => *index as usize,
        };
        let path = new.path(&self.parents, index);
        let record = &new.records[index];
        let mut meta = EntryMeta::new(
            record.mode & 0o7777,
            u64::from(record.uid),
            u64::from(record.gid),
            record.mtime_secs(),
        );
        let host = host_path(root, &path);
        let kind = if let Some(&anchor) = self.links.get(&(index as u32)) {
            // Owner, mode and attributes belong to the shared inode.
            let target = new.path(&self.parents, anchor as usize);
            EntryKind::Hardlink {
                target: PathBuf::from(OsStr::from_bytes(&target)),
            }
        } else {
            meta.xattrs = probe::read_xattrs(&host)?;
            match record.kind() {
                Kind::Dir => EntryKind::Dir,
                Kind::File => EntryKind::File { source: host },
                Kind::Symlink => EntryKind::Symlink {
                    target: PathBuf::from(OsStr::from_bytes(new.target(index))),
                },
                Kind::Fifo => EntryKind::Fifo,
                Kind::CharDevice | Kind::BlockDevice => EntryKind::Device(Device {
                    block: record.kind() == Kind::BlockDevice,
                    major: rustix::fs::major(record.rdev),
                    minor: rustix::fs::minor(record.rdev),
                }),
            }
        };
        Ok((path, kind, meta))
    }

    /// Fingerprints the new tree keeps: those computed to decide, and the
    /// old ones of entries whose inode and ctime did not change.
    pub(super) fn kept_fingerprints(&self, old: &Tree, new: &Tree) -> HashMap<u32, Fingerprint> {
        let mut kept: HashMap<u32, Fingerprint> = self.computed.iter().copied().collect();
        for (index, &old_index) in self.pair.iter().enumerate() {
            if old_index == NONE || self.changed[index] || kept.contains_key(&(index as u32)) {
                continue;
            }
            let (a, b) = (&old.records[old_index as usize], &new.records[index]);
            if a.ino == b.ino
                && a.dev == b.dev
                && a.ctime == b.ctime
                && a.kind() == b.kind()
                && let Some(fingerprint) = old.fingerprint(old_index as usize)
            {
                kept.insert(index as u32, *fingerprint);
            }
        }
        kept
    }
}

/// Gives `tree` its fingerprints: `known` ones, and fresh ones for the
/// racily clean entries (changed within the racy window before the
/// walk), whose next change could leave every piece of metadata as it is.
pub(super) fn record_fingerprints(
    tree: &mut Tree,
    root: &Path,
    mut known: HashMap<u32, Fingerprint>,
) -> Result<(), SnapshotError> {
    let racy: Vec<u32> = (0..tree.records.len())
        .filter(|&index| {
            !known.contains_key(&(index as u32)) && tree.records[index].is_racy(tree.recorded_at)
        })
        .map(|index| index as u32)
        .collect();
    if !racy.is_empty() {
        let parents = tree.parents();
        let shared: &Tree = tree;
        let fresh: Vec<(u32, Fingerprint)> = racy
            .par_iter()
            .map(|&index| {
                let path = shared.path(&parents, index as usize);
                probe::fingerprint(&host_path(root, &path), shared.kind(index as usize))
                    .map(|fingerprint| (index, fingerprint))
            })
            .collect::<Result<_, _>>()?;
        known.extend(fresh);
    }
    let mut sorted: Vec<(u32, Fingerprint)> = known.into_iter().collect();
    sorted.sort_unstable_by_key(|(index, _)| *index);
    tree.fingerprints = Vec::with_capacity(sorted.len());
    for record in &mut tree.records {
        record.fingerprint = NONE;
    }
    for (index, fingerprint) in sorted {
        tree.set_fingerprint(index as usize, fingerprint);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::tree::Record;

    const FILE: u32 = 0o100_644;
    const RECORDED_AT: i64 = 1_700_000_000_000_000_000;
    const OLD: i64 = RECORDED_AT - 3_600_000_000_000;

    fn record(mode: u32) -> Record {
        Record {
            name: 0,
            name_len: 0,
            target_len: 0,
            descendants: 0,
            mode,
            uid: 0,
            gid: 0,
            nlink: 1,
            fingerprint: NONE,
            dev: 1,
            ino: 2,
            rdev: 0,
            size: 4,
            mtime: OLD,
            ctime: OLD,
        }
    }

    /// A root holding one entry `f` (with `target` when a symlink).
    fn tree(entry: Record, target: &[u8], fingerprint: bool) -> Tree {
        let mut root = record(0o040_755);
        root.descendants = 1;
        let mut entry = entry;
        entry.name_len = 1;
        entry.target_len = target.len() as u32;
        let mut tree = Tree {
            records: vec![root, entry],
            names: [b"f".as_slice(), target].concat(),
            fingerprints: Vec::new(),
            recorded_at: RECORDED_AT,
        };
        if fingerprint {
            let fingerprint = probe::tests_fingerprint();
            tree.set_fingerprint(1, fingerprint);
        }
        tree
    }

    #[test]
    fn each_mode_decides_by_its_own_metadata() {
        use SnapshotMode::{Full, Redo, Time};
        use Verdict::{CheckContent, Differs, Same};
        // (case, change to the new record, old fingerprinted, racy old,
        // verdicts for Full, Redo, Time)
        type Change = fn(&mut Record);
        let cases: Vec<(&str, Change, bool, bool, [Verdict; 3])> = vec![
            ("unchanged", |_| {}, false, false, [Same, Same, Same]),
            (
                "unchanged, fingerprinted",
                |_| {},
                true,
                false,
                [Same, Same, Same],
            ),
            (
                "racy, fingerprinted",
                |_| {},
                true,
                true,
                [CheckContent, Same, Same],
            ),
            (
                "racy, never read",
                |_| {},
                false,
                true,
                [Differs, Same, Same],
            ),
            (
                "ctime only",
                |r| r.ctime += 1,
                false,
                false,
                [Differs, Differs, Same],
            ),
            (
                "ctime only, fingerprinted",
                |r| r.ctime += 1,
                true,
                false,
                [CheckContent, Differs, Same],
            ),
            (
                "inode only, fingerprinted",
                |r| r.ino = 9,
                true,
                false,
                [CheckContent, Differs, Same],
            ),
            (
                "inode of a hard-linked file, fingerprinted",
                |r| {
                    r.ino = 9;
                    r.nlink = 2;
                },
                true,
                false,
                [Differs, Differs, Same],
            ),
            (
                "mode",
                |r| r.mode = 0o104_755,
                true,
                false,
                [Differs, Differs, Same],
            ),
            (
                "owner",
                |r| r.uid = 1000,
                true,
                false,
                [Differs, Differs, Same],
            ),
            (
                "group",
                |r| r.gid = 1000,
                true,
                false,
                [Differs, Differs, Same],
            ),
            (
                "size",
                |r| r.size = 5,
                true,
                false,
                [Differs, Differs, Same],
            ),
            (
                "mtime",
                |r| r.mtime += 1,
                true,
                false,
                [Differs, Differs, Differs],
            ),
            (
                "type",
                |r| r.mode = 0o120_777,
                true,
                false,
                [Differs, Differs, Differs],
            ),
        ];
        for (case, change, fingerprinted, racy, want) in cases {
            let mut old_record = record(FILE);
            if racy {
                old_record.ctime = RECORDED_AT - 1_000_000;
                old_record.mtime = old_record.ctime;
            }
            let mut new_record = old_record.clone();
            change(&mut new_record);
            let old = tree(old_record, b"", fingerprinted);
            let new = tree(new_record, b"", false);
            for (mode, want) in [Full, Redo, Time].into_iter().zip(want) {
                assert_eq!(compare(mode, &old, 1, &new, 1), want, "{case} in {mode:?}");
            }
        }
    }

    #[test]
    fn a_symlink_target_is_metadata_in_full_and_redo() {
        let link = record(0o120_777);
        let old = tree(link.clone(), b"old", false);
        let new = tree(link, b"new", false);
        let got: Vec<Verdict> = [SnapshotMode::Full, SnapshotMode::Redo, SnapshotMode::Time]
            .into_iter()
            .map(|mode| compare(mode, &old, 1, &new, 1))
            .collect();
        assert_eq!(got, [Verdict::Differs, Verdict::Differs, Verdict::Same]);
    }

    #[test]
    fn racy_window_follows_timestamp_granularity() {
        let mut fine = record(FILE);
        let cases = [
            (RECORDED_AT - 49_000_000 + 1, true),
            (RECORDED_AT - 51_000_000 + 1, false),
            (RECORDED_AT + 5, true),
        ];
        for (ctime, want) in cases {
            fine.ctime = ctime;
            assert_eq!(fine.is_racy(RECORDED_AT), want, "ctime {ctime}");
        }
        // Whole seconds: a filesystem with second granularity.
        let mut coarse = record(FILE);
        coarse.ctime = RECORDED_AT - 1_000_000_000;
        assert!(coarse.is_racy(RECORDED_AT));
        coarse.ctime = RECORDED_AT - 3_000_000_000;
        assert!(!coarse.is_racy(RECORDED_AT));
    }
}
