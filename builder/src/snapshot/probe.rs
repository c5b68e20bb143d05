//! What metadata cannot tell: content fingerprints and extended
//! attributes, read by path for the few entries that need them.
//!
//! Captured extended attributes are `security.capability` (file
//! capabilities, as Docker, kaniko and buildah carry them) and `user.*`
//! (as containers/storage does). Not captured: `security.selinux` and
//! other LSM labels (the build host's policy, not the image's),
//! `system.posix_acl_*` (host ACLs) and `trusted.*` (overlayfs
//! bookkeeping, readable only with CAP_SYS_ADMIN).

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rustix::io::Errno;
use sha2::{Digest as _, Sha256};

use super::SnapshotError;
use super::tree::Kind;

/// A fingerprint of what metadata does not show: the SHA-256 of a
/// regular file's content (zero for other kinds) and of its captured
/// extended attributes. SHA-256 because it is already the image
/// format's hash (no new dependency) and runs at over 1 GB/s with the
/// SHA extensions; only racily clean or ambiguous files are ever hashed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Fingerprint {
    content: [u8; 32],
    xattrs: [u8; 32],
}

const READ_BUFFER: usize = 128 * 1024;

fn io_error(op: &'static str, host: &Path) -> impl FnOnce(io::Error) -> SnapshotError {
    let path = host.to_path_buf();
    move |source| SnapshotError::Io { op, path, source }
}

/// Fingerprints the entry at `host`, which the walk found to be `kind`.
pub(super) fn fingerprint(host: &Path, kind: Kind) -> Result<Fingerprint, SnapshotError> {
    let content = if kind == Kind::File {
        hash_content(host)?
    } else {
        [0; 32]
    };
    let mut hasher = Sha256::new();
    for (name, value) in read_xattrs(host)? {
        hasher.update((name.len() as u64).to_le_bytes());
        hasher.update(name.as_bytes());
        hasher.update((value.len() as u64).to_le_bytes());
        hasher.update(&value);
    }
    Ok(Fingerprint {
        content,
        xattrs: hasher.finalize().into(),
    })
}

fn hash_content(host: &Path) -> Result<[u8; 32], SnapshotError> {
    // O_NOFOLLOW and O_NONBLOCK: an entry replaced by a symlink or a FIFO
    // since the walk is neither followed nor waited on.
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc_flags())
        .open(host)
        .map_err(io_error("open", host))?;
    let meta = file.metadata().map_err(io_error("inspect", host))?;
    let mut hasher = Sha256::new();
    if !meta.is_file() {
        // Changed under us; a fingerprint no regular file can have.
        hasher.update(b"not a regular file");
        return Ok(hasher.finalize().into());
    }
    let mut buffer = vec![0; READ_BUFFER];
    loop {
        match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buffer[..n]),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => return Err(io_error("read", host)(source)),
        }
    }
    Ok(hasher.finalize().into())
}

fn libc_flags() -> i32 {
    use rustix::fs::OFlags;
    (OFlags::NOFOLLOW | OFlags::NONBLOCK).bits() as i32
}

/// Whether an extended attribute is carried into layers.
pub(super) fn captured_xattr(name: &[u8]) -> bool {
    name == b"security.capability" || name.starts_with(b"user.")
}

/// The captured extended attributes of `host` (never following a
/// symlink). Filesystems without extended attributes have none.
pub(crate) fn read_xattrs(host: &Path) -> Result<BTreeMap<String, Vec<u8>>, SnapshotError> {
    let mut found = BTreeMap::new();
    let errno_error = |op: &'static str| {
        move |errno: Errno| SnapshotError::Io {
            op,
            path: host.to_path_buf(),
            source: io::Error::from(errno),
        }
    };
    let mut list = vec![0u8; 256];
    let len = loop {
        match rustix::fs::llistxattr(host, &mut list[..]) {
            Ok(len) => break len,
            Err(Errno::RANGE) => {
                let needed = rustix::fs::llistxattr_query(host)
                    .map_err(errno_error("list extended attributes of"))?;
                list.resize(needed.max(list.len() * 2), 0);
            }
            Err(errno) if unsupported(errno) => return Ok(found),
            Err(errno) => return Err(errno_error("list extended attributes of")(errno)),
        }
    };
    for name in list[..len].split(|&b| b == 0) {
        if name.is_empty() || !captured_xattr(name) {
            continue;
        }
        let Ok(text) = std::str::from_utf8(name) else {
            tracing::warn!(path = %host.display(), "extended attribute with a non-UTF-8 name not captured");
            continue;
        };
        let mut value = vec![0u8; 256];
        let len = loop {
            match rustix::fs::lgetxattr(host, name, &mut value[..]) {
                Ok(len) => break Some(len),
                Err(Errno::RANGE) => {
                    let needed = rustix::fs::lgetxattr_query(host, name)
                        .map_err(errno_error("read extended attributes of"))?;
                    value.resize(needed.max(value.len() * 2), 0);
                }
                // Removed since it was listed.
                Err(Errno::NODATA) => break None,
                Err(errno) => return Err(errno_error("read extended attributes of")(errno)),
            }
        };
        if let Some(len) = len {
            value.truncate(len);
            found.insert(text.to_string(), value);
        }
    }
    Ok(found)
}

fn unsupported(errno: Errno) -> bool {
    errno == Errno::NOTSUP || errno == Errno::OPNOTSUPP
}

/// Any fingerprint, for tests of the decisions built on them.
#[cfg(test)]
pub(super) fn tests_fingerprint() -> Fingerprint {
    Fingerprint {
        content: [1; 32],
        xattrs: [2; 32],
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn captured_xattr_names() {
        let cases: [(&[u8], bool); 6] = [
            (b"security.capability", true),
            (b"user.mime_type", true),
            (b"security.selinux", false),
            (b"system.posix_acl_access", false),
            (b"trusted.overlay.opaque", false),
            (b"user", false),
        ];
        for (name, want) in cases {
            assert_eq!(
                captured_xattr(name),
                want,
                "{}",
                String::from_utf8_lossy(name)
            );
        }
    }

    #[test]
    fn fingerprints_tell_content_and_kind() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::write(&a, b"same").unwrap();
        std::fs::write(&b, b"same").unwrap();
        let fa = fingerprint(&a, Kind::File).unwrap();
        assert_eq!(fa, fingerprint(&b, Kind::File).unwrap());
        std::fs::write(&b, b"diff").unwrap();
        assert_ne!(fa, fingerprint(&b, Kind::File).unwrap());
        let empty: [u8; 32] = Sha256::digest(b"").into();
        let d = fingerprint(dir.path(), Kind::Dir).unwrap();
        assert_eq!(d.content, [0; 32]);
        assert_eq!(d.xattrs, empty);
        let missing = fingerprint(&dir.path().join("missing"), Kind::File).unwrap_err();
        assert_eq!(
            missing.to_string(),
            format!(
                "cannot open {}: No such file or directory (os error 2)",
                dir.path().join("missing").display()
            )
        );
    }
}
