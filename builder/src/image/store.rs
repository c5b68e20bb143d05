//! A local directory of blobs by digest (`sha256/<hex>`), with a `tmp/`
//! beside it on the same filesystem so finished files are renamed in,
//! never copied. Shared by the build engine (layers, pulled base blobs)
//! and the outputs.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::descriptor::{Blob, Descriptor};
use super::digest::{DigestError, digest_hex, sha256_digest};
use super::layer::Layer;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the blob store in {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error("cannot store blob {digest} from {from}: {source}")]
    Put {
        digest: String,
        from: PathBuf,
        source: io::Error,
    },
    #[error("cannot read blob {digest} at {path}: {source}")]
    Read {
        digest: String,
        path: PathBuf,
        source: io::Error,
    },
    #[error(transparent)]
    Digest(#[from] DigestError),
}

/// A blob on disk with the descriptor it is referenced by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredLayer {
    pub descriptor: Descriptor,
    pub path: PathBuf,
}

#[derive(Clone, Debug)]
pub struct BlobStore {
    root: PathBuf,
}

impl BlobStore {
    /// Opens (creating if needed) a store rooted at `root`.
    pub fn open(root: &Path) -> Result<BlobStore, StoreError> {
        for dir in [root.join("sha256"), root.join("tmp")] {
            fs::create_dir_all(&dir).map_err(|source| StoreError::Create { path: dir, source })?;
        }
        Ok(BlobStore {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where to create files that will be put into the store; the same
    /// filesystem, so `put_file` is a rename.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// [`BlobStore::tmp_dir`], created again if something removed it
    /// since the store was opened.
    pub fn tmp_dir_created(&self) -> Result<PathBuf, StoreError> {
        let dir = self.tmp_dir();
        fs::create_dir_all(&dir).map_err(|source| StoreError::Create {
            path: dir.clone(),
            source,
        })?;
        Ok(dir)
    }

    /// Where the blob `digest` lives (whether or not it is present).
    pub fn path(&self, digest: &str) -> Result<PathBuf, StoreError> {
        Ok(self.root.join("sha256").join(digest_hex(digest)?))
    }

    pub fn contains(&self, digest: &str) -> Result<bool, StoreError> {
        Ok(self.path(digest)?.is_file())
    }

    /// Moves `source` into the store as `digest`. The digest is trusted:
    /// callers computed it while writing the file. An existing blob wins
    /// (same digest, same bytes) and `source` is removed.
    pub fn put_file(&self, source: &Path, digest: &str) -> Result<PathBuf, StoreError> {
        let dest = self.path(digest)?;
        let put_err = |e| StoreError::Put {
            digest: digest.to_string(),
            from: source.to_path_buf(),
            source: e,
        };
        if dest.is_file() {
            fs::remove_file(source).map_err(put_err)?;
        } else {
            fs::rename(source, &dest).map_err(put_err)?;
        }
        Ok(dest)
    }

    /// Moves a finished layer into the store and points it there.
    pub fn put_layer(&self, layer: Layer) -> Result<Layer, StoreError> {
        let path = self.put_file(&layer.path, &layer.digest)?;
        Ok(Layer { path, ..layer })
    }

    /// Stores small bytes (config, manifest) and returns their digest.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<String, StoreError> {
        let digest = sha256_digest(bytes);
        if self.contains(&digest)? {
            return Ok(digest);
        }
        let tmp_dir = self.tmp_dir();
        let put_err = |e| StoreError::Put {
            digest: digest.clone(),
            from: tmp_dir.clone(),
            source: e,
        };
        let mut tmp = tempfile::NamedTempFile::new_in(&tmp_dir).map_err(put_err)?;
        tmp.write_all(bytes).map_err(put_err)?;
        let dest = self.path(&digest)?;
        tmp.persist(&dest).map_err(|e| put_err(e.error))?;
        Ok(digest)
    }

    pub fn put_blob(&self, blob: &Blob) -> Result<(), StoreError> {
        self.put_bytes(&blob.bytes).map(|_| ())
    }

    /// The content of a small blob.
    pub fn read(&self, digest: &str) -> Result<Vec<u8>, StoreError> {
        let path = self.path(digest)?;
        fs::read(&path).map_err(|source| StoreError::Read {
            digest: digest.to_string(),
            path,
            source,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn put_bytes_file_and_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(&dir.path().join("store")).unwrap();
        let digest = store.put_bytes(b"{}").unwrap();
        assert_eq!(
            digest,
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert_eq!(
            store.path(&digest).unwrap(),
            dir.path().join(
                "store/sha256/44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
            )
        );
        assert_eq!(store.read(&digest).unwrap(), b"{}");
        // Storing again is a no-op.
        assert_eq!(store.put_bytes(b"{}").unwrap(), digest);

        let src = store.tmp_dir().join("x");
        fs::write(&src, b"hello").unwrap();
        let hello = sha256_digest(b"hello");
        let dest = store.put_file(&src, &hello).unwrap();
        assert!(!src.exists());
        assert_eq!(fs::read(dest).unwrap(), b"hello");
        // A second copy of the same blob is dropped, not an error.
        fs::write(&src, b"hello").unwrap();
        store.put_file(&src, &hello).unwrap();
        assert!(!src.exists());
        assert!(store.contains(&hello).unwrap());
        assert!(!store.contains(&sha256_digest(b"other")).unwrap());
    }

    #[test]
    fn digests_that_are_not_file_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        assert_eq!(
            store.path("sha256:../../x").unwrap_err().to_string(),
            "invalid digest \"sha256:../../x\" (expected sha256: followed by 64 lowercase hex digits)"
        );
    }
}
