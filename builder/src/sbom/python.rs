//! Python distributions: the core metadata (`METADATA` of a `.dist-info`,
//! `PKG-INFO` of an `.egg-info`, or the `.egg-info` file itself), whose
//! headers give `Name`, `Version` and the license (`License-Expression`,
//! metadata 2.4, else a one-line `License`).
//!
//! Only the header block is read: the body after the first blank line is
//! the project's long description.

use super::control::{BadLine, paragraphs};
use super::package::{Ecosystem, Package};

/// Longer `License` values are a whole license text, not a name.
const MAX_LICENSE_NAME: usize = 200;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PythonError {
    #[error(transparent)]
    Syntax(#[from] BadLine),
    #[error("no {0} header")]
    Missing(&'static str),
}

/// The distribution described by the metadata `text` at `location`.
pub fn parse(text: &[u8], location: &str) -> Result<Package, PythonError> {
    let text = String::from_utf8_lossy(text);
    let headers = paragraphs(&text, true)?;
    let headers = headers.first().ok_or(PythonError::Missing("Name"))?;
    let name = headers
        .get("Name")
        .filter(|n| !n.is_empty())
        .ok_or(PythonError::Missing("Name"))?;
    let version = headers
        .get("Version")
        .filter(|v| !v.is_empty())
        .ok_or(PythonError::Missing("Version"))?;
    let mut package = Package::new(Ecosystem::Python, name, location);
    package.version = Some(version.to_string());
    package.license = headers
        .get("License-Expression")
        .or_else(|| headers.get("License"))
        .filter(|l| {
            !l.is_empty() && *l != "UNKNOWN" && !l.contains('\n') && l.len() <= MAX_LICENSE_NAME
        })
        .map(str::to_string);
    Ok(package)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn dist_info_metadata() {
        let text = b"Metadata-Version: 2.1\nName: requests\nVersion: 2.31.0\n\
Summary: Python HTTP for Humans.\nHome-page: https://requests.readthedocs.io\n\
License: Apache 2.0\nClassifier: License :: OSI Approved :: Apache Software License\n\
Requires-Dist: charset-normalizer (<4,>=2)\n\n# Requests\n\nNot: a header\n";
        let got = parse(
            text,
            "usr/lib/python3/dist-packages/requests-2.31.0.dist-info/METADATA",
        )
        .unwrap();
        assert_eq!(got.name, "requests");
        assert_eq!(got.version.as_deref(), Some("2.31.0"));
        assert_eq!(got.license.as_deref(), Some("Apache 2.0"));
    }

    #[test]
    fn license_expression_wins_and_license_texts_are_dropped() {
        let text = b"Metadata-Version: 2.4\nName: x\nVersion: 1\nLicense: ignored\nLicense-Expression: MIT OR Apache-2.0\n";
        assert_eq!(
            parse(text, "m").unwrap().license.as_deref(),
            Some("MIT OR Apache-2.0")
        );
        let text = b"Name: x\nVersion: 1\nLicense: Copyright (c) 2010\n        Permission is hereby granted\n";
        assert_eq!(parse(text, "m").unwrap().license, None);
        let text = b"Name: x\nVersion: 1\nLicense: UNKNOWN\n";
        assert_eq!(parse(text, "m").unwrap().license, None);
    }

    #[test]
    fn corrupt_metadata() {
        assert_eq!(
            parse(b"Version: 1\n", "m").unwrap_err(),
            PythonError::Missing("Name")
        );
        assert_eq!(
            parse(b"Name: x\n\nVersion: 1\n", "m").unwrap_err(),
            PythonError::Missing("Version")
        );
        assert_eq!(
            parse(b"\x7fELF\x02\x01", "m").unwrap_err(),
            PythonError::Syntax(BadLine { line: 1 })
        );
    }
}
