//! The streaming walk: each layer's tar is read once, in order; package
//! files are parsed as they pass, and what a later layer deletes or
//! replaces takes the findings of earlier layers with it.
//!
//! Findings are kept per image path. Those of the layers below the one
//! being read are in `lower`; the current layer's go to `current` and join
//! `lower` when the layer ends. A layer's whiteouts and replacements only
//! ever remove from `lower`, so they never hide what the same layer brings,
//! in whatever order its entries come (the OCI changeset rule that
//! `fs::whiteout` follows for unpacking).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use tar::EntryType;
use tempfile::TempDir;

use super::binary::{self, ELF_MAGIC};
use super::error::{SbomError, ScanError, chain};
use super::os_release::{self, OsRelease};
use super::package::Package;
use super::paths::{self, PackageFile};
use super::{LayerFile, SbomStats, Skipped, apk, dpkg, node, python, rpm};
use crate::fs::FsError;
use crate::fs::in_root::clean_image_path;
use crate::fs::unpack::decompress;
use crate::fs::whiteout::{Whiteout, classify};

/// Size limits of the files read into memory. Real files are far smaller:
/// a full Debian status file is a few MiB, apk's database about as much.
const MAX_OS_RELEASE: u64 = 64 << 10;
const MAX_PACKAGE_DATABASE: u64 = 64 << 20;
const MAX_PACKAGE_JSON: u64 = 1 << 20;
/// Python metadata: only the headers are needed, and they come first.
const PYTHON_METADATA_PREFIX: u64 = 1 << 20;
/// Files copied to the scratch directory (disk, not memory).
const MAX_RPM_DATABASE: u64 = 1 << 30;
const MAX_EXECUTABLE: u64 = 2 << 30;
const COPY_BUFFER: usize = 256 << 10;

/// What the walk found in the whole image.
pub(crate) struct Scan {
    pub packages: Vec<Package>,
    pub os_release: Option<OsRelease>,
    pub skipped: Vec<Skipped>,
    pub stats: SbomStats,
}

/// What one file of the image contributed.
#[derive(Clone, Debug)]
struct Finding {
    layer: usize,
    packages: Vec<Package>,
    os_release: Option<(OsRelease, bool)>,
    problems: Vec<String>,
}

impl Finding {
    fn new(layer: usize) -> Finding {
        Finding {
            layer,
            packages: Vec::new(),
            os_release: None,
            problems: Vec::new(),
        }
    }

    fn problem(layer: usize, error: &ScanError) -> Finding {
        let mut finding = Finding::new(layer);
        finding.problems.push(chain(error));
        finding
    }

    fn is_empty(&self) -> bool {
        self.packages.is_empty() && self.os_release.is_none() && self.problems.is_empty()
    }

    /// The same finding for a hard link to the file it came from.
    fn relocated(&self, layer: usize, location: &str) -> Finding {
        let mut finding = self.clone();
        finding.layer = layer;
        for package in &mut finding.packages {
            package.location = location.to_string();
        }
        finding
    }
}

/// Findings by image path.
#[derive(Default)]
struct Findings(BTreeMap<String, Finding>);

impl Findings {
    /// Removes `path` and everything below it; `""` is the root.
    fn remove_tree(&mut self, path: &str) {
        if path.is_empty() {
            self.0.clear();
            return;
        }
        self.0.remove(path);
        self.remove_children(path);
    }

    /// Removes everything below the directory `dir`, not `dir` itself.
    fn remove_children(&mut self, dir: &str) {
        if dir.is_empty() {
            self.0.clear();
            return;
        }
        let prefix = format!("{dir}/");
        let below: Vec<String> = self
            .0
            .range(prefix.clone()..)
            .map(|(path, _)| path)
            .take_while(|path| path.starts_with(&prefix))
            .cloned()
            .collect();
        for path in below {
            self.0.remove(&path);
        }
    }
}

struct Walker {
    scratch: TempDir,
    /// One file reused for every executable copied.
    binary: Option<File>,
    lower: Findings,
    current: Findings,
    stats: SbomStats,
}

/// Reads every layer and returns what the final root filesystem holds.
pub(crate) fn scan_layers(layers: &[LayerFile], work_dir: &Path) -> Result<Scan, SbomError> {
    let scratch = tempfile::Builder::new()
        .prefix("kiln-sbom-")
        .tempdir_in(work_dir)
        .map_err(|source| SbomError::Scratch {
            dir: work_dir.to_path_buf(),
            source,
        })?;
    let mut walker = Walker {
        scratch,
        binary: None,
        lower: Findings::default(),
        current: Findings::default(),
        stats: SbomStats::default(),
    };
    for (index, layer) in layers.iter().enumerate() {
        walker.layer(index, layer)?;
        walker.stats.layers += 1;
    }
    Ok(walker.finish())
}

impl Walker {
    fn layer(&mut self, index: usize, layer: &LayerFile) -> Result<(), SbomError> {
        let read_error = |source: io::Error| SbomError::ReadLayer {
            index,
            path: layer.path.clone(),
            media_type: layer.media_type.clone(),
            source,
        };
        let file = File::open(&layer.path).map_err(|source| SbomError::OpenLayer {
            index,
            path: layer.path.clone(),
            media_type: layer.media_type.clone(),
            source,
        })?;
        let stream = decompress(BufReader::new(file)).map_err(|err| match err {
            FsError::Layer { source } => read_error(source),
            other => read_error(io::Error::other(other)),
        })?;
        let mut archive = tar::Archive::new(stream);
        for entry in archive.entries().map_err(read_error)? {
            let mut entry = entry.map_err(read_error)?;
            self.stats.entries += 1;
            self.entry(index, &mut entry).map_err(|err| match err {
                EntryError::Layer(source) => read_error(source),
                EntryError::Fatal(err) => err,
            })?;
        }
        let current = std::mem::take(&mut self.current);
        self.lower.0.extend(current.0);
        Ok(())
    }

    fn entry<R: Read>(
        &mut self,
        layer: usize,
        entry: &mut tar::Entry<'_, R>,
    ) -> Result<(), EntryError> {
        let raw = entry.path_bytes().into_owned();
        let clean = clean_image_path(Path::new(OsStr::from_bytes(&raw)));
        let Some(file_name) = clean.file_name().map(OsStr::to_os_string) else {
            // The root directory itself.
            return Ok(());
        };
        let path = clean.to_string_lossy().into_owned();
        let parent = clean
            .parent()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        match classify(&file_name) {
            Whiteout::Opaque => self.lower.remove_children(&parent),
            Whiteout::Remove(victim) => {
                let victim = Path::new(&parent).join(victim);
                self.lower.remove_tree(&victim.to_string_lossy());
            }
            Whiteout::Meta => {}
            Whiteout::None => self.item(layer, entry, &path)?,
        }
        Ok(())
    }

    /// An ordinary entry: it replaces whatever lower layers had at `path`.
    fn item<R: Read>(
        &mut self,
        layer: usize,
        entry: &mut tar::Entry<'_, R>,
        path: &str,
    ) -> Result<(), EntryError> {
        let kind = entry.header().entry_type();
        if kind == EntryType::XGlobalHeader {
            return Ok(());
        }
        if kind.is_dir() {
            // A directory merges with the one below; it only hides a lower
            // non-directory at the same path.
            self.lower.0.remove(path);
            return Ok(());
        }
        self.lower.remove_tree(path);
        self.current.0.remove(path);
        let package_file = paths::classify(path);
        let finding = match kind {
            EntryType::Regular | EntryType::Continuous => match package_file {
                Some(file) => {
                    self.stats.package_files += 1;
                    Some(self.package_file(layer, file, entry, path)?)
                }
                None if entry.header().mode().unwrap_or(0) & 0o111 != 0 => {
                    self.executable(layer, entry, path)?
                }
                None => None,
            },
            EntryType::Link => self.hardlink(layer, entry, path, package_file.is_some())?,
            _ => None,
        };
        if let Some(finding) = finding.filter(|f| !f.is_empty()) {
            self.current.0.insert(path.to_string(), finding);
        }
        Ok(())
    }

    /// A hard link has no content of its own: it gets what its target
    /// (earlier in this layer or in a lower one) gave.
    fn hardlink<R: Read>(
        &mut self,
        layer: usize,
        entry: &tar::Entry<'_, R>,
        path: &str,
        is_package_file: bool,
    ) -> Result<Option<Finding>, EntryError> {
        let target = match entry.link_name_bytes() {
            Some(name) => clean_image_path(Path::new(OsStr::from_bytes(&name)))
                .to_string_lossy()
                .into_owned(),
            None => String::new(),
        };
        let found = self
            .current
            .0
            .get(&target)
            .or_else(|| self.lower.0.get(&target));
        Ok(match found {
            Some(finding) => Some(finding.relocated(layer, path)),
            None if is_package_file => Some(Finding::problem(
                layer,
                &ScanError::DanglingHardlink {
                    target: super::display_path(&target),
                },
            )),
            None => None,
        })
    }

    fn package_file<R: Read>(
        &mut self,
        layer: usize,
        file: PackageFile,
        entry: &mut tar::Entry<'_, R>,
        path: &str,
    ) -> Result<Finding, EntryError> {
        let mut finding = Finding::new(layer);
        let result: Result<(), ScanError> = match file {
            PackageFile::OsRelease { preferred } => self
                .capture(entry, MAX_OS_RELEASE, "os-release file")?
                .map(|text| finding.os_release = Some((os_release::parse(&text), preferred))),
            PackageFile::DpkgStatus | PackageFile::DpkgStatusD => {
                let kind = if file == PackageFile::DpkgStatus {
                    dpkg::Kind::Status
                } else {
                    dpkg::Kind::StatusD
                };
                self.capture(entry, MAX_PACKAGE_DATABASE, "dpkg status file")?
                    .and_then(|text| Ok(dpkg::parse(&text, kind, path)?))
                    .map(|packages| finding.packages = packages)
            }
            PackageFile::ApkInstalled => self
                .capture(entry, MAX_PACKAGE_DATABASE, "apk database")?
                .and_then(|text| Ok(apk::parse(&text, path)?))
                .map(|packages| finding.packages = packages),
            PackageFile::RpmSqlite => self.rpm(entry, path, &mut finding)?,
            PackageFile::RpmOther => Err(ScanError::Unsupported(
                "rpm Berkeley DB and ndb databases (RHEL 8 and older, SUSE) are not read, only rpmdb.sqlite",
            )),
            PackageFile::PythonMetadata => {
                let text = self.prefix(entry, PYTHON_METADATA_PREFIX)?;
                python::parse(&text, path)
                    .map(|package| finding.packages.push(package))
                    .map_err(ScanError::from)
            }
            PackageFile::NodePackage => self
                .capture(entry, MAX_PACKAGE_JSON, "package.json")?
                .and_then(|text| node::parse(&text, path).map_err(ScanError::Node))
                .map(|package| finding.packages.extend(package)),
        };
        if let Err(error) = result {
            finding.problems.push(chain(&error));
        }
        Ok(finding)
    }

    /// The whole entry, when it is at most `limit` bytes.
    fn capture<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        limit: u64,
        what: &'static str,
    ) -> Result<Result<Vec<u8>, ScanError>, EntryError> {
        let size = entry.size();
        if size > limit {
            return Ok(Err(ScanError::TooLarge { what, size, limit }));
        }
        self.prefix(entry, limit).map(Ok)
    }

    /// The first `limit` bytes of the entry (the rest is skipped by the
    /// tar reader when the next entry is read).
    fn prefix<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        limit: u64,
    ) -> Result<Vec<u8>, EntryError> {
        let mut data = Vec::new();
        entry
            .take(limit)
            .read_to_end(&mut data)
            .map_err(EntryError::Layer)?;
        self.buffered(data.len() as u64);
        Ok(data)
    }

    fn buffered(&mut self, bytes: u64) {
        self.stats.peak_buffered_bytes = self.stats.peak_buffered_bytes.max(bytes);
    }

    fn rpm<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        path: &str,
        finding: &mut Finding,
    ) -> Result<Result<(), ScanError>, EntryError> {
        let size = entry.size();
        if size > MAX_RPM_DATABASE {
            return Ok(Err(ScanError::TooLarge {
                what: "rpm database",
                size,
                limit: MAX_RPM_DATABASE,
            }));
        }
        let copy = self.scratch.path().join("rpmdb.sqlite");
        let mut file = File::create(&copy).map_err(scratch_error(&copy))?;
        copy_entry(entry, &[], &mut file, &copy)?;
        drop(file);
        let result = rpm::read_sqlite(&copy, path);
        // Removed now rather than with the directory: it may be large.
        std::fs::remove_file(&copy).map_err(scratch_error(&copy))?;
        Ok(match result {
            Ok(found) => {
                self.buffered(found.largest_header);
                finding.packages = found.packages;
                finding.problems = found
                    .bad_headers
                    .into_iter()
                    .map(|e| chain(&ScanError::Rpm(e)))
                    .collect();
                Ok(())
            }
            Err(err) => Err(err.into()),
        })
    }

    /// An executable: when it is an ELF file, its Go and cargo auditable
    /// sections are read from a copy in the scratch directory.
    fn executable<R: Read>(
        &mut self,
        layer: usize,
        entry: &mut tar::Entry<'_, R>,
        path: &str,
    ) -> Result<Option<Finding>, EntryError> {
        let size = entry.size();
        let mut head = [0u8; 4];
        if size < head.len() as u64 {
            return Ok(None);
        }
        entry.read_exact(&mut head).map_err(EntryError::Layer)?;
        if head != ELF_MAGIC {
            return Ok(None);
        }
        if size > MAX_EXECUTABLE {
            return Ok(Some(Finding::problem(
                layer,
                &ScanError::TooLarge {
                    what: "executable",
                    size,
                    limit: MAX_EXECUTABLE,
                },
            )));
        }
        let copy = self.scratch.path().join("executable");
        let mut file = match self.binary.take() {
            Some(file) => file,
            None => File::options()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&copy)
                .map_err(scratch_error(&copy))?,
        };
        file.set_len(0).map_err(scratch_error(&copy))?;
        file.rewind().map_err(scratch_error(&copy))?;
        copy_entry(entry, &head, &mut file, &copy)?;
        self.stats.binaries += 1;
        let result = binary::scan_elf(&file, path);
        self.binary = Some(file);
        Ok(match result {
            Ok(found) => {
                self.buffered(found.buffered);
                let mut finding = Finding::new(layer);
                finding.packages = found.packages;
                finding.problems = found.problems.iter().map(|e| chain(e)).collect();
                Some(finding)
            }
            // Not an executable we can read (a core file, a test fixture,
            // a truncated binary): not a package file either.
            Err(_) => None,
        })
    }

    fn finish(self) -> Scan {
        let mut packages = Vec::new();
        let mut skipped = Vec::new();
        let mut os_release: Option<(OsRelease, bool)> = None;
        for (path, finding) in self.lower.0 {
            packages.extend(finding.packages);
            for reason in finding.problems {
                skipped.push(Skipped {
                    path: path.clone(),
                    layer: finding.layer,
                    reason,
                });
            }
            if let Some((release, preferred)) = finding.os_release
                && (preferred || os_release.is_none())
            {
                os_release = Some((release, preferred));
            }
        }
        Scan {
            packages,
            os_release: os_release.map(|(release, _)| release),
            skipped,
            stats: self.stats,
        }
    }
}

/// Why an entry stopped the walk: the layer stream failed (the blob is
/// corrupt), or something fatal of our own (the scratch directory).
enum EntryError {
    Layer(io::Error),
    Fatal(SbomError),
}

fn scratch_error(path: &Path) -> impl FnOnce(io::Error) -> EntryError {
    let path: PathBuf = path.to_path_buf();
    move |source| EntryError::Fatal(SbomError::ScratchWrite { path, source })
}

/// Copies the rest of `entry`, after the `head` already read from it, to
/// `file`, telling read failures (the layer) from write failures (ours).
fn copy_entry<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    head: &[u8],
    file: &mut File,
    path: &Path,
) -> Result<(), EntryError> {
    file.write_all(head).map_err(scratch_error(path))?;
    let mut buffer = vec![0u8; COPY_BUFFER];
    loop {
        let read = match entry.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(EntryError::Layer(err)),
        };
        file.write_all(&buffer[..read])
            .map_err(scratch_error(path))?;
    }
    Ok(())
}
