//! dpkg's database: `/var/lib/dpkg/status` and distroless'
//! `/var/lib/dpkg/status.d/<package>` files (one control paragraph each).
//!
//! The status file lists every package dpkg has heard of; only those whose
//! `Status` says `… ok installed` are in the image (`install ok
//! installed`, or `hold ok installed` for a held package). The status.d
//! files of distroless images are the packages' control files and have no
//! `Status`: every paragraph in them is installed. dpkg keeps no license,
//! so none is given.

use super::control::{BadLine, paragraphs};
use super::package::{Ecosystem, Package};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DpkgError {
    #[error(transparent)]
    Syntax(#[from] BadLine),
    #[error("the paragraph at line {line} has no Package field")]
    NoPackage { line: usize },
    #[error("package {package} (line {line}) has no Version field")]
    NoVersion { package: String, line: usize },
}

/// Which dpkg file is parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Status,
    StatusD,
}

/// The installed packages listed in `text`, found at image path `location`.
pub fn parse(text: &[u8], kind: Kind, location: &str) -> Result<Vec<Package>, DpkgError> {
    let text = String::from_utf8_lossy(text);
    let mut packages = Vec::new();
    for paragraph in paragraphs(&text, false)? {
        let installed = match paragraph.get("Status") {
            Some(status) => is_installed(status),
            None => kind == Kind::StatusD,
        };
        if !installed {
            continue;
        }
        let name =
            paragraph
                .get("Package")
                .filter(|n| !n.is_empty())
                .ok_or(DpkgError::NoPackage {
                    line: paragraph.line,
                })?;
        let version = paragraph
            .get("Version")
            .filter(|v| !v.is_empty())
            .ok_or_else(|| DpkgError::NoVersion {
                package: name.to_string(),
                line: paragraph.line,
            })?;
        let mut package = Package::new(Ecosystem::Deb, name, location);
        package.version = Some(version.to_string());
        package.arch = paragraph
            .get("Architecture")
            .filter(|a| !a.is_empty())
            .map(str::to_string);
        package.source = paragraph
            .get("Source")
            .map(|source| source_package(source, version));
        packages.push(package);
    }
    Ok(packages)
}

/// `Status: <want> <flag> <status>`: installed when the flag is `ok` and
/// the status `installed`.
fn is_installed(status: &str) -> bool {
    let words: Vec<&str> = status.split_whitespace().collect();
    matches!(words.as_slice(), [_, "ok", "installed"])
}

/// `Source: glibc (2.36-9)` → `glibc 2.36-9`; without a version in
/// parentheses the source has the binary package's version.
fn source_package(source: &str, version: &str) -> String {
    match source.split_once('(') {
        Some((name, rest)) => format!("{} {}", name.trim(), rest.trim_end_matches(')').trim()),
        None => format!("{} {version}", source.trim()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const STATUS: &str = "\
Package: libc6
Status: install ok installed
Priority: optional
Section: libs
Installed-Size: 12986
Maintainer: GNU Libc Maintainers <debian-glibc@lists.debian.org>
Architecture: amd64
Multi-Arch: same
Source: glibc
Version: 2.36-9+deb12u4
Depends: libgcc-s1
Description: GNU C Library: Shared libraries
 Contains the standard libraries that are used by nearly all programs on
 the system.
Homepage: https://www.gnu.org/software/libc/libc.html

Package: libgcc-s1
Status: install ok installed
Architecture: amd64
Source: gcc-12 (12.2.0-14)
Version: 12.2.0-14

Package: removed-one
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0

Package: half-installed
Status: install reinstreq half-installed
Architecture: amd64
Version: 1.0

Package: held
Status: hold ok installed
Architecture: all
Version: 1:2.0
";

    #[test]
    fn status_file() {
        let got = parse(STATUS.as_bytes(), Kind::Status, "var/lib/dpkg/status").unwrap();
        let summary: Vec<_> = got
            .iter()
            .map(|p| {
                (
                    p.name.as_str(),
                    p.version.as_deref(),
                    p.arch.as_deref(),
                    p.source.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "libc6",
                    Some("2.36-9+deb12u4"),
                    Some("amd64"),
                    Some("glibc 2.36-9+deb12u4")
                ),
                (
                    "libgcc-s1",
                    Some("12.2.0-14"),
                    Some("amd64"),
                    Some("gcc-12 12.2.0-14")
                ),
                ("held", Some("1:2.0"), Some("all"), None),
            ]
        );
        assert!(got.iter().all(|p| p.license.is_none()));
        assert!(got.iter().all(|p| p.location == "var/lib/dpkg/status"));
    }

    #[test]
    fn distroless_status_d_has_no_status_field() {
        let text = b"Package: tzdata\nVersion: 2024a-0+deb12u1\nArchitecture: all\n";
        let got = parse(text, Kind::StatusD, "var/lib/dpkg/status.d/tzdata").unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].name, "tzdata");
        // The same paragraph in the status file is not installed.
        assert!(
            parse(text, Kind::Status, "var/lib/dpkg/status")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn corrupt_files() {
        let cases: [(&[u8], DpkgError); 3] = [
            (
                b"Package: a\nStatus: install ok installed\n\x00\x01garbage\n",
                DpkgError::Syntax(BadLine { line: 3 }),
            ),
            (
                b"Status: install ok installed\nVersion: 1\n",
                DpkgError::NoPackage { line: 1 },
            ),
            (
                b"\nPackage: a\nStatus: install ok installed\n",
                DpkgError::NoVersion {
                    package: "a".into(),
                    line: 2,
                },
            ),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text, Kind::Status, "s").unwrap_err(), want);
        }
    }
}
