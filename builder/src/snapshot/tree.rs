//! The recorded state of a root filesystem: one compact record per entry,
//! in canonical (pre-order, byte-wise sorted) order, and a parallel walk
//! that produces it. The walk is a set of queued tasks, one per directory,
//! each opening its directory from the root's descriptor without following
//! any symlink; it and the flattening keep their own stacks, so a hostile
//! tree's depth costs heap (bounded by [`MAX_DEPTH`]), never call stack.
//!
//! Layout: `records[0]` is the root; every directory is followed by its
//! whole subtree (`descendants` records), its children sorted byte-wise by
//! name, so the order is the component-wise path order layers are written
//! in. Names (and symlink targets, right after their name) live in one
//! byte arena; a record is 80 bytes whatever its path, so 100,000 entries
//! take about 8 MB plus their names.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering as AtomicOrdering};
use std::time::{SystemTime, UNIX_EPOCH};

use rayon::prelude::*;
use rustix::fs::{AtFlags, CWD, Dir, FileType, Mode, OFlags, ResolveFlags, Stat};

use super::SnapshotError;
use super::ignore::IgnoreSet;
use super::probe::Fingerprint;

/// "No index" in the `u32` index fields.
pub(super) const NONE: u32 = u32::MAX;

/// Directories with at least this many entries have them inspected by
/// several threads.
const PARALLEL_STAT_MIN: usize = 256;

/// How long before the recording a change makes an entry "racily clean":
/// a later change within the same timestamp tick could leave all of its
/// metadata as recorded. Kernels stamp files from a coarse clock (one tick
/// is at most 10 ms); 50 ms leaves a margin.
const RACY_WINDOW_NS: i64 = 50_000_000;
/// The same for filesystems with whole-second timestamps (a ctime with
/// no nanoseconds): two seconds, as FAT's granularity.
const RACY_WINDOW_COARSE_NS: i64 = 2_000_000_000;

const NS_PER_SEC: i64 = 1_000_000_000;

/// What kinds of entries are recorded. Sockets are not: a layer cannot
/// carry one. Device nodes are (`RUN mknod /opt/null c 1 3` gives a layer
/// with the node, as in Docker); a RUN's own `/dev` is a mount and never
/// snapshotted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Dir,
    File,
    Symlink,
    Fifo,
    CharDevice,
    BlockDevice,
}

impl Kind {
    fn of_mode(mode: u32) -> Option<Kind> {
        match FileType::from_raw_mode(mode) {
            FileType::Directory => Some(Kind::Dir),
            FileType::RegularFile => Some(Kind::File),
            FileType::Symlink => Some(Kind::Symlink),
            FileType::Fifo => Some(Kind::Fifo),
            FileType::CharacterDevice => Some(Kind::CharDevice),
            FileType::BlockDevice => Some(Kind::BlockDevice),
            _ => None,
        }
    }
}

/// One entry's metadata. Times are nanoseconds since 1970.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Record {
    /// Offset of the name in [`Tree::names`]; a symlink's target follows.
    pub(super) name: u32,
    pub(super) name_len: u32,
    pub(super) target_len: u32,
    /// Number of records of this directory's subtree (0 for the others).
    pub(super) descendants: u32,
    /// `st_mode`, file type bits included.
    pub(super) mode: u32,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) nlink: u32,
    /// Index in [`Tree::fingerprints`], or [`NONE`].
    pub(super) fingerprint: u32,
    pub(super) dev: u64,
    pub(super) ino: u64,
    /// The device a device node stands for (0 for the others).
    pub(super) rdev: u64,
    pub(super) size: u64,
    pub(super) mtime: i64,
    pub(super) ctime: i64,
}

impl Record {
    // `struct stat`'s field types differ between architectures.
    #[allow(clippy::unnecessary_cast)]
    fn from_stat(stat: &Stat) -> Option<Record> {
        let mode = stat.st_mode as u32;
        Kind::of_mode(mode)?;
        Some(Record {
            name: 0,
            name_len: 0,
            target_len: 0,
            descendants: 0,
            mode,
            uid: stat.st_uid as u32,
            gid: stat.st_gid as u32,
            nlink: u32::try_from(stat.st_nlink).unwrap_or(u32::MAX),
            fingerprint: NONE,
            dev: stat.st_dev as u64,
            ino: stat.st_ino as u64,
            rdev: stat.st_rdev as u64,
            size: u64::try_from(stat.st_size).unwrap_or(0),
            mtime: timestamp(stat.st_mtime as i64, stat.st_mtime_nsec as i64),
            ctime: timestamp(stat.st_ctime as i64, stat.st_ctime_nsec as i64),
        })
    }

    pub(super) fn kind(&self) -> Kind {
        // Only recordable modes become records.
        Kind::of_mode(self.mode).unwrap_or(Kind::File)
    }

    /// Whole seconds of the mtime, as a layer stores it (before 1970: 0).
    pub(super) fn mtime_secs(&self) -> u64 {
        u64::try_from(self.mtime.div_euclid(NS_PER_SEC)).unwrap_or(0)
    }

    /// Whether a change right after `recorded_at` could go unseen by the
    /// metadata: the entry itself changed within the racy window before.
    pub(super) fn is_racy(&self, recorded_at: i64) -> bool {
        let window = if self.ctime.rem_euclid(NS_PER_SEC) == 0 {
            RACY_WINDOW_COARSE_NS
        } else {
            RACY_WINDOW_NS
        };
        self.ctime >= recorded_at.saturating_sub(window)
    }
}

fn timestamp(secs: i64, nanos: i64) -> i64 {
    secs.saturating_mul(NS_PER_SEC).saturating_add(nanos)
}

/// A recorded root filesystem.
#[derive(Debug, Default)]
pub(super) struct Tree {
    pub(super) records: Vec<Record>,
    pub(super) names: Vec<u8>,
    pub(super) fingerprints: Vec<Fingerprint>,
    /// When the walk started (nanoseconds since 1970).
    pub(super) recorded_at: i64,
}

impl Tree {
    pub(super) fn name(&self, index: usize) -> &[u8] {
        let record = &self.records[index];
        let start = record.name as usize;
        &self.names[start..start + record.name_len as usize]
    }

    pub(super) fn target(&self, index: usize) -> &[u8] {
        let record = &self.records[index];
        let start = record.name as usize + record.name_len as usize;
        &self.names[start..start + record.target_len as usize]
    }

    pub(super) fn kind(&self, index: usize) -> Kind {
        self.records[index].kind()
    }

    /// One past the last record of `index`'s subtree.
    pub(super) fn end(&self, index: usize) -> usize {
        index + 1 + self.records[index].descendants as usize
    }

    /// The children of directory `index`, in name order.
    pub(super) fn children(&self, index: usize) -> Children<'_> {
        Children {
            tree: self,
            next: index + 1,
            end: self.end(index),
        }
    }

    pub(super) fn fingerprint(&self, index: usize) -> Option<&Fingerprint> {
        self.fingerprints
            .get(self.records[index].fingerprint as usize)
    }

    pub(super) fn set_fingerprint(&mut self, index: usize, fingerprint: Fingerprint) {
        // The count of fingerprints never exceeds the count of records,
        // which fits u32 (checked when the tree was built).
        self.records[index].fingerprint = self.fingerprints.len() as u32;
        self.fingerprints.push(fingerprint);
    }

    /// The parent of every record (the root's is [`NONE`]).
    pub(super) fn parents(&self) -> Vec<u32> {
        let mut parents = vec![NONE; self.records.len()];
        for index in 0..self.records.len() {
            if self.kind(index) == Kind::Dir {
                for child in self.children(index) {
                    parents[child] = index as u32;
                }
            }
        }
        parents
    }

    /// The path of `index` relative to the root, `/`-separated.
    pub(super) fn path(&self, parents: &[u32], index: usize) -> Vec<u8> {
        let mut chain = Vec::new();
        let mut at = index;
        while at != 0 && at < parents.len() {
            chain.push(at);
            at = parents[at] as usize;
        }
        let mut path = Vec::new();
        for &part in chain.iter().rev() {
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(self.name(part));
        }
        path
    }

    /// Heap bytes held by the records, names and fingerprints.
    pub(super) fn heap_bytes(&self) -> usize {
        self.records.capacity() * std::mem::size_of::<Record>()
            + self.names.capacity()
            + self.fingerprints.capacity() * std::mem::size_of::<Fingerprint>()
    }
}

pub(super) struct Children<'a> {
    tree: &'a Tree,
    next: usize,
    end: usize,
}

impl Iterator for Children<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.next >= self.end {
            return None;
        }
        let current = self.next;
        self.next = self.tree.end(current);
        Some(current)
    }
}

/// Host path `root/rel` for messages and path-based calls.
pub(super) fn host_path(root: &Path, rel: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(std::ffi::OsStr::from_bytes(rel))
    }
}

/// One directory's entries as the walk found them, before flattening.
#[derive(Default)]
struct Listing {
    /// Names, each followed by a NUL so it can be passed to `*at` calls.
    names: Vec<u8>,
    entries: Vec<Found>,
    /// Listing ids (see [`Listings`]) of the directory entries, in entry
    /// order.
    subdirs: Vec<usize>,
}

struct Found {
    name: u32,
    name_len: u32,
    target: Option<Vec<u8>>,
    record: Record,
}

/// A record and, for a symlink, its target.
type Inspected = (Record, Option<Vec<u8>>);

/// How many directories deep a walk goes: deeper than any real image
/// (paths are at most 4096 bytes, so even one-letter names stop at 2048),
/// and a clear error for a hostile one. The walk, the diff and the layer
/// plan keep their own stacks, so this bounds memory, not the call stack.
pub const MAX_DEPTH: usize = 1024;

/// Every directory's listing, by id (the root's is 0), filled in by the
/// walk's tasks in whatever order they finish.
#[derive(Default)]
struct Listings {
    next_id: AtomicUsize,
    done: Mutex<Vec<(usize, Listing)>>,
    /// The first error; once set, tasks still queued do nothing.
    failed: Mutex<Option<SnapshotError>>,
    stop: AtomicBool,
}

impl Listings {
    fn allocate(&self) -> usize {
        self.next_id.fetch_add(1, AtomicOrdering::Relaxed)
    }

    fn fail(&self, err: SnapshotError) {
        self.stop.store(true, AtomicOrdering::Relaxed);
        let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        failed.get_or_insert(err);
    }

    /// The listings indexed by id (an id whose directory vanished has an
    /// empty one), or the first error.
    fn into_indexed(self) -> Result<Vec<Listing>, SnapshotError> {
        if let Some(err) = self.failed.into_inner().unwrap_or_else(|e| e.into_inner()) {
            return Err(err);
        }
        let count = self.next_id.into_inner();
        let mut indexed: Vec<Listing> = std::iter::repeat_with(Listing::default)
            .take(count)
            .collect();
        for (id, listing) in self.done.into_inner().unwrap_or_else(|e| e.into_inner()) {
            indexed[id] = listing;
        }
        Ok(indexed)
    }
}

struct Walk<'a> {
    root: &'a Path,
    root_fd: BorrowedFd<'a>,
    ignore: &'a IgnoreSet,
    listings: &'a Listings,
}

impl Walk<'_> {
    fn error(&self, op: &'static str, rel: &[u8], errno: rustix::io::Errno) -> SnapshotError {
        SnapshotError::Io {
            op,
            path: host_path(self.root, rel),
            source: io::Error::from(errno),
        }
    }

    /// The task of directory `rel`: lists it, records the listing as `id`
    /// and spawns a task for each subdirectory. Tasks are queued, never
    /// nested, so no stack grows with the depth of the tree.
    fn visit<'scope>(&'scope self, scope: &rayon::Scope<'scope>, id: usize, rel: Vec<u8>) {
        if self.listings.stop.load(AtomicOrdering::Relaxed) {
            return;
        }
        match self.list(rel) {
            Ok((listing, subdirs)) => {
                for (sub_id, sub_rel) in subdirs {
                    scope.spawn(move |scope| self.visit(scope, sub_id, sub_rel));
                }
                let mut done = self.listings.done.lock().unwrap_or_else(|e| e.into_inner());
                done.push((id, listing));
            }
            Err(err) => self.listings.fail(err),
        }
    }

    /// Opens `rel` below the root without following any symlink (a
    /// directory swapped for one since it was inspected is never followed
    /// out of the root); None when it is gone or no longer a directory.
    fn open(&self, rel: &[u8]) -> Result<Option<OwnedFd>, SnapshotError> {
        let path: &Path = if rel.is_empty() {
            Path::new(".")
        } else {
            Path::new(std::ffi::OsStr::from_bytes(rel))
        };
        let resolve =
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
        loop {
            match rustix::fs::openat2(
                self.root_fd,
                path,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
                resolve,
            ) {
                Ok(fd) => return Ok(Some(fd)),
                Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => continue,
                Err(errno) if vanished(errno) => {
                    tracing::debug!(path = %host_path(self.root, rel).display(), %errno, "directory changed during the snapshot walk");
                    return Ok(None);
                }
                Err(rustix::io::Errno::NAMETOOLONG) => {
                    return Err(SnapshotError::TooDeep {
                        root: self.root.to_path_buf(),
                        path: host_path(self.root, rel),
                        max: MAX_DEPTH,
                    });
                }
                Err(errno) => return Err(self.error("open directory", rel, errno)),
            }
        }
    }

    /// Directory `rel`'s listing, and (id, path) of each subdirectory.
    #[allow(clippy::type_complexity)]
    fn list(&self, rel: Vec<u8>) -> Result<(Listing, Vec<(usize, Vec<u8>)>), SnapshotError> {
        let Some(fd) = self.open(&rel)? else {
            return Ok((Listing::default(), Vec::new()));
        };
        let mut listing = Listing::default();
        let mut offsets: Vec<(u32, u32)> = Vec::new();
        let check_ignored = self.ignore.holds_ignored(&rel);
        {
            let mut dir =
                Dir::read_from(&fd).map_err(|errno| self.error("read directory", &rel, errno))?;
            while let Some(entry) = dir.read() {
                let entry = entry.map_err(|errno| self.error("read directory", &rel, errno))?;
                let name = entry.file_name().to_bytes();
                if name == b"." || name == b".." {
                    continue;
                }
                if check_ignored && self.ignore.is_ignored(&join(&rel, name)) {
                    continue;
                }
                let start = u32::try_from(listing.names.len()).map_err(|_| self.too_large())?;
                listing.names.extend_from_slice(name);
                listing.names.push(0);
                offsets.push((start, name.len() as u32));
            }
        }
        let dirfd = fd.as_fd();
        let names = &listing.names;
        let inspect = |&(start, len): &(u32, u32)| -> Result<Option<Found>, SnapshotError> {
            let with_nul = &names[start as usize..start as usize + len as usize + 1];
            self.inspect(dirfd, with_nul, &rel).map(|found| {
                found.map(|(record, target)| Found {
                    name: start,
                    name_len: len,
                    target,
                    record,
                })
            })
        };
        let found: Vec<Option<Found>> = if offsets.len() >= PARALLEL_STAT_MIN {
            offsets
                .par_iter()
                .with_min_len(PARALLEL_STAT_MIN / 2)
                .map(inspect)
                .collect::<Result<_, _>>()?
        } else {
            offsets.iter().map(inspect).collect::<Result<_, _>>()?
        };
        let mut entries: Vec<Found> = found.into_iter().flatten().collect();
        entries.sort_unstable_by(|a, b| entry_name(names, a).cmp(entry_name(names, b)));
        let depth = if rel.is_empty() {
            0
        } else {
            rel.iter().filter(|&&b| b == b'/').count() + 1
        };
        let mut subdirs = Vec::new();
        for found in entries
            .iter()
            .filter(|found| found.record.kind() == Kind::Dir)
        {
            let child = join(&rel, entry_name(names, found));
            if depth + 1 > MAX_DEPTH {
                return Err(SnapshotError::TooDeep {
                    root: self.root.to_path_buf(),
                    path: host_path(self.root, &child),
                    max: MAX_DEPTH,
                });
            }
            let id = self.listings.allocate();
            listing.subdirs.push(id);
            subdirs.push((id, child));
        }
        listing.entries = entries;
        Ok((listing, subdirs))
    }

    /// The record (and symlink target) of one entry; None when it is not
    /// recordable or vanished since the directory was read.
    fn inspect(
        &self,
        dirfd: BorrowedFd<'_>,
        name_with_nul: &[u8],
        rel: &[u8],
    ) -> Result<Option<Inspected>, SnapshotError> {
        let name = cstr(name_with_nul);
        let child = || join(rel, name.to_bytes());
        let stat = match rustix::fs::statat(dirfd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => stat,
            Err(errno) if vanished(errno) => return Ok(None),
            Err(errno) => return Err(self.error("inspect", &child(), errno)),
        };
        let Some(record) = Record::from_stat(&stat) else {
            tracing::debug!(path = %host_path(self.root, &child()).display(), "not snapshotting a socket");
            return Ok(None);
        };
        let target = if record.kind() == Kind::Symlink {
            match rustix::fs::readlinkat(dirfd, name, Vec::new()) {
                Ok(target) => Some(target.into_bytes()),
                Err(errno) if vanished(errno) => return Ok(None),
                Err(errno) => return Err(self.error("read link", &child(), errno)),
            }
        } else {
            None
        };
        Ok(Some((record, target)))
    }

    fn too_large(&self) -> SnapshotError {
        SnapshotError::TooLarge {
            root: self.root.to_path_buf(),
        }
    }
}

fn entry_name<'a>(names: &'a [u8], found: &Found) -> &'a [u8] {
    &names[found.name as usize..found.name as usize + found.name_len as usize]
}

fn cstr(with_nul: &[u8]) -> &CStr {
    // Every name in a listing was stored with its NUL, and a directory
    // entry's name holds no other NUL.
    CStr::from_bytes_with_nul(with_nul).unwrap_or(c"")
}

/// The entry went away or changed type between two calls.
fn vanished(errno: rustix::io::Errno) -> bool {
    use rustix::io::Errno;
    errno == Errno::NOENT || errno == Errno::NOTDIR || errno == Errno::LOOP
}

pub(super) fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut path = Vec::with_capacity(parent.len() + 1 + name.len());
    path.extend_from_slice(parent);
    if !parent.is_empty() {
        path.push(b'/');
    }
    path.extend_from_slice(name);
    path
}

/// Nanoseconds since 1970, now.
pub(super) fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Walks `root` (a directory, never left) and records it; `ignore`d paths
/// and everything below them are left out.
pub(super) fn walk(root: &Path, ignore: &IgnoreSet) -> Result<Tree, SnapshotError> {
    let recorded_at = now_ns();
    let io_err = |op: &'static str| {
        move |errno: rustix::io::Errno| SnapshotError::Io {
            op,
            path: root.to_path_buf(),
            source: io::Error::from(errno),
        }
    };
    let fd = rustix::fs::openat(
        CWD,
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io_err("open directory"))?;
    let stat = rustix::fs::fstat(&fd).map_err(io_err("inspect"))?;
    let root_record = Record::from_stat(&stat).ok_or_else(|| SnapshotError::Io {
        op: "open directory",
        path: root.to_path_buf(),
        source: io::Error::from(io::ErrorKind::NotADirectory),
    })?;
    let listings = Listings::default();
    let walk = Walk {
        root,
        root_fd: fd.as_fd(),
        ignore,
        listings: &listings,
    };
    let root_id = listings.allocate();
    rayon::scope(|scope| walk.visit(scope, root_id, Vec::new()));
    let too_large = walk.too_large();
    let listings = listings.into_indexed()?;
    let total = listings.iter().map(|l| l.entries.len()).sum::<usize>() + 1;
    if u32::try_from(total).is_err() {
        return Err(too_large);
    }
    let mut tree = Tree {
        records: Vec::with_capacity(total),
        names: Vec::new(),
        fingerprints: Vec::new(),
        recorded_at,
    };
    tree.records.push(root_record);
    flatten(&mut tree, listings, root_id).ok_or(too_large)?;
    tree.names.shrink_to_fit();
    Ok(tree)
}

/// Appends the listings in pre-order below the root record (already in
/// `tree`), setting every directory's `descendants`; None when a count
/// does not fit the records' fields.
fn flatten(tree: &mut Tree, mut listings: Vec<Listing>, root_id: usize) -> Option<()> {
    /// A directory being appended: its listing, the next entry and
    /// subdirectory, its own record and where its subtree starts.
    struct Frame {
        listing: Listing,
        next: usize,
        next_subdir: usize,
        record: usize,
        start: usize,
    }
    let take = |listings: &mut Vec<Listing>, id: usize| {
        listings.get_mut(id).map(std::mem::take).unwrap_or_default()
    };
    let mut stack = vec![Frame {
        listing: take(&mut listings, root_id),
        next: 0,
        next_subdir: 0,
        record: 0,
        start: tree.records.len(),
    }];
    while let Some(frame) = stack.last_mut() {
        let at = frame.next;
        if at >= frame.listing.entries.len() {
            let descendants = u32::try_from(tree.records.len() - frame.start).ok()?;
            tree.records[frame.record].descendants = descendants;
            stack.pop();
            continue;
        }
        frame.next += 1;
        let found = &mut frame.listing.entries[at];
        let mut record = found.record.clone();
        let target = found.target.take();
        let name = entry_name(&frame.listing.names, &frame.listing.entries[at]);
        record.name = u32::try_from(tree.names.len()).ok()?;
        record.name_len = u32::try_from(name.len()).ok()?;
        tree.names.extend_from_slice(name);
        if let Some(target) = target {
            record.target_len = u32::try_from(target.len()).ok()?;
            tree.names.extend_from_slice(&target);
        }
        record.descendants = 0;
        let index = tree.records.len();
        let is_dir = record.kind() == Kind::Dir;
        tree.records.push(record);
        if is_dir && let Some(&sub) = frame.listing.subdirs.get(frame.next_subdir) {
            frame.next_subdir += 1;
            let listing = take(&mut listings, sub);
            stack.push(Frame {
                listing,
                next: 0,
                next_subdir: 0,
                record: index,
                start: index + 1,
            });
        }
    }
    Some(())
}
