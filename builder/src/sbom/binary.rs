//! Packages compiled into executables: the Go toolchain's build
//! information (`.go.buildinfo`) and `cargo auditable`'s dependency list
//! (`.dep-v0`, zlib-compressed JSON).
//!
//! The executable is a copy in our scratch directory; [`scan_elf`] reads
//! its ELF headers and those two sections only, each with a size limit,
//! so neither a huge binary nor a lying section header costs memory.
//! [`parse_go_buildinfo`] and [`parse_auditable`] are the bounded parsers
//! of the section bytes, fuzzed on their own.
//!
//! Not read: executables without section headers (packed with UPX and
//! the like), Go binaries built before Go 1.18 (listed as skipped), and
//! shared libraries without an executable bit (Debian installs them 0644;
//! only files with an execute bit are opened, which keeps the copying to
//! the binaries that carry these sections in practice).

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;

use object::{Object, ObjectSection, ReadCache};
use serde::Deserialize;

use super::error::ScanError;
use super::package::{Ecosystem, Package};

/// Go's reader looks at the first 64 KiB of the section and follows the
/// strings from there; a module list of thousands of dependencies stays
/// far below this.
pub const MAX_GO_BUILDINFO: u64 = 4 << 20;
/// cargo auditable's own reader limits the decompressed JSON to 8 MiB.
pub const MAX_AUDITABLE_COMPRESSED: u64 = 8 << 20;
pub const MAX_AUDITABLE_JSON: u64 = 8 << 20;

const GO_MAGIC: &[u8] = b"\xff Go buildinf:";
const GO_HEADER_LEN: usize = 32;
const GO_ALIGN: usize = 16;
/// Flag bit: version and module information are inline after the header
/// (Go >= 1.18), not behind pointers into the data segment.
const GO_FLAG_INLINE: u8 = 0x2;

/// The ELF magic, the first four bytes of every ELF file.
pub const ELF_MAGIC: &[u8] = b"\x7fELF";

/// What the sections of one executable gave.
#[derive(Debug, Default)]
pub struct BinaryPackages {
    pub packages: Vec<Package>,
    pub problems: Vec<ScanError>,
    /// The most section bytes held at once (the decompressed cargo
    /// auditable JSON, at most [`MAX_AUDITABLE_JSON`], not counted).
    pub buffered: u64,
}

/// Reads the Go and cargo auditable sections of the ELF file `file` (our
/// copy of the image file at `location`). A file that is not a valid ELF
/// file, or has neither section, gives nothing.
pub fn scan_elf(file: &File, location: &str) -> Result<BinaryPackages, ScanError> {
    let cache = ReadCache::new(file);
    let elf = object::File::parse(&cache).map_err(ScanError::Elf)?;
    let mut out = BinaryPackages::default();
    if let Some(range) = section_range(&elf, ".go.buildinfo") {
        match read_section(
            file,
            range,
            MAX_GO_BUILDINFO,
            "Go build information section",
        ) {
            Ok(data) => {
                out.buffered = out.buffered.max(data.len() as u64);
                match parse_go_buildinfo(&data, location) {
                    Ok(packages) => out.packages.extend(packages),
                    Err(err) => out.problems.push(err.into()),
                }
            }
            Err(err) => out.problems.push(err),
        }
    }
    if let Some(range) = section_range(&elf, ".dep-v0") {
        match read_section(
            file,
            range,
            MAX_AUDITABLE_COMPRESSED,
            "cargo auditable section",
        ) {
            Ok(data) => {
                // Plus the decompressed JSON, at most MAX_AUDITABLE_JSON.
                out.buffered = out.buffered.max(data.len() as u64);
                match parse_auditable(&data, location) {
                    Ok(packages) => out.packages.extend(packages),
                    Err(err) => out.problems.push(err.into()),
                }
            }
            Err(err) => out.problems.push(err),
        }
    }
    Ok(out)
}

fn section_range<'data>(
    elf: &object::File<'data, &'data ReadCache<&'data File>>,
    name: &str,
) -> Option<(u64, u64)> {
    elf.section_by_name(name)?.file_range()
}

fn read_section(
    file: &File,
    (offset, size): (u64, u64),
    limit: u64,
    what: &'static str,
) -> Result<Vec<u8>, ScanError> {
    if size > limit {
        return Err(ScanError::TooLarge { what, size, limit });
    }
    let mut data = vec![0; size as usize];
    file.read_exact_at(&mut data, offset)
        .map_err(|_| ScanError::Unsupported("a section lies outside the file"))?;
    Ok(data)
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GoError {
    #[error("no `\\xff Go buildinf:` header in the section")]
    NoMagic,
    #[error(
        "build information in the pointer format of Go before 1.18 (not read; rebuild with a current Go)"
    )]
    PointerFormat,
    #[error("build information string at offset {offset} runs past the section")]
    Truncated { offset: usize },
}

/// The Go toolchain, main module and dependencies recorded in a
/// `.go.buildinfo` section, as Go >= 1.18 writes it:
///
/// ```text
/// "\xff Go buildinf:" ptrsize:u8 flags:u8  (padded to 32 bytes)
/// uvarint len, Go version;  uvarint len, module info
/// ```
///
/// The module info is `path`, `mod`, `dep` and `=>` (replacement) lines of
/// tab-separated fields, wrapped in 16-byte sentinels.
pub fn parse_go_buildinfo(section: &[u8], location: &str) -> Result<Vec<Package>, GoError> {
    let start = (0..section.len())
        .step_by(GO_ALIGN)
        .find(|&at| section[at..].starts_with(GO_MAGIC))
        .ok_or(GoError::NoMagic)?;
    let header = &section[start..];
    if header.len() < GO_HEADER_LEN {
        return Err(GoError::Truncated { offset: start });
    }
    if header[15] & GO_FLAG_INLINE == 0 {
        return Err(GoError::PointerFormat);
    }
    let mut at = GO_HEADER_LEN;
    let version = read_go_string(header, &mut at)?;
    let modinfo = read_go_string(header, &mut at)?;
    let modinfo = strip_sentinels(modinfo);

    let mut packages = Vec::new();
    let version = String::from_utf8_lossy(version);
    if let Some(go) = version
        .split_whitespace()
        .next()
        .and_then(|v| v.strip_prefix("go"))
        .filter(|v| !v.is_empty())
    {
        let mut stdlib = Package::new(Ecosystem::Golang, "stdlib", location);
        stdlib.version = Some(go.to_string());
        packages.push(stdlib);
    }
    for line in String::from_utf8_lossy(modinfo).lines() {
        let mut fields = line.split('\t');
        let (Some(kind), Some(path)) = (fields.next(), fields.next()) else {
            continue;
        };
        let version = fields.next().filter(|v| !v.is_empty() && *v != "(devel)");
        match kind {
            "mod" | "dep" if !path.is_empty() => {
                let mut package = Package::new(Ecosystem::Golang, path, location);
                package.version = version.map(str::to_string);
                packages.push(package);
            }
            // A replacement by a module version (not a local directory)
            // is what the binary contains.
            "=>" => {
                if let (Some(last), Some(version)) = (packages.last_mut(), version)
                    && last.name != "stdlib"
                    && !path.is_empty()
                {
                    last.name = path.to_string();
                    last.version = Some(version.to_string());
                }
            }
            _ => {}
        }
    }
    Ok(packages)
}

fn read_go_string<'a>(data: &'a [u8], at: &mut usize) -> Result<&'a [u8], GoError> {
    let offset = *at;
    let truncated = GoError::Truncated { offset };
    let mut len: u64 = 0;
    let mut shift = 0;
    loop {
        let byte = *data.get(*at).ok_or(GoError::Truncated { offset })?;
        *at += 1;
        if shift >= 64 {
            return Err(truncated);
        }
        len |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    let end = usize::try_from(len)
        .ok()
        .and_then(|len| at.checked_add(len))
        .filter(|&end| end <= data.len())
        .ok_or(truncated)?;
    let text = &data[*at..end];
    *at = end;
    Ok(text)
}

/// Go wraps the module info in 16 bytes on each side (so that it can be
/// found in a binary); `debug/buildinfo` strips them when the byte before
/// the closing sentinel is a newline.
fn strip_sentinels(modinfo: &[u8]) -> &[u8] {
    if modinfo.len() >= 33 && modinfo[modinfo.len() - 17] == b'\n' {
        &modinfo[16..modinfo.len() - 16]
    } else {
        modinfo
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuditableError {
    #[error("cannot decompress")]
    Zlib(#[source] std::io::Error),
    #[error("decompressed list is more than {MAX_AUDITABLE_JSON} bytes")]
    TooLarge,
    #[error("not the dependency list JSON")]
    Json(#[source] serde_json::Error),
}

#[derive(Deserialize)]
struct DependencyList {
    packages: Vec<AuditablePackage>,
}

#[derive(Deserialize)]
struct AuditablePackage {
    name: String,
    version: String,
    source: Option<String>,
    /// `runtime` (the default) or `build`: build dependencies (build
    /// scripts, proc macros) ran at build time and are not in the binary.
    kind: Option<String>,
}

/// The crates listed in a `.dep-v0` section (zlib-compressed JSON, the
/// format of the `auditable-serde` crate).
pub fn parse_auditable(section: &[u8], location: &str) -> Result<Vec<Package>, AuditableError> {
    let mut json = Vec::new();
    flate2::read::ZlibDecoder::new(section)
        .take(MAX_AUDITABLE_JSON + 1)
        .read_to_end(&mut json)
        .map_err(AuditableError::Zlib)?;
    if json.len() as u64 > MAX_AUDITABLE_JSON {
        return Err(AuditableError::TooLarge);
    }
    let list: DependencyList = serde_json::from_slice(&json).map_err(AuditableError::Json)?;
    Ok(list
        .packages
        .into_iter()
        .filter(|p| p.kind.as_deref() != Some("build") && !p.name.is_empty())
        .map(|p| {
            let mut package = Package::new(Ecosystem::Cargo, &p.name, location);
            package.version = Some(p.version).filter(|v| !v.is_empty());
            package.source = p.source.filter(|s| s != "crates.io");
            package
        })
        .collect())
}

/// Builds a Go >= 1.18 `.go.buildinfo` section; for tests and fuzz seeds.
#[doc(hidden)]
pub fn build_go_buildinfo(version: &str, modinfo: &str) -> Vec<u8> {
    let mut section = GO_MAGIC.to_vec();
    section.push(8);
    section.push(GO_FLAG_INLINE);
    section.resize(GO_HEADER_LEN, 0);
    let sentinel_start: [u8; 16] = *b"0w\xaf\x0c\x92t\x08\x02A\xe1\xc1\x07\xe6\xd6\x18\xe6";
    let sentinel_end: [u8; 16] = *b"\xf92C1\x86\x18 r\x00\x82B\x10A\x16\xd8\xf2";
    let mut wrapped = sentinel_start.to_vec();
    wrapped.extend_from_slice(modinfo.as_bytes());
    wrapped.extend_from_slice(&sentinel_end);
    for text in [version.as_bytes(), &wrapped[..]] {
        let mut len = text.len() as u64;
        loop {
            let byte = (len & 0x7f) as u8;
            len >>= 7;
            if len == 0 {
                section.push(byte);
                break;
            }
            section.push(byte | 0x80);
        }
        section.extend_from_slice(text);
    }
    section
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::io::Write;

    pub(crate) const MODINFO: &str = "path\tgithub.com/example/app/cmd/app\n\
mod\tgithub.com/example/app\t(devel)\t\n\
dep\tgithub.com/spf13/cobra\tv1.8.0\th1:7aJaZx1B85qltLMc546zn58BxxfZdR/W22ej9CFoEf0=\n\
dep\tgolang.org/x/sys\tv0.15.0\th1:abc=\n\
=>\tgolang.org/x/sys\tv0.16.0\th1:def=\n\
dep\tgithub.com/local/thing\tv0.0.0\n\
=>\t../thing\t\t\n\
build\t-compiler=gc\nbuild\tGOARCH=amd64\n";

    fn summary(packages: &[Package]) -> Vec<(String, Option<String>)> {
        packages
            .iter()
            .map(|p| (p.name.clone(), p.version.clone()))
            .collect()
    }

    #[test]
    fn go_buildinfo() {
        let mut section = vec![0u8; 16];
        section.extend(build_go_buildinfo("go1.22.1 X:boringcrypto", MODINFO));
        let got = parse_go_buildinfo(&section, "usr/bin/app").unwrap();
        let s = |n: &str, v: Option<&str>| (n.to_string(), v.map(str::to_string));
        assert_eq!(
            summary(&got),
            [
                s("stdlib", Some("1.22.1")),
                s("github.com/example/app", None),
                s("github.com/spf13/cobra", Some("v1.8.0")),
                s("golang.org/x/sys", Some("v0.16.0")),
                s("github.com/local/thing", Some("v0.0.0")),
            ]
        );
    }

    #[test]
    fn go_buildinfo_errors() {
        let good = build_go_buildinfo("go1.21.0", MODINFO);
        let mut pointer = good.clone();
        pointer[15] = 0;
        // The magic only counts at a 16-byte boundary.
        let mut unaligned = vec![0u8; 3];
        unaligned.extend_from_slice(&good);
        let cases: [(&[u8], GoError); 5] = [
            (b"", GoError::NoMagic),
            (&unaligned, GoError::NoMagic),
            (&pointer, GoError::PointerFormat),
            (&good[..20], GoError::Truncated { offset: 0 }),
            (
                &good[..GO_HEADER_LEN + 4],
                GoError::Truncated {
                    offset: GO_HEADER_LEN,
                },
            ),
        ];
        for (section, want) in cases {
            assert_eq!(parse_go_buildinfo(section, "x").unwrap_err(), want);
        }
        // A length varint that never ends, or claims more than 2^64.
        let mut endless = good[..GO_HEADER_LEN].to_vec();
        endless.extend([0xff; 12]);
        assert_eq!(
            parse_go_buildinfo(&endless, "x").unwrap_err(),
            GoError::Truncated {
                offset: GO_HEADER_LEN
            }
        );
    }

    pub(crate) fn auditable_section(json: &str) -> Vec<u8> {
        let mut encoder =
            flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(json.as_bytes()).unwrap();
        encoder.finish().unwrap()
    }

    pub(crate) const AUDITABLE_JSON: &str = r#"{"packages":[
        {"name":"app","version":"0.1.0","source":"local","dependencies":[1,2],"root":true},
        {"name":"cc","version":"1.0.83","source":"crates.io","kind":"build"},
        {"name":"serde","version":"1.0.197","source":"crates.io","dependencies":[]}
    ]}"#;

    #[test]
    fn auditable_list() {
        let got = parse_auditable(&auditable_section(AUDITABLE_JSON), "usr/bin/app").unwrap();
        let s = |n: &str, v: &str| (n.to_string(), Some(v.to_string()));
        assert_eq!(summary(&got), [s("app", "0.1.0"), s("serde", "1.0.197")]);
        assert_eq!(got[0].source.as_deref(), Some("local"));
        assert_eq!(got[1].source, None);
    }

    #[test]
    fn auditable_errors() {
        assert!(matches!(
            parse_auditable(b"not zlib", "x").unwrap_err(),
            AuditableError::Zlib(_)
        ));
        assert!(matches!(
            parse_auditable(&auditable_section("{\"packages\": 3}"), "x").unwrap_err(),
            AuditableError::Json(_)
        ));
        // A zlib bomb stops at the limit instead of filling memory.
        let bomb = auditable_section(&" ".repeat(MAX_AUDITABLE_JSON as usize + 10));
        assert!(bomb.len() < 100_000);
        assert!(matches!(
            parse_auditable(&bomb, "x").unwrap_err(),
            AuditableError::TooLarge
        ));
    }
}
