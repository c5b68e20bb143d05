//! What ADD does beyond COPY: sources that are URLs are downloaded (and
//! checked against `--checksum`), and local tar archives — plain, gzip,
//! bzip2, xz or zstd — are unpacked into the destination.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use super::BuildError;
use crate::context::{self, IgnoreRules};

/// ADD's sources once URLs and archives are dealt with.
pub struct AddSources {
    /// Patterns to copy as COPY would, relative to the source root.
    pub plain: Vec<String>,
    /// Directories holding unpacked archives: their contents are copied.
    pub archives: Vec<PathBuf>,
    /// Names of downloaded files in the staging directory.
    pub downloads: Vec<String>,
}

/// Sorts ADD's expanded `patterns`: URLs are downloaded into `staging`,
/// archives among the local matches unpacked below it.
pub async fn stage_add_sources(
    root: &Path,
    rules: &IgnoreRules,
    patterns: Vec<String>,
    checksum: Option<&str>,
    staging: &Path,
) -> Result<AddSources, BuildError> {
    let mut sources = AddSources {
        plain: Vec::new(),
        archives: Vec::new(),
        downloads: Vec::new(),
    };
    if checksum.is_some() && !patterns.iter().all(|p| is_url(p)) {
        return Err(BuildError::Other(
            "ADD --checksum is only supported for http(s) sources".to_string(),
        ));
    }
    let several = patterns.len() > 1;
    let mut empty_wildcard = None;
    for pattern in patterns {
        if is_url(&pattern) {
            let name = download(&pattern, checksum, staging).await?;
            sources.downloads.push(name);
            continue;
        }
        let matches = match context::resolve_sources(root, std::slice::from_ref(&pattern), rules) {
            // A wildcard matching nothing beside other sources is no source
            // (BuildKit copies the others), as for COPY.
            Err(error @ context::ContextError::NoSourceFiles { .. }) if several => {
                empty_wildcard.get_or_insert(error);
                continue;
            }
            matches => matches?,
        };
        let mut archives = Vec::new();
        let mut others = Vec::new();
        for found in matches {
            let path = crate::fs::resolve_in_root(root, &found.rel_path.to_string_lossy())?;
            if path.is_file() && archive_kind(&path)?.is_some() {
                archives.push(path);
            } else {
                others.push(found.rel_path);
            }
        }
        if archives.is_empty() {
            sources.plain.push(pattern);
            continue;
        }
        for path in archives {
            let dest = tempfile::Builder::new()
                .prefix("archive-")
                .tempdir_in(staging)
                .map_err(BuildError::io("creating a directory in", staging))?
                .keep();
            unpack_archive(&path, &dest)?;
            sources.archives.push(dest);
        }
        sources
            .plain
            .extend(others.iter().map(|p| escape_pattern(&p.to_string_lossy())));
    }
    match empty_wildcard {
        Some(error)
            if sources.plain.is_empty()
                && sources.archives.is_empty()
                && sources.downloads.is_empty() =>
        {
            Err(error.into())
        }
        _ => Ok(sources),
    }
}

pub(super) fn is_url(source: &str) -> bool {
    source.starts_with("https://") || source.starts_with("http://")
}

/// A matched path used again as a pattern must match only itself.
fn escape_pattern(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Compression {
    None,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
}

fn compression_of(head: &[u8]) -> Compression {
    match head {
        [0x1f, 0x8b, ..] => Compression::Gzip,
        [b'B', b'Z', b'h', ..] => Compression::Bzip2,
        [0xfd, b'7', b'z', b'X', b'Z', 0x00, ..] => Compression::Xz,
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
        _ => Compression::None,
    }
}

fn decompressed(path: &Path, compression: Compression) -> Result<Box<dyn Read>, BuildError> {
    let file = BufReader::new(File::open(path).map_err(BuildError::io("opening", path))?);
    Ok(match compression {
        Compression::None => Box::new(file),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(file)),
        Compression::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(file)),
        Compression::Xz => Box::new(xz2::read::XzDecoder::new_multi_decoder(file)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::new(file).map_err(BuildError::io("reading", path))?,
        ),
    })
}

/// Whether `path` is a tar archive ADD unpacks, and how it is compressed.
/// A compressed file that is not a tar inside is copied as it is, as
/// Docker does.
fn archive_kind(path: &Path) -> Result<Option<Compression>, BuildError> {
    let mut head = [0u8; 8];
    let n = File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .map_err(BuildError::io("reading", path))?;
    let compression = compression_of(&head[..n]);
    let mut block = vec![0u8; 512];
    let mut reader = decompressed(path, compression)?;
    let mut filled = 0;
    while filled < block.len() {
        match reader.read(&mut block[filled..]) {
            Ok(0) => break,
            Ok(k) => filled += k,
            // Not decodable: not an archive, just a file.
            Err(_) => return Ok(None),
        }
    }
    let is_tar = filled == 512 && (&block[257..262] == b"ustar" || tar_checksum_ok(&block));
    Ok(is_tar.then_some(compression))
}

/// Old (v7) tar headers have no magic; their checksum still identifies them.
fn tar_checksum_ok(block: &[u8]) -> bool {
    let field = &block[148..156];
    let text: String = field
        .iter()
        .take_while(|b| **b != 0 && **b != b' ')
        .map(|b| *b as char)
        .collect();
    let Ok(stored) = u32::from_str_radix(text.trim(), 8) else {
        return false;
    };
    let sum: u32 = block
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                u32::from(b' ')
            } else {
                u32::from(*b)
            }
        })
        .sum();
    sum == stored && block[0] != 0
}

fn unpack_archive(path: &Path, dest: &Path) -> Result<(), BuildError> {
    let compression = archive_kind(path)?.unwrap_or(Compression::None);
    let reader = decompressed(path, compression)?;
    context::unpack_context_archive(reader, dest)?;
    Ok(())
}

/// Downloads `url` into `staging` under the URL's file name, mode 0600 as
/// Docker gives downloaded files, and checks `checksum` (`sha256:…`).
async fn download(url: &str, checksum: Option<&str>, staging: &Path) -> Result<String, BuildError> {
    let shown = context::redact_url(url);
    let name = url
        .split(['?', '#'])
        .next()
        .and_then(|u| u.trim_end_matches('/').rsplit('/').next())
        .filter(|n| !n.is_empty() && !n.contains(':'))
        .unwrap_or("download")
        .to_string();
    let path = staging.join(&name);
    let last_modified = context::download(url, None, &path).await?;
    if let Some(expected) = checksum {
        let bytes_digest = {
            let mut file = File::open(&path).map_err(BuildError::io("reading", &path))?;
            let mut hasher = crate::image::HashingWriter::new(std::io::sink());
            std::io::copy(&mut file, &mut hasher).map_err(BuildError::io("reading", &path))?;
            hasher.finish().1
        };
        if bytes_digest != expected {
            return Err(BuildError::Other(format!(
                "ADD {shown}: checksum mismatch: expected {expected}, downloaded {bytes_digest}"
            )));
        }
    }
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(BuildError::io("setting mode of", &path))?;
    }
    // The file's time is the server's Last-Modified, as Docker sets it, and
    // the epoch when there is none, so the same download gives the same
    // layer: the steps after it are keyed by that layer, and a download time
    // would make every later step miss the cache.
    let modified = last_modified.unwrap_or(std::time::UNIX_EPOCH);
    File::options()
        .write(true)
        .open(&path)
        .and_then(|file| file.set_times(std::fs::FileTimes::new().set_modified(modified)))
        .map_err(BuildError::io("setting the time of", &path))?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_magic() {
        assert_eq!(compression_of(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(compression_of(b"BZh91AY"), Compression::Bzip2);
        assert_eq!(
            compression_of(&[0xfd, b'7', b'z', b'X', b'Z', 0, 0]),
            Compression::Xz
        );
        assert_eq!(compression_of(&[0x28, 0xb5, 0x2f, 0xfd]), Compression::Zstd);
        assert_eq!(compression_of(b"plain"), Compression::None);
    }

    #[test]
    fn escaped_patterns_match_only_themselves() {
        assert_eq!(escape_pattern("a[1]*.txt"), "a\\[1\\]\\*.txt");
        assert_eq!(escape_pattern("plain/name"), "plain/name");
    }
}
