//! Layer blobs: a tar stream, compressed, written to disk in one pass while
//! both the compressed digest and the diffID (digest of the uncompressed
//! tar) are computed.
//!
//! Two ways in: [`LayerWriter`] appends entries in the caller's order, and
//! [`LayerPlan`] collects entry descriptions (never file contents), puts
//! them in a canonical order and streams them, so the same tree always
//! gives the same bytes.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use super::pgzip::ParallelGzip;
use tar::{EntryType, Header};
use tempfile::TempPath;

use super::digest::HashingWriter;
use super::media::{Compression, ManifestFormat, MediaError};
use crate::fs::root_dir::RootDir;

/// Whiteout prefix and opaque-directory marker of the OCI layer format.
pub const WHITEOUT_PREFIX: &str = ".wh.";
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// Default levels: each algorithm's own default (gzip 6, as `gzip`,
/// zlib and buildah; zstd 3), which `--help` promises for an unset
/// `--compression-level`. gzip 1 made layers 9-16 % larger than buildah's.
pub const DEFAULT_GZIP_LEVEL: i32 = 6;
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

// Limits of the ustar header fields; larger values go to PAX records.
const USTAR_NAME_MAX: usize = 100;
const USTAR_ID_LIMIT: u64 = 0o7777777 + 1;
const USTAR_NUM12_LIMIT: u64 = 0o77777777777 + 1;
const IO_BUFFER: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("cannot create a layer file in {dir}: {source}")]
    Create { dir: PathBuf, source: io::Error },
    #[error("cannot start {compression} compression at level {level}: {source}")]
    Compressor {
        compression: Compression,
        level: i32,
        source: io::Error,
    },
    #[error("invalid --compression-level {level} for {compression} (expected {min} to {max})")]
    Level {
        compression: Compression,
        level: i32,
        min: i32,
        max: i32,
    },
    #[error("cannot read {source_path} for layer entry {entry}: {source}")]
    ReadSource {
        entry: String,
        source_path: PathBuf,
        source: io::Error,
    },
    #[error(
        "{source_path} changed while it was added to the layer as {entry} (expected {expected} bytes, read {read}); make sure nothing writes to the build tree during a snapshot"
    )]
    SourceChanged {
        entry: String,
        source_path: PathBuf,
        expected: u64,
        read: u64,
    },
    #[error("cannot write layer entry {entry}: {source}")]
    Write { entry: String, source: io::Error },
    #[error("cannot finish layer file {path}: {source}")]
    Finish { path: PathBuf, source: io::Error },
    #[error("invalid layer entry path {0:?}: it must be relative, non-empty and without ..")]
    InvalidPath(PathBuf),
    #[error("path {0} appears twice in one layer")]
    Duplicate(String),
    #[error("invalid SOURCE_DATE_EPOCH {0:?} (expected seconds since 1970 as a whole number)")]
    SourceDateEpoch(String),
}

/// What happens to timestamps written into layers and the config.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Timestamps {
    /// As found on disk.
    #[default]
    Keep,
    /// `--reproducible`: every mtime is 0 (kaniko's behaviour).
    Zero,
    /// `SOURCE_DATE_EPOCH`: nothing is newer than this.
    ClampTo(u64),
}

impl Timestamps {
    /// From `--reproducible` and the raw `SOURCE_DATE_EPOCH` value (empty
    /// counts as unset, as in the reproducible-builds specification).
    pub fn from_options(
        reproducible: bool,
        source_date_epoch: Option<&str>,
    ) -> Result<Timestamps, LayerError> {
        let epoch = match source_date_epoch.map(str::trim) {
            None | Some("") => None,
            Some(v) => Some(
                v.parse::<u64>()
                    .map_err(|_| LayerError::SourceDateEpoch(v.to_string()))?,
            ),
        };
        Ok(match (reproducible, epoch) {
            (true, _) => Timestamps::Zero,
            (false, Some(epoch)) => Timestamps::ClampTo(epoch),
            (false, None) => Timestamps::Keep,
        })
    }

    pub fn mtime(self, mtime: u64) -> u64 {
        match self {
            Timestamps::Keep => mtime,
            Timestamps::Zero => 0,
            Timestamps::ClampTo(epoch) => mtime.min(epoch),
        }
    }

    /// The image's `created` time (seconds since 1970) for a build at `now`.
    pub fn created(self, now: u64) -> u64 {
        match self {
            Timestamps::Keep => now,
            Timestamps::Zero => 0,
            Timestamps::ClampTo(epoch) => epoch,
        }
    }
}

/// Metadata written for one entry. `mode` may carry setuid, setgid and
/// sticky bits; file-type bits are ignored (the entry kind decides).
/// Owner names are never written, only numeric ids.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct EntryMeta {
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Seconds since 1970.
    pub mtime: u64,
    /// Extended attributes (`security.capability`, `user.*`), by name so
    /// they are written in a stable order.
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

impl EntryMeta {
    pub fn new(mode: u32, uid: u64, gid: u64, mtime: u64) -> EntryMeta {
        EntryMeta {
            mode,
            uid,
            gid,
            mtime,
            xattrs: BTreeMap::new(),
        }
    }
}

/// A finished layer blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layer {
    /// The compressed blob on disk, in the directory given to the writer.
    pub path: PathBuf,
    /// `sha256:` of the compressed bytes.
    pub digest: String,
    /// Size of the compressed bytes.
    pub size: u64,
    /// `sha256:` of the uncompressed tar.
    pub diff_id: String,
    pub compression: Compression,
}

impl Layer {
    pub fn media_type(&self, format: ManifestFormat) -> Result<&'static str, MediaError> {
        format.layer_media_type(self.compression)
    }

    pub fn descriptor(
        &self,
        format: ManifestFormat,
    ) -> Result<super::descriptor::Descriptor, MediaError> {
        Ok(super::descriptor::Descriptor::new(
            self.media_type(format)?,
            &self.digest,
            self.size,
        ))
    }
}

enum Encoder {
    Gzip(ParallelGzip<HashingWriter<BufWriter<File>>>),
    Zstd(zstd::stream::write::Encoder<'static, HashingWriter<BufWriter<File>>>),
    /// Uncompressed: the blob digest is the diffID, no second hash needed.
    Plain(BufWriter<File>),
}

impl Write for Encoder {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Gzip(w) => w.write(buf),
            Encoder::Zstd(w) => w.write(buf),
            Encoder::Plain(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            // A flush would end the current block early, making the blob
            // depend on when it was called; everything is written at
            // finish.
            Encoder::Gzip(_) => Ok(()),
            Encoder::Zstd(w) => w.flush(),
            Encoder::Plain(w) => w.flush(),
        }
    }
}

/// Digest and size of the compressed bytes.
type CompressedSum = (String, u64);

impl Encoder {
    /// Ends the compressed stream; returns the file and, when compressed,
    /// the digest and size of the compressed bytes.
    fn finish(self) -> io::Result<(BufWriter<File>, Option<CompressedSum>)> {
        match self {
            Encoder::Gzip(w) => {
                let (file, digest, size) = w.finish()?.finish();
                Ok((file, Some((digest, size))))
            }
            Encoder::Zstd(w) => {
                let (file, digest, size) = w.finish()?.finish();
                Ok((file, Some((digest, size))))
            }
            Encoder::Plain(file) => Ok((file, None)),
        }
    }
}

fn check_level(compression: Compression, level: i32) -> Result<i32, LayerError> {
    let (min, max) = match compression {
        Compression::Gzip => (0, 9),
        Compression::Zstd => {
            let range = zstd::compression_level_range();
            (*range.start(), *range.end())
        }
        Compression::None => return Ok(0),
    };
    if (min..=max).contains(&level) {
        Ok(level)
    } else {
        Err(LayerError::Level {
            compression,
            level,
            min,
            max,
        })
    }
}

/// Streams tar entries into a compressed blob on disk.
pub struct LayerWriter {
    tar: tar::Builder<BufWriter<HashingWriter<Encoder>>>,
    temp: TempPath,
    compression: Compression,
    timestamps: Timestamps,
}

impl LayerWriter {
    /// Starts a layer file in `dir` (use the blob store's temporary
    /// directory so the finished blob can be renamed into place).
    /// `level` defaults to [`DEFAULT_GZIP_LEVEL`] / [`DEFAULT_ZSTD_LEVEL`].
    pub fn create(
        dir: &Path,
        compression: Compression,
        level: Option<i32>,
    ) -> Result<LayerWriter, LayerError> {
        let level = check_level(
            compression,
            level.unwrap_or(match compression {
                Compression::Zstd => DEFAULT_ZSTD_LEVEL,
                _ => DEFAULT_GZIP_LEVEL,
            }),
        )?;
        let create_err = |source| LayerError::Create {
            dir: dir.to_path_buf(),
            source,
        };
        let (file, temp) = tempfile::Builder::new()
            .prefix("layer-")
            .tempfile_in(dir)
            .map_err(create_err)?
            .into_parts();
        let file = BufWriter::with_capacity(IO_BUFFER, file);
        let compressor_err = |source| LayerError::Compressor {
            compression,
            level,
            source,
        };
        let encoder = match compression {
            // Fixed-size blocks compressed on every core (as pigz does):
            // the stream depends on the content and the level only, never
            // on the number of threads; no name and mtime 0 in its header.
            Compression::Gzip => Encoder::Gzip(ParallelGzip::new(
                HashingWriter::new(file),
                flate2::Compression::new(level.unsigned_abs()),
                gzip_workers(),
            )),
            Compression::Zstd => {
                let mut encoder =
                    zstd::stream::write::Encoder::new(HashingWriter::new(file), level)
                        .map_err(compressor_err)?;
                // zstd's output is the same for any number of workers >= 1
                // (but differs from 0), so the digest does not depend on
                // the machine's core count.
                encoder
                    .multithread(zstd_workers())
                    .map_err(compressor_err)?;
                // zstd's default job size (several MiB per worker, each
                // with its buffers) dominated kiln's peak memory; 1 MiB
                // jobs keep it small for a fraction of a percent of size.
                encoder
                    .set_parameter(zstd::stream::raw::CParameter::JobSize(ZSTD_JOB_SIZE))
                    .map_err(compressor_err)?;
                Encoder::Zstd(encoder)
            }
            Compression::None => Encoder::Plain(file),
        };
        let mut tar = tar::Builder::new(BufWriter::with_capacity(
            IO_BUFFER,
            HashingWriter::new(encoder),
        ));
        tar.mode(tar::HeaderMode::Deterministic);
        Ok(LayerWriter {
            tar,
            temp,
            compression,
            timestamps: Timestamps::Keep,
        })
    }

    /// Applies `timestamps` to every entry appended after this call.
    pub fn set_timestamps(&mut self, timestamps: Timestamps) {
        self.timestamps = timestamps;
    }

    /// A regular file whose content is streamed from `source` (opened
    /// with [`crate::fs::open_regular`]).
    pub fn append_file(
        &mut self,
        path: &Path,
        source: &Path,
        meta: &EntryMeta,
    ) -> Result<(), LayerError> {
        self.append_file_opened(path, source, meta, crate::fs::open_regular)
    }

    /// A regular file whose content is streamed from `source`, opened by
    /// `open`.
    pub fn append_file_opened(
        &mut self,
        path: &Path,
        source: &Path,
        meta: &EntryMeta,
        open: impl FnOnce(&Path) -> io::Result<File>,
    ) -> Result<(), LayerError> {
        let name = entry_name(path, false)?;
        let read_err = |source_err| LayerError::ReadSource {
            entry: lossy(&name),
            source_path: source.to_path_buf(),
            source: source_err,
        };
        let file = open(source).map_err(read_err)?;
        let size = file.metadata().map_err(read_err)?.len();
        let mut reader = CountingReader {
            inner: file.take(size),
            read: 0,
            error: None,
        };
        self.append_entry(&name, EntryType::Regular, None, size, meta, &mut reader)?;
        if let Some(err) = reader.error {
            return Err(read_err(err));
        }
        if reader.read != size {
            return Err(LayerError::SourceChanged {
                entry: lossy(&name),
                source_path: source.to_path_buf(),
                expected: size,
                read: reader.read,
            });
        }
        Ok(())
    }

    /// A regular file with the given content.
    pub fn append_bytes(
        &mut self,
        path: &Path,
        content: &[u8],
        meta: &EntryMeta,
    ) -> Result<(), LayerError> {
        let name = entry_name(path, false)?;
        self.append_entry(
            &name,
            EntryType::Regular,
            None,
            content.len() as u64,
            meta,
            &mut &content[..],
        )
    }

    pub fn append_dir(&mut self, path: &Path, meta: &EntryMeta) -> Result<(), LayerError> {
        let name = entry_name(path, true)?;
        self.append_entry(&name, EntryType::Directory, None, 0, meta, &mut io::empty())
    }

    pub fn append_symlink(
        &mut self,
        path: &Path,
        target: &Path,
        meta: &EntryMeta,
    ) -> Result<(), LayerError> {
        let name = entry_name(path, false)?;
        let target = target.as_os_str().as_bytes();
        self.append_entry(
            &name,
            EntryType::Symlink,
            Some(target),
            0,
            meta,
            &mut io::empty(),
        )
    }

    /// A hard link to `target`, an entry written earlier in this layer (or
    /// present in a lower one), given as a layer path.
    pub fn append_hardlink(
        &mut self,
        path: &Path,
        target: &Path,
        meta: &EntryMeta,
    ) -> Result<(), LayerError> {
        let name = entry_name(path, false)?;
        let target = entry_name(target, false)?;
        self.append_entry(
            &name,
            EntryType::Link,
            Some(&target),
            0,
            meta,
            &mut io::empty(),
        )
    }

    /// Marks `path` (from a lower layer) as deleted: `.wh.<name>`.
    pub fn append_whiteout(&mut self, path: &Path, meta: &EntryMeta) -> Result<(), LayerError> {
        let name = whiteout_name(path)?;
        self.append_entry(&name, EntryType::Regular, None, 0, meta, &mut io::empty())
    }

    /// Hides everything lower layers hold under directory `dir`.
    pub fn append_opaque(&mut self, dir: &Path, meta: &EntryMeta) -> Result<(), LayerError> {
        let name = entry_name(&dir.join(OPAQUE_MARKER), false)?;
        self.append_entry(&name, EntryType::Regular, None, 0, meta, &mut io::empty())
    }

    pub fn append_fifo(&mut self, path: &Path, meta: &EntryMeta) -> Result<(), LayerError> {
        let name = entry_name(path, false)?;
        self.append_entry(&name, EntryType::Fifo, None, 0, meta, &mut io::empty())
    }

    /// A character or block device node (`major`, `minor`).
    pub fn append_device(
        &mut self,
        path: &Path,
        device: Device,
        meta: &EntryMeta,
    ) -> Result<(), LayerError> {
        let name = entry_name(path, false)?;
        let mtime = self.timestamps.mtime(meta.mtime);
        let (header, pax) = build_header(&name, device.entry_type(), None, 0, meta, mtime);
        let mut header = header;
        let set = header
            .set_device_major(device.major)
            .and_then(|()| header.set_device_minor(device.minor));
        let write_err = |source| LayerError::Write {
            entry: lossy(&name),
            source,
        };
        set.map_err(write_err)?;
        header.set_cksum();
        self.append_header(&name, &header, &pax, &mut io::empty())
    }

    fn append_entry(
        &mut self,
        name: &[u8],
        kind: EntryType,
        link: Option<&[u8]>,
        size: u64,
        meta: &EntryMeta,
        data: &mut dyn Read,
    ) -> Result<(), LayerError> {
        let mtime = self.timestamps.mtime(meta.mtime);
        let (header, pax) = build_header(name, kind, link, size, meta, mtime);
        self.append_header(name, &header, &pax, data)
    }

    fn append_header(
        &mut self,
        name: &[u8],
        header: &Header,
        pax: &[(String, Vec<u8>)],
        data: &mut dyn Read,
    ) -> Result<(), LayerError> {
        let write_err = |source| LayerError::Write {
            entry: lossy(name),
            source,
        };
        if !pax.is_empty() {
            self.tar
                .append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
                .map_err(write_err)?;
        }
        self.tar.append(header, data).map_err(write_err)
    }

    /// Ends the tar stream and the compression, and keeps the file.
    pub fn finish(self) -> Result<Layer, LayerError> {
        let LayerWriter {
            tar,
            temp,
            compression,
            ..
        } = self;
        let finish_err = |source| LayerError::Finish {
            path: temp.to_path_buf(),
            source,
        };
        let tar_stream = tar.into_inner().map_err(finish_err)?;
        let hashing = tar_stream
            .into_inner()
            .map_err(|e| finish_err(e.into_error()))?;
        let (encoder, diff_id, tar_size) = hashing.finish();
        let (file, compressed) = encoder.finish().map_err(finish_err)?;
        let file = file.into_inner().map_err(|e| finish_err(e.into_error()))?;
        file.sync_all().map_err(finish_err)?;
        let (digest, size) = compressed.unwrap_or_else(|| (diff_id.clone(), tar_size));
        let path = temp.keep().map_err(|e| LayerError::Finish {
            path: e.path.to_path_buf(),
            source: e.error,
        })?;
        Ok(Layer {
            path,
            digest,
            size,
            diff_id,
            compression,
        })
    }
}

/// Bytes of input per zstd worker job.
const ZSTD_JOB_SIZE: u32 = 1 << 20;

/// Compressor threads of a gzip layer: one per core, up to 8 (the output
/// is the same for any count).
fn gzip_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get().min(8))
        .unwrap_or(1)
}

fn zstd_workers() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get().min(8) as u32)
        .unwrap_or(1)
}

/// Counts what the tar builder pulls from a file and keeps the read error,
/// because the builder reports it only as a write failure of the entry.
struct CountingReader<R> {
    inner: R,
    read: u64,
    error: Option<io::Error>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.read += n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                let kind = e.kind();
                self.error = Some(e);
                Err(io::Error::new(kind, "reading the source file failed"))
            }
        }
    }
}

fn lossy(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

/// The name an entry has in the tar: relative, `/`-separated, `.`
/// components dropped, directories with a trailing `/`.
fn entry_name(path: &Path, dir: bool) -> Result<Vec<u8>, LayerError> {
    let mut name = Vec::with_capacity(path.as_os_str().len() + 1);
    for component in path.components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(part) => {
                if !name.is_empty() {
                    name.push(b'/');
                }
                name.extend_from_slice(part.as_bytes());
            }
            Component::ParentDir | Component::Prefix(_) => {
                return Err(LayerError::InvalidPath(path.to_path_buf()));
            }
        }
    }
    if name.is_empty() {
        return Err(LayerError::InvalidPath(path.to_path_buf()));
    }
    if dir {
        name.push(b'/');
    }
    Ok(name)
}

fn whiteout_name(path: &Path) -> Result<Vec<u8>, LayerError> {
    let file_name = path
        .file_name()
        .ok_or_else(|| LayerError::InvalidPath(path.to_path_buf()))?;
    let mut marker = std::ffi::OsString::from(WHITEOUT_PREFIX);
    marker.push(file_name);
    let parent = path.parent().unwrap_or(Path::new(""));
    entry_name(&parent.join(marker), false)
}

/// A ustar header plus the PAX records for whatever does not fit in it.
/// Fields carried by PAX are zero in the header so readers without PAX
/// support see an obviously truncated entry rather than a wrong value.
fn build_header(
    name: &[u8],
    kind: EntryType,
    link: Option<&[u8]>,
    size: u64,
    meta: &EntryMeta,
    mtime: u64,
) -> (Header, Vec<(String, Vec<u8>)>) {
    let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
    let mut header = Header::new_ustar();
    header.set_entry_type(kind);
    header.set_mode(meta.mode & 0o7777);
    if matches!(kind, EntryType::Fifo | EntryType::Char | EntryType::Block) {
        // Readers parse the device fields of special files as numbers; an
        // empty field makes a FIFO entry unreadable. Zero cannot overflow;
        // a device node's numbers are set by its caller.
        let _ = header.set_device_major(0);
        let _ = header.set_device_minor(0);
    }

    let old = header.as_old_mut();
    if name.len() <= USTAR_NAME_MAX {
        old.name[..name.len()].copy_from_slice(name);
    } else {
        old.name.copy_from_slice(&name[..USTAR_NAME_MAX]);
        pax.push(("path".to_string(), name.to_vec()));
    }
    if let Some(link) = link {
        if link.len() <= USTAR_NAME_MAX {
            old.linkname[..link.len()].copy_from_slice(link);
        } else {
            old.linkname.copy_from_slice(&link[..USTAR_NAME_MAX]);
            pax.push(("linkpath".to_string(), link.to_vec()));
        }
    }
    let mut numeric = |key: &str, value: u64, limit: u64| -> u64 {
        if value < limit {
            value
        } else {
            pax.push((key.to_string(), value.to_string().into_bytes()));
            0
        }
    };
    let size = numeric("size", size, USTAR_NUM12_LIMIT);
    let uid = numeric("uid", meta.uid, USTAR_ID_LIMIT);
    let gid = numeric("gid", meta.gid, USTAR_ID_LIMIT);
    let mtime = numeric("mtime", mtime, USTAR_NUM12_LIMIT);
    header.set_size(size);
    header.set_uid(uid);
    header.set_gid(gid);
    header.set_mtime(mtime);
    for (key, value) in &meta.xattrs {
        pax.push((format!("SCHILY.xattr.{key}"), value.clone()));
    }
    header.set_cksum();
    (header, pax)
}

/// What an entry of a [`LayerPlan`] is. File contents stay on disk until
/// the plan is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file, read from `source` when written.
    File {
        source: PathBuf,
    },
    Dir,
    Symlink {
        target: PathBuf,
    },
    /// A hard link to another entry of the same plan (or of a lower
    /// layer), by layer path.
    Hardlink {
        target: PathBuf,
    },
    /// The entry's path was deleted.
    Whiteout,
    /// The entry's path is a directory whose lower contents are hidden.
    Opaque,
    Fifo,
    Device(Device),
}

/// A device node's type and numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Device {
    pub block: bool,
    pub major: u32,
    pub minor: u32,
}

impl Device {
    fn entry_type(self) -> EntryType {
        if self.block {
            EntryType::Block
        } else {
            EntryType::Char
        }
    }
}

/// One entry of a [`LayerPlan`], keyed by the name it gets in the tar.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedEntry {
    /// Tar name without the trailing `/` of directories; for whiteouts and
    /// opaque markers the marker file's name.
    name: Vec<u8>,
    kind: EntryKind,
    meta: EntryMeta,
}

/// The entries of one layer, as descriptions, written in a canonical
/// order: paths compared component by component (byte-wise within a
/// component), so parents precede their children and a directory's
/// children follow it together; an opaque marker comes first in its
/// directory so it hides only lower layers' files.
#[derive(Clone, Debug, Default)]
pub struct LayerPlan {
    entries: Vec<PlannedEntry>,
    /// The root filesystem every file source lies in, when there is one
    /// (a snapshot's): sources are then opened through its descriptor.
    sources_root: Option<Arc<RootDir>>,
}

impl LayerPlan {
    pub fn new() -> LayerPlan {
        LayerPlan::default()
    }

    /// A plan whose file sources all lie in `root`: each is opened
    /// relative to the root's descriptor, so a parent directory swapped
    /// for a link since the plan was made is refused, never followed.
    pub fn within(root: RootDir) -> LayerPlan {
        LayerPlan {
            entries: Vec::new(),
            sources_root: Some(Arc::new(root)),
        }
    }

    /// Each planned entry's name and permission bits, in plan order.
    #[cfg(test)]
    pub(crate) fn entry_modes(&self) -> Vec<(String, u32)> {
        self.entries
            .iter()
            .map(|e| (String::from_utf8_lossy(&e.name).into_owned(), e.meta.mode))
            .collect()
    }

    /// Each planned entry's name and extended attributes, in plan order.
    #[cfg(test)]
    pub(crate) fn entry_xattrs(&self) -> Vec<(String, BTreeMap<String, Vec<u8>>)> {
        self.entries
            .iter()
            .map(|e| {
                (
                    String::from_utf8_lossy(&e.name).into_owned(),
                    e.meta.xattrs.clone(),
                )
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds an entry. For `Whiteout` and `Opaque`, `path` is the deleted
    /// path or the opaque directory; the marker name is derived here.
    pub fn push(
        &mut self,
        path: &Path,
        kind: EntryKind,
        meta: EntryMeta,
    ) -> Result<(), LayerError> {
        let name = match kind {
            EntryKind::Whiteout => whiteout_name(path)?,
            EntryKind::Opaque => entry_name(&path.join(OPAQUE_MARKER), false)?,
            _ => entry_name(path, false)?,
        };
        self.entries.push(PlannedEntry { name, kind, meta });
        Ok(())
    }

    /// Removes the entry named `path`, and with `with_children` every entry
    /// below it: what a later entry at the same path replaces (COPY's
    /// sources that land on one destination, the last one winning).
    pub fn remove(&mut self, path: &Path, with_children: bool) -> Result<(), LayerError> {
        let name = entry_name(path, false)?;
        self.entries.retain(|entry| {
            let below = with_children
                && entry.name.len() > name.len()
                && entry.name.starts_with(&name)
                && entry.name[name.len()] == b'/';
            entry.name != name && !below
        });
        Ok(())
    }

    /// Sorts, checks for duplicates, and makes every hard link point at an
    /// entry written before it: when a link sorts before the file it
    /// names, the link becomes the file and the file a link to it.
    fn into_ordered(mut self) -> Result<Vec<PlannedEntry>, LayerError> {
        // In place: a stable sort's scratch buffer was a large part of the
        // memory of a 100,000-file layer, and names are unique anyway
        // (duplicates are refused just below).
        self.entries
            .sort_unstable_by(|a, b| compare_names(&a.name, &b.name));
        if let Some(dup) = self
            .entries
            .windows(2)
            .find(|pair| pair[0].name == pair[1].name)
        {
            return Err(LayerError::Duplicate(lossy(&dup[0].name)));
        }
        let mut link_targets: HashMap<Vec<u8>, Option<usize>> = HashMap::new();
        for entry in &self.entries {
            if let EntryKind::Hardlink { target } = &entry.kind {
                link_targets.insert(entry_name(target, false)?, None);
            }
        }
        if link_targets.is_empty() {
            return Ok(self.entries);
        }
        let index: HashMap<Vec<u8>, usize> = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| {
                matches!(e.kind, EntryKind::File { .. }) && link_targets.contains_key(&e.name)
            })
            .map(|(i, e)| (e.name.clone(), i))
            .collect();
        // The name each hard-link group is first written under.
        let mut written_as: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
        for i in 0..self.entries.len() {
            let group = match &self.entries[i].kind {
                EntryKind::File { .. } if index.contains_key(&self.entries[i].name) => {
                    self.entries[i].name.clone()
                }
                EntryKind::Hardlink { target } => {
                    let target = entry_name(target, false)?;
                    if !index.contains_key(&target) {
                        // The target is in a lower layer: nothing to reorder.
                        continue;
                    }
                    target
                }
                _ => continue,
            };
            match written_as.get(&group) {
                Some(first) => {
                    self.entries[i].kind = EntryKind::Hardlink {
                        target: PathBuf::from(std::ffi::OsStr::from_bytes(first)),
                    };
                }
                None => {
                    let file = &self.entries[index[&group]];
                    let (kind, meta) = (file.kind.clone(), file.meta.clone());
                    self.entries[i].kind = kind;
                    self.entries[i].meta = meta;
                    written_as.insert(group, self.entries[i].name.clone());
                }
            }
        }
        Ok(self.entries)
    }

    /// Streams the plan into `writer` in canonical order.
    pub fn write_into(self, writer: &mut LayerWriter) -> Result<(), LayerError> {
        let sources_root = self.sources_root.clone();
        for entry in self.into_ordered()? {
            let path = Path::new(std::ffi::OsStr::from_bytes(&entry.name));
            match &entry.kind {
                EntryKind::File { source } => match &sources_root {
                    Some(root) => {
                        writer.append_file_opened(path, source, &entry.meta, |source| {
                            root.open_regular(source)
                        })?
                    }
                    None => writer.append_file(path, source, &entry.meta)?,
                },
                EntryKind::Dir => writer.append_dir(path, &entry.meta)?,
                EntryKind::Symlink { target } => {
                    writer.append_symlink(path, target, &entry.meta)?
                }
                EntryKind::Hardlink { target } => {
                    writer.append_hardlink(path, target, &entry.meta)?
                }
                // The name already is the marker.
                EntryKind::Whiteout | EntryKind::Opaque => {
                    let name = entry_name(path, false)?;
                    writer.append_entry(
                        &name,
                        EntryType::Regular,
                        None,
                        0,
                        &entry.meta,
                        &mut io::empty(),
                    )?
                }
                EntryKind::Fifo => writer.append_fifo(path, &entry.meta)?,
                EntryKind::Device(device) => writer.append_device(path, *device, &entry.meta)?,
            }
        }
        Ok(())
    }

    /// Writes the plan as a new layer file in `dir`.
    pub fn write_layer(
        self,
        dir: &Path,
        compression: Compression,
        level: Option<i32>,
        timestamps: Timestamps,
    ) -> Result<Layer, LayerError> {
        let mut writer = LayerWriter::create(dir, compression, level)?;
        writer.set_timestamps(timestamps);
        self.write_into(&mut writer)?;
        writer.finish()
    }
}

/// Component-wise byte order, with the opaque marker before its siblings.
fn compare_names<'a>(a: &'a [u8], b: &'a [u8]) -> Ordering {
    let key = |part: &'a [u8]| (part != OPAQUE_MARKER.as_bytes(), part);
    let mut left = a.split(|&c| c == b'/');
    let mut right = b.split(|&c| c == b'/');
    loop {
        match (left.next(), right.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x == y => {}
            (Some(x), Some(y)) => return key(x).cmp(&key(y)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_from_options() {
        let cases: Vec<(bool, Option<&str>, Timestamps)> = vec![
            (false, None, Timestamps::Keep),
            (false, Some(""), Timestamps::Keep),
            (true, None, Timestamps::Zero),
            (true, Some("1700000000"), Timestamps::Zero),
            (
                false,
                Some("1700000000"),
                Timestamps::ClampTo(1_700_000_000),
            ),
        ];
        for (reproducible, epoch, want) in cases {
            assert_eq!(
                Timestamps::from_options(reproducible, epoch).unwrap(),
                want,
                "{reproducible} {epoch:?}"
            );
        }
        assert_eq!(
            Timestamps::from_options(false, Some("yesterday"))
                .unwrap_err()
                .to_string(),
            "invalid SOURCE_DATE_EPOCH \"yesterday\" (expected seconds since 1970 as a whole number)"
        );
    }

    #[test]
    fn timestamps_apply_to_mtime_and_created() {
        let cases = [
            (Timestamps::Keep, 500, 500, 900),
            (Timestamps::Zero, 500, 0, 0),
            (Timestamps::ClampTo(100), 500, 100, 100),
            (Timestamps::ClampTo(1000), 500, 500, 1000),
        ];
        for (policy, mtime, want_mtime, want_created) in cases {
            assert_eq!(policy.mtime(mtime), want_mtime, "{policy:?}");
            assert_eq!(policy.created(900), want_created, "{policy:?}");
        }
    }

    #[test]
    fn entry_names() {
        let cases: Vec<(&str, bool, Option<&str>)> = vec![
            ("etc/passwd", false, Some("etc/passwd")),
            ("/etc/passwd", false, Some("etc/passwd")),
            ("./etc//x/.", false, Some("etc/x")),
            ("usr/lib", true, Some("usr/lib/")),
            ("", false, None),
            ("/", true, None),
            ("a/../b", false, None),
        ];
        for (path, dir, want) in cases {
            let got = entry_name(Path::new(path), dir).ok();
            assert_eq!(got.as_deref(), want.map(str::as_bytes), "{path}");
        }
        assert_eq!(whiteout_name(Path::new("/a/b/c")).unwrap(), b"a/b/.wh.c");
        assert_eq!(whiteout_name(Path::new("top")).unwrap(), b".wh.top");
    }

    #[test]
    fn canonical_order_is_component_wise_with_opaque_first() {
        let mut names: Vec<&str> = vec![
            "a/b",
            "a-b",
            "a",
            "a/.wh..wh..opq",
            "a/.a",
            "b",
            "a/b/c",
            "A",
            "a/+",
        ];
        names.sort_by(|x, y| compare_names(x.as_bytes(), y.as_bytes()));
        assert_eq!(
            names,
            [
                "A",
                "a",
                "a/.wh..wh..opq",
                "a/+",
                "a/.a",
                "a/b",
                "a/b/c",
                "a-b",
                "b"
            ]
        );
    }

    #[test]
    fn a_source_swapped_for_a_link_or_fifo_is_refused_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("host-secret");
        std::fs::write(&secret, "host secret\n").unwrap();
        let link = dir.path().join("was-a-file");
        std::os::unix::fs::symlink(&secret, &link).unwrap();
        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let mut writer = LayerWriter::create(dir.path(), Compression::None, None).unwrap();
        let meta = EntryMeta::new(0o644, 0, 0, 0);
        for source in [&link, &fifo] {
            let err = writer
                .append_file(Path::new("etc/app.conf"), source, &meta)
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("cannot read "), "{err}");
        }
        let layer = std::fs::read(writer.finish().unwrap().path).unwrap();
        assert!(
            !layer.windows(11).any(|w| w == b"host secret"),
            "the link was followed into the layer"
        );
    }

    #[test]
    fn a_plan_within_a_root_reads_no_file_through_a_parent_swapped_for_a_link() {
        // The plan of a snapshot names root/d/f; before the layer is
        // written, d becomes a link to a directory outside holding an f.
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(root.join("d")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(root.join("d/f"), "inside").unwrap();
        std::fs::write(outside.join("f"), "host secret").unwrap();
        let meta = EntryMeta::new(0o644, 0, 0, 0);
        let mut within = LayerPlan::within(RootDir::open(&root).unwrap());
        let source = root.join("d/f");
        within
            .push(Path::new("d/f"), EntryKind::File { source }, meta)
            .unwrap();
        std::fs::rename(root.join("d"), root.join("d.moved")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("d")).unwrap();
        let err = within
            .write_layer(dir.path(), Compression::None, None, Timestamps::Keep)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("cannot read "), "{err}");
    }

    #[test]
    fn long_names_and_large_ids_go_to_pax() {
        let long = "d/".repeat(60) + "file";
        let meta = EntryMeta {
            xattrs: BTreeMap::from([("security.capability".to_string(), vec![1, 0, 0, 2])]),
            ..EntryMeta::new(0o4755, 3_000_000, 7, 1_000)
        };
        let (header, pax) = build_header(long.as_bytes(), EntryType::Regular, None, 5, &meta, 9);
        assert_eq!(
            pax,
            vec![
                ("path".to_string(), long.as_bytes().to_vec()),
                ("uid".to_string(), b"3000000".to_vec()),
                (
                    "SCHILY.xattr.security.capability".to_string(),
                    vec![1, 0, 0, 2]
                ),
            ]
        );
        assert_eq!(header.mode().unwrap(), 0o4755);
        assert_eq!(header.uid().unwrap(), 0);
        assert_eq!(header.gid().unwrap(), 7);
        assert_eq!(header.mtime().unwrap(), 9);
        assert_eq!(header.size().unwrap(), 5);
        assert_eq!(header.username_bytes(), Some(&b""[..]));
    }

    /// The blob a layer of `content` gets at `level`.
    fn blob_at(compression: Compression, level: Option<i32>, content: &[u8]) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = LayerWriter::create(dir.path(), compression, level).unwrap();
        writer
            .append_bytes(
                Path::new("data.txt"),
                content,
                &EntryMeta::new(0o644, 0, 0, 0),
            )
            .unwrap();
        std::fs::read(writer.finish().unwrap().path).unwrap()
    }

    #[test]
    fn unset_level_is_the_algorithms_default() {
        // Text that compresses differently at levels 1 and 6.
        let content: Vec<u8> = (0..20_000u32)
            .flat_map(|i| format!("line {} of {}\n", i % 97, i % 13).into_bytes())
            .collect();
        let table = [(Compression::Gzip, 6, 1), (Compression::Zstd, 3, 1)];
        for (compression, default, other) in table {
            let unset = blob_at(compression, None, &content);
            assert_eq!(
                unset,
                blob_at(compression, Some(default), &content),
                "{compression:?}"
            );
            assert_ne!(
                unset,
                blob_at(compression, Some(other), &content),
                "{compression:?}"
            );
        }
    }

    #[test]
    fn compression_levels_are_checked() {
        assert!(check_level(Compression::Gzip, 9).is_ok());
        assert_eq!(
            check_level(Compression::Gzip, 10).unwrap_err().to_string(),
            "invalid --compression-level 10 for gzip (expected 0 to 9)"
        );
        assert!(check_level(Compression::Zstd, 19).is_ok());
        assert!(check_level(Compression::Zstd, 99).is_err());
        assert!(check_level(Compression::None, 99).is_ok());
    }

    #[test]
    fn hardlink_sorting_before_its_target_swaps_roles() {
        let mut plan = LayerPlan::new();
        let meta = EntryMeta::new(0o644, 0, 0, 1);
        plan.push(
            Path::new("z/file"),
            EntryKind::File {
                source: PathBuf::from("/src/file"),
            },
            meta.clone(),
        )
        .unwrap();
        plan.push(
            Path::new("a/link"),
            EntryKind::Hardlink {
                target: PathBuf::from("z/file"),
            },
            EntryMeta::default(),
        )
        .unwrap();
        plan.push(
            Path::new("m/link2"),
            EntryKind::Hardlink {
                target: PathBuf::from("/z/file"),
            },
            EntryMeta::default(),
        )
        .unwrap();
        let ordered = plan.into_ordered().unwrap();
        let got: Vec<(&[u8], &EntryKind)> = ordered
            .iter()
            .map(|e| (e.name.as_slice(), &e.kind))
            .collect();
        let file = EntryKind::File {
            source: PathBuf::from("/src/file"),
        };
        let link = EntryKind::Hardlink {
            target: PathBuf::from("a/link"),
        };
        assert_eq!(
            got,
            vec![
                (&b"a/link"[..], &file),
                (&b"m/link2"[..], &link),
                (&b"z/file"[..], &link),
            ]
        );
        assert_eq!(ordered[0].meta, meta);
    }

    #[test]
    fn duplicate_paths_are_refused() {
        let mut plan = LayerPlan::new();
        plan.push(Path::new("a/b"), EntryKind::Dir, EntryMeta::default())
            .unwrap();
        plan.push(Path::new("/a/b/"), EntryKind::Fifo, EntryMeta::default())
            .unwrap();
        assert_eq!(
            plan.into_ordered().unwrap_err().to_string(),
            "path a/b appears twice in one layer"
        );
    }

    #[test]
    fn zstd_output_does_not_depend_on_worker_count() {
        let data: Vec<u8> = (0..3_000_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let compress = |workers: u32| {
            let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
            enc.multithread(workers).unwrap();
            enc.write_all(&data).unwrap();
            enc.finish().unwrap()
        };
        let one = compress(1);
        assert_eq!(one, compress(2));
        assert_eq!(one, compress(4));
    }
}
