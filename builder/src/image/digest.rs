//! `sha256:<hex>` content digests: of bytes, of a stream as it is written,
//! and validation of digests read from elsewhere (they become file names).

use std::io::{self, Write};

use sha2::{Digest as _, Sha256};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    #[error("invalid digest {0:?} (expected sha256: followed by 64 lowercase hex digits)")]
    Invalid(String),
}

/// The digest of `bytes`, as `sha256:<hex>`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format_digest(Sha256::digest(bytes).as_slice())
}

fn format_digest(hash: &[u8]) -> String {
    format!("sha256:{}", hex::encode(hash))
}

/// The hex part of a `sha256:` digest, refusing anything that is not
/// exactly 64 lowercase hex digits, because callers use it as a file name.
pub fn digest_hex(digest: &str) -> Result<&str, DigestError> {
    let invalid = || DigestError::Invalid(digest.to_string());
    let hex = digest.strip_prefix("sha256:").ok_or_else(invalid)?;
    let valid = hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if valid { Ok(hex) } else { Err(invalid()) }
}

/// Passes writes through to `inner` while hashing them and counting
/// bytes, so a digest costs no second read of the data.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// The inner writer, the `sha256:` digest and the byte count of
    /// everything written.
    pub fn finish(self) -> (W, String, u64) {
        let digest = format_digest(self.hasher.finalize().as_slice());
        (self.inner, digest, self.written)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        // Hash only what the inner writer accepted, or a short write would
        // be hashed twice when the caller retries the rest.
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn digest_of_known_bytes() {
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sha256_digest(b"{}"),
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
    }

    #[test]
    fn hashing_writer_matches_one_shot_digest() {
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(b"hello ").unwrap();
        w.write_all(b"world").unwrap();
        let (inner, digest, n) = w.finish();
        assert_eq!(inner, b"hello world");
        assert_eq!(n, 11);
        assert_eq!(digest, sha256_digest(b"hello world"));
    }

    #[test]
    fn digest_hex_validation() {
        let good = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(
            digest_hex(good),
            Ok("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
        for bad in [
            "",
            "sha256:",
            "sha512:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:../../etc/passwd",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85",
        ] {
            assert_eq!(
                digest_hex(bad),
                Err(DigestError::Invalid(bad.to_string())),
                "{bad}"
            );
        }
    }
}
