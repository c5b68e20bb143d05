//! apk's database, `/lib/apk/db/installed`: one block of `K:value` lines
//! per installed package (`P` name, `V` version, `A` architecture, `L`
//! license, `o` origin), blocks separated by blank lines. Every block is an
//! installed package; the file lists (`F`, `R`, …) are ignored.

use super::package::{Ecosystem, Package};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ApkError {
    #[error("line {line} is not a `K:value` line")]
    BadLine { line: usize },
    #[error("the package at line {line} has no {field} line")]
    Missing { field: &'static str, line: usize },
}

/// The packages listed in `text`, found at image path `location`.
pub fn parse(text: &[u8], location: &str) -> Result<Vec<Package>, ApkError> {
    let text = String::from_utf8_lossy(text);
    let mut packages = Vec::new();
    let mut block = Block::default();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if line.is_empty() {
            if let Some(package) = block.take(location)? {
                packages.push(package);
            }
            continue;
        }
        let bytes = line.as_bytes();
        if bytes.len() < 2 || bytes[1] != b':' {
            return Err(ApkError::BadLine { line: number });
        }
        block.line.get_or_insert(number);
        let value = &line[2..];
        let field = match bytes[0] {
            b'P' => &mut block.name,
            b'V' => &mut block.version,
            b'A' => &mut block.arch,
            b'L' => &mut block.license,
            b'o' => &mut block.origin,
            _ => continue,
        };
        *field = Some(value.to_string());
    }
    if let Some(package) = block.take(location)? {
        packages.push(package);
    }
    Ok(packages)
}

/// The fields of the block being read.
#[derive(Default)]
struct Block {
    line: Option<usize>,
    name: Option<String>,
    version: Option<String>,
    arch: Option<String>,
    license: Option<String>,
    origin: Option<String>,
}

impl Block {
    /// The package of the block read so far (none for an empty block), and
    /// a fresh block for the next one.
    fn take(&mut self, location: &str) -> Result<Option<Package>, ApkError> {
        let block = std::mem::take(self);
        let Some(line) = block.line else {
            return Ok(None);
        };
        let name = block
            .name
            .filter(|n| !n.is_empty())
            .ok_or(ApkError::Missing { field: "P:", line })?;
        let version = block
            .version
            .filter(|v| !v.is_empty())
            .ok_or(ApkError::Missing { field: "V:", line })?;
        let mut package = Package::new(Ecosystem::Apk, &name, location);
        package.version = Some(version);
        package.arch = block.arch.filter(|a| !a.is_empty());
        package.license = block.license.filter(|l| !l.is_empty());
        package.source = block.origin.filter(|o| !o.is_empty());
        Ok(Some(package))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const INSTALLED: &str = "\
C:Q1kNShQ9MGXsVjD8Umgt2oDU1GI6E=
P:musl
V:1.2.4_git20230717-r4
A:x86_64
S:407497
I:662528
T:the musl c library (libc) implementation
U:https://musl.libc.org/
L:MIT
o:musl
m:Natanael Copa <ncopa@alpinelinux.org>
t:1705924488
c:0a7d6a4a4b1bfb0d3b5a7a9a0b40d6b1a5d36c9e
p:so:libc.musl-x86_64.so.1=1
F:lib
R:ld-musl-x86_64.so.1
a:0:0:755
Z:Q1fMCj+Ftu/oTKoMnQK3FItAwzAWI=
R:libc.musl-x86_64.so.1

C:Q1Cs3Pw0yD2sS1kMFaq/vaPFbs+Ec=
P:libcrypto3
V:3.1.4-r5
A:x86_64
L:Apache-2.0
o:openssl
D:so:libc.musl-x86_64.so.1
";

    #[test]
    fn installed_database() {
        let got = parse(INSTALLED.as_bytes(), "lib/apk/db/installed").unwrap();
        let summary: Vec<_> = got
            .iter()
            .map(|p| {
                (
                    p.name.as_str(),
                    p.version.as_deref(),
                    p.arch.as_deref(),
                    p.license.as_deref(),
                    p.source.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "musl",
                    Some("1.2.4_git20230717-r4"),
                    Some("x86_64"),
                    Some("MIT"),
                    Some("musl")
                ),
                (
                    "libcrypto3",
                    Some("3.1.4-r5"),
                    Some("x86_64"),
                    Some("Apache-2.0"),
                    Some("openssl")
                ),
            ]
        );
    }

    #[test]
    fn corrupt_databases() {
        let cases: [(&[u8], ApkError); 3] = [
            (b"P:a\nV:1\nbroken line\n", ApkError::BadLine { line: 3 }),
            (
                b"\n\nV:1\nA:x\n",
                ApkError::Missing {
                    field: "P:",
                    line: 3,
                },
            ),
            (
                b"P:a\n\nP:b\nV:1\n",
                ApkError::Missing {
                    field: "V:",
                    line: 1,
                },
            ),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text, "lib/apk/db/installed").unwrap_err(), want);
        }
        assert_eq!(parse(b"", "x").unwrap(), []);
    }
}
