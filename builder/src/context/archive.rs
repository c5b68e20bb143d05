//! Unpacking a context tarball (`tar://`, an https download, or an
//! `oci://` context's layer blob) into a directory.
//!
//! The archive is untrusted: an entry may never create or modify anything
//! outside the destination. Names that are absolute or contain `..` are
//! refused outright (not "sanitised", so a crafted archive fails loudly),
//! no entry is written through a symlink created by an earlier entry, and
//! hard links must point at a file inside the destination.
//!
//! When kiln runs as root, entries keep the archive's owners: ADD of a
//! local archive gives its files the owners they have in the archive, as
//! Docker and buildah do. (Context files are copied as root's whatever
//! their owner, so contexts are not affected.) Without root they stay the
//! builder's.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use flate2::read::MultiGzDecoder;
use tar::EntryType;

use super::ContextError;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Unpacks a plain or gzip-compressed tar stream into `dest`, which must
/// exist. The format is detected from the first bytes, not from a name.
pub fn unpack_context_archive(reader: impl Read, dest: &Path) -> Result<(), ContextError> {
    let mut buffered = BufReader::new(reader);
    let head = buffered
        .fill_buf()
        .map_err(|source| ContextError::Archive { source })?;
    if head.starts_with(&GZIP_MAGIC) {
        unpack_tar(MultiGzDecoder::new(buffered), dest)
    } else {
        unpack_tar(buffered, dest)
    }
}

/// A directory whose mode and mtime are applied once everything inside it
/// is written: a read-only directory would otherwise refuse its children.
struct PendingDir {
    path: PathBuf,
    mode: u32,
    mtime: Option<u64>,
    owner: Option<(u32, u32)>,
}

fn unpack_tar(reader: impl Read, dest: &Path) -> Result<(), ContextError> {
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(false);
    archive.set_overwrite(true);
    let keep_owners = rustix::process::geteuid().is_root();
    let mut dirs = Vec::new();
    let entries = archive
        .entries()
        .map_err(|source| ContextError::Archive { source })?;
    for entry in entries {
        let mut entry = entry.map_err(|source| ContextError::Archive { source })?;
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let kind = entry.header().entry_type();
        let is_dir = kind.is_dir() || (kind.is_file() && raw.ends_with(b"/"));
        let Some(rel) = safe_relative(&entry_path(&raw), &name)? else {
            // The archive's own root (`./`): nothing to create.
            continue;
        };
        let target = dest.join(&rel);
        prepare_parents(dest, &rel, &name)?;
        let owner = keep_owners.then(|| owner_of(entry.header())).flatten();
        if is_dir {
            make_dir(&target)?;
            dirs.push(PendingDir {
                path: target,
                mode: entry.header().mode().unwrap_or(0o755),
                mtime: entry.header().mtime().ok(),
                owner,
            });
            continue;
        }
        match kind {
            EntryType::Regular
            | EntryType::Continuous
            | EntryType::GNUSparse
            | EntryType::Symlink => {
                remove_non_dir(&target)?;
                entry
                    .unpack(&target)
                    .map_err(|e| ContextError::io("unpacking", target.clone(), e))?;
                if let Some(owner) = owner {
                    let mode = (kind != EntryType::Symlink)
                        .then(|| entry.header().mode().ok())
                        .flatten();
                    set_owner(&target, owner, mode)?;
                }
            }
            EntryType::Link => {
                let link_raw = entry
                    .link_name_bytes()
                    .map(|b| b.into_owned())
                    .unwrap_or_default();
                let link_name = String::from_utf8_lossy(&link_raw).into_owned();
                let Some(link_rel) = safe_relative(&entry_path(&link_raw), &name)? else {
                    return Err(unsafe_entry(&name, "hard link to the archive root"));
                };
                let source = dest.join(&link_rel);
                check_parents(dest, &link_rel, &name)?;
                match fs::symlink_metadata(&source) {
                    Ok(meta) if !meta.is_dir() => {}
                    _ => {
                        return Err(ContextError::UnsafeArchiveEntry {
                            entry: format!("{name} -> {link_name}"),
                            reason: "hard link target is not a file unpacked earlier",
                        });
                    }
                }
                remove_non_dir(&target)?;
                fs::hard_link(&source, &target)
                    .map_err(|e| ContextError::io("hard linking", target.clone(), e))?;
            }
            // Device nodes need privileges a context never grants, and
            // pax/GNU metadata entries are consumed by the tar reader.
            _ => {}
        }
    }
    // Children before parents, so a read-only parent is sealed last.
    for dir in dirs.iter().rev() {
        if let Some(owner) = dir.owner {
            set_owner(&dir.path, owner, None)?;
        }
        fs::set_permissions(&dir.path, fs::Permissions::from_mode(dir.mode & 0o7777))
            .map_err(|e| ContextError::io("setting permissions of", dir.path.clone(), e))?;
        if let Some(secs) = dir.mtime {
            let time = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
            // Best effort, as for tar itself: an unsettable time does not
            // make the context unusable.
            if let Ok(handle) = fs::File::open(&dir.path) {
                let _ = handle.set_times(fs::FileTimes::new().set_modified(time));
            }
        }
    }
    Ok(())
}

/// The entry's uid and gid, when the header holds valid ones.
fn owner_of(header: &tar::Header) -> Option<(u32, u32)> {
    let uid = u32::try_from(header.uid().ok()?).ok()?;
    let gid = u32::try_from(header.gid().ok()?).ok()?;
    Some((uid, gid))
}

/// Gives `path` (not following a symlink) the archive's owner. Changing the
/// owner clears set-user-ID and set-group-ID bits, so a file's `mode` is
/// applied again afterwards.
fn set_owner(path: &Path, (uid, gid): (u32, u32), mode: Option<u32>) -> Result<(), ContextError> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .map_err(|e| ContextError::io("changing the owner of", path.to_path_buf(), e))?;
    if let Some(mode) = mode {
        fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o7777))
            .map_err(|e| ContextError::io("setting permissions of", path.to_path_buf(), e))?;
    }
    Ok(())
}

fn entry_path(raw: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    PathBuf::from(std::ffi::OsStr::from_bytes(raw))
}

fn unsafe_entry(name: &str, reason: &'static str) -> ContextError {
    ContextError::UnsafeArchiveEntry {
        entry: name.to_string(),
        reason,
    }
}

/// The entry's path as plain relative components; `None` for the root.
fn safe_relative(path: &Path, name: &str) -> Result<Option<PathBuf>, ContextError> {
    let mut rel = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => rel.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err(unsafe_entry(name, "path contains `..`")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(unsafe_entry(name, "absolute path"));
            }
        }
    }
    Ok((!rel.as_os_str().is_empty()).then_some(rel))
}

/// Creates the missing parents of `rel` as real directories, refusing to
/// go through a symlink or a file.
fn prepare_parents(dest: &Path, rel: &Path, name: &str) -> Result<(), ContextError> {
    walk_parents(dest, rel, name, true)
}

/// Like [`prepare_parents`] but for a path that must already exist.
fn check_parents(dest: &Path, rel: &Path, name: &str) -> Result<(), ContextError> {
    walk_parents(dest, rel, name, false)
}

fn walk_parents(dest: &Path, rel: &Path, name: &str, create: bool) -> Result<(), ContextError> {
    let Some(parent) = rel.parent() else {
        return Ok(());
    };
    let mut current = dest.to_path_buf();
    for component in parent.components() {
        current.push(component);
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.is_dir() => {}
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(unsafe_entry(name, "a parent directory is a symlink"));
            }
            Ok(_) => return Err(unsafe_entry(name, "a parent directory is not a directory")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                fs::create_dir(&current)
                    .map_err(|e| ContextError::io("creating directory", current.clone(), e))?;
            }
            Err(e) => return Err(ContextError::io("inspecting", current.clone(), e)),
        }
    }
    Ok(())
}

fn make_dir(target: &Path) -> Result<(), ContextError> {
    match fs::symlink_metadata(target) {
        Ok(meta) if meta.is_dir() => return Ok(()),
        Ok(_) => remove_non_dir(target)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(ContextError::io("inspecting", target.to_path_buf(), e)),
    }
    fs::create_dir(target)
        .map_err(|e| ContextError::io("creating directory", target.to_path_buf(), e))?;
    // Owner access while children are written; the archive's mode comes last.
    fs::set_permissions(target, fs::Permissions::from_mode(0o700))
        .map_err(|e| ContextError::io("setting permissions of", target.to_path_buf(), e))?;
    Ok(())
}

/// Removes a file or symlink about to be replaced, so that writing the new
/// entry can never follow an old symlink.
fn remove_non_dir(target: &Path) -> Result<(), ContextError> {
    match fs::symlink_metadata(target) {
        Ok(meta) if !meta.is_dir() => fs::remove_file(target)
            .map_err(|e| ContextError::io("replacing", target.to_path_buf(), e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a tar in memory; each entry is (name, kind, link target or
    /// content). Names are written raw, bypassing the `tar` crate's own
    /// checks, so hostile archives can be expressed.
    fn craft(entries: &[(&str, EntryType, &str)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for &(name, kind, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(kind);
            header.set_mode(if kind == EntryType::Directory {
                0o755
            } else {
                0o644
            });
            header.set_mtime(1_700_000_000);
            let name_field = &mut header.as_old_mut().name;
            name_field.fill(0);
            name_field[..name.len()].copy_from_slice(name.as_bytes());
            let body: &[u8] = match kind {
                EntryType::Symlink | EntryType::Link => {
                    let link = &mut header.as_old_mut().linkname;
                    link[..data.len()].copy_from_slice(data.as_bytes());
                    b""
                }
                _ => data.as_bytes(),
            };
            header.set_size(body.len() as u64);
            header.set_cksum();
            builder
                .append(&header, body)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        builder.into_inner().unwrap_or_else(|e| panic!("{e}"))
    }

    fn unpack(bytes: &[u8]) -> (tempfile::TempDir, Result<(), ContextError>) {
        let base = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let dest = base.path().join("dest");
        fs::create_dir(&dest).unwrap_or_else(|e| panic!("{e}"));
        let result = unpack_context_archive(bytes, &dest);
        (base, result)
    }

    #[test]
    fn hostile_entries_are_refused() {
        use EntryType::{Link, Regular, Symlink};
        type Case<'a> = (&'a [(&'a str, EntryType, &'a str)], &'a str);
        let cases: &[Case] = &[
            (
                &[("/etc/evil", Regular, "x")],
                "unsafe entry \"/etc/evil\" in context archive: absolute path",
            ),
            (
                &[("../evil", Regular, "x")],
                "unsafe entry \"../evil\" in context archive: path contains `..`",
            ),
            (
                &[("a/../../evil", Regular, "x")],
                "unsafe entry \"a/../../evil\" in context archive: path contains `..`",
            ),
            (
                &[("link", Symlink, ".."), ("link/evil", Regular, "x")],
                "unsafe entry \"link/evil\" in context archive: a parent directory is a symlink",
            ),
            (
                &[("link", Symlink, "/tmp"), ("link/evil", Regular, "x")],
                "unsafe entry \"link/evil\" in context archive: a parent directory is a symlink",
            ),
            (
                &[("hard", Link, "../outside")],
                "unsafe entry \"hard\" in context archive: path contains `..`",
            ),
            (
                &[("hard", Link, "/etc/passwd")],
                "unsafe entry \"hard\" in context archive: absolute path",
            ),
            (
                &[("link", Symlink, ".."), ("hard", Link, "link/outside")],
                "unsafe entry \"hard\" in context archive: a parent directory is a symlink",
            ),
            (
                &[("hard", Link, "missing")],
                "unsafe entry \"hard -> missing\" in context archive: hard link target is not a file unpacked earlier",
            ),
            (
                &[("file", Regular, "x"), ("file/child", Regular, "y")],
                "unsafe entry \"file/child\" in context archive: a parent directory is not a directory",
            ),
        ];
        for (entries, expected) in cases {
            let (base, result) = unpack(&craft(entries));
            let got = result.err().map(|e| e.to_string());
            assert_eq!(got.as_deref(), Some(*expected), "entries {entries:?}");
            let outside: Vec<_> = fs::read_dir(base.path())
                .unwrap_or_else(|e| panic!("{e}"))
                .filter_map(|e| e.ok().map(|e| e.file_name()))
                .collect();
            assert_eq!(
                outside,
                vec![std::ffi::OsString::from("dest")],
                "{entries:?}"
            );
        }
    }

    #[test]
    fn a_symlink_is_replaced_not_followed() {
        let base = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let dest = base.path().join("dest");
        fs::create_dir(&dest).unwrap_or_else(|e| panic!("{e}"));
        let victim = base.path().join("victim");
        fs::write(&victim, "original").unwrap_or_else(|e| panic!("{e}"));
        let bytes = craft(&[
            ("f", EntryType::Symlink, victim.to_str().unwrap_or_default()),
            ("f", EntryType::Regular, "new"),
        ]);
        unpack_context_archive(&bytes[..], &dest).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(fs::read_to_string(&victim).unwrap_or_default(), "original");
        assert_eq!(
            fs::read_to_string(dest.join("f")).unwrap_or_default(),
            "new"
        );
    }

    #[test]
    fn plain_and_gzip_archives_unpack() {
        use EntryType::{Directory, Link, Regular, Symlink};
        let plain = craft(&[
            ("./", Directory, ""),
            ("./dir/", Directory, ""),
            ("./dir/file.txt", Regular, "hello"),
            ("./dir/link", Symlink, "file.txt"),
            ("./dir/hard", Link, "dir/file.txt"),
            ("top.txt", Regular, "top"),
        ]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &plain).unwrap_or_else(|e| panic!("{e}"));
        let gzipped = gz.finish().unwrap_or_else(|e| panic!("{e}"));
        for bytes in [plain, gzipped] {
            let (base, result) = unpack(&bytes);
            result.unwrap_or_else(|e| panic!("{e}"));
            let dest = base.path().join("dest");
            let read =
                |p: &str| fs::read_to_string(dest.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
            assert_eq!(read("dir/file.txt"), "hello");
            assert_eq!(read("dir/hard"), "hello");
            assert_eq!(read("top.txt"), "top");
            assert_eq!(
                fs::read_link(dest.join("dir/link")).unwrap_or_default(),
                PathBuf::from("file.txt")
            );
            let mode = fs::metadata(dest.join("dir")).map(|m| m.permissions().mode() & 0o7777);
            assert_eq!(mode.unwrap_or_default(), 0o755);
        }
    }
}
