//! `--digests-from=DIR`: the per-platform digests a CI matrix wrote with
//! `--digest-file=DIR/<os>-<arch>[-<variant>].digest`, matched to the
//! platform list.
//!
//! File names are read as platforms and compared normalised, so
//! `linux-arm64.digest` (what `${platform//\//-}` gives for `linux/arm64`)
//! and `linux-arm64-v8.digest` both answer for `linux/arm64/v8`. The
//! matching is a pure function of the listing and the file contents
//! ([`match_digest_files`]); [`read_digests`] is the thin I/O around it.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::platform::Platform;

/// The suffix of a digest file, as `--digest-file` users name them.
pub const DIGEST_SUFFIX: &str = ".digest";

/// A digest file is one line; more than this is not read.
const MAX_DIGEST_FILE: u64 = 4096;

/// One platform's image, as its digest file names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlatformDigest {
    pub platform: Platform,
    /// `sha256:<64 hex>`.
    pub digest: String,
    /// The file it came from.
    pub path: PathBuf,
}

impl PlatformDigest {
    /// The file name alone (`linux-arm64.digest`), for messages.
    pub fn file_name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.path.display().to_string())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DigestsError {
    #[error(
        "no digest file for {platform} in {dir} (expected {expected}); each platform's build writes it with --digest-file={dir}/{expected}"
    )]
    Missing {
        platform: String,
        dir: String,
        expected: String,
    },
    #[error(
        "digest file {path} names platform {platform}, which is not in --multi-platform ({listed})"
    )]
    Unexpected {
        path: String,
        platform: String,
        listed: String,
    },
    #[error(
        "digest file {path} is not named for a platform: {reason} (expected <os>-<arch>[-<variant>].digest, e.g. linux-arm64.digest)"
    )]
    BadName { path: String, reason: String },
    #[error("digest files {first} and {second} both name platform {platform}; keep one of them")]
    Duplicate {
        first: String,
        second: String,
        platform: String,
    },
    #[error(
        "digest file {path} holds {found}, not a digest (expected sha256:<64 lowercase hex digits>, as --digest-file writes it)"
    )]
    Malformed { path: String, found: String },
    #[error("reading the digest directory {dir} (--digests-from): {error}")]
    ReadDir { dir: String, error: std::io::Error },
    #[error("reading digest file {path}: {error}")]
    ReadFile { path: String, error: std::io::Error },
}

/// The platform a digest file's name stands for: `linux-arm-v7.digest` →
/// `linux/arm/v7`. `None` for files that are not digest files at all.
pub fn platform_of_file_name(name: &str) -> Option<Result<Platform, String>> {
    let stem = name.strip_suffix(DIGEST_SUFFIX)?;
    Some(
        stem.replace('-', "/")
            .parse::<Platform>()
            .map_err(|_| format!("{stem:?} is not <os>-<arch>[-<variant>]")),
    )
}

/// How users type `platform`, which is how `${platform//\//-}` names its
/// file: `linux/arm64` rather than the normalised `linux/arm64/v8`.
pub fn typed_form(platform: &Platform) -> String {
    match (platform.architecture.as_str(), platform.variant.as_deref()) {
        ("arm64", Some("v8")) => format!("{}/arm64", platform.os),
        _ => platform.to_string(),
    }
}

/// The file name a platform's build is expected to write.
pub fn expected_file_name(platform: &Platform) -> String {
    format!("{}{DIGEST_SUFFIX}", typed_form(platform).replace('/', "-"))
}

/// Checks a digest file's content: `sha256:<64 lowercase hex>`, with
/// surrounding whitespace (a trailing newline from `echo`) tolerated.
pub fn parse_digest(content: &str) -> Option<&str> {
    let digest = content.trim();
    let hex = digest.strip_prefix("sha256:")?;
    let valid = hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    valid.then_some(digest)
}

/// Matches the `.digest` files of `dir` (`files`: name and content; other
/// names are ignored) to `platforms`, returning one entry per platform in
/// the order of `platforms`. Every platform needs a file, every file a
/// listed platform, and every file a well-formed digest.
pub fn match_digest_files(
    dir: &Path,
    platforms: &[Platform],
    files: &[(String, String)],
) -> Result<Vec<PlatformDigest>, DigestsError> {
    let mut sorted: Vec<&(String, String)> = files.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let path_of = |name: &str| dir.join(name);
    let listed = || {
        platforms
            .iter()
            .map(typed_form)
            .collect::<Vec<_>>()
            .join(", ")
    };

    let mut found: Vec<(Platform, &str, &str)> = Vec::new();
    for (name, content) in sorted {
        let Some(platform) = platform_of_file_name(name) else {
            continue;
        };
        let platform = platform.map_err(|reason| DigestsError::BadName {
            path: path_of(name).display().to_string(),
            reason,
        })?;
        if let Some((_, first, _)) = found.iter().find(|(p, _, _)| p.same_as(&platform)) {
            return Err(DigestsError::Duplicate {
                first: path_of(first).display().to_string(),
                second: path_of(name).display().to_string(),
                platform: typed_form(&platform),
            });
        }
        if !platforms.iter().any(|p| p.same_as(&platform)) {
            return Err(DigestsError::Unexpected {
                path: path_of(name).display().to_string(),
                platform: typed_form(&platform),
                listed: listed(),
            });
        }
        found.push((platform, name, content));
    }

    platforms
        .iter()
        .map(|platform| {
            let Some((_, name, content)) = found.iter().find(|(p, _, _)| p.same_as(platform))
            else {
                return Err(DigestsError::Missing {
                    platform: typed_form(platform),
                    dir: dir.display().to_string(),
                    expected: expected_file_name(platform),
                });
            };
            let digest = parse_digest(content).ok_or_else(|| DigestsError::Malformed {
                path: path_of(name).display().to_string(),
                found: describe_content(content),
            })?;
            Ok(PlatformDigest {
                platform: platform.clone(),
                digest: digest.to_string(),
                path: path_of(name),
            })
        })
        .collect()
}

/// What a malformed file holds, quoted and cut short for one log line.
fn describe_content(content: &str) -> String {
    if content.trim().is_empty() {
        return "nothing".to_string();
    }
    const LIMIT: usize = 160;
    let trimmed = content.trim();
    if trimmed.chars().count() <= LIMIT {
        format!("{trimmed:?}")
    } else {
        let cut: String = trimmed.chars().take(LIMIT).collect();
        format!("{cut:?}…")
    }
}

/// Reads `dir`'s `.digest` files and matches them to `platforms` (see
/// [`match_digest_files`]).
pub fn read_digests(
    dir: &Path,
    platforms: &[Platform],
) -> Result<Vec<PlatformDigest>, DigestsError> {
    let read_dir_err = |error| DigestsError::ReadDir {
        dir: dir.display().to_string(),
        error,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_dir_err)? {
        let entry = entry.map_err(read_dir_err)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(DIGEST_SUFFIX) {
            continue;
        }
        let path = entry.path();
        let read_err = |error| DigestsError::ReadFile {
            path: path.display().to_string(),
            error,
        };
        // Follows symlinks: CI artifact directories are sometimes links.
        if !std::fs::metadata(&path).map_err(read_err)?.is_file() {
            continue;
        }
        let mut bytes = Vec::new();
        std::fs::File::open(&path)
            .and_then(|file| file.take(MAX_DIGEST_FILE).read_to_end(&mut bytes))
            .map_err(read_err)?;
        let content = String::from_utf8_lossy(&bytes).into_owned();
        files.push((name, content));
    }
    match_digest_files(dir, platforms, &files)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const C: &str = "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";

    fn platforms(list: &str) -> Vec<Platform> {
        crate::platform::parse_list(list).unwrap()
    }

    fn files(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, c)| (n.to_string(), c.to_string()))
            .collect()
    }

    #[test]
    fn matches_files_to_platforms_in_platform_order() {
        // (platform list, files, expected (platform, digest, file) in order)
        type Case = (
            &'static str,
            Vec<(&'static str, &'static str)>,
            Vec<(&'static str, &'static str, &'static str)>,
        );
        let table: Vec<Case> = vec![
            (
                "linux/amd64,linux/arm64",
                vec![
                    ("linux-arm64.digest", B),
                    (
                        "linux-amd64.digest",
                        "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
                    ),
                ],
                vec![
                    ("linux/amd64", A, "/out/linux-amd64.digest"),
                    ("linux/arm64", B, "/out/linux-arm64.digest"),
                ],
            ),
            // The listing order does not matter; the platform order does.
            (
                "linux/arm64,linux/amd64",
                vec![("linux-amd64.digest", A), ("linux-arm64.digest", B)],
                vec![
                    ("linux/arm64", B, "/out/linux-arm64.digest"),
                    ("linux/amd64", A, "/out/linux-amd64.digest"),
                ],
            ),
            // linux-arm64.digest answers for linux/arm64/v8 typed in full.
            (
                "linux/arm64/v8",
                vec![("linux-arm64.digest", B)],
                vec![("linux/arm64/v8", B, "/out/linux-arm64.digest")],
            ),
            // and linux-arm64-v8.digest for linux/arm64.
            (
                "linux/arm64",
                vec![("linux-arm64-v8.digest", B)],
                vec![("linux/arm64", B, "/out/linux-arm64-v8.digest")],
            ),
            (
                "linux/arm/v7,linux/s390x",
                vec![("linux-arm-v7.digest", C), ("linux-s390x.digest", A)],
                vec![
                    ("linux/arm/v7", C, "/out/linux-arm-v7.digest"),
                    ("linux/s390x", A, "/out/linux-s390x.digest"),
                ],
            ),
            // Whitespace around the digest, other files ignored.
            (
                "linux/amd64",
                vec![
                    (
                        "linux-amd64.digest",
                        "  sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa \r\n",
                    ),
                    ("README.md", "not a digest"),
                    ("linux-amd64.digest.sig", "x"),
                    ("image-names.txt", "x"),
                ],
                vec![("linux/amd64", A, "/out/linux-amd64.digest")],
            ),
        ];
        for (list, listing, want) in table {
            let got = match_digest_files(Path::new("/out"), &platforms(list), &files(&listing))
                .unwrap_or_else(|e| panic!("{list}: {e}"));
            let got: Vec<(String, String, String)> = got
                .iter()
                .map(|d| {
                    (
                        d.platform.to_string(),
                        d.digest.clone(),
                        d.path.display().to_string(),
                    )
                })
                .collect();
            let want: Vec<(String, String, String)> = want
                .iter()
                .map(|(p, d, f)| (p.to_string(), d.to_string(), f.to_string()))
                .collect();
            assert_eq!(got, want, "{list}");
        }
    }

    #[test]
    fn refusals_name_the_platform_or_file() {
        // (platform list, files, expected error)
        type Case = (
            &'static str,
            Vec<(&'static str, &'static str)>,
            &'static str,
        );
        let table: Vec<Case> = vec![
            (
                "linux/amd64,linux/arm64",
                vec![("linux-amd64.digest", A)],
                "no digest file for linux/arm64 in /out (expected linux-arm64.digest); each platform's build writes it with --digest-file=/out/linux-arm64.digest",
            ),
            (
                "linux/amd64,linux/arm/v7",
                vec![("linux-amd64.digest", A)],
                "no digest file for linux/arm/v7 in /out (expected linux-arm-v7.digest); each platform's build writes it with --digest-file=/out/linux-arm-v7.digest",
            ),
            (
                "linux/amd64,linux/arm64",
                vec![],
                "no digest file for linux/amd64 in /out (expected linux-amd64.digest); each platform's build writes it with --digest-file=/out/linux-amd64.digest",
            ),
            (
                "linux/amd64,linux/arm64",
                vec![
                    ("linux-amd64.digest", A),
                    ("linux-arm64.digest", B),
                    ("linux-s390x.digest", C),
                ],
                "digest file /out/linux-s390x.digest names platform linux/s390x, which is not in --multi-platform (linux/amd64, linux/arm64)",
            ),
            // arm/v6 is not arm/v7: variants are compared, not ignored.
            (
                "linux/arm/v7",
                vec![("linux-arm-v7.digest", A), ("linux-arm-v6.digest", B)],
                "digest file /out/linux-arm-v6.digest names platform linux/arm/v6, which is not in --multi-platform (linux/arm/v7)",
            ),
            (
                "linux/amd64",
                vec![("linux-amd64.digest", A), ("amd64.digest", B)],
                "digest file /out/amd64.digest is not named for a platform: \"amd64\" is not <os>-<arch>[-<variant>] (expected <os>-<arch>[-<variant>].digest, e.g. linux-arm64.digest)",
            ),
            (
                "linux/amd64",
                vec![("linux-amd64-v2-x.digest", A)],
                "digest file /out/linux-amd64-v2-x.digest is not named for a platform: \"linux-amd64-v2-x\" is not <os>-<arch>[-<variant>] (expected <os>-<arch>[-<variant>].digest, e.g. linux-arm64.digest)",
            ),
            (
                "linux/arm64",
                vec![("linux-arm64.digest", A), ("linux-arm64-v8.digest", B)],
                "digest files /out/linux-arm64-v8.digest and /out/linux-arm64.digest both name platform linux/arm64; keep one of them",
            ),
            (
                "linux/amd64",
                vec![("linux-amd64.digest", "")],
                "digest file /out/linux-amd64.digest holds nothing, not a digest (expected sha256:<64 lowercase hex digits>, as --digest-file writes it)",
            ),
            (
                "linux/amd64",
                vec![("linux-amd64.digest", "sha256:abc\n")],
                "digest file /out/linux-amd64.digest holds \"sha256:abc\", not a digest (expected sha256:<64 lowercase hex digits>, as --digest-file writes it)",
            ),
            (
                "linux/amd64",
                vec![(
                    "linux-amd64.digest",
                    "127.0.0.1:5000/app@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                )],
                "digest file /out/linux-amd64.digest holds \"127.0.0.1:5000/app@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\", not a digest (expected sha256:<64 lowercase hex digits>, as --digest-file writes it)",
            ),
            (
                "linux/amd64",
                vec![(
                    "linux-amd64.digest",
                    "sha256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                )],
                "digest file /out/linux-amd64.digest holds \"sha256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\", not a digest (expected sha256:<64 lowercase hex digits>, as --digest-file writes it)",
            ),
            (
                "linux/amd64",
                vec![("linux-amd64.digest", "sha256:aaaa bbbb")],
                "digest file /out/linux-amd64.digest holds \"sha256:aaaa bbbb\", not a digest (expected sha256:<64 lowercase hex digits>, as --digest-file writes it)",
            ),
        ];
        for (list, listing, want) in table {
            let err = match_digest_files(Path::new("/out"), &platforms(list), &files(&listing))
                .unwrap_err();
            assert_eq!(err.to_string(), want, "{list} {listing:?}");
        }
    }

    #[test]
    fn digest_content_forms() {
        let table = [
            (A, Some(A)),
            (
                "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
                Some(A),
            ),
            (
                "\tsha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
                Some(A),
            ),
            (
                "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                None,
            ),
            (
                "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                None,
            ),
            (
                "sha256:gaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                None,
            ),
            (
                "sha512:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                None,
            ),
            (
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                None,
            ),
            ("", None),
        ];
        for (content, want) in table {
            assert_eq!(parse_digest(content), want, "{content:?}");
        }
    }

    #[test]
    fn file_names_and_platforms() {
        let table = [
            ("linux-amd64.digest", Some(Ok("linux/amd64"))),
            ("linux-arm64.digest", Some(Ok("linux/arm64"))),
            ("linux-arm64-v8.digest", Some(Ok("linux/arm64/v8"))),
            ("linux-arm-v7.digest", Some(Ok("linux/arm/v7"))),
            ("linux-arm.digest", Some(Ok("linux/arm/v7"))),
            ("linux-aarch64.digest", Some(Ok("linux/arm64"))),
            ("windows-amd64.digest", Some(Ok("windows/amd64"))),
            (
                "linux.digest",
                Some(Err("\"linux\" is not <os>-<arch>[-<variant>]")),
            ),
            (".digest", Some(Err("\"\" is not <os>-<arch>[-<variant>]"))),
            ("linux-amd64.txt", None),
            ("linux-amd64.digests", None),
        ];
        for (name, want) in table {
            let got = platform_of_file_name(name).map(|r| r.map(|p| p.to_string()));
            let want = want.map(|r| r.map(str::to_string).map_err(str::to_string));
            assert_eq!(got, want, "{name}");
        }
        let expected = [
            ("linux/amd64", "linux-amd64.digest"),
            ("linux/arm64", "linux-arm64.digest"),
            ("linux/arm64", "linux-arm64.digest"),
            ("linux/arm64/v9", "linux-arm64-v9.digest"),
            ("linux/arm/v7", "linux-arm-v7.digest"),
            ("linux/arm/v6", "linux-arm-v6.digest"),
            ("linux/amd64/v3", "linux-amd64-v3.digest"),
            ("linux/ppc64le", "linux-ppc64le.digest"),
        ];
        for (platform, want) in expected {
            assert_eq!(
                expected_file_name(&platform.parse().unwrap()),
                want,
                "{platform}"
            );
        }
    }

    #[test]
    fn reads_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("linux-amd64.digest"), format!("{A}\n")).unwrap();
        std::fs::write(dir.path().join("linux-arm64.digest"), B).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        // A directory with the suffix is not a digest file.
        std::fs::create_dir(dir.path().join("old.digest")).unwrap();
        let got = read_digests(dir.path(), &platforms("linux/arm64,linux/amd64")).unwrap();
        assert_eq!(
            got,
            vec![
                PlatformDigest {
                    platform: "linux/arm64".parse().unwrap(),
                    digest: B.to_string(),
                    path: dir.path().join("linux-arm64.digest"),
                },
                PlatformDigest {
                    platform: "linux/amd64".parse().unwrap(),
                    digest: A.to_string(),
                    path: dir.path().join("linux-amd64.digest"),
                },
            ]
        );
        assert_eq!(got[0].file_name(), "linux-arm64.digest");

        // A large file is read only in part and quoted cut short.
        std::fs::write(dir.path().join("linux-amd64.digest"), "x".repeat(50_000)).unwrap();
        assert_eq!(
            read_digests(dir.path(), &platforms("linux/amd64,linux/arm64"))
                .unwrap_err()
                .to_string(),
            format!(
                "digest file {}/linux-amd64.digest holds \"{}\"…, not a digest (expected sha256:<64 lowercase hex digits>, as --digest-file writes it)",
                dir.path().display(),
                "x".repeat(160)
            )
        );

        let missing = dir.path().join("nope");
        let err = read_digests(&missing, &platforms("linux/amd64")).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "reading the digest directory {} (--digests-from): No such file or directory (os error 2)",
                missing.display()
            )
        );
    }
}
