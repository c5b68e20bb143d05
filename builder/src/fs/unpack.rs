//! Applying one image layer (a tar changeset, possibly compressed) onto a
//! root filesystem directory.
//!
//! Safety rule: no entry creates, changes or follows anything outside the
//! root. Entry names are cleaned lexically first (absolute names become
//! relative, `..` is clamped at the root, so `../../etc/passwd` is
//! `etc/passwd`); the parent directory is then resolved inside the root as
//! if chrooted ([`super::in_root`]); the last component is never followed:
//! whatever sits there (a symlink included) is replaced. Hardlink targets
//! are resolved the same way and must already exist in the root.
//!
//! We clamp `..` rather than reject the layer: it is what a chrooted
//! process writing the same names would get, and `..` inside symlink
//! targets is handled the same way, so one rule covers both.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Gid, Mode, RawMode, Timespec, Timestamps, Uid, XattrFlags};
use tar::EntryType;

use super::FsError;
use super::in_root::{clean_image_path, ensure_dirs, resolve};
use super::root_dir::{RootDir, missing, swapped};
use super::whiteout::{LayerPaths, Whiteout, classify};

/// How to apply a layer.
#[derive(Clone, Debug)]
pub struct UnpackOptions {
    /// Give entries the uid/gid recorded in the layer. Failures (no
    /// privilege) are counted in [`UnpackStats::ownership_failures`] and do
    /// not stop the unpack.
    pub preserve_ownership: bool,
    /// Image paths (`/proc`, `/kiln`, `--ignore-path`s) that are never
    /// written or removed, entries and whiteouts below them included.
    pub protected_paths: Vec<PathBuf>,
}

impl Default for UnpackOptions {
    fn default() -> UnpackOptions {
        UnpackOptions {
            preserve_ownership: true,
            protected_paths: Vec::new(),
        }
    }
}

/// What applying a layer did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnpackStats {
    /// Tar entries read, whiteouts included.
    pub entries: u64,
    pub directories: u64,
    pub files: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    /// Device nodes and FIFOs created.
    pub special_files: u64,
    /// Whiteout and opaque-marker entries applied.
    pub whiteouts: u64,
    /// Paths of lower layers removed by whiteouts (a tree counts once).
    pub removed: u64,
    /// Entries not applied: the root itself, protected paths, device nodes
    /// without the privilege to create them, unknown entry types.
    pub skipped: u64,
    /// Bytes of regular file content written.
    pub bytes: u64,
    pub ownership_failures: u64,
    pub xattr_failures: u64,
}

/// The compression of a layer blob, told by its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// Detects the compression from a blob's magic number; anything else is
/// taken to be a plain tar stream.
pub fn detect_compression(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// Applies one layer read from `reader` (gzip, zstd or plain tar, detected)
/// onto the directory `root`, which is created if missing.
pub fn unpack_layer(
    reader: impl Read,
    root: &Path,
    options: &UnpackOptions,
) -> Result<UnpackStats, FsError> {
    unpack_tar(decompress(reader)?, root, options)
}

/// [`unpack_layer`] of a blob on disk, decompressed on a thread of its
/// own: inflating a Debian base takes about as long as writing its files,
/// and on two cores the two then overlap instead of taking turns.
pub fn unpack_layer_file(
    blob: fs::File,
    root: &Path,
    options: &UnpackOptions,
) -> Result<UnpackStats, FsError> {
    let tar_stream = ReadAhead::spawn(move || decompress(io::BufReader::new(blob)));
    unpack_tar(tar_stream, root, options)
}

/// Applies a tar stream (already decompressed) onto `root`.
fn unpack_tar(
    tar_stream: impl Read,
    root: &Path,
    options: &UnpackOptions,
) -> Result<UnpackStats, FsError> {
    fs::create_dir_all(root).map_err(FsError::io("create directory", root))?;
    let dir = RootDir::open(root).map_err(FsError::io("open", root))?;
    let mut archive = tar::Archive::new(tar_stream);
    let mut protected = Vec::new();
    for path in &options.protected_paths {
        let clean = clean_image_path(path);
        let resolved = resolve(root, &clean, true)?;
        protected.push(root.join(clean));
        // `/var/run -> /run` is common: what the link leads to is protected
        // too (but a link to `/` does not protect the whole root).
        if resolved != root && !protected.contains(&resolved) {
            protected.push(resolved);
        }
    }
    let mut unpacker = Unpacker {
        dir,
        options,
        layer: LayerPaths::new(root, protected),
        dirs: BTreeMap::new(),
        stats: UnpackStats::default(),
        buffer: vec![0; 64 * 1024],
        parents: HashMap::new(),
    };
    for entry in archive.entries().map_err(layer_error)? {
        let mut entry = entry.map_err(layer_error)?;
        unpacker.apply(&mut entry)?;
    }
    unpacker.finish()
}

fn layer_error(source: io::Error) -> FsError {
    FsError::Layer { source }
}

/// The tar stream of a layer blob, decompressed as its first bytes say
/// (shared with the SBOM walk, which reads layers the same way).
pub(crate) fn decompress<'a>(mut reader: impl Read + 'a) -> Result<Box<dyn Read + 'a>, FsError> {
    let mut head = [0u8; 4];
    let mut len = 0;
    // A pipe may hand out fewer bytes than asked for.
    while len < head.len() {
        match reader.read(&mut head[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => return Err(FsError::Layer { source }),
        }
    }
    let head = head[..len].to_vec();
    let compression = detect_compression(&head);
    let whole = io::Cursor::new(head).chain(reader);
    Ok(match compression {
        Compression::None => Box::new(whole),
        // Layers written by some tools hold several gzip members.
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(whole)),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::new(whole).map_err(layer_error)?)
        }
    })
}

/// A reader filled by a thread of its own: the thread opens its stream
/// with `open` and reads it ahead in chunks, at most [`READ_AHEAD_CHUNKS`]
/// of them waiting, so memory stays bounded however large the stream.
struct ReadAhead {
    chunks: Option<std::sync::mpsc::Receiver<io::Result<Vec<u8>>>>,
    current: Vec<u8>,
    position: usize,
    finished: bool,
    thread: Option<std::thread::JoinHandle<()>>,
}

const READ_AHEAD_CHUNK: usize = 256 * 1024;
const READ_AHEAD_CHUNKS: usize = 4;

impl ReadAhead {
    fn spawn<R: Read>(open: impl FnOnce() -> Result<R, FsError> + Send + 'static) -> ReadAhead {
        let (sender, chunks) = std::sync::mpsc::sync_channel(READ_AHEAD_CHUNKS);
        let thread = std::thread::spawn(move || {
            let mut stream = match open() {
                Ok(stream) => stream,
                Err(error) => {
                    let _ = sender.send(Err(io::Error::other(error)));
                    return;
                }
            };
            loop {
                let mut chunk = vec![0; READ_AHEAD_CHUNK];
                let message = fill(&mut stream, &mut chunk).map(|filled| {
                    chunk.truncate(filled);
                    chunk
                });
                // An empty chunk says the stream ended, an error ends it too;
                // a send fails only when the reader is gone, and then nobody
                // needs the rest.
                let last = !matches!(&message, Ok(chunk) if !chunk.is_empty());
                if sender.send(message).is_err() || last {
                    return;
                }
            }
        });
        ReadAhead {
            chunks: Some(chunks),
            current: Vec::new(),
            position: 0,
            finished: false,
            thread: Some(thread),
        }
    }
}

/// Reads into `buffer` until it is full or the stream ends; how much.
fn fill(stream: &mut impl Read, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match stream.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

impl Read for ReadAhead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.position == self.current.len() {
            if self.finished {
                return Ok(0);
            }
            let next = self.chunks.as_ref().and_then(|chunks| chunks.recv().ok());
            match next {
                Some(Ok(chunk)) if chunk.is_empty() => self.finished = true,
                Some(Ok(chunk)) => {
                    self.current = chunk;
                    self.position = 0;
                }
                Some(Err(error)) => {
                    self.finished = true;
                    return Err(error);
                }
                None => {
                    self.finished = true;
                    return Err(io::Error::other("the layer's reading thread stopped"));
                }
            }
        }
        let n = buf.len().min(self.current.len() - self.position);
        buf[..n].copy_from_slice(&self.current[self.position..self.position + n]);
        self.position += n;
        Ok(n)
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        // The receiver goes first, so a thread waiting to send a chunk
        // nobody will read stops, and the join below returns.
        self.chunks = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Metadata of one entry, PAX records applied.
#[derive(Debug)]
struct EntryMeta {
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: Timespec,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

struct Unpacker<'a> {
    /// Where every call is made: resolved paths are acted on through it, so
    /// a directory swapped for a symlink since it was resolved (by a later
    /// entry of this layer) stops the call instead of redirecting it.
    dir: RootDir,
    options: &'a UnpackOptions,
    layer: LayerPaths,
    /// Directory mode and mtime are set once the layer is done: entries
    /// created inside would bump the mtime, and a read-only mode would stop
    /// an unprivileged builder from filling the directory.
    dirs: BTreeMap<PathBuf, (u32, Timespec)>,
    stats: UnpackStats,
    /// Copy buffer reused for every file.
    buffer: Vec<u8>,
    /// Parent directories already resolved and made directories in this
    /// layer, by their cleaned path in the layer: a layer lists a
    /// directory's files one after the other, and each would otherwise
    /// walk and check every component again. Forgotten whenever the layer
    /// removes anything (a whiteout, an entry replacing what was there),
    /// the only way a path once resolved can come to mean another place;
    /// creating never can, since every component of a cached path exists.
    parents: HashMap<PathBuf, PathBuf>,
}

/// How many parents [`Unpacker::parents`] holds before it starts over, so a
/// layer of a million directories cannot grow it without bound.
const MAX_CACHED_PARENTS: usize = 4096;

impl Unpacker<'_> {
    fn apply<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), FsError> {
        self.stats.entries += 1;
        let raw_path = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw_path).into_owned();
        let rel = clean_image_path(Path::new(OsStr::from_bytes(&raw_path)));
        let Some(file_name) = rel.file_name().map(OsStr::to_os_string) else {
            // The root directory itself: its mode and owner are the
            // builder's business, not a layer's.
            tracing::debug!(entry = %name, "skipping entry for the root directory");
            self.stats.skipped += 1;
            return Ok(());
        };
        let rel_parent = rel.parent().unwrap_or(Path::new(""));
        let cached = self.parents.get(rel_parent).cloned();
        let parent = match &cached {
            Some(parent) => parent.clone(),
            None => resolve(self.dir.path(), rel_parent, true)?,
        };
        let host = parent.join(&file_name);
        if self.layer.is_protected(&host) {
            tracing::debug!(entry = %name, "skipping entry below a protected path");
            self.stats.skipped += 1;
            return Ok(());
        }
        match classify(&file_name) {
            Whiteout::Opaque => {
                // The marker says the directory exists in this layer.
                ensure_dirs(&self.dir, &parent, &name, 0o755, None)?;
                self.layer.record(&parent);
                self.parents.clear();
                self.stats.removed += self.layer.remove_lower_children(&self.dir, &parent)?;
                self.stats.whiteouts += 1;
            }
            Whiteout::Remove(victim) => {
                self.parents.clear();
                self.stats.removed += self.layer.remove_lower(&self.dir, &parent.join(victim))?;
                self.stats.whiteouts += 1;
            }
            Whiteout::Meta => {
                tracing::debug!(entry = %name, "skipping whiteout metadata entry");
                self.stats.skipped += 1;
            }
            Whiteout::None => {
                if cached.is_none() {
                    ensure_dirs(&self.dir, &parent, &name, 0o755, None)?;
                    self.remember_parent(rel_parent.to_path_buf(), parent);
                }
                let is_directory = entry.header().entry_type() == EntryType::Directory;
                self.write_entry(entry, &name, &host)?;
                if is_directory {
                    // Its files come next: it is their parent, made here.
                    self.remember_parent(rel, host);
                }
            }
        }
        Ok(())
    }

    fn remember_parent(&mut self, rel: PathBuf, host: PathBuf) {
        if self.parents.len() >= MAX_CACHED_PARENTS {
            self.parents.clear();
        }
        self.parents.insert(rel, host);
    }

    /// [`clear_for`], forgetting the cached parents when it removed
    /// something.
    fn clear(&mut self, host: &Path, keep_dir: bool) -> Result<bool, FsError> {
        let cleared = clear_for(&self.dir, host, keep_dir)?;
        if cleared == Cleared::Removed {
            self.parents.clear();
        }
        Ok(cleared == Cleared::KeptDirectory)
    }

    fn write_entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        name: &str,
        host: &Path,
    ) -> Result<(), FsError> {
        let entry_type = entry.header().entry_type();
        match entry_type {
            EntryType::Link => return self.write_hardlink(entry, name, host),
            EntryType::XGlobalHeader => {
                self.stats.skipped += 1;
                return Ok(());
            }
            _ => {}
        }
        let meta = read_meta(entry, name)?;
        match entry_type {
            EntryType::Directory => {
                if !self.clear(host, true)? {
                    self.dir
                        .mkdir(host, 0o755)
                        .map_err(FsError::io("create directory", host))?;
                }
                self.set_owner_and_xattrs(host, &meta);
                self.dirs
                    .insert(host.to_path_buf(), (meta.mode, meta.mtime));
                self.stats.directories += 1;
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.clear(host, false)?;
                let file = self.write_file(entry, name, host)?;
                self.finish_file(&file, host, &meta)?;
                self.stats.files += 1;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| bad_entry(name, "symlink without a target"))?
                    .into_owned();
                self.clear(host, false)?;
                // Written as-is: it is resolved inside the root when used.
                self.dir
                    .symlink(OsStr::from_bytes(&target), host)
                    .map_err(FsError::io("create symlink", host))?;
                self.set_owner_and_xattrs(host, &meta);
                set_times(&self.dir, host, meta.mtime)?;
                self.stats.symlinks += 1;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                self.clear(host, false)?;
                if !self.make_node(entry, name, host, entry_type, &meta)? {
                    return Ok(());
                }
                self.finish_node(host, &meta)?;
                self.stats.special_files += 1;
            }
            other => {
                tracing::warn!(entry = %name, kind = ?other, "skipping tar entry of unsupported type");
                self.stats.skipped += 1;
                return Ok(());
            }
        }
        self.layer.record(host);
        Ok(())
    }

    fn write_file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        name: &str,
        host: &Path,
    ) -> Result<fs::File, FsError> {
        use std::io::Write;
        // O_EXCL never follows a symlink, and clear_for has removed
        // whatever was there.
        let mut file = self
            .dir
            .create_file(host, 0o600)
            .map_err(FsError::io("create file", host))?;
        loop {
            let n = match entry.read(&mut self.buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(FsError::BadEntry {
                        entry: name.to_string(),
                        source,
                    });
                }
            };
            file.write_all(&self.buffer[..n])
                .map_err(FsError::io("write file", host))?;
            self.stats.bytes += n as u64;
        }
        Ok(file)
    }

    fn write_hardlink<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        name: &str,
        host: &Path,
    ) -> Result<(), FsError> {
        let raw_target = entry
            .link_name_bytes()
            .ok_or_else(|| bad_entry(name, "hardlink without a target"))?
            .into_owned();
        let target_name = String::from_utf8_lossy(&raw_target).into_owned();
        let target_rel = clean_image_path(Path::new(OsStr::from_bytes(&raw_target)));
        // A hardlink names the target entry itself, so a symlink there is
        // linked, not followed (linkat without AT_SYMLINK_FOLLOW).
        let target = resolve(self.dir.path(), &target_rel, false)?;
        let target_meta = match self.dir.lstat(&target) {
            Ok(Some(meta)) => meta,
            Ok(None) => {
                return Err(FsError::HardlinkTargetMissing {
                    entry: name.to_string(),
                    target: target_name,
                });
            }
            Err(err) => return Err(FsError::io("inspect", &target)(err)),
        };
        if FileType::from_raw_mode(target_meta.st_mode as RawMode) == FileType::Directory {
            return Err(FsError::HardlinkToDirectory {
                entry: name.to_string(),
                target: target_name,
            });
        }
        if self.layer.is_protected(&target) {
            tracing::warn!(entry = %name, target = %target_name, "skipping hardlink to a protected path");
            self.stats.skipped += 1;
            return Ok(());
        }
        if target != host {
            self.clear(host, false)?;
            self.dir
                .hard_link(&target, host)
                .map_err(FsError::io("create hardlink", host))?;
        }
        // Ownership and mode belong to the shared inode, which the target's
        // own entry (or a lower layer) has already set.
        self.layer.record(host);
        self.stats.hardlinks += 1;
        Ok(())
    }

    /// Creates a device node or FIFO; false when not permitted (skipped).
    fn make_node<R: Read>(
        &mut self,
        entry: &tar::Entry<'_, R>,
        name: &str,
        host: &Path,
        entry_type: EntryType,
        meta: &EntryMeta,
    ) -> Result<bool, FsError> {
        let header = entry.header();
        let major = header
            .device_major()
            .map_err(|source| FsError::BadEntry {
                entry: name.to_string(),
                source,
            })?
            .unwrap_or(0);
        let minor = header
            .device_minor()
            .map_err(|source| FsError::BadEntry {
                entry: name.to_string(),
                source,
            })?
            .unwrap_or(0);
        let file_type = match entry_type {
            EntryType::Char => FileType::CharacterDevice,
            EntryType::Block => FileType::BlockDevice,
            _ => FileType::Fifo,
        };
        match self.dir.mknod(
            host,
            file_type,
            meta.mode & 0o777,
            rustix::fs::makedev(major, minor),
        ) {
            Ok(()) => Ok(true),
            Err(err) if err.kind() == io::ErrorKind::PermissionDenied => {
                tracing::warn!(entry = %name, %err, "cannot create device node here, skipping it");
                self.stats.skipped += 1;
                Ok(false)
            }
            Err(err) => Err(FsError::io("create device node", host)(err)),
        }
    }

    /// Owner, xattrs, mode and mtime of a freshly created non-directory,
    /// non-symlink node, in the order that keeps each: chown clears setuid
    /// bits and `security.capability`, so both come after it.
    fn finish_node(&mut self, host: &Path, meta: &EntryMeta) -> Result<(), FsError> {
        self.set_owner(host, meta);
        self.dir
            .chmod(host, meta.mode & 0o7777)
            .map_err(FsError::io("set mode of", host))?;
        self.set_xattrs(host, meta);
        set_times(&self.dir, host, meta.mtime)
    }

    /// [`Self::finish_node`] for a regular file just written, through its
    /// open descriptor: the file this layer created (`O_EXCL`, never
    /// followed), without looking its path up again four times.
    fn finish_file(
        &mut self,
        file: &fs::File,
        host: &Path,
        meta: &EntryMeta,
    ) -> Result<(), FsError> {
        if self.options.preserve_ownership {
            let owner = (Uid::from_raw(meta.uid), Gid::from_raw(meta.gid));
            if let Err(err) = rustix::fs::fchown(file, Some(owner.0), Some(owner.1)) {
                tracing::debug!(path = %host.display(), uid = meta.uid, gid = meta.gid, %err, "cannot chown");
                self.stats.ownership_failures += 1;
            }
        }
        rustix::fs::fchmod(file, Mode::from_raw_mode(meta.mode & 0o7777))
            .map_err(|errno| FsError::io("set mode of", host)(errno.into()))?;
        for (key, value) in &meta.xattrs {
            let key = OsStr::from_bytes(key);
            if let Err(err) = rustix::fs::fsetxattr(file, key, value, XattrFlags::empty()) {
                tracing::warn!(path = %host.display(), xattr = %key.to_string_lossy(), %err, "cannot set extended attribute, skipping it");
                self.stats.xattr_failures += 1;
            }
        }
        let times = Timestamps {
            last_access: meta.mtime,
            last_modification: meta.mtime,
        };
        rustix::fs::futimens(file, &times)
            .map_err(|errno| FsError::io("set times of", host)(errno.into()))
    }

    fn set_owner_and_xattrs(&mut self, host: &Path, meta: &EntryMeta) {
        self.set_owner(host, meta);
        self.set_xattrs(host, meta);
    }

    fn set_owner(&mut self, host: &Path, meta: &EntryMeta) {
        if !self.options.preserve_ownership {
            return;
        }
        if let Err(err) = self.dir.lchown(host, meta.uid, meta.gid) {
            tracing::debug!(path = %host.display(), uid = meta.uid, gid = meta.gid, %err, "cannot chown");
            self.stats.ownership_failures += 1;
        }
    }

    fn set_xattrs(&mut self, host: &Path, meta: &EntryMeta) {
        for (key, value) in &meta.xattrs {
            let key = OsStr::from_bytes(key);
            if let Err(err) = self.dir.lsetxattr(host, key, value) {
                tracing::warn!(path = %host.display(), xattr = %key.to_string_lossy(), %err, "cannot set extended attribute, skipping it");
                self.stats.xattr_failures += 1;
            }
        }
    }

    fn finish(mut self) -> Result<UnpackStats, FsError> {
        // Children first, so setting a parent's mtime is the last change
        // made inside it. A directory recorded here may since have been
        // replaced, whited out, or had a parent swapped for a symlink by a
        // later entry: the lookups below refuse to pass a symlink, so such
        // a directory is skipped, never followed (out of the root, above
        // all).
        for (dir, (mode, mtime)) in self.dirs.iter().rev() {
            match self.dir.lstat(dir) {
                Ok(Some(meta))
                    if FileType::from_raw_mode(meta.st_mode as RawMode) == FileType::Directory => {}
                Ok(_) => continue,
                Err(err) if swapped(&err) => continue,
                Err(err) => return Err(FsError::io("inspect", dir)(err)),
            }
            self.dir
                .chmod(dir, mode & 0o7777)
                .map_err(FsError::io("set mode of", dir))?;
            set_times(&self.dir, dir, *mtime)?;
        }
        if self.stats.ownership_failures > 0 {
            tracing::warn!(
                count = self.stats.ownership_failures,
                "could not give some files their owner from the layer (no privilege to chown)"
            );
        }
        self.dirs.clear();
        Ok(self.stats)
    }
}

/// Makes room at `host` for a new entry: a directory kept when the new
/// entry is one too (returns true), anything else removed without
/// following it.
/// What [`clear_for`] found at a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cleared {
    Nothing,
    /// A directory, kept because the entry is one too.
    KeptDirectory,
    /// Something, removed.
    Removed,
}

fn clear_for(dir: &RootDir, host: &Path, keep_dir: bool) -> Result<Cleared, FsError> {
    match dir.lstat(host) {
        Ok(Some(meta))
            if FileType::from_raw_mode(meta.st_mode as RawMode) == FileType::Directory =>
        {
            if keep_dir {
                return Ok(Cleared::KeptDirectory);
            }
            dir.remove_tree(host).map_err(FsError::io("remove", host))?;
        }
        Ok(Some(_)) => dir.remove_file(host).map_err(FsError::io("remove", host))?,
        Ok(None) => return Ok(Cleared::Nothing),
        Err(err) if missing(&err) => return Ok(Cleared::Nothing),
        Err(err) => return Err(FsError::io("inspect", host)(err)),
    }
    Ok(Cleared::Removed)
}

fn set_times(dir: &RootDir, host: &Path, mtime: Timespec) -> Result<(), FsError> {
    let times = Timestamps {
        last_access: mtime,
        last_modification: mtime,
    };
    dir.set_times(host, &times)
        .map_err(FsError::io("set times of", host))
}

fn bad_entry(name: &str, why: &str) -> FsError {
    FsError::BadEntry {
        entry: name.to_string(),
        source: io::Error::new(io::ErrorKind::InvalidData, why.to_string()),
    }
}

fn read_meta<R: Read>(entry: &mut tar::Entry<'_, R>, name: &str) -> Result<EntryMeta, FsError> {
    let bad = |source| FsError::BadEntry {
        entry: name.to_string(),
        source,
    };
    let header = entry.header();
    let mut meta = EntryMeta {
        uid: clamp_id(header.uid().map_err(bad)?),
        gid: clamp_id(header.gid().map_err(bad)?),
        mode: header.mode().map_err(bad)?,
        mtime: Timespec {
            tv_sec: i64::try_from(header.mtime().map_err(bad)?).unwrap_or(i64::MAX),
            tv_nsec: 0,
        },
        xattrs: Vec::new(),
    };
    if let Some(extensions) = entry.pax_extensions().map_err(bad)? {
        for extension in extensions {
            let extension = extension.map_err(bad)?;
            apply_pax(&mut meta, extension.key_bytes(), extension.value_bytes());
        }
    }
    Ok(meta)
}

/// PAX records override the ustar fields (ids above 2^21, sub-second
/// times) and carry extended attributes as `SCHILY.xattr.<name>`.
fn apply_pax(meta: &mut EntryMeta, key: &[u8], value: &[u8]) {
    let text = std::str::from_utf8(value).unwrap_or("");
    match key {
        b"uid" => {
            if let Ok(uid) = text.parse::<u64>() {
                meta.uid = clamp_id(uid);
            }
        }
        b"gid" => {
            if let Ok(gid) = text.parse::<u64>() {
                meta.gid = clamp_id(gid);
            }
        }
        b"mtime" => {
            if let Some((sec, nsec)) = parse_pax_time(text) {
                meta.mtime = Timespec {
                    tv_sec: sec,
                    tv_nsec: nsec.into(),
                };
            }
        }
        _ => {
            if let Some(xattr) = key.strip_prefix(b"SCHILY.xattr.") {
                meta.xattrs.push((xattr.to_vec(), value.to_vec()));
            }
        }
    }
}

/// Ids that do not fit Linux's 32 bits fall back to root's, like a tar
/// extraction without the matching user would.
fn clamp_id(id: u64) -> u32 {
    u32::try_from(id).unwrap_or(0)
}

/// Parses a PAX time (`1700000000`, `1700000000.25`) into seconds and
/// nanoseconds; None when malformed. Negative times keep whole seconds.
pub fn parse_pax_time(text: &str) -> Option<(i64, u32)> {
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (text, ""),
    };
    let sec: i64 = whole.parse().ok()?;
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if sec < 0 || fraction.is_empty() {
        return Some((sec, 0));
    }
    let digits: String = fraction
        .chars()
        .chain(std::iter::repeat('0'))
        .take(9)
        .collect();
    Some((sec, digits.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes no two chunks of which are alike, over several chunks.
    fn noise(len: usize) -> Vec<u8> {
        let mut state = 0x2545_f491_u32;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state >> 24) as u8
            })
            .collect()
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn read_ahead_gives_the_stream_whole_in_any_read_size() {
        let data = noise(READ_AHEAD_CHUNK * 3 + 12345);
        let blob = gzip(&data);
        for read_size in [1, 4096, READ_AHEAD_CHUNK, READ_AHEAD_CHUNK * 2 + 1] {
            let blob = blob.clone();
            let mut ahead = ReadAhead::spawn(move || decompress(io::Cursor::new(blob)));
            let mut got = Vec::new();
            let mut buffer = vec![0; read_size];
            loop {
                let n = ahead.read(&mut buffer).unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buffer[..n]);
            }
            assert!(
                got == data,
                "read size {read_size}: {} of {} bytes",
                got.len(),
                data.len()
            );
            assert_eq!(ahead.read(&mut buffer).unwrap(), 0, "the end stays the end");
        }
    }

    #[test]
    fn read_ahead_reports_a_broken_stream() {
        let mut blob = gzip(&noise(READ_AHEAD_CHUNK * 2));
        let middle = blob.len() / 2;
        blob.truncate(middle);
        let mut ahead = ReadAhead::spawn(move || decompress(io::Cursor::new(blob)));
        let mut sink = Vec::new();
        assert!(
            ahead.read_to_end(&mut sink).is_err(),
            "a truncated gzip stream is an error"
        );

        let mut refused = ReadAhead::spawn(|| -> Result<io::Empty, FsError> {
            Err(FsError::Layer {
                source: io::Error::other("cannot open"),
            })
        });
        let error = refused.read(&mut [0; 8]).unwrap_err();
        assert!(error.to_string().contains("cannot open"), "{error}");
    }

    /// A reader dropped mid-stream (an unpack that failed on an entry)
    /// stops the thread instead of leaving it blocked on a full channel.
    #[test]
    fn dropping_read_ahead_early_ends_its_thread() {
        let blob = gzip(&noise(READ_AHEAD_CHUNK * (READ_AHEAD_CHUNKS + 8)));
        let mut ahead = ReadAhead::spawn(move || decompress(io::Cursor::new(blob)));
        let mut first = [0; 10];
        ahead.read_exact(&mut first).unwrap();
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            drop(ahead);
            let _ = done.send(());
        });
        finished
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("the drop joined the reading thread");
    }

    #[test]
    fn detect_compression_by_magic() {
        let cases: [(&[u8], Compression); 6] = [
            (&[0x1f, 0x8b, 0x08, 0x00], Compression::Gzip),
            (&[0x28, 0xb5, 0x2f, 0xfd, 0x00], Compression::Zstd),
            (&[0x28, 0xb5, 0x2f], Compression::None),
            (b"etc/\0\0\0", Compression::None),
            (&[0x1f], Compression::None),
            (&[], Compression::None),
        ];
        for (head, want) in cases {
            assert_eq!(detect_compression(head), want, "head {head:02x?}");
        }
    }

    #[test]
    fn parse_pax_times() {
        let cases = [
            ("1700000000", Some((1_700_000_000, 0))),
            ("1700000000.25", Some((1_700_000_000, 250_000_000))),
            (
                "1700000000.123456789123",
                Some((1_700_000_000, 123_456_789)),
            ),
            ("0.000000001", Some((0, 1))),
            ("-5.5", Some((-5, 0))),
            ("", None),
            ("12x", None),
            ("12.3x", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_pax_time(text), want, "text {text:?}");
        }
    }

    #[test]
    fn pax_records_override_header_fields() {
        let mut meta = EntryMeta {
            uid: 1,
            gid: 2,
            mode: 0o644,
            mtime: Timespec {
                tv_sec: 3,
                tv_nsec: 0,
            },
            xattrs: Vec::new(),
        };
        apply_pax(&mut meta, b"uid", b"3000000");
        apply_pax(&mut meta, b"gid", b"99999999999");
        apply_pax(&mut meta, b"mtime", b"10.5");
        apply_pax(&mut meta, b"SCHILY.xattr.security.capability", b"\x01\x00");
        apply_pax(&mut meta, b"path", b"ignored/here");
        assert_eq!((meta.uid, meta.gid), (3_000_000, 0));
        assert_eq!((meta.mtime.tv_sec, meta.mtime.tv_nsec), (10, 500_000_000));
        assert_eq!(
            meta.xattrs,
            vec![(b"security.capability".to_vec(), b"\x01\x00".to_vec())]
        );
    }
}
