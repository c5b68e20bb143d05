//! [`generate`] over synthetic layers written with the `tar` crate: every
//! scanner, whiteouts and opaque directories, corrupt package files, and
//! the memory bound.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use super::binary::build_go_buildinfo;
use super::rpm::header;
use super::*;

/// One tar entry of a synthetic layer.
enum Item<'a> {
    File(&'a str, Vec<u8>),
    Executable(&'a str, Vec<u8>),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
}

use Item::*;

#[derive(Clone, Copy)]
enum Packing {
    Tar,
    Gzip,
    Zstd,
}

fn tar_bytes(items: &[Item<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for item in items {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(0);
        match item {
            File(path, data) | Executable(path, data) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(if matches!(item, Executable(..)) {
                    0o755
                } else {
                    0o644
                });
                header.set_size(data.len() as u64);
                builder.append_data(&mut header, path, &data[..]).unwrap();
            }
            Dir(path) => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                builder.append_data(&mut header, path, &[][..]).unwrap();
            }
            Symlink(path, target) | Hardlink(path, target) => {
                header.set_entry_type(if matches!(item, Symlink(..)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                });
                header.set_mode(0o777);
                header.set_size(0);
                builder.append_link(&mut header, path, target).unwrap();
            }
        }
    }
    builder.into_inner().unwrap()
}

/// Writes the layer into `dir` as layer `<n>` and describes it.
fn layer(dir: &Path, n: usize, packing: Packing, items: &[Item<'_>]) -> LayerFile {
    let tar = tar_bytes(items);
    let (bytes, media_type) = match packing {
        Packing::Tar => (tar, "application/vnd.oci.image.layer.v1.tar"),
        Packing::Gzip => {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&tar).unwrap();
            (
                gz.finish().unwrap(),
                "application/vnd.oci.image.layer.v1.tar+gzip",
            )
        }
        Packing::Zstd => (
            zstd::encode_all(&tar[..], 1).unwrap(),
            "application/vnd.oci.image.layer.v1.tar+zstd",
        ),
    };
    let path = dir.join(format!("layer{n}"));
    std::fs::write(&path, bytes).unwrap();
    LayerFile {
        path,
        media_type: media_type.to_string(),
    }
}

fn subject() -> Subject {
    Subject {
        reference: "registry.example/app:1".into(),
        platform: crate::platform::Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        },
        manifest_digest: "sha256:abc".into(),
    }
}

struct Run {
    sbom: Sbom,
    /// The work directory, which must be left empty.
    work: PathBuf,
}

fn run(dir: &TempDir, layers: &[LayerFile]) -> Run {
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let sbom = generate(layers, &subject(), &SbomOptions::new(&work, 0)).unwrap();
    assert_eq!(
        std::fs::read_dir(&work).unwrap().count(),
        0,
        "the scratch directory is removed"
    );
    Run { sbom, work }
}

fn purls(sbom: &Sbom) -> Vec<&str> {
    sbom.packages
        .iter()
        .map(|p| p.purl.as_deref().unwrap_or("<none>"))
        .collect()
}

fn skipped(sbom: &Sbom) -> Vec<(&str, usize, &str)> {
    sbom.skipped
        .iter()
        .map(|s| (s.path.as_str(), s.layer, s.reason.as_str()))
        .collect()
}

const OS_RELEASE: &str =
    "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n";

const STATUS: &str = "\
Package: base-files
Status: install ok installed
Architecture: amd64
Version: 12.4+deb12u5

Package: libc6
Status: install ok installed
Architecture: amd64
Source: glibc
Version: 2.36-9+deb12u4

Package: gone
Status: deinstall ok config-files
Architecture: amd64
Version: 1
";

const APK: &str = "P:musl\nV:1.2.4-r2\nA:x86_64\nL:MIT\no:musl\n\nP:busybox\nV:1.36.1-r15\nA:x86_64\nL:GPL-2.0-only\n";

fn metadata(name: &str, version: &str, license: &str) -> Vec<u8> {
    format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nLicense: {license}\n\nlong description\n")
        .into_bytes()
}

fn package_json(name: &str, version: &str) -> Vec<u8> {
    format!(r#"{{"name":"{name}","version":"{version}","license":"MIT"}}"#).into_bytes()
}

/// A minimal ELF64 executable with the given sections (no segments: the
/// scanner reads section headers only).
fn elf(sections: &[(&str, &[u8])]) -> Vec<u8> {
    const EHDR: usize = 64;
    const SHDR: usize = 64;
    let mut body = Vec::new();
    let mut shstrtab = vec![0u8];
    // (name offset, type, offset, size)
    let mut headers = vec![(0u32, 0u32, 0u64, 0u64)];
    for (name, data) in sections {
        let name_at = shstrtab.len() as u32;
        shstrtab.extend_from_slice(name.as_bytes());
        shstrtab.push(0);
        headers.push((name_at, 1, (EHDR + body.len()) as u64, data.len() as u64));
        body.extend_from_slice(data);
    }
    let name_at = shstrtab.len() as u32;
    shstrtab.extend_from_slice(b".shstrtab\0");
    headers.push((
        name_at,
        3,
        (EHDR + body.len()) as u64,
        shstrtab.len() as u64,
    ));
    body.extend_from_slice(&shstrtab);
    while body.len() % 8 != 0 {
        body.push(0);
    }
    let shoff = (EHDR + body.len()) as u64;
    let mut out = Vec::new();
    out.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
    out.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    out.extend_from_slice(&0x3eu16.to_le_bytes()); // x86-64
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes()); // entry
    out.extend_from_slice(&0u64.to_le_bytes()); // phoff
    out.extend_from_slice(&shoff.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes()); // flags
    out.extend_from_slice(&(EHDR as u16).to_le_bytes());
    out.extend_from_slice(&56u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes()); // phnum
    out.extend_from_slice(&(SHDR as u16).to_le_bytes());
    out.extend_from_slice(&(headers.len() as u16).to_le_bytes());
    out.extend_from_slice(&((headers.len() - 1) as u16).to_le_bytes());
    assert_eq!(out.len(), EHDR);
    out.extend_from_slice(&body);
    for (name, kind, offset, size) in headers {
        out.extend_from_slice(&name.to_le_bytes());
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes()); // flags
        out.extend_from_slice(&0u64.to_le_bytes()); // addr
        out.extend_from_slice(&offset.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&1u64.to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes());
    }
    out
}

const MODINFO: &str = "path\texample.com/app\nmod\texample.com/app\tv1.2.3\th1:x=\ndep\tgithub.com/spf13/cobra\tv1.8.0\th1:y=\n";

fn go_binary() -> Vec<u8> {
    elf(&[(".go.buildinfo", &build_go_buildinfo("go1.22.1", MODINFO))])
}

fn rust_binary() -> Vec<u8> {
    let json = r#"{"packages":[{"name":"tool","version":"0.3.0","source":"local","root":true,"dependencies":[1]},{"name":"serde","version":"1.0.197","source":"crates.io"}]}"#;
    let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    zlib.write_all(json.as_bytes()).unwrap();
    elf(&[(".dep-v0", &zlib.finish().unwrap())])
}

fn rpm_database(dir: &Path) -> Vec<u8> {
    let path = dir.join("rpmdb-src.sqlite");
    let connection = rusqlite::Connection::open(&path).unwrap();
    connection
        .execute_batch(
            "CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL);",
        )
        .unwrap();
    let blob = header::build(
        &[
            (1000, 6, b"bash"),
            (1001, 6, b"5.2.26"),
            (1002, 6, b"3.fc40"),
            (1022, 6, b"x86_64"),
            (1014, 6, b"GPL-3.0-or-later"),
        ],
        &[(1003, 1)],
    );
    connection
        .execute("INSERT INTO Packages (blob) VALUES (?1)", [blob])
        .unwrap();
    drop(connection);
    std::fs::read(&path).unwrap()
}

#[test]
fn every_scanner_across_compressions() {
    let dir = tempfile::tempdir().unwrap();
    let layers = [
        layer(
            dir.path(),
            0,
            Packing::Gzip,
            &[
                Dir("etc"),
                File("etc/os-release", OS_RELEASE.into()),
                File("var/lib/dpkg/status", STATUS.into()),
                File(
                    "var/lib/dpkg/status.d/tzdata",
                    b"Package: tzdata\nVersion: 2024a-0+deb12u1\nArchitecture: all\n".to_vec(),
                ),
                File(
                    "var/lib/dpkg/status.d/tzdata.md5sums",
                    b"d41d8cd98f00b204e9800998ecf8427e  usr/share/zoneinfo/UTC\n".to_vec(),
                ),
                File(
                    "usr/lib/python3/dist-packages/six-1.16.0.dist-info/METADATA",
                    metadata("six", "1.16.0", "MIT"),
                ),
                File(
                    "usr/lib/python3/dist-packages/chardet-5.1.0.egg-info",
                    metadata("chardet", "5.1.0", "LGPL"),
                ),
            ],
        ),
        layer(
            dir.path(),
            1,
            Packing::Zstd,
            &[
                File("lib/apk/db/installed", APK.into()),
                File(
                    "usr/lib/sysimage/rpm/rpmdb.sqlite",
                    rpm_database(dir.path()),
                ),
                File(
                    "app/node_modules/lodash/package.json",
                    package_json("lodash", "4.17.21"),
                ),
                File(
                    "app/node_modules/@babel/core/package.json",
                    package_json("@babel/core", "7.23.9"),
                ),
                File(
                    "app/node_modules/lodash/fp/package.json",
                    package_json("fp", "1.0.0"),
                ),
            ],
        ),
        layer(
            dir.path(),
            2,
            Packing::Tar,
            &[
                Executable("usr/local/bin/app", go_binary()),
                Executable("usr/local/bin/tool", rust_binary()),
                // Not executable: never looked at.
                File("usr/lib/not-run", go_binary()),
                Executable("usr/local/bin/script", b"#!/bin/sh\necho hi\n".to_vec()),
            ],
        ),
    ];
    let Run { sbom, .. } = run(&dir, &layers);
    assert_eq!(skipped(&sbom), []);
    assert_eq!(
        purls(&sbom),
        [
            "pkg:deb/debian/base-files@12.4%2Bdeb12u5?arch=amd64&distro=debian-12",
            "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12",
            "pkg:deb/debian/tzdata@2024a-0%2Bdeb12u1?arch=all&distro=debian-12",
            // os-release says debian: that is the namespace every OS
            // package gets (a real image has one distro).
            "pkg:apk/debian/busybox@1.36.1-r15?arch=x86_64&distro=debian-12",
            "pkg:apk/debian/musl@1.2.4-r2?arch=x86_64&distro=debian-12",
            "pkg:rpm/debian/bash@5.2.26-3.fc40?arch=x86_64&distro=debian-12&epoch=1",
            "pkg:pypi/chardet@5.1.0",
            "pkg:pypi/six@1.16.0",
            "pkg:npm/%40babel/core@7.23.9",
            "pkg:npm/lodash@4.17.21",
            "pkg:golang/example.com/app@v1.2.3",
            "pkg:golang/github.com/spf13/cobra@v1.8.0",
            "pkg:golang/stdlib@1.22.1",
            "pkg:cargo/serde@1.0.197",
            "pkg:cargo/tool@0.3.0",
        ]
    );
    assert_eq!(sbom.stats.layers, 3);
    assert_eq!(sbom.stats.binaries, 2, "the two ELF executables");
    assert_eq!(sbom.media_type, "application/spdx+json");
    let document: serde_json::Value = serde_json::from_slice(&sbom.document).unwrap();
    assert_eq!(document["spdxVersion"], "SPDX-2.3");
    // The image package and one per package found.
    assert_eq!(
        document["packages"].as_array().unwrap().len(),
        sbom.packages.len() + 1
    );
    assert_eq!(
        document["hasExtractedLicensingInfos"],
        serde_json::json!([{"licenseId": "LicenseRef-LGPL", "extractedText": "LGPL"}])
    );
}

#[test]
fn whiteouts_opaque_dirs_and_replacements() {
    let dir = tempfile::tempdir().unwrap();
    let site = "usr/lib/python3/dist-packages";
    let six = format!("{site}/six-1.16.0.dist-info/METADATA");
    let idna = format!("{site}/idna-3.3.dist-info/METADATA");
    let certifi = format!("{site}/certifi-2024.2.2.dist-info/METADATA");
    let opaque = format!("{site}/.wh..wh..opq");
    let layers = [
        layer(
            dir.path(),
            0,
            Packing::Gzip,
            &[
                File("var/lib/dpkg/status", STATUS.into()),
                File("lib/apk/db/installed", APK.into()),
                File(&six, metadata("six", "1.16.0", "MIT")),
                File(&idna, metadata("idna", "3.3", "BSD-3-Clause")),
                File(
                    "app/node_modules/lodash/package.json",
                    package_json("lodash", "4.17.21"),
                ),
                File(
                    "app/node_modules/left-pad/package.json",
                    package_json("left-pad", "1.3.0"),
                ),
                Executable("usr/local/bin/app", go_binary()),
            ],
        ),
        layer(
            dir.path(),
            1,
            Packing::Gzip,
            &[
                // The status file deleted, the apk database replaced.
                File("var/lib/dpkg/.wh.status", Vec::new()),
                File(
                    "lib/apk/db/installed",
                    b"P:musl\nV:1.2.5-r0\nA:x86_64\n".to_vec(),
                ),
                // This layer's own entry comes before its opaque marker and
                // survives it; the lower layer's go.
                File(&certifi, metadata("certifi", "2024.2.2", "MPL-2.0")),
                File(&opaque, Vec::new()),
                // A whole package directory whited out.
                File("app/node_modules/.wh.left-pad", Vec::new()),
                // A binary replaced by a symlink.
                Symlink("usr/local/bin/app", "/usr/bin/true"),
            ],
        ),
    ];
    let Run { sbom, .. } = run(&dir, &layers);
    assert_eq!(
        purls(&sbom),
        [
            "pkg:apk/alpine/musl@1.2.5-r0?arch=x86_64",
            "pkg:pypi/certifi@2024.2.2",
            "pkg:npm/lodash@4.17.21",
        ]
    );
    assert_eq!(skipped(&sbom), []);

    // A later layer putting a package database back restores it.
    let again = layer(
        dir.path(),
        2,
        Packing::Tar,
        &[File("var/lib/dpkg/status", STATUS.into())],
    );
    let mut all = layers.to_vec();
    all.push(again);
    let Run { sbom, .. } = run(&dir, &all);
    assert_eq!(
        sbom.packages
            .iter()
            .filter(|p| p.ecosystem == Ecosystem::Deb)
            .count(),
        2
    );
    assert!(
        sbom.packages
            .iter()
            .all(|p| p.location != "var/lib/dpkg/status" || p.ecosystem == Ecosystem::Deb)
    );

    // An opaque root directory (`.wh..wh..opq` at the top) hides all.
    let root_opaque = layer(
        dir.path(),
        3,
        Packing::Tar,
        &[File(".wh..wh..opq", Vec::new())],
    );
    let Run { sbom, .. } = run(&dir, &[layers[0].clone(), root_opaque]);
    assert_eq!(purls(&sbom), Vec::<&str>::new());
}

#[test]
fn directory_replaced_by_file_hides_its_tree() {
    let dir = tempfile::tempdir().unwrap();
    let layers = [
        layer(
            dir.path(),
            0,
            Packing::Tar,
            &[File(
                "app/node_modules/lodash/package.json",
                package_json("lodash", "4.17.21"),
            )],
        ),
        layer(
            dir.path(),
            1,
            Packing::Tar,
            &[File("app/node_modules", b"now a file".to_vec())],
        ),
    ];
    let Run { sbom, .. } = run(&dir, &layers);
    assert_eq!(purls(&sbom), Vec::<&str>::new());
}

#[test]
fn hard_links_and_symlinks() {
    let dir = tempfile::tempdir().unwrap();
    let layers = [layer(
        dir.path(),
        0,
        Packing::Tar,
        &[
            Executable("usr/local/bin/app", go_binary()),
            Hardlink("usr/bin/app-copy", "usr/local/bin/app"),
            // Symlinks are never followed, so one leading to a host file
            // reads nothing.
            Symlink("var/lib/dpkg/status", "/etc/passwd"),
            Hardlink("lib/apk/db/installed", "nowhere"),
        ],
    )];
    let Run { sbom, .. } = run(&dir, &layers);
    let locations: Vec<_> = sbom
        .packages
        .iter()
        .filter(|p| p.name == "stdlib")
        .map(|p| p.location.as_str())
        .collect();
    assert_eq!(locations, ["usr/bin/app-copy", "usr/local/bin/app"]);
    assert_eq!(
        skipped(&sbom),
        [(
            "lib/apk/db/installed",
            0,
            "hard link to /nowhere, which no layer provides as a package file"
        )]
    );
}

#[test]
fn corrupt_package_files_are_skipped_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let big_json = vec![b' '; (1 << 20) + 1];
    let bad_header = {
        let path = dir.path().join("bad.sqlite");
        let connection = rusqlite::Connection::open(&path).unwrap();
        connection
            .execute_batch(
                "CREATE TABLE Packages (hnum INTEGER PRIMARY KEY, blob BLOB NOT NULL);
                 INSERT INTO Packages VALUES (7, x'0000ffff00000000');",
            )
            .unwrap();
        drop(connection);
        std::fs::read(&path).unwrap()
    };
    let layers = [layer(
        dir.path(),
        0,
        Packing::Gzip,
        &[
            File("etc/os-release", OS_RELEASE.into()),
            File(
                "var/lib/dpkg/status",
                b"Package: a\nStatus: install ok installed\n\x00garbage\n".to_vec(),
            ),
            File(
                "var/lib/rpm/rpmdb.sqlite",
                b"SQLite format 3\0 truncated".to_vec(),
            ),
            File("usr/lib/sysimage/rpm/rpmdb.sqlite", bad_header),
            File("var/lib/rpm/Packages", vec![0; 4096]),
            File(
                "app/node_modules/broken/package.json",
                b"{\"name\": ".to_vec(),
            ),
            File("app/node_modules/huge/package.json", big_json),
            File(
                "usr/lib/python3/dist-packages/x-1.dist-info/METADATA",
                b"Summary: no name\n".to_vec(),
            ),
            Executable(
                "usr/bin/old-go",
                elf(&[(
                    ".go.buildinfo",
                    b"\xff Go buildinf:\x08\x00 pointer format ..........",
                )]),
            ),
            File(
                "app/node_modules/fine/package.json",
                package_json("fine", "1.0.0"),
            ),
        ],
    )];
    let Run { sbom, .. } = run(&dir, &layers);
    assert_eq!(purls(&sbom), ["pkg:npm/fine@1.0.0"]);
    let reasons = skipped(&sbom);
    let want: [(&str, usize, &str); 8] = [
        (
            "app/node_modules/broken/package.json",
            0,
            "invalid package.json: EOF while parsing a value at line 1 column 9",
        ),
        (
            "app/node_modules/huge/package.json",
            0,
            "file is 1048577 bytes, more than the 1048576 bytes a package.json may have",
        ),
        (
            "usr/bin/old-go",
            0,
            "invalid Go build information: build information in the pointer format of Go before 1.18 (not read; rebuild with a current Go)",
        ),
        (
            "usr/lib/python3/dist-packages/x-1.dist-info/METADATA",
            0,
            "invalid Python package metadata: no Name header",
        ),
        (
            "usr/lib/sysimage/rpm/rpmdb.sqlite",
            0,
            "invalid rpm database: package header 7: header needs 1048568 bytes for 65535 entries and 0 data bytes, blob has 8",
        ),
        (
            "var/lib/dpkg/status",
            0,
            "invalid dpkg status file: line 3 is not a `Field: value` line",
        ),
        (
            "var/lib/rpm/Packages",
            0,
            "rpm Berkeley DB and ndb databases (RHEL 8 and older, SUSE) are not read, only rpmdb.sqlite",
        ),
        ("var/lib/rpm/rpmdb.sqlite", 0, ""),
    ];
    assert_eq!(reasons.len(), want.len(), "{reasons:#?}");
    for (got, want) in reasons.iter().zip(want) {
        if want.2.is_empty() {
            assert_eq!(got.0, want.0);
            assert!(
                got.2.starts_with("invalid rpm database: sqlite: "),
                "{got:?}"
            );
        } else {
            assert_eq!(*got, want);
        }
    }
    // The document itself says which files it could not read.
    let document: serde_json::Value = serde_json::from_slice(&sbom.document).unwrap();
    let comment = document["creationInfo"]["comment"].as_str().unwrap();
    assert!(
        comment
            .starts_with("package files not read, their packages are missing from this document: "),
        "{comment}"
    );
    for (path, _, _) in &reasons {
        assert!(
            comment.contains(&format!("/{path} (layer 0): ")),
            "{path}: {comment}"
        );
    }
}

#[test]
fn a_corrupt_layer_fails_with_its_index_and_path() {
    let dir = tempfile::tempdir().unwrap();
    let good = layer(dir.path(), 0, Packing::Tar, &[File("a", b"a".to_vec())]);
    let bad = dir.path().join("bad");
    // A gzip header followed by garbage.
    std::fs::write(&bad, b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03garbage").unwrap();
    let layers = [
        good,
        LayerFile {
            path: bad.clone(),
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
        },
    ];
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let err = generate(&layers, &subject(), &SbomOptions::new(&work, 0)).unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "cannot read layer 1 (application/vnd.oci.image.layer.v1.tar+gzip) at {}: ",
            bad.display()
        )),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(&work).unwrap().count(), 0);
}

#[test]
fn large_files_are_streamed_not_buffered() {
    let dir = tempfile::tempdir().unwrap();
    let big = 48 << 20;
    // A large data file, a large executable that is not ELF, and a large
    // ELF executable whose Go section is at its end: none is held.
    let mut go_big = vec![0u8; big];
    go_big.extend(go_binary());
    let big_elf = {
        let buildinfo = build_go_buildinfo("go1.22.1", MODINFO);
        let padding = vec![0u8; big];
        elf(&[(".data", &padding), (".go.buildinfo", &buildinfo)])
    };
    let mut not_elf = vec![b'#'; big];
    not_elf[..2].copy_from_slice(b"#!");
    let layers = [layer(
        dir.path(),
        0,
        Packing::Gzip,
        &[
            File("srv/data.bin", go_big),
            Executable("usr/bin/script", not_elf),
            Executable("usr/bin/big-go", big_elf),
            File("var/lib/dpkg/status", STATUS.into()),
        ],
    )];
    let Run { sbom, work } = run(&dir, &layers);
    assert_eq!(
        purls(&sbom)
            .iter()
            .filter(|p| p.starts_with("pkg:golang/"))
            .count(),
        3,
        "the Go binary at the end of the large ELF file is read"
    );
    // The largest content held is the status file, the only package file.
    assert_eq!(sbom.stats.peak_buffered_bytes, STATUS.len() as u64);
    assert_eq!(sbom.stats.binaries, 1);
    assert_eq!(std::fs::read_dir(work).unwrap().count(), 0);
}

/// A manual check on real layers: `KILN_SBOM_LAYERS=a.tar.gz:b.tar cargo
/// test -p kiln-builder --lib sbom::tests::real_layers -- --ignored
/// --nocapture` prints the purls, the skipped files and the time taken,
/// and writes the document to `KILN_SBOM_OUT` when set (to check it with
/// an SPDX validator such as `pyspdxtools -i`).
#[test]
#[ignore = "reads layers named by KILN_SBOM_LAYERS"]
fn real_layers() {
    let Some(list) = std::env::var_os("KILN_SBOM_LAYERS") else {
        return;
    };
    let layers: Vec<LayerFile> = std::env::split_paths(&list)
        .map(|path| LayerFile {
            path,
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let sbom = generate(&layers, &subject(), &SbomOptions::new(dir.path(), 0)).unwrap();
    let elapsed = started.elapsed();
    for package in &sbom.packages {
        println!("{}", package.purl.as_deref().unwrap_or("<none>"));
    }
    for skip in &sbom.skipped {
        println!(
            "skipped /{} (layer {}): {}",
            skip.path, skip.layer, skip.reason
        );
    }
    println!("{:?} in {elapsed:?}", sbom.stats);
    if let Some(out) = std::env::var_os("KILN_SBOM_OUT") {
        std::fs::write(out, &sbom.document).unwrap();
    }
}
